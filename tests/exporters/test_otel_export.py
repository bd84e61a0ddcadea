"""Tests of exporters.otel.configure_tracing: JSON lines, console, OTLP/HTTP, none."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SpanExportResult

from agentbus import AgentConfig, AgentExecutor, AgentOutput, EventBus, EventType, ToolCall
from exporters.otel import JsonLinesSpanExporter, TracingSetup, configure_tracing
from tests.conftest import free_port


async def _runner(run: Any) -> AgentOutput:
    return AgentOutput("ok", tool_calls=[ToolCall("search", "c1", 1, 2)])


async def _run_through(setup: TracingSetup, runs: int = 2) -> list[str]:
    """Run ``runs`` real executions with the setup's handler; return the trace ids."""
    assert setup.handler is not None
    bus = EventBus()
    await bus.subscribe(EventType.ANY, setup.handler)
    ex = AgentExecutor("a1", AgentConfig(name="exp"), _runner, event_bus=bus)
    trace_ids = [(await ex.execute("hi")).trace_id for _ in range(runs)]
    await bus.close()
    setup.shutdown()
    return trace_ids


async def test_jsonl_one_object_per_line(tmp_path: Path) -> None:
    """The JSON-lines exporter writes one parsable span object per line."""
    path = tmp_path / "spans.jsonl"
    setup = configure_tracing("jsonl", path=path, service_name="svc-test")
    trace_ids = await _run_through(setup)
    lines = path.read_text(encoding="utf-8").splitlines()
    spans = [json.loads(line) for line in lines]
    assert len(spans) == 4
    assert sorted(s["name"] for s in spans) == ["execute_tool search"] * 2 + [
        "invoke_agent exp"] * 2
    assert {s["context"]["trace_id"] for s in spans} == {f"0x{t}" for t in trace_ids}
    assert {s["resource"]["attributes"]["service.name"] for s in spans} == {"svc-test"}


def test_jsonl_exporter_after_shutdown_fails(tmp_path: Path) -> None:
    """After shutdown the exporter reports FAILURE instead of writing."""
    exporter = JsonLinesSpanExporter(tmp_path / "x.jsonl")
    assert exporter.export([]) is SpanExportResult.SUCCESS
    assert exporter.force_flush() is True
    exporter.shutdown()
    exporter.shutdown()
    assert exporter.export([]) is SpanExportResult.FAILURE
    assert exporter.force_flush() is False


async def test_console_exporter_prints_spans() -> None:
    """The console kind prints the spans to the given stream."""
    stream = io.StringIO()
    setup = configure_tracing("console", out=stream)
    await _run_through(setup, runs=1)
    out = stream.getvalue()
    assert '"name": "invoke_agent exp"' in out
    assert '"name": "execute_tool search"' in out


def test_none_kind_builds_nothing() -> None:
    """The none kind has no handler, and shutting it down is harmless."""
    setup = configure_tracing("none")
    assert setup.handler is None and setup.tracer_provider is None
    setup.shutdown()
    assert setup.force_flush() is True


@pytest.mark.parametrize(
    ("kind", "kwargs", "match"),
    [("zipkin", {}, "unknown tracing kind 'zipkin'"), ("jsonl", {}, "needs path")],
)
def test_bad_kind_or_missing_path(kind: str, kwargs: dict[str, Any], match: str) -> None:
    """An unknown kind or a jsonl setup without a path raises a clear ValueError."""
    with pytest.raises(ValueError, match=match):
        configure_tracing(kind, **kwargs)


def test_service_name_from_environment_wins(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    """OTEL_SERVICE_NAME overrides the service_name argument."""
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    setup = configure_tracing("jsonl", path=tmp_path / "s.jsonl", service_name="arg")
    assert setup.handler is not None
    assert setup.handler.resource.attributes["service.name"] == "from-env"
    setup.shutdown()


class _Collector:
    """A tiny OTLP/HTTP receiver on a loopback port that keeps what it receives."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.requests.append((self.path, headers, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Collector:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def collector() -> Iterator[_Collector]:
    """A running OTLP/HTTP receiver."""
    with _Collector() as c:
        yield c


async def test_otlp_exports_to_endpoint_from_env(collector: _Collector,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The otlp kind POSTs protobuf spans to $OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.port}")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    setup = configure_tracing("otlp")
    trace_ids = await _run_through(setup)
    assert collector.requests, "no OTLP request received"
    names: list[str] = []
    received_traces: set[str] = set()
    for path, headers, body in collector.requests:
        assert path == "/v1/traces"
        assert headers["content-type"] == "application/x-protobuf"
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                assert ss.scope.name == "agentbus"
                for span in ss.spans:
                    names.append(span.name)
                    received_traces.add(span.trace_id.hex())
    assert sorted(names) == ["execute_tool search"] * 2 + ["invoke_agent exp"] * 2
    assert received_traces == set(trace_ids)
