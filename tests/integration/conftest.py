"""Fixtures that start real servers: a Prometheus server and the ``agentbus demo``.

Reusable by every integration test (the dashboard tests evaluate their PromQL against the
same setup). Three layers, use the one you need:

* :func:`start_prometheus` — factory fixture: ``start_prometheus({"agentbus":
  ["127.0.0.1:9464"]}, rule_files=[...])`` starts ``/usr/bin/prometheus`` on a free loopback
  port (scrape interval 1s, exemplar storage on), waits for ``/-/ready`` and returns a
  :class:`PrometheusServer` with :meth:`~PrometheusServer.query`,
  :meth:`~PrometheusServer.value`, :meth:`~PrometheusServer.wait_for_fresh_scrape`.
  Torn down (SIGTERM, then SIGKILL) at the end of the test.
* :func:`start_demo` — factory fixture: ``start_demo(runs=40, serve_for=120)`` starts
  ``python -m agentbus.cli demo --runs N --port P --serve-for S --summary-json F
  --traces none`` in a subprocess and returns a :class:`DemoProcess`;
  ``demo.wait_for_summary()`` returns the demo's own summary (written after every event
  has been delivered to the metrics handler, so ``/metrics`` is final from then on).
* :func:`scraped_demo` — module-scoped: one demo run (``DEMO_RUNS`` runs) scraped by one
  Prometheus, already waited until Prometheus holds a scrape taken after the summary was
  written. ``scraped_demo.prometheus.value("sum(agentbus_agent_runs_total)")``.

Everything binds 127.0.0.1 only. Each server's output goes to a log file in its temporary
directory; the file's tail is included in any start-up error.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

__all__ = [
    "DEMO_RUNS",
    "DemoProcess",
    "PrometheusServer",
    "ScrapedDemo",
    "prometheus_binary",
    "promtool_binary",
]

REPO_ROOT = Path(__file__).resolve().parents[2]

DEMO_RUNS = 40
"""Number of agent runs of the shared :func:`scraped_demo`."""

_START_TIMEOUT_S = 90.0
"""Generous: the test machine is small and shared."""


def _tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def _binary(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists()
                                   else None)
    if found is None:
        pytest.fail(
            f"{name!r} not found: install the Debian package 'prometheus' "
            "(`make test` does it via apt-get)",
            pytrace=False,
        )
    return found


def prometheus_binary() -> str:
    """Path of the ``prometheus`` server binary; fails the test with a clear message if
    the Debian package is missing."""
    return _binary("prometheus")


def promtool_binary() -> str:
    """Path of ``promtool``; fails the test with a clear message if missing."""
    return _binary("promtool")


def _stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
                  timeout_s: float = 15.0) -> int | None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)
    return proc.returncode


class PrometheusServer:
    """A real Prometheus server process on ``127.0.0.1:<port>``.

    Args:
        workdir: directory for its config, TSDB and log (must exist).
        scrape_targets: job name -> list of ``host:port`` targets (``/metrics`` path).
        rule_files: alerting/recording rule files to load (paths).
        scrape_interval: Prometheus duration string, default ``"1s"``.

    Use :meth:`start` / :meth:`stop` (or the :func:`start_prometheus` fixture, which does
    both). Queries go through the HTTP API with ``httpx``.
    """

    def __init__(
        self,
        workdir: Path,
        scrape_targets: Mapping[str, Sequence[str]],
        *,
        rule_files: Sequence[Path] = (),
        scrape_interval: str = "1s",
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "prometheus.yml"
        self.log_path = workdir / "prometheus.log"
        self.scrape_targets = {job: list(t) for job, t in scrape_targets.items()}
        self.rule_files = [Path(p) for p in rule_files]
        self.scrape_interval = scrape_interval
        self._proc: subprocess.Popen[bytes] | None = None
        self._client = httpx.Client(base_url=self.url, timeout=10.0)

    def _config(self) -> str:
        # JSON is valid YAML: no YAML library needed.
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
            },
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets}]}
                for job, targets in self.scrape_targets.items()
            ],
        }
        if self.rule_files:
            config["rule_files"] = [str(p) for p in self.rule_files]
        return json.dumps(config, indent=2)

    def start(self, timeout_s: float = _START_TIMEOUT_S) -> None:
        """Write the config, start the process, wait until ``/-/ready`` answers 200.

        Raises:
            RuntimeError: it exited or was not ready within ``timeout_s`` (log tail
                included).
        """
        self.config_path.write_text(self._config())
        tsdb = self.workdir / "tsdb"
        tsdb.mkdir(exist_ok=True)
        cmd = [
            prometheus_binary(),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={tsdb}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--enable-feature=exemplar-storage",
            "--web.enable-lifecycle",
        ]
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                          cwd=self.workdir)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {self._proc.returncode}:\n{_tail(self.log_path)}"
                )
            try:
                if self._client.get("/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"prometheus not ready after {timeout_s}s:\n{_tail(self.log_path)}")

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and close the HTTP client."""
        if self._proc is not None:
            _stop_process(self._proc)
            self._proc = None
        self._client.close()

    # ------------------------------------------------------------------ queries
    def api(self, path: str, **params: Any) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data``.

        Raises:
            AssertionError: the API answered with an error (message included).
        """
        r = self._client.get(f"/api/v1/{path}", params=params)
        body = r.json()
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, promql: str, *, at: float | None = None) -> list[dict[str, Any]]:
        """Evaluate an instant query; return the result vector: a list of
        ``{"metric": {label: value}, "value": [ts, "str"]}`` (a scalar result comes back
        as a one-element list with an empty ``metric``).

        Raises:
            AssertionError: the query is invalid (Prometheus's error message included).
        """
        params: dict[str, Any] = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        assert data["resultType"] == "vector", f"{promql!r}: unexpected result {data}"
        return list(data["result"])

    def value(self, promql: str) -> float:
        """The value of a query that must return exactly one sample.

        Raises:
            AssertionError: zero or several samples (they are listed).
        """
        result = self.query(promql)
        assert len(result) == 1, f"{promql!r}: expected one sample, got {result}"
        return float(result[0]["value"][1])

    def targets(self, job: str | None = None) -> list[dict[str, Any]]:
        """Active scrape targets (``/api/v1/targets``), optionally only of ``job``."""
        active = self.api("targets", state="active")["activeTargets"]
        return [t for t in active if job is None or t["labels"].get("job") == job]

    def wait_for_fresh_scrape(self, job: str, after: float,
                              timeout_s: float = _START_TIMEOUT_S) -> float:
        """Wait until Prometheus stored a successful scrape of every target of ``job``
        that *started* after Unix time ``after``; return that scrape's timestamp.

        Uses ``timestamp(up{job=...})``: ``up`` is written at the scrape's start
        time, so data exposed before ``after`` is in it. (The argument must be a plain
        selector: on an expression such as ``up == 1`` Prometheus 2.42's ``timestamp()``
        returns the evaluation time, not the scrape's.)

        Raises:
            TimeoutError: no such scrape within ``timeout_s`` (target health included).
        """
        deadline = time.monotonic() + timeout_s
        promql = f'min(timestamp(up{{job="{job}"}}))'
        n_targets = len(self.scrape_targets.get(job, ()))
        while time.monotonic() < deadline:
            up = self.query(f'count(up{{job="{job}"}} == 1)')
            if up and int(float(up[0]["value"][1])) >= n_targets:
                ts = self.query(promql)
                if ts and float(ts[0]["value"][1]) > after:
                    return float(ts[0]["value"][1])
            time.sleep(0.3)
        raise TimeoutError(
            f"no fresh scrape of job {job!r} after {after}: targets {self.targets(job)}"
        )

    def wait_until(self, promql: str, predicate: Callable[[list[dict[str, Any]]], bool],
                   timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Poll ``promql`` until ``predicate(result)`` holds; return that result.

        Raises:
            TimeoutError: it never held (last result included).
        """
        deadline = time.monotonic() + timeout_s
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(promql)
            if predicate(result):
                return result
            time.sleep(0.3)
        raise TimeoutError(f"{promql!r} never satisfied the predicate; last: {result}")


class DemoProcess:
    """``agentbus demo`` running in a subprocess.

    Args:
        workdir: directory for the summary JSON, the log file and the process output.
        runs: ``--runs``. port: ``--port`` (default: a free port). serve_for:
            ``--serve-for`` seconds. seed: ``--seed``. extra_args: appended verbatim.

    The command is ``sys.executable -m agentbus.cli demo ...`` run from ``workdir`` with
    the repository on ``PYTHONPATH``.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        runs: int = DEMO_RUNS,
        port: int | None = None,
        serve_for: float = 120.0,
        seed: int = 7,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.runs = runs
        self.port = port if port is not None else free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.metrics_url = f"http://{self.target}/metrics"
        self.summary_path = workdir / "summary.json"
        self.output_path = workdir / "demo.out"
        self.args = [
            sys.executable, "-m", "agentbus.cli", "demo",
            "--runs", str(runs),
            "--port", str(self.port),
            "--serve-for", str(serve_for),
            "--seed", str(seed),
            "--summary-json", str(self.summary_path),
            "--traces", "none",
            "--log-file", str(workdir / "demo.log.jsonl"),
            *extra_args,
        ]
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DemoProcess:
        """Start the subprocess (returns immediately)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env.setdefault("COLUMNS", "120")
        with self.output_path.open("wb") as out:
            self._proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT,
                                          cwd=self.workdir, env=env)
        return self

    @property
    def output(self) -> str:
        """What the demo printed so far (stdout and stderr)."""
        return self.output_path.read_text(errors="replace") if self.output_path.exists() else ""

    def wait_for_summary(self, timeout_s: float = 180.0) -> dict[str, Any]:
        """Wait until the demo wrote its summary JSON (all runs done, all events delivered
        to the metrics handler); return it.

        Raises:
            RuntimeError: the demo exited first (its output included).
            TimeoutError: not written within ``timeout_s``.
        """
        assert self._proc is not None, "start() first"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.summary_path.exists():
                try:
                    return dict(json.loads(self.summary_path.read_text()))
                except json.JSONDecodeError:
                    pass  # being written (it is written atomically, but be safe)
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"demo exited with {self._proc.returncode} before writing its summary:\n"
                    f"{self.output[-4000:]}"
                )
            time.sleep(0.2)
        raise TimeoutError(f"demo wrote no summary within {timeout_s}s:\n{self.output[-4000:]}")

    def scrape(self, *, openmetrics: bool = False) -> str:
        """GET the demo's ``/metrics`` (Prometheus text, or OpenMetrics if asked)."""
        headers = {"Accept": "application/openmetrics-text; version=1.0.0"} if openmetrics \
            else {}
        r = httpx.get(self.metrics_url, headers=headers, timeout=10.0)
        r.raise_for_status()
        return r.text

    def stop(self, sig: int = signal.SIGINT) -> int | None:
        """Interrupt the demo (like Ctrl-C) and return its exit code."""
        if self._proc is None:
            return None
        return _stop_process(self._proc, sig)

    def wait(self, timeout_s: float = 60.0) -> int:
        """Wait for the demo to exit by itself; return its exit code."""
        assert self._proc is not None, "start() first"
        return self._proc.wait(timeout=timeout_s)


