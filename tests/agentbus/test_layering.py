"""The layering rule of DESIGN.md: nothing in ``agentbus`` imports ``middleware`` or
``exporters`` (data flows one way), except the command-line application (``agentbus/cli*``,
``agentbus/demo*``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import agentbus

PACKAGE = Path(agentbus.__file__).parent
UPPER_LAYERS = ("middleware", "exporters")
EXEMPT_PREFIXES = ("cli", "demo")  # agentbus/cli*.py, agentbus/demo*.py wire everything

LIBRARY_MODULES = (
    "agentbus",
    "agentbus.bus",
    "agentbus.events",
    "agentbus.executor",
    "agentbus.sessions",
    "agentbus.subagents",
    "agentbus.semconv",
    "agentbus.testing",
    "agentbus.adapters",
    "agentbus.adapters.pydantic_ai",
)

PROBE = f"""
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in {UPPER_LAYERS!r})
print(bad)
sys.exit(1 if bad else 0)
"""


def library_files() -> list[Path]:
    """Every ``agentbus`` source file the rule applies to."""
    files = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if len(rel.parts) == 1 and rel.name.startswith(EXEMPT_PREFIXES):
            continue
        files.append(path)
    return files


def upper_layer_imports(source: str, label: str) -> list[str]:
    """``label:line module`` for each import of an upper layer in ``source``, in line order
    (at any depth: function-level imports and ``importlib.import_module("...")`` literals
    too; relative imports stay inside the package)."""
    tree = ast.parse(source, filename=label)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        for name in names:
            if name.split(".")[0] in UPPER_LAYERS:
                found.append((line, name))
    return [f"{label}:{line} {name}" for line, name in sorted(found)]


def test_importing_the_library_loads_no_upper_layer() -> None:
    """A fresh interpreter importing every library module of agentbus (CLI excluded) has no
    middleware/exporters module in sys.modules."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *LIBRARY_MODULES],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=PACKAGE.parent,  # the repository root: middleware/ is importable
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert proc.stdout.strip() == "[]"


def test_the_probe_detects_an_upper_layer_import() -> None:
    """The probe is able to fail: importing middleware itself is reported."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "agentbus", "middleware"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=PACKAGE.parent,  # the repository root: middleware/ is importable
    )
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "middleware" in proc.stdout


def test_no_library_source_imports_an_upper_layer() -> None:
    """No agentbus source file except cli*/demo* imports middleware or exporters, even
    lazily inside a function."""
    files = library_files()
    assert PACKAGE / "bus.py" in files and PACKAGE / "adapters" / "pydantic_ai.py" in files
    assert all(not p.name.startswith(EXEMPT_PREFIXES) for p in files if p.parent == PACKAGE)
    offending = [
        hit
        for path in files
        for hit in upper_layer_imports(
            path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent))
        )
    ]
    assert offending == []


def test_static_scan_detects_lazy_imports() -> None:
    """The scanner catches top-level, function-level, from-imports and import_module, and
    ignores the package's own and relative imports."""
    source = (
        "import exporters.prometheus\n"
        "def f():\n"
        "    from middleware.retry import RetryHandler\n"
        "    import importlib\n"
        "    importlib.import_module('exporters.otel')\n"
        "from agentbus import bus\n"
        "from .middleware import x\n"
        "import middlewares_lookalike\n"
    )
    assert upper_layer_imports(source, "m.py") == [
        "m.py:1 exporters.prometheus",
        "m.py:3 middleware.retry",
        "m.py:5 exporters.otel",
    ]
