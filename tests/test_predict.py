"""Predictions in the planner (`planner.app.predict`, `rollwave plan --model`): the estimates
agree with the simulator's own figures, every VM that would not finish its live migration gets
the policy's remedy (or there is no plan, explained), and the plan carries the predictions."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from planner.app import predict
from planner.app.demo import example_path
from planner.app.planning import plan_with_predictions
from planner.checker import check_plan
from planner.cli import main
from planner.errors import InfeasibleError
from planner.estimates import How
from planner.formats import load_inventory, load_plan, load_policy
from planner.inventory import Inventory
from planner.plan import DOWN_METHODS, Plan
from planner.policy import Policy
from sim.model import DEFAULT, SimModel
from sim.prepare import prepare
from solver.solve import SolveOptions

# The bundled example's three VMs that dirty memory faster than their share of the link.
BUSY = {
    "e1a9344e-ef7f-4bc8-bb24-cba4b4577bf7",
    "cf1accc1-eaca-4811-8c26-e5d9702dc88a",
    "eb8f2056-72d3-4c5d-8a31-b24384dd6da6",
}
# cf1accc1 is a member of the hard affinity group aff-003: Nova's affinity filter refuses moving
# it alone, so under the example's allow_stop its group is shelved and unshelved
# (planner.rules.method) and it has no live migration to remedy. The others live-migrate.
SHELVED = "cf1accc1-eaca-4811-8c26-e5d9702dc88a"
MOVING = BUSY - {SHELVED}
GREEDY = SolveOptions(planner="greedy")


@pytest.fixture(scope="module")
def example() -> tuple[Inventory, Policy]:
    return load_inventory(example_path("small.json")), load_policy(
        example_path("small-policy.yaml")
    )


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


# -- the estimates are the simulator's figures ----------------------------------------------------
@pytest.mark.parametrize("k", [1, 2])
def test_estimates_are_the_simulators_transfers(example: tuple[Inventory, Policy], k: int) -> None:
    inv, pol = example
    pol = pol.with_changes(max_concurrent_live_migrations=k)
    ph = predict.predict(inv, pol, DEFAULT)
    plan, _, _, _ = plan_with_predictions(inv, pol, GREEDY)
    prep = prepare(inv, plan, DEFAULT, check=False)
    seen = forced = 0
    for mi, (_w, m) in enumerate(plan.migrations()):
        if prep.m_src[mi] != prep.capacity.host_index[inv.vm(m.vm).host]:
            continue  # a second move starts elsewhere; the estimate is the first's
        e = ph.est.vms[m.vm]
        # the share of a migration on its source's NIC with k_out running there
        tr = prep.transfer(mi, prep.nic[prep.m_src[mi]] / k)
        if m.method in DOWN_METHODS:
            assert tr.total_s == ph.est.overhead_s + e.cold_s
            assert tr.downtime_s == e.cold_downtime_s
        elif m.force_complete_after_s is not None:
            assert m.force_complete_after_s == e.forced_after_s
            assert tr.total_s == ph.est.overhead_s + e.forced_s
            assert tr.downtime_s == e.forced_downtime_s
            forced += 1
        else:
            assert tr.total_s == ph.est.overhead_s + e.live_s
            assert tr.bytes == e.live_bytes
            assert tr.downtime_s == e.live_downtime_s
            assert e.bandwidth_B_s == prep.nic[prep.m_src[mi]] / k
        seen += 1
    assert seen > 100 and forced == len(MOVING)
    if k == 1:
        # alone on its link (k_out = 1): the simulator's dynamic share is the whole NIC
        assert all(b == prep.nic[prep.m_src[i]] for i, b in enumerate(prep.m_bw) if i < 3)


def test_the_busy_vms_are_predicted_not_to_finish(example: tuple[Inventory, Policy]) -> None:
    inv, pol = example
    est = predict.predict(inv, pol, DEFAULT).est
    stuck = {v for v, e in est.vms.items() if not e.finishes and inv.vm(v).status == "ACTIVE"}
    assert stuck == BUSY
    for v in BUSY:
        e = est.vms[v]
        assert e.live_outcome == "aborted" and e.dirty_B_s > e.bandwidth_B_s
        assert e.forced_s < e.live_s and 0 < e.forced_downtime_s < 60
    assert est.hosts["ctl-1"].upgrade_s == 1800 and est.hosts["ctl-1"].upgrade_p95_s > 1800


def test_quantiles_of_each_distribution() -> None:
    from sim.model import Distribution

    assert predict.quantile(Distribution("fixed", 5.0), 0.95) == 5.0
    assert predict.quantile(Distribution("uniform", 0.0, 100.0), 0.5) == 50.0
    assert predict.quantile(Distribution("triangular", 0.0, 50.0, 100.0), 0.5) == 50.0
    assert predict.quantile(Distribution("lognormal", 100.0, 0.5), 0.95) == pytest.approx(
        227.60, abs=0.01
    )


# -- remedies ----------------------------------------------------------------------------------
def test_default_remedy_force_completes_the_busy_vms(example: tuple[Inventory, Policy]) -> None:
    inv, pol = example
    plan, metrics, _, ph = plan_with_predictions(inv, pol, GREEDY)
    forced = {m.vm: m for _, m in plan.migrations() if m.remedy == "force-complete"}
    assert set(forced) == MOVING
    for m in forced.values():
        e = ph.est.vms[m.vm]
        assert m.method == "live" and m.force_complete_after_s == e.forced_after_s
        assert m.predicted is not None and m.predicted.outcome == "paused"
        assert m.predicted.downtime_s == e.forced_downtime_s
    # every migration and stop carries its prediction, every wave its duration
    assert all(m.predicted is not None for _, m in plan.migrations())
    assert all(s.predicted is not None for w in plan.waves for s in w.stops)
    assert all(w.predicted_s and w.predicted_s > 0 for w in plan.waves)
    # a wave lasts its slowest host's maintenance, upgrade times drawn as the simulator does:
    # a controller alone, 10 s + the mean of lognormal(median 1,800 s, sigma 0.25) = 1,867 s
    ctl = next(w for w in plan.waves if w.hosts == ("ctl-1",))
    assert ctl.predicted_s == pytest.approx(10 + 1800 * math.exp(0.25**2 / 2), abs=60)
    for w in plan.waves:
        _, per = predict.wave_s(ph, inv, w, _remedies(plan))
        assert (w.predicted_s or 0) > max(per.values())  # more than the slowest median
    s = plan.summary
    assert s["remedies"] == {"force-complete": 2, "cold": 0, "stop": 0}
    lock = s["predicted_makespan_s"]["lockstep"]
    assert lock == pytest.approx(sum(w.predicted_s or 0 for w in plan.waves), abs=0.01)
    assert 0 < s["makespan_lower_bound_s"] <= s["lockstep_lower_bound_s"] <= lock
    # controllers first, one at a time (HA group: 2 of 3 available): two waves hold one alone
    # (1,810 s each: no VMs, the upgrade's median 1,800 s, disable and enable), the computes after
    p = predict.least_maintenance(inv, pol, ph, {v: r for v, r in _remedies(plan).items()})
    computes = {h: x for h, x in p.items() if inv.host(h).is_compute}
    assert sorted(x for h, x in p.items() if h.startswith("ctl")) == [1810.0] * 3
    expected = 2 * 1810 + predict._spread(inv, pol, computes)
    assert s["lockstep_lower_bound_s"] == pytest.approx(expected, abs=0.01)
    assert s["lockstep_lower_bound_s"] > s["makespan_lower_bound_s"]
    assert metrics["remedies"] == s["remedies"]
    assert check_plan(inv, plan, estimates=ph.est).ok


def test_cold_remedy_migrates_cold(example: tuple[Inventory, Policy]) -> None:
    inv, pol = example
    plan, _, _, _ = plan_with_predictions(inv, pol.with_changes(non_converging=("cold",)), GREEDY)
    got = {m.vm: m for _, m in plan.migrations() if m.vm in BUSY}
    assert set(got) == BUSY
    assert got.pop(SHELVED).method == "shelve"
    assert all(m.method == "cold" and m.remedy == "cold" for m in got.values())
    assert all(m.force_complete_after_s is None for m in got.values())
    assert plan.summary["remedies"]["cold"] == 2


def test_stop_remedy_stops_in_place(example: tuple[Inventory, Policy]) -> None:
    inv, pol = example
    # cf1accc1 is in a hard affinity group: it is shelved with its group, never stopped alone
    alone, _, _, _ = plan_with_predictions(inv, pol.with_changes(non_converging=("stop",)), GREEDY)
    assert {m.method for _, m in alone.migrations() if m.vm == SHELVED} == {"shelve"}
    pol = pol.with_changes(non_converging=("stop", "force-complete"))
    plan, _, _, ph = plan_with_predictions(inv, pol, GREEDY)
    stops = {s.vm: s for w in plan.waves for s in w.stops if s.remedy == "stop"}
    assert set(stops) == BUSY - {"cf1accc1-eaca-4811-8c26-e5d9702dc88a"}
    assert not any(m.vm in stops for _, m in plan.migrations())
    assert plan.summary["remedies"] == {"force-complete": 0, "cold": 0, "stop": 2}
    assert all(s.predicted and s.predicted.downtime_s > 1000 for s in stops.values())
    assert check_plan(inv, plan, estimates=ph.est).ok


def test_refuse_names_each_vm_with_its_rates(example: tuple[Inventory, Policy]) -> None:
    inv, pol = example
    with pytest.raises(InfeasibleError) as info:
        plan_with_predictions(inv, pol.with_changes(non_converging=("refuse",)), GREEDY)
    text = "\n".join(info.value.reasons)
    for v in MOVING:
        assert v in text
    assert "MB/s against 575 MB/s" in text and "2 VM(s) have no remedy" in text
    assert info.value.blame[0]["key"] == "remedy"


def test_no_remedy_within_max_downtime_is_impossible(example: tuple[Inventory, Policy]) -> None:
    inv, pol = example
    pol = pol.with_changes(non_converging=("force-complete", "cold"), max_downtime_s=10.0)
    with pytest.raises(InfeasibleError) as info:
        plan_with_predictions(inv, pol, GREEDY)
    text = "\n".join(info.value.reasons)
    # only the largest busy VM's forced pause (15 s) is over 10 s; its cold move is longer still
    assert "eb8f2056" in text and "e1a9344e" not in text
    assert "force-complete 14.9 s of downtime, cold" in text and "max_downtime_s 10" in text


def test_max_migration_s_remedies_long_migrations(example: tuple[Inventory, Policy]) -> None:
    inv, pol = example
    est = predict.predict(inv, pol, DEFAULT).est
    long = {
        v.id
        for v in inv.vms
        if v.status == "ACTIVE" and v.migration == "live" and est.vms[v.id].live_s > 20.0
    }
    assert long - BUSY
    remedies = predict.choose_remedies(inv, pol.with_changes(max_migration_s=20.0), est)
    on_upgraded = {v for v in long if inv.vm(v).server_group != inv.vm(SHELVED).server_group}
    assert set(remedies) == on_upgraded
    assert set(remedies.values()) == {"force-complete"}


def test_a_model_with_post_copy_changes_the_remedys_outcome(
    example: tuple[Inventory, Policy],
) -> None:
    inv, pol = example
    model: SimModel = replace(DEFAULT, nova=replace(DEFAULT.nova, permit_post_copy=True))
    est = predict.predict(inv, pol, model)
    for v in BUSY:
        assert est.forced_outcome[v] == "post-copy"
        assert est.est.vms[v].forced_downtime_s == model.qemu.postcopy_switch_s


# -- the command line -------------------------------------------------------------------------
def test_plan_with_model_writes_predictions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model.yaml"
    model.write_text('format_version: "1.0"\nkind: sim-model\nnetwork: {nic_gbps: 100}\n')
    out = tmp_path / "plan.json"
    code, stdout, err = run(
        [
            "plan",
            str(example_path("small.json")),
            "--policy",
            str(example_path("small-policy.yaml")),
            "-o",
            str(out),
            "--planner",
            "greedy",
            "--model",
            str(model),
        ],
        capsys,
    )
    assert code == 0, err
    assert "predicted makespan (lock-step)" in stdout and "remedies" in stdout
    data = json.loads(out.read_text())
    # on 100 GbE every VM's share outruns its dirty rate: nothing to remedy
    assert data["summary"]["remedies"] == {"force-complete": 0, "cold": 0, "stop": 0}
    assert all("predicted" in m for w in data["waves"] for m in w["migrations"])


BAD = [
    ("model", "network: {nic_gbps: -1}\n", "network.nic_gbps"),
    ("model", "nova: {live_migration_downtim: 5}\n", "nova.live_migration_downtim"),
    ("policy", "non_converging: [hurry]\n", "non_converging[0]"),
    ("policy", "max_downtime_s: -5\n", "max_downtime_s"),
    ("policy", "max_migration_s: -1\n", "max_migration_s"),
    ("inventory", "", "dirty_rate_mb_s"),
]


@pytest.mark.parametrize(("what", "text", "place"), BAD)
def test_bad_input_names_file_and_place_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str, text: str, place: str
) -> None:
    inv = tmp_path / "inventory.json"
    data = json.loads(example_path("small.json").read_text())
    if what == "inventory":
        data["vms"][3]["dirty_rate_mb_s"] = "fast"
    inv.write_text(json.dumps(data))
    pol = tmp_path / "policy.yaml"
    pol.write_text(
        example_path("small-policy.yaml").read_text() + (text if what == "policy" else "")
    )
    model = tmp_path / "model.yaml"
    model.write_text('format_version: "1.0"\nkind: sim-model\n' + (text if what == "model" else ""))
    out = tmp_path / "plan.json"
    argv = ["plan", str(inv), "--policy", str(pol), "-o", str(out), "--model", str(model)]
    code, _, err = run(argv, capsys)
    assert code == 2, err
    named = {"inventory": inv, "policy": pol, "model": model}[what]
    assert str(named) in err and place in err
    assert "Traceback" not in err
    assert not out.exists()


def test_refuse_exits_3_naming_the_vms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pol = tmp_path / "policy.yaml"
    pol.write_text(example_path("small-policy.yaml").read_text() + "non_converging: refuse\n")
    out = tmp_path / "plan.json"
    argv = ["plan", str(example_path("small.json")), "--policy", str(pol), "-o", str(out)]
    code, _, err = run(argv, capsys)
    assert code == 3
    assert "no plan exists" in err and all(v in err for v in MOVING)
    assert not out.exists()


def test_check_model_warns_on_a_live_migration_with_no_remedy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], example: tuple[Inventory, Policy]
) -> None:
    inv, pol = example
    plan, _, _, _ = plan_with_predictions(inv, pol, GREEDY)
    data = json.loads(json.dumps(_plain(plan)))
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(data))
    inv_path = str(example_path("small.json"))
    code, _, err = run(["check", inv_path, str(bare), "--model", _model(tmp_path)], capsys)
    assert code == 0
    assert err.count("[non_converging]") == 2 and "has no remedy" in err
    code, _, err = run(["check", inv_path, str(bare)], capsys)
    assert code == 0 and "[non_converging]" not in err
    assert load_plan(bare).waves


def _remedies(plan: Plan) -> dict[str, How]:
    out: dict[str, How] = {}
    for _, m in plan.migrations():
        if m.remedy is not None:
            out[m.vm] = m.remedy
    for w in plan.waves:
        for st in w.stops:
            if st.remedy is not None:
                out[st.vm] = st.remedy
    return out


def _plain(plan: object) -> dict[str, object]:
    """The plan as a file, its remedies taken off (what an older planner wrote)."""
    from planner.formats import plan_to_dict

    d = plan_to_dict(plan)  # type: ignore[arg-type]
    for w in d["waves"]:
        for m in w["migrations"]:
            m.pop("remedy", None)
            m.pop("force_complete_after_s", None)
    return d


def _model(tmp_path: Path) -> str:
    p = tmp_path / "model.yaml"
    p.write_text('format_version: "1.0"\nkind: sim-model\n')
    return str(p)


# -- the what-if over non_converging ------------------------------------------------------------
def test_whatif_predicts_the_makespan_as_the_policy_runs_it(
    example: tuple[Inventory, Policy],
) -> None:
    """The predicted makespan column: the summary's pipelined figure when the policy runs
    pipelined, its lock-step one when it runs lock-step."""
    from planner.app.whatif import SweepConfig, sweep
    from planner.report.whatif import combinations, parse_vary

    inv, pol = example
    rows = sweep(
        inv,
        pol,
        combinations([parse_vary("execution=pipelined,lockstep")]),
        SweepConfig(planner="greedy"),
        jobs=1,
    )
    pipe, lock = rows
    assert (pipe.predicted_execution, lock.predicted_execution) == ("pipelined", "lockstep")
    assert pipe.predicted_makespan_s is not None and lock.predicted_makespan_s is not None
    from planner.app.planning import plan_with_predictions
    from solver.solve import SolveOptions

    for row, execution in ((pipe, "pipelined"), (lock, "lockstep")):
        policy = replace(pol, execution=execution)  # type: ignore[arg-type]
        plan = plan_with_predictions(inv, policy, SolveOptions(planner="greedy"))[0]
        assert row.predicted_makespan_s == plan.summary["predicted_makespan_s"][execution]


def test_whatif_over_non_converging_shows_downtime_against_makespan(
    example: tuple[Inventory, Policy], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from planner.app.whatif import SweepConfig, sweep
    from planner.report.whatif import combinations, parse_vary, tradeoff

    inv, pol = example
    varies = [parse_vary("non_converging=force-complete,cold,refuse")]
    rows = sweep(inv, pol, combinations(varies), SweepConfig(planner="greedy"), jobs=1)
    fc, cold, refuse = rows
    assert fc.remedies["force-complete"] == 2 and cold.remedies["cold"] == 2
    # a forced pause is short, a cold move keeps the guest off for its copy
    assert fc.downtime_s is not None and cold.downtime_s is not None
    assert cold.downtime_s > fc.downtime_s
    assert fc.predicted_makespan_s and cold.predicted_makespan_s
    assert refuse.verdict == "impossible" and refuse.downtime_s is None
    assert fc.to_dict()["predicted_downtime_s"] == round(fc.downtime_s, 1)
    fig = tradeoff(rows, varies)
    (panel,) = [ax for ax in fig.axes if ax.get_ylabel().startswith("predicted downtime")]
    assert "pipelined" in panel.get_xlabel()  # the example's policy runs pipelined
    # the CLI's table has the columns
    out = tmp_path / "plot.png"
    code, stdout, _ = run(
        [
            "whatif",
            str(example_path("small.json")),
            "--policy",
            str(example_path("small-policy.yaml")),
            "--vary",
            "non_converging=force-complete,cold",
            "--planner",
            "greedy",
            "--jobs",
            "1",
            "--plot",
            str(out),
        ],
        capsys,
    )
    assert code == 0 and "downtime" in stdout and "cold 2" in stdout
    assert out.stat().st_size > 10_000
