"""Reading simulator output for the report: timelines (JSON lines and CSV, the simulator's format
version 1.0) and Monte Carlo results, with located errors; a timeline of another plan is refused."""

from __future__ import annotations

import csv
import io
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from planner.errors import InputError
from planner.report import build_report, render_html
from planner.report.schedule import Schedule, estimate_schedule
from planner.report.timeline import (
    headroom_from_timeline,
    incidents,
    read_montecarlo,
    read_timeline,
    schedule_from_timeline,
)
from tests.report.support import Case, tiny_cloud, tiny_plan

COLUMNS = [
    "t_s",
    "event",
    "wave",
    "host",
    "vm",
    "to",
    "method",
    "bytes",
    "downtime_s",
    "outcome",
    "group",
    "rc",
    "free",
    "required",
    "detail",
]


def events_of(sched: Schedule) -> list[dict[str, Any]]:
    """A run, as the simulator records it, of a known schedule (failed spans: a failed attempt
    then a retry that completes)."""
    ev: list[dict[str, Any]] = []
    for w in sched.waves:
        ev.append({"t_s": w.start, "event": "wave_start", "wave": w.index})
        ev.append({"t_s": w.end, "event": "wave_end", "wave": w.index})
    for h in sched.hosts:
        ev.append({"t_s": h.start, "event": "host_disable", "wave": h.wave, "host": h.host})
        ev.append({"t_s": h.drained, "event": "upgrade_start", "wave": h.wave, "host": h.host})
        ev.append(
            {
                "t_s": h.end,
                "event": "host_enable",
                "wave": h.wave,
                "host": h.host,
                "detail": "upgraded",
            }
        )
    for m in sched.migrations:
        base = {"wave": m.wave, "host": m.src, "vm": m.vm, "to": m.dst, "method": m.method}
        ev.append({"t_s": m.start, "event": "migration_start", **base, "detail": "attempt 1"})
        ev.append(
            {
                "t_s": m.end,
                "event": "migration_end",
                **base,
                "outcome": "converged",
                "bytes": 1e9,
                "downtime_s": 0.04,
            }
        )
    for t, free in ((0.0, 100.0), (sched.makespan_s / 2, 60.0)):
        ev.append(
            {
                "t_s": t,
                "event": "headroom",
                "group": "az1",
                "rc": "MEMORY_MB",
                "free": free,
                "required": 50.0,
            }
        )
    ev.sort(key=lambda e: e["t_s"])
    return ev


def write_jsonl(path: Path, events: list[dict[str, Any]], **head: Any) -> Path:
    header = {
        "format_version": "1.0",
        "kind": "timeline",
        "cloud": "tiny",
        "seed": 7,
        "makespan_s": max(e["t_s"] for e in events),
        "completed": True,
        "columns": COLUMNS,
        **head,
    }
    path.write_text("\n".join(json.dumps(x) for x in [header, *events]) + "\n")
    return path


def write_csv(path: Path, events: list[dict[str, Any]]) -> Path:
    buf = io.StringIO()
    buf.write("# rollwave timeline format_version=1.0 kind=timeline\n")
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for e in events:
        w.writerow({k: e.get(k, "") for k in COLUMNS})
    path.write_text(buf.getvalue())
    return path


@pytest.fixture
def tiny_run(tmp_path: Path) -> tuple[Schedule, list[dict[str, Any]]]:
    sched = estimate_schedule(tiny_cloud(), tiny_plan())
    return sched, events_of(sched)


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_timeline_becomes_the_schedule_it_records(
    tmp_path: Path, tiny_run: tuple[Schedule, list[dict[str, Any]]], fmt: str
) -> None:
    sched, events = tiny_run
    f = (write_jsonl if fmt == "jsonl" else write_csv)(tmp_path / f"t.{fmt}", events)
    got = schedule_from_timeline(read_timeline(f), tiny_plan())
    assert got.source == "simulation"
    assert [(w.index, w.start, w.end) for w in got.waves] == [
        (w.index, w.start, w.end) for w in sched.waves
    ]
    assert sorted((h.host, h.start, h.drained, h.end) for h in got.hosts) == sorted(
        (h.host, h.start, h.drained, h.end) for h in sched.hosts
    )
    assert sorted((m.vm, m.wave, m.start, m.end) for m in got.migrations) == sorted(
        (m.vm, m.wave, m.start, m.end) for m in sched.migrations
    )
    assert all(m.ok for m in got.migrations)
    assert {(m.vm, m.wave) for m in got.migrations} == {(m.vm, m.wave) for m in sched.migrations}
    assert [(s.vm, s.host) for s in got.stops] == [("v3", "a")]


