"""Write the agentbus Grafana dashboards and Prometheus files for a user's own setup.

The files are the ones tested in this repository (``grafana/``; generated and checked by
``python -m grafana.generate``) and shipped as package data under ``exporters/monitoring/``:

* ``dashboards/agentbus-agents.json`` and ``dashboards/agentbus-bus.json`` — Grafana dashboard
  JSON models (import them, or point a Grafana dashboard provider at the directory);
* ``prometheus/alerts.yml`` — alert rules; ``prometheus/alerts_test.yml`` — their unit tests
  (``promtool test rules alerts_test.yml``);
* ``prometheus/prometheus.yml`` — a scrape config for one agentbus process on
  ``127.0.0.1:9464`` loading ``alerts.yml``.

:func:`export_all` substitutes the metric prefix (every ``agentbus_*`` metric name becomes
``<prefix>_*``; the OpenTelemetry GenAI metrics ``gen_ai_*`` keep their standard names) and the
Prometheus job name (``job="agentbus"`` selectors, ``job_name: agentbus``). ``agentbus dashboards
export DIR [--prefix P] [--job J]`` calls it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

__all__ = [
    "DASHBOARD_FILES",
    "PROMETHEUS_FILES",
    "export_all",
    "rewrite",
]

DASHBOARD_FILES: Final = ("agentbus-agents.json", "agentbus-bus.json")
"""The dashboard files, written to ``<out_dir>/dashboards/``."""

PROMETHEUS_FILES: Final = ("alerts.yml", "alerts_test.yml", "prometheus.yml")
"""The Prometheus files, written to ``<out_dir>/prometheus/``."""

DEFAULT_PREFIX: Final = "agentbus"
DEFAULT_JOB: Final = "agentbus"

_PREFIX_RE: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_JOB_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
# A metric name token starting with the default prefix: not preceded by a name character.
_METRIC_RE: Final = re.compile(r"(?<![A-Za-z0-9_:])agentbus_(?=[A-Za-z0-9_:])")
# job="agentbus" in PromQL or YAML, or job=\"agentbus\" inside a JSON string.
_JOB_SELECTOR_RE: Final = re.compile(r'\bjob=(\\?")agentbus\1')
_JOB_YAML_RE: Final = re.compile(r"^(\s*(?:-\s+)?(?:job|job_name):\s+)agentbus\s*$", re.MULTILINE)


def _validate(metric_prefix: str, job: str) -> None:
    if not _PREFIX_RE.fullmatch(metric_prefix) or metric_prefix.endswith("_"):
        raise ValueError(
            f"metric_prefix must be a Prometheus metric name prefix without the trailing '_' "
            f"(letters, digits, '_' and ':', not starting with a digit), got {metric_prefix!r}"
        )
    if not _JOB_RE.fullmatch(job):
        raise ValueError(
            f"job must be letters, digits, '_', '.' or '-' (starting with a letter or digit), "
            f"got {job!r}"
        )


def rewrite(text: str, *, metric_prefix: str = DEFAULT_PREFIX, job: str = DEFAULT_JOB) -> str:
    """Substitute the metric prefix and the job name in one shipped file's text.

    Args:
        text: the content of a dashboard JSON or Prometheus YAML file as shipped (default
            prefix ``agentbus`` and job ``agentbus``).
        metric_prefix: replaces ``agentbus`` in every metric name token ``agentbus_*``.
        job: replaces ``agentbus`` in ``job="agentbus"`` selectors and in YAML
            ``job: agentbus`` / ``job_name: agentbus`` lines.

    Returns:
        The rewritten text (unchanged for the defaults).

    Raises:
        ValueError: ``metric_prefix`` is not a valid metric name prefix (or ends with ``_``),
            or ``job`` has characters that would need quoting.
    """
    _validate(metric_prefix, job)
    text = _METRIC_RE.sub(f"{metric_prefix}_", text)
    text = _JOB_SELECTOR_RE.sub(lambda m: f"job={m.group(1)}{job}{m.group(1)}", text)
    return _JOB_YAML_RE.sub(lambda m: f"{m.group(1)}{job}", text)


def export_all(
    out_dir: Path, *, metric_prefix: str = DEFAULT_PREFIX, job: str = DEFAULT_JOB
) -> list[Path]:
    """Write the dashboards and Prometheus files into ``out_dir`` for a user's setup.

    Creates ``out_dir/dashboards/`` (:data:`DASHBOARD_FILES`) and ``out_dir/prometheus/``
    (:data:`PROMETHEUS_FILES`), overwriting files of the same names. Synchronous file I/O:
    call it from a CLI or a thread, not from inside an event loop's hot path.

    Args:
        out_dir: target directory (created with parents if missing).
        metric_prefix: the prefix of the agentbus metric names in the user's Prometheus
            (default ``agentbus``, as exported by ``middleware.prometheus``).
        job: the Prometheus job name scraping the agentbus processes (default ``agentbus``).

    Returns:
        The written files, dashboards first, in the order of the constants above.

    Raises:
        ValueError: invalid ``metric_prefix`` or ``job`` (see :func:`rewrite`); nothing is
            written then.
        OSError: ``out_dir`` (or a subdirectory) cannot be created or written.
    """
    _validate(metric_prefix, job)
    # Package data beside this module (a plain path: also right when the editable install
    # sees ``exporters`` as a namespace package, where importlib.resources fails).
    source = Path(__file__).resolve().parent / "monitoring"
    written: list[Path] = []
    for sub, names in (("dashboards", DASHBOARD_FILES), ("prometheus", PROMETHEUS_FILES)):
        target_dir = Path(out_dir) / sub
        target_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            text = (source / sub / name).read_text(encoding="utf-8")
            target = target_dir / name
            target.write_text(rewrite(text, metric_prefix=metric_prefix, job=job), encoding="utf-8")
            written.append(target)
    return written
