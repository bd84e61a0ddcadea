"""Generate the committed dashboard JSON and package-data copies; ``--check`` verifies them.

Usage::

    python -m grafana.generate            # (re)write every generated file
    python -m grafana.generate --check    # exit 1, listing stale files, if any differs

Sources and outputs (every output is committed; the check covers each copy):

* ``grafana/boards.py`` (grafana-foundation-sdk builders) →
  ``grafana/dashboards/<uid>.json`` (what users browse and Grafana provisioning loads) and
  ``exporters/monitoring/dashboards/<uid>.json`` (package data for
  :func:`exporters.dashboards.export_all`);
* ``grafana/prometheus/{alerts,alerts_test,prometheus}.yml`` (hand-written, tested with
  promtool) → ``exporters/monitoring/prometheus/`` (package data).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from exporters.dashboards import DASHBOARD_FILES, PROMETHEUS_FILES
from grafana.boards import all_dashboards

__all__ = ["ROOT", "expected_files", "main", "stale_files", "write_files"]

ROOT: Final = Path(__file__).resolve().parent.parent
"""The repository root."""

GRAFANA_DASHBOARDS: Final = ROOT / "grafana" / "dashboards"
GRAFANA_PROMETHEUS: Final = ROOT / "grafana" / "prometheus"
PACKAGE_MONITORING: Final = ROOT / "exporters" / "monitoring"


def dashboard_json(model: dict[str, object]) -> str:
    """The canonical text of a dashboard JSON model (sorted keys, 2-space indent)."""
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files() -> dict[Path, str]:
    """Every generated file (absolute path) with the content it must have."""
    files: dict[Path, str] = {}
    boards = all_dashboards()
    names = [f"{uid}.json" for uid in boards]
    if tuple(names) != DASHBOARD_FILES:
        raise RuntimeError(f"dashboard uids {names} differ from {DASHBOARD_FILES}")
    for name, model in zip(names, boards.values(), strict=True):
        text = dashboard_json(model)
        files[GRAFANA_DASHBOARDS / name] = text
        files[PACKAGE_MONITORING / "dashboards" / name] = text
    for name in PROMETHEUS_FILES:
        files[PACKAGE_MONITORING / "prometheus" / name] = (GRAFANA_PROMETHEUS / name).read_text(
            encoding="utf-8"
        )
    return files


def stale_files() -> list[Path]:
    """Generated files that are missing or differ from what the sources produce."""
    stale = []
    for path, text in expected_files().items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(path)
    return stale


def write_files() -> list[Path]:
    """Write every generated file; returns the paths whose content changed."""
    changed = []
    for path, text in expected_files().items():
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        changed.append(path)
    return changed


def _display(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m grafana.generate", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if a file is stale"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {_display(path)}", file=sys.stderr)
        if stale:
            print("run `make dashboards` (python -m grafana.generate)", file=sys.stderr)
            return 1
        print("generated dashboards and package copies are up to date")
        return 0
    for path in write_files():
        print(f"wrote {_display(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