@dataclass(frozen=True)
class ScrapedDemo:
    """A finished demo run, its summary, and a Prometheus that has scraped it fresh."""

    demo: DemoProcess
    summary: dict[str, Any]
    prometheus: PrometheusServer
    job: str = "agentbus"


@pytest.fixture
def start_prometheus(tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[Callable[..., PrometheusServer]]:
    """Factory: ``start_prometheus(scrape_targets, *, rule_files=(), scrape_interval="1s")``
    starts a :class:`PrometheusServer` (ready) and stops it after the test."""
    servers: list[PrometheusServer] = []

    def start(scrape_targets: Mapping[str, Sequence[str]], **kwargs: Any) -> PrometheusServer:
        server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), scrape_targets,
                                  **kwargs)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def start_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., DemoProcess]]:
    """Factory: ``start_demo(runs=..., port=..., serve_for=..., seed=..., extra_args=...)``
    starts a :class:`DemoProcess`; it is interrupted after the test."""
    demos: list[DemoProcess] = []

    def start(**kwargs: Any) -> DemoProcess:
        demo = DemoProcess(tmp_path_factory.mktemp("demo"), **kwargs)
        demos.append(demo)
        return demo.start()

    yield start
    for demo in demos:
        demo.stop()


@pytest.fixture(scope="module")
def scraped_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScrapedDemo]:
    """One demo of :data:`DEMO_RUNS` runs, serving ``/metrics``, scraped by one real
    Prometheus (job ``agentbus``) with a scrape taken after the summary was written."""
    demo = DemoProcess(tmp_path_factory.mktemp("demo"), runs=DEMO_RUNS, serve_for=600)
    prom = PrometheusServer(tmp_path_factory.mktemp("prometheus"), {"agentbus": [demo.target]})
    try:
        demo.start()
        prom.start()
        summary = demo.wait_for_summary()
        prom.wait_for_fresh_scrape("agentbus", after=time.time())
        yield ScrapedDemo(demo=demo, summary=summary, prometheus=prom)
    finally:
        demo.stop()
        prom.stop()