def test_failed_attempts_are_spans_of_their_own_and_lanes_never_overlap(tmp_path: Path) -> None:
    plan = tiny_plan()
    ev = [
        {"t_s": 0.0, "event": "wave_start", "wave": 2},
        {"t_s": 0.0, "event": "host_disable", "wave": 2, "host": "a"},
        *[
            {"t_s": t, "event": e, "wave": 2, "host": "a", "vm": vm, "to": "b"}
            for t, e, vm in [
                (1.0, "migration_start", "v1"),
                (2.0, "migration_start", "v2"),
                (3.0, "migration_failed", "v1"),
                (4.0, "migration_start", "v1"),
                (5.0, "migration_end", "v2"),
                (6.0, "migration_start", "v6"),
                (9.0, "migration_end", "v1"),
                (9.5, "migration_end", "v6"),
            ]
        ],
        {"t_s": 10.0, "event": "failure", "host": "a", "detail": "upgrade: a failed its upgrade"},
        {"t_s": 10.0, "event": "wave_end", "wave": 2},
    ]
    tl = read_timeline(write_jsonl(tmp_path / "t.jsonl", ev, makespan_s=10.0))
    # only wave 2 ran: the check accepts a partial run of the plan
    got = schedule_from_timeline(tl, plan)
    v1 = sorted((m.start, m.end, m.ok) for m in got.migrations if m.vm == "v1")
    assert v1 == [(1.0, 3.0, False), (4.0, 9.0, True)]
    by_lane: dict[int, list[tuple[float, float]]] = {}
    for m in got.migrations:
        by_lane.setdefault(m.lane, []).append((m.start, m.end))
    for spans in by_lane.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    assert len(by_lane) == 2
    (host,) = got.hosts
    assert (host.end, host.ok) == (10.0, False)
    assert [e["event"] for e in incidents(tl)] == ["failure"]


def test_headroom_samples_hold_until_the_next(
    tmp_path: Path, tiny_run: tuple[Schedule, list[dict[str, Any]]]
) -> None:
    sched, events = tiny_run
    (s,) = headroom_from_timeline(read_timeline(write_jsonl(tmp_path / "t.jsonl", events)))
    assert (s.group, s.rc) == ("az1", "MEMORY_MB")
    assert list(s.free) == [100.0, 60.0] and list(s.t1) == [sched.makespan_s / 2, sched.makespan_s]


def test_report_with_a_timeline_says_simulated(
    tmp_path: Path, tiny_run: tuple[Schedule, list[dict[str, Any]]]
) -> None:
    _, events = tiny_run
    tl = read_timeline(write_jsonl(tmp_path / "t.jsonl", events))
    rep = build_report(tiny_cloud(), tiny_plan(), timeline=tl)
    assert rep.schedule.source == "simulation"
    text = render_html(rep)
    assert "(simulated)" in text and "seed 7" in text
    assert "Failures and breaches in the simulated run (0)" in text


