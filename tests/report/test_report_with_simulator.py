"""The report and the what-ifs with the real simulator: its timeline files (JSON lines and CSV)
and Monte Carlo output read back into the report, and sweeps that simulate every combination."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from planner.app.whatif import SweepConfig, evaluate, sweep
from planner.errors import UsageError
from planner.report import build_report, render_html
from planner.report.timeline import (
    headroom_from_timeline,
    read_timeline,
    schedule_from_timeline,
)
from planner.report.whatif import apply_model, combinations, parse_vary
from sim.engine import simulate
from sim.model import DEFAULT, SimModel
from sim.prepare import prepare
from sim.timeline import write_timeline
from tests.report.support import Case, load_images, tiny_cloud, tiny_policy


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from planner.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_simulated_run_becomes_the_reports_schedule(
    tmp_path: Path, small: Case, suffix: str
) -> None:
    model = DEFAULT.with_changes(migration_failure_p=0.2, migration_retries=1)
    prep = prepare(small.inventory, small.plan, model)
    res = simulate(prep, seed=3, record=True)
    f = tmp_path / f"run{suffix}"
    write_timeline(f, prep, res)
    tl = read_timeline(f)
    sched = schedule_from_timeline(tl, small.plan)
    assert sched.makespan_s == pytest.approx(res.makespan_s, abs=1e-2)
    assert [w.index for w in sched.waves] == [w.index for w in small.plan.waves]
    for w, (start, end) in zip(
        sched.waves, zip(res.wave_start, res.wave_end, strict=True), strict=True
    ):
        assert w.start == pytest.approx(start, abs=1e-2)
        assert w.end == pytest.approx(end, abs=1e-2)
    # every migration that finished is a span; failed attempts are spans of their own
    finished = sum(1 for st in res.mig_state if st >= 0)
    assert (
        sum(1 for m in sched.migrations if m.ok) + sum(1 for m in sched.migrations if not m.ok)
        >= finished
    )
    assert any(not m.ok for m in sched.migrations)  # p = 0.2: some attempt failed
    statuses = {prep.hosts[h]: s for h, s in res.host_status.items()}
    for h in sched.hosts:
        assert h.ok == (statuses[h.host] == "upgraded"), h.host
    series = headroom_from_timeline(tl)
    assert {(s.group, s.rc) for s in series} == {
        (g, rc) for g in small.inventory.azs for rc in small.inventory.resource_classes
    }
    if suffix == ".jsonl":  # one rendering is enough
        rep = build_report(small.inventory, small.plan, timeline=tl)
        text = render_html(rep)
        assert "(simulated)" in text
        left = sorted(h for h, st in statuses.items() if st != "upgraded")
        if left:
            assert f"{len(left)} host{'s' if len(left) > 1 else ''} NOT upgraded" in text
        else:
            assert "every host upgraded" in text


def test_cli_simulate_then_report(tmp_path: Path, small_files: Case, chromium: str) -> None:
    inv, plan = str(small_files.inventory_file), str(small_files.plan_file)
    run = tmp_path / "run.jsonl"
    r = run_cli("simulate", inv, plan, "-o", str(run))
    assert r.returncode == 0, r.stderr
    r = run_cli("simulate", inv, plan, "--runs", "8", "--jobs", "1", "--format", "json")
    assert r.returncode == 0, r.stderr
    mc = tmp_path / "mc.json"
    mc.write_text(r.stdout)
    out = tmp_path / "report.html"
    r = run_cli(
        "report",
        inv,
        plan,
        "--timeline",
        str(run),
        "--montecarlo",
        str(mc),
        "-o",
        str(out),
        "--format",
        "json",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["schedule"] == "simulation"
    text = out.read_text()
    assert "8 runs: makespan P50" in text
    images = load_images(chromium, out)
    assert len(images) == 6 and all(i["w"] > 0 for i in images)


# ---------------------------------------------------------------------------------------------
def test_model_keys_are_validated_by_the_model_reader() -> None:
    v = parse_vary("model.failures.migration.probability=0,0.1")
    assert v.values == (0, 0.1)
    m = apply_model(DEFAULT, {v.key: 0.1})
    assert isinstance(m, SimModel) and m.migration_failure_p == 0.1
    with pytest.raises(UsageError, match="probability"):
        parse_vary("model.failures.migration.probability=2")
    with pytest.raises(UsageError, match="nic_gbsp"):
        parse_vary("model.network.nic_gbsp=10")
    with pytest.raises(UsageError, match=r"model\.SECTION\.KEY"):
        parse_vary("model.nic=10")


def test_a_simulated_sweep_reports_percentiles_and_breach_probability(small: Case) -> None:
    combos = combinations([parse_vary("model.failures.host_crash.probability=0,1")])
    rows = sweep(small.inventory, small.policy, combos, SweepConfig(runs=12, seed=5), jobs=1)
    calm, crashy = rows
    assert calm.ok and crashy.ok and calm.runs == crashy.runs == 12
    assert calm.makespan_p50_s is not None and calm.makespan_p95_s is not None
    assert calm.makespan_p50_s <= calm.makespan_p95_s
    assert calm.breach_probability == 0.0
    # the same plan: only the model differs
    assert (calm.waves, calm.migrations) == (crashy.waves, crashy.migrations)
    assert crashy.breach_probability is not None


def test_simulation_is_deterministic_by_seed(small: Case) -> None:
    cfg = SweepConfig(runs=6, seed=9)
    a = evaluate(small.inventory, small.policy, {}, cfg)
    b = evaluate(small.inventory, small.policy, {}, cfg)
    assert (a.makespan_p50_s, a.makespan_p95_s) == (b.makespan_p50_s, b.makespan_p95_s)


def test_an_infeasible_combination_is_not_simulated() -> None:
    o = evaluate(tiny_cloud(), tiny_policy(), {"headroom.failures": 2}, SweepConfig(runs=5))
    assert o.status == "infeasible" and o.runs == 0 and o.makespan_p50_s is None


def test_the_failed_outcomes_the_report_knows_are_the_simulators() -> None:
    from planner.report.schedule import FAILED_OUTCOMES
    from sim.prepare import OUTCOME_NAMES

    assert set(FAILED_OUTCOMES) <= set(OUTCOME_NAMES)
    assert "converged" not in FAILED_OUTCOMES and "cold" not in FAILED_OUTCOMES


# ---------------------------------------------------------------------------------------------
def test_the_default_estimate_uses_the_simulators_migration_model(small: Case) -> None:
    from planner.report.schedule import estimate_with_simulator

    prep = prepare(small.inventory, small.plan, DEFAULT, check=False)
    sched = estimate_with_simulator(small.inventory, small.plan, DEFAULT)
    flat = [m for w in small.plan.waves for m in w.migrations]
    assert len(sched.migrations) == len(flat) == len(prep.m_dur)
    # spans come out grouped by source host; match them to the plan's order by (wave, vm)
    order = {
        (i_w.index, m.vm): n
        for n, (i_w, m) in enumerate((w, m) for w in small.plan.waves for m in w.migrations)
    }
    for span in sched.migrations:
        n = order[(span.wave, span.vm)]
        assert span.end - span.start == pytest.approx(prep.m_dur[n])
        assert span.downtime_s == pytest.approx(prep.m_down[n])
    # a host whose migration Nova would abort is not upgraded, and the report says so
    aborted = {m.src for m in sched.migrations if not m.ok}
    assert aborted == {h.host for h in sched.hosts if not h.ok}
    rep = build_report(small.inventory, small.plan)
    assert "simulator's migration model" in rep.schedule.note
    assert rep.schedule.makespan_s == pytest.approx(sched.makespan_s)


def test_rollbacks_and_the_canary_soak_are_in_the_schedule_and_the_gantt(
    tmp_path: Path, small: Case
) -> None:
    from planner.report import plots

    model = DEFAULT.with_changes(
        rollback=True, upgrade_failure_p=0.5, canary_hosts=2, soak_s=1800.0
    )
    prep = prepare(small.inventory, small.plan, model)
    res = simulate(prep, seed=1, record=True)
    assert res.rollback_s > 0 and res.soak_s == 1800.0
    f = tmp_path / "run.jsonl"
    write_timeline(f, prep, res)
    sched = schedule_from_timeline(read_timeline(f), small.plan)
    assert sched.makespan_s == pytest.approx(res.makespan_s, abs=1e-2)
    assert len(sched.soaks) == 1 and sched.soaks[0].end - sched.soaks[0].start == 1800.0
    rolled = {h for h, s in res.host_status.items() if s == "rolled-back"}
    assert {r.host for r in sched.rollbacks} == {prep.hosts[h] for h in rolled}
    assert sum(r.end - r.start for r in sched.rollbacks) == pytest.approx(res.rollback_s)
    for h in sched.hosts:
        if h.host in {prep.hosts[x] for x in rolled}:
            assert not h.ok  # drawn as not upgraded
    for fig in (plots.gantt_figure(sched), plots.gantt_figure(sched, max_rows=1)):
        legend = " ".join(t.get_text() for lg in fig.legends for t in lg.get_texts())
        assert "canary soak" in legend
    legend = " ".join(
        t.get_text() for lg in plots.gantt_figure(sched).legends for t in lg.get_texts()
    )
    assert "host rolling back" in legend
