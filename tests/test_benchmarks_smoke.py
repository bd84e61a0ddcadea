"""Smoke run of the benchmark suite (``benchmarks/``) with tiny sizes, so it cannot rot.

No timing assertions: only that every case runs, delivers what it should (the cases check
their own delivery counts and raise otherwise) and yields a structurally complete report.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import BenchConfig, Report, main, run_all
from benchmarks.cases import all_groups
from benchmarks.report import render_markdown


@pytest.fixture(scope="module")
def report() -> Report:
    """One tiny run of everything (module-scoped: it takes a few seconds)."""
    import asyncio

    return asyncio.run(run_all(BenchConfig.tiny()))


def test_every_group_and_case_has_samples(report: Report) -> None:
    """Each case of each group has its samples per round (positive) and a memory figure."""
    cfg = BenchConfig.tiny()
    expected = {g.key: [c.key for c in g.cases] for g in all_groups(cfg)}
    assert {g.group.key: [c.key for c in g.cases] for g in report.groups} == expected
    for g in report.groups:
        for c in g.cases:
            assert len(c.samples) == cfg.repeats * g.group.samples_per_round, (g.group.key, c.key)
            assert len(c.cpu_samples) == len(c.samples)
            assert all(s > 0 for s in c.samples), (g.group.key, c.key)
            assert c.min <= c.median <= c.max
            assert c.peak_bytes is not None and c.peak_bytes >= 0
            assert c.n >= 1


def test_ratios_use_cases_of_the_same_group(report: Report) -> None:
    """Each group's reference (and floor, if any) is one of its cases; its ratio is 1."""
    for g in report.groups:
        ref = g.group.reference
        assert ref is not None
        assert g.ratio(ref, ref) == pytest.approx(1.0)
        if g.group.floor is not None:
            assert g.ratio(g.group.floor, g.group.floor) == pytest.approx(1.0)


def test_memory_scenarios_deliver_every_event(report: Report) -> None:
    """The slow-handler scenario ran for agentbus, asyncio.Queue and pyee, with samples."""
    cfg = BenchConfig.tiny()
    assert [m.key for m in report.memory] == ["agentbus", "queue", "pyee-async"]
    assert [m.events for m in report.memory] == [
        cfg.memory_events, cfg.memory_events, cfg.memory_peer_events
    ]
    for m in report.memory:
        assert m.blocks and m.rss and m.seconds > 0
        assert m.blocks[-1][0] == m.events
    bus = report.memory[0]
    assert bus.max_pending <= 1_000 + 1  # queue bound (+ the event in the handler)


def test_every_target_has_a_verdict(report: Report) -> None:
    """Every target of issue 6 is evaluated, with a measured figure and a verdict text."""
    targets = [o.target for o in report.outcomes]
    # 2 async, 2 sync, 2 flat, 2 executor, 1 memory
    assert len(targets) == len(set(targets)) == 9
    for o in report.outcomes:
        assert o.measured and o.detail
        assert o.detail.startswith("met") or o.detail.startswith("missed")


def test_markdown_has_machine_tables_and_targets(report: Report) -> None:
    """RESULTS.md text names the machine and versions and has one table per group."""
    md = render_markdown(report)
    assert "## Machine" in md and "## Summary" in md and "## Targets" in md and "pyee" in md
    for g in report.groups:
        assert f"## {g.group.title}" in md
        for c in g.cases:
            assert c.label.replace("|", "\\|") in md
    assert "## Memory: slow handler" in md


def test_cli_writes_results_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m benchmarks`` (main) with a group filter prints the table and writes the file."""
    out = tmp_path / "RESULTS.md"
    rc = main(["--only", "construct", "--n", "20", "--repeats", "1", "--no-memory",
               "--out", str(out)])
    assert rc == 0
    text = out.read_text(encoding="utf-8")
    assert "event construction" in text and "SystemEvent" in text
    assert "async publish" not in text
    assert "slotted dataclass" in capsys.readouterr().out


def test_cli_rejects_unknown_group(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown --only group is a usage error naming it."""
    with pytest.raises(SystemExit) as exc:
        main(["--only", "nope", "--no-memory", "--out", "-"])
    assert exc.value.code == 2
    assert "nope" in capsys.readouterr().err


def test_executor_trusted_event_equals_model_construct() -> None:
    """The executor's fast event construction (issue 6) gives what model_construct gives."""
    from agentbus import SystemEvent
    from agentbus.executor import _trusted_event
    from benchmarks.cases import realistic_fields

    fields = realistic_fields()
    fast = _trusted_event(dict(fields))
    slow = SystemEvent.model_construct(**fields)
    assert fast == slow
    assert fast.model_fields_set == slow.model_fields_set == set(fields)
    assert fast.model_dump() == slow.model_dump()
    assert SystemEvent.model_validate(fast.model_dump()) == fast
    copy = fast.model_copy(update={"agent_id": "other"})
    assert copy.agent_id == "other" and fast.agent_id == fields["agent_id"]
