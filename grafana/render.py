"""Draw the dashboards from real data: a real Prometheus scraping real ``agentbus demo`` runs.

Grafana cannot run on the build machines, so this draws each dashboard's panels with
matplotlib from the same PromQL Grafana would send (``query_range`` for time series and
stats, an instant query for bar gauges), laid out on the dashboard's own grid::

    python -m grafana.render                       # demo rounds + Prometheus, then draw
    python -m grafana.render --prometheus URL --start T0 --end T1   # draw from a Prometheus

It writes ``grafana/screenshots/<uid>.png``. Template variables take their All value
(``.*``); ``$__rate_interval`` is ``--rate-interval`` (default 10s, for the 1s scrape
interval used here) and ``$__range`` the drawn time range. Needs the ``dashboards`` extra
(matplotlib) and Debian's ``prometheus``; starts and stops its own processes.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import httpx

__all__ = ["field_color", "fmt_value", "main", "render_dashboard", "run_demo_rounds", "stack"]

ROOT: Final = Path(__file__).resolve().parent.parent
DASHBOARDS: Final = ROOT / "grafana" / "dashboards"
SCREENSHOTS: Final = ROOT / "grafana" / "screenshots"
VARIABLE: Final = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
LEGEND: Final = re.compile(r"\{\{\s*(\w+)\s*\}\}")

BG: Final = "#111217"
PANEL_BG: Final = "#181b1f"
TEXT: Final = "#ccccdc"
GRID: Final = "#2c3235"
PALETTE: Final = (
    "#73bf69",
    "#f2cc0c",
    "#8ab8ff",
    "#ff780a",
    "#f2495c",
    "#5794f2",
    "#b877d9",
    "#705da0",
    "#37872d",
    "#fade2a",
    "#96d98d",
    "#ffb357",
)


NAMED_COLORS: Final = {
    "green": "#73bf69",
    "orange": "#ff9830",
    "red": "#f2495c",
    "blue": "#5794f2",
    "yellow": "#fade2a",
    "purple": "#b877d9",
}
"""Grafana's named colours (dark theme) used by the dashboards' thresholds and fixed colours."""

GRAFANA_DEFAULT_STEPS: Final = ({"color": "green", "value": None}, {"color": "red", "value": 80})
"""The thresholds Grafana applies to a panel whose field config sets none."""


def field_color(panel: dict[str, Any], value: float) -> str:
    """The colour Grafana gives one value of a stat / gauge / bar gauge panel (hex).

    A ``fixed`` colour mode gives its ``fixedColor``; otherwise (Grafana's default mode for
    these panels, ``thresholds``) the colour of the highest absolute threshold step the value
    reaches (``value >= step``), Grafana's default steps when the panel has none. NaN takes
    the base colour.

    Raises:
        ValueError: thresholds in ``percentage`` mode (not used by the dashboards).
    """
    defaults = panel["fieldConfig"]["defaults"]
    color = defaults.get("color") or {"mode": "thresholds"}
    if color.get("mode") == "fixed":
        name = str(color.get("fixedColor", "green"))
        return NAMED_COLORS.get(name, name)
    thresholds = defaults.get("thresholds") or {}
    if thresholds.get("mode", "absolute") != "absolute":
        raise ValueError(f"{panel['title']}: only absolute thresholds are drawn")
    steps = thresholds.get("steps") or GRAFANA_DEFAULT_STEPS
    chosen = str(steps[0]["color"])
    for step in steps[1:]:
        if step["value"] is not None and not math.isnan(value) and value >= step["value"]:
            chosen = str(step["color"])
    return NAMED_COLORS.get(chosen, chosen)


def stack(
    series: Sequence[dict[float, float]], mode: str
) -> tuple[list[float], list[list[float]]]:
    """Stack series the way a Grafana time series panel does (first series at the bottom).

    Args:
        series: each series as ``{timestamp: value}``; a missing point or NaN counts as 0.
        mode: ``normal`` (cumulative sums) or ``percent`` (cumulative shares of the total,
            0..1).

    Returns:
        ``(timestamps, tops)``: the sorted union of timestamps and, per series, the top edge
        of its band (the previous series' top is its bottom).

    Raises:
        ValueError: another mode.
    """
    if mode not in ("normal", "percent"):
        raise ValueError(f"unknown stacking mode {mode!r}")
    times = sorted({t for points in series for t in points})

    def value(points: dict[float, float], t: float) -> float:
        v = points.get(t, 0.0)
        return 0.0 if math.isnan(v) else v

    totals = [sum(value(points, t) for points in series) for t in times]
    tops: list[list[float]] = []
    base = [0.0] * len(times)
    for points in series:
        top = [b + value(points, t) for b, t in zip(base, times, strict=True)]
        tops.append(top)
        base = top
    if mode == "percent":
        tops = [[v / tot if tot else 0.0 for v, tot in zip(top, totals, strict=True)]
                for top in tops]
    return times, tops


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fmt_value(value: float, unit: str) -> str:
    """Format a value the way Grafana's unit would (approximately).

    Args:
        value: the number. unit: a Grafana unit id (``ops``, ``s``, ``percentunit``,
            ``short``, ``currencyUSD``, ``suffix:<text>``).
    """
    if math.isnan(value):
        return "NaN"
    if unit == "percentunit":
        return f"{value * 100:.3g}%"
    if unit == "s":
        if value == 0:
            return "0 s"
        if abs(value) < 1e-3:
            return f"{value * 1e6:.3g} µs"
        if abs(value) < 1:
            return f"{value * 1e3:.3g} ms"
        return f"{value:.3g} s"
    if unit == "currencyUSD":
        return f"${value:,.4g}"
    suffix = {"ops": " ops/s", "short": ""}.get(unit, "")
    if unit.startswith("suffix:"):
        suffix = " " + unit.removeprefix("suffix:")
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{prefix}{suffix}"
    return f"{value:.3g}{suffix}"


def _substitute(expr: str, values: dict[str, str]) -> str:
    return VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)], expr)


def _legend(fmt: str, labels: dict[str, str], expr: str) -> str:
    if fmt in ("", "__auto"):
        return ",".join(f"{k}={v}" for k, v in labels.items() if k != "__name__") or expr[:40]
    return LEGEND.sub(lambda m: labels.get(m.group(1), ""), fmt)


class _Prom:
    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=30.0)

    def get(self, path: str, **params: Any) -> Any:
        body = self.client.get(f"/api/v1/{path}", params=params).json()
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def range(self, q: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        return list(self.get("query_range", query=q, start=start, end=end, step=step)["result"])

    def instant(self, q: str, at: float) -> list[dict[str, Any]]:
        data = self.get("query", query=q, time=at)
        return (
            [{"metric": {}, "value": data["result"]}]
            if data["resultType"] == "scalar"
            else list(data["result"])
        )


def render_dashboard(
    board: dict[str, Any],
    prom_url: str,
    start: float,
    end: float,
    out: Path,
    *,
    rate_interval: str = "10s",
) -> Path:
    """Draw one dashboard JSON model from ``prom_url`` data over ``[start, end]`` (Unix s).

    Returns:
        The PNG written to ``out``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    prom = _Prom(prom_url)
    values = {
        "job": ".*",
        "instance": ".*",
        "agent": ".*",
        "handler": ".*",
        "__rate_interval": rate_interval,
        "__range": f"{max(int(end - start), 1)}s",
    }
    step = max((end - start) / 240, 1.0)
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"])
    width_in, row_in, head_in = 20.0, 0.32, 0.5
    height_in = bottom * row_in + head_in
    fig = plt.figure(figsize=(width_in, height_in), facecolor=BG)
    fig.text(0.005, 1 - 0.25 / height_in, board["title"], color=TEXT, fontsize=16, va="center")

    def rect(x: float, y: float, w: float, h: float) -> list[float]:
        """Grid units (x in 1/24 of the width, y in rows from the top) -> figure fraction."""
        return [
            x / 24,
            1 - (head_in + (y + h) * row_in) / height_in,
            w / 24,
            h * row_in / height_in,
        ]

    for panel in board["panels"]:
        gp = panel["gridPos"]
        if panel["type"] == "row":
            fig.text(
                gp["x"] / 24 + 0.004,
                1 - (head_in + (gp["y"] + 0.5) * row_in) / height_in,
                panel["title"],
                color=TEXT,
                fontsize=13,
                weight="bold",
                va="center",
            )
            continue
        # Panel frame with its title; the plot is inset to leave room for ticks and legend.
        x0, y0, w0, h0 = rect(gp["x"] + 0.08, gp["y"] + 0.08, gp["w"] - 0.16, gp["h"] - 0.16)
        frame = fig.add_axes((x0, y0, w0, h0), facecolor=PANEL_BG)
        frame.set_xticks([])
        frame.set_yticks([])
        for spine in frame.spines.values():
            spine.set_color(GRID)
        frame.text(
            0.01,
            1 - 0.22 / (h0 * height_in),
            panel["title"],
            color=TEXT,
            fontsize=10,
            transform=frame.transAxes,
            va="center",
            weight="bold",
        )
        unit = panel["fieldConfig"]["defaults"].get("unit", "short")
        pad_top = 0.45 / height_in
        if panel["type"] == "timeseries":
            legend_w = w0 * 0.34
            pad_left, pad_bottom = 0.6 / width_in, 0.3 / height_in
            ax = fig.add_axes(
                (
                    x0 + pad_left,
                    y0 + pad_bottom,
                    w0 - legend_w - pad_left - 0.004,
                    h0 - pad_top - pad_bottom,
                ),
                facecolor=PANEL_BG,
            )
            for spine in ax.spines.values():
                spine.set_color(GRID)
            ax.tick_params(colors=TEXT, labelsize=7)
            custom = panel["fieldConfig"]["defaults"].get("custom", {})
            fill = float(custom.get("fillOpacity", 0)) / 100
            stacking = custom.get("stacking", {}).get("mode", "none")
            labels: list[str] = []
            points: list[dict[float, float]] = []
            for target in panel["targets"]:
                q = _substitute(target["expr"], values)
                for series in prom.range(q, start, end, step):
                    labels.append(_legend(target.get("legendFormat", ""), series["metric"], q))
                    points.append({float(t): float(v) for t, v in series["values"]})
            handles: list[Line2D] = []
            if stacking in ("normal", "percent") and points:
                times, tops = stack(points, stacking)
                xs = [t / 86400.0 for t in times]  # days, UTC
                base = [0.0] * len(times)
                for i, (label, top) in enumerate(zip(labels, tops, strict=True)):
                    color = PALETTE[i % len(PALETTE)]
                    ax.fill_between(xs, base, top, color=color, alpha=fill, linewidth=0)
                    (line,) = ax.plot(xs, top, linewidth=1.2, color=color, label=label)
                    handles.append(line)
                    base = top
            else:
                for i, (label, pts) in enumerate(zip(labels, points, strict=True)):
                    color = PALETTE[i % len(PALETTE)]
                    xs = [t / 86400.0 for t in pts]
                    ys = list(pts.values())
                    ax.fill_between(xs, 0, ys, color=color, alpha=fill, linewidth=0)
                    (line,) = ax.plot(xs, ys, linewidth=1.2, color=color, label=label)
                    handles.append(line)
            ax.grid(color=GRID, linewidth=0.5)
            ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=5))  # type: ignore[no-untyped-call]
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))  # type: ignore[no-untyped-call]
            ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
            ax.yaxis.set_major_formatter(
                matplotlib.ticker.FuncFormatter(lambda v, _p, u=unit: fmt_value(v, u))
            )
            ax.set_ylim(bottom=0)
            if handles:
                shown = handles[:12]
                legend_labels = [str(h.get_label()) for h in shown]
                if len(handles) > len(shown):
                    legend_labels[-1] = f"... {len(handles) - len(shown) + 1} more"
                ax.legend(
                    shown,
                    legend_labels,
                    fontsize=6.5,
                    loc="upper left",
                    bbox_to_anchor=(1.01, 1.0),
                    frameon=False,
                    labelcolor=TEXT,
                    borderaxespad=0,
                )
            else:
                ax.text(0.5, 0.5, "No data", color=TEXT, ha="center", transform=ax.transAxes)
        elif panel["type"] in ("stat", "gauge"):
            target = panel["targets"][0]
            stat_series = prom.range(_substitute(target["expr"], values), start, end, step)
            ax = fig.add_axes((x0, y0, w0, h0 - pad_top), facecolor="none")
            ax.axis("off")
            if stat_series:
                ys = [float(v) for _, v in stat_series[0]["values"]]
                finite = [y for y in ys if not math.isnan(y)]
                last = finite[-1] if finite else float("nan")
                # Colour mode "value": number and sparkline take the last value's colour.
                color = field_color(panel, last)
                ax.fill_between(
                    range(len(ys)),
                    [0 if math.isnan(y) else y for y in ys],
                    color=color,
                    alpha=0.25,
                )
                ax.set_ylim(bottom=0)
                ax.text(
                    0.5,
                    0.5,
                    fmt_value(last, unit),
                    color=color,
                    fontsize=20,
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    weight="bold",
                )
            else:
                ax.text(0.5, 0.5, "No data", color=TEXT, ha="center", transform=ax.transAxes)
        elif panel["type"] == "bargauge":
            target = panel["targets"][0]
            q = _substitute(target["expr"], values)
            result = prom.instant(q, end)
            ax = fig.add_axes(
                (x0 + w0 * 0.25, y0 + 0.1 / height_in, w0 * 0.62, h0 - pad_top - 0.15 / height_in),
                facecolor=PANEL_BG,
            )
            ax.axis("off")
            labels = [_legend(target.get("legendFormat", ""), s["metric"], q) for s in result]
            nums = [float(s["value"][1]) for s in result]
            top_n = max(len(nums), 1)
            for i, (label, v) in enumerate(zip(labels, nums, strict=True)):
                yy = top_n - 1 - i
                ax.barh(yy, v, color=field_color(panel, v), height=0.7)
                ax.text(0, yy, label + "  ", color=TEXT, va="center", ha="right", fontsize=8)
                ax.text(v, yy, "  " + fmt_value(v, unit), color=TEXT, va="center", fontsize=8)
            ax.set_ylim(-0.6, top_n - 0.4)
            ax.set_xlim(0, (max(nums) if nums else 1) * 1.02)
            if not result:
                ax.text(0.5, 0.5, "No data", color=TEXT, ha="center", transform=ax.transAxes)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=72, facecolor=BG)
    plt.close(fig)
    # A 256-colour palette keeps the committed PNGs small.
    from PIL import Image

    with Image.open(out) as image:
        image.convert("RGB").quantize(colors=128).save(out, optimize=True)
    return out