# ---------------------------------------------------------------------------------------------
def test_a_timeline_of_another_plan_is_refused(
    tmp_path: Path, tiny_run: tuple[Schedule, list[dict[str, Any]]], small: Case
) -> None:
    _, events = tiny_run
    tl = read_timeline(write_jsonl(tmp_path / "t.jsonl", events))
    with pytest.raises(InputError, match="not a run of this plan") as exc:
        schedule_from_timeline(tl, small.plan)
    assert "the plan has it in no wave" in str(exc.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"kind": "plan", "format_version": "1.0"}\n', "line 1: kind is 'plan'"),
        ('{"kind": "timeline", "format_version": "2.0"}\n', "this rollwave reads 1.x"),
        ('{"kind": "timeline", "format_version": "1.0"}\n{"t_s": 1, "event": }\n', "line 2 column"),
        (
            '{"kind": "timeline", "format_version": "1.0"}\n{"t_s": "soon", "event": "x"}\n',
            "line 2.t_s: must be a number, got 'soon'",
        ),
        ('{"kind": "timeline", "format_version": "1.0"}\n{"t_s": 1}\n', "line 2.event: missing"),
        ("", "empty file"),
        (
            "# rollwave timeline format_version=1.0 kind=timeline\nfoo,bar\n1,2\n",
            "header row must name at least t_s and event",
        ),
        (
            "# rollwave timeline format_version=1.0 kind=timeline\nt_s,event,wave\n1,x,first\n",
            "line 3.wave: must be an integer, got 'first'",
        ),
    ],
)
def test_bad_timelines_are_located_errors(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text(content)
    with pytest.raises(InputError) as exc:
        read_timeline(f)
    assert message in str(exc.value) and str(f) in str(exc.value)


# ---------------------------------------------------------------------------------------------
def mc_doc(**over: Any) -> dict[str, Any]:
    runs = [
        {
            "seed": i,
            "makespan_s": 3600.0 + 60 * i,
            "completed": i != 3,
            "stalled": i == 3,
            "headroom_breach": i in (1, 2),
        }
        for i in range(10)
    ]
    return {"format_version": "1.0", "kind": "simulation-montecarlo", "run_results": runs, **over}


def test_montecarlo_results_count_breaches_and_stalls(tmp_path: Path) -> None:
    f = tmp_path / "mc.json"
    f.write_text(json.dumps(mc_doc()))
    mc = read_montecarlo(f)
    assert mc.runs == 10 and len(mc.makespans_s) == 9  # the stalled run has no makespan
    assert (mc.breach_probability, mc.stall_probability) == (0.2, 0.1)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (mc_doc(kind="simulation"), "expected 'simulation-montecarlo'"),
        (mc_doc(format_version="3"), "this rollwave reads 1.x"),
        (mc_doc(run_results=[]), "run_results: must be a non-empty list"),
        (mc_doc(run_results=[{"makespan_s": "long"}]), "run_results[0].makespan_s"),
    ],
)
def test_bad_montecarlo_files_are_located_errors(
    tmp_path: Path, doc: dict[str, Any], message: str
) -> None:
    f = tmp_path / "mc.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(InputError) as exc:
        read_montecarlo(f)
    assert message in str(exc.value)


# ---------------------------------------------------------------------------------------------
def test_cli_report_with_timeline_and_montecarlo(
    tmp_path: Path, tiny_run: tuple[Schedule, list[dict[str, Any]]]
) -> None:
    from dataclasses import replace

    from click.testing import CliRunner

    from planner.cli import cli
    from planner.formats import save_inventory, save_plan

    inv_file = tmp_path / "inv.json"
    digest = save_inventory(tiny_cloud(), inv_file)
    plan_file = tmp_path / "plan.json"
    save_plan(replace(tiny_plan(), inventory_sha256=digest), plan_file)
    tl_file = write_csv(tmp_path / "run.csv", tiny_run[1])
    mc_file = tmp_path / "mc.json"
    mc_file.write_text(json.dumps(mc_doc()))
    out = tmp_path / "r.html"
    args = ["report", str(inv_file), str(plan_file), "-o", str(out), "--format", "json"]
    r = CliRunner().invoke(cli, [*args, "--timeline", str(tl_file), "--montecarlo", str(mc_file)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["schedule"] == "simulation"
    text = out.read_text()
    assert "Makespan over 10 simulated runs" not in text  # it is a picture, not text
    assert "10 runs: makespan P50" in text and "headroom breached in 20.0% of runs" in text
    out.unlink()
    mc_file.write_text(json.dumps(mc_doc(kind="plan")))
    r = CliRunner().invoke(cli, [*args, "--montecarlo", str(mc_file)])
    assert r.exit_code != 0 and not out.exists()