def _start_prometheus(workdir: Path, target: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "grafana" / "prometheus" / "alerts.yml")],
        "scrape_configs": [{"job_name": "agentbus", "static_configs": [{"targets": [target]}]}],
    }
    (workdir / "prometheus.yml").write_text(json.dumps(config))
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--enable-feature=exemplar-storage",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            targets = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]
            active = targets["activeTargets"]
            if active and not active[0]["lastScrape"].startswith("0001-"):
                return proc, url
        except (httpx.TransportError, KeyError, ValueError):
            pass
        time.sleep(0.3)
    proc.terminate()
    raise RuntimeError("prometheus did not start scraping within 90s")


def run_demo_rounds(
    rounds: Sequence[int], pause_s: float
) -> tuple[str, float, float, subprocess.Popen[bytes]]:
    """Start Prometheus, then run ``agentbus demo`` once per entry of ``rounds`` (its run
    count) on one port, pausing ``pause_s`` between rounds.

    Returns:
        ``(prometheus_url, start, end, prometheus_process)``; stop the process when done.
    """
    workdir = Path(tempfile.mkdtemp(prefix="agentbus-render-"))
    port = _free_port()
    prom, url = _start_prometheus(workdir, f"127.0.0.1:{port}")
    start = time.time()
    for i, runs in enumerate(rounds):
        summary = workdir / f"summary{i}.json"
        demo = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agentbus.cli",
                "demo",
                "--runs",
                str(runs),
                "--port",
                str(port),
                "--serve-for",
                str(pause_s),
                "--concurrency",
                "2",
                "--seed",
                str(i + 1),
                "--traces",
                "none",
                "--summary-json",
                str(summary),
                "--log-file",
                str(workdir / f"demo{i}.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        demo.wait(timeout=600)
        print(f"round {i + 1}: {runs} runs, exit {demo.returncode}", file=sys.stderr)
    # End the picture when the last round's runs were done (its summary was written), so
    # the stat panels show the last rates, not the idle tail.
    finished = [p.stat().st_mtime for p in workdir.glob("summary*.json")]
    end = max(finished) + 1.0 if finished else time.time()
    return url, start, end, prom


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m grafana.render",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--prometheus", help="draw from this Prometheus (else start one)")
    parser.add_argument("--start", type=float, help="Unix seconds (with --prometheus)")
    parser.add_argument("--end", type=float, help="Unix seconds (with --prometheus)")
    parser.add_argument(
        "--rounds",
        type=int,
        nargs="+",
        default=[150, 250, 200],
        help="demo runs per round (default 150 250 200)",
    )
    parser.add_argument("--pause", type=float, default=8.0, help="seconds between rounds")
    parser.add_argument("--rate-interval", default="10s")
    parser.add_argument("--out", type=Path, default=SCREENSHOTS)
    args = parser.parse_args(argv)
    proc: subprocess.Popen[bytes] | None = None
    if args.prometheus:
        url = args.prometheus
        end = args.end or time.time()
        start = args.start or end - 600
    else:
        url, start, end, proc = run_demo_rounds(args.rounds, args.pause)
    try:
        for path in sorted(DASHBOARDS.glob("*.json")):
            out = render_dashboard(
                json.loads(path.read_text()),
                url,
                start,
                end,
                args.out / f"{path.stem}.png",
                rate_interval=args.rate_interval,
            )
            print(out)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
