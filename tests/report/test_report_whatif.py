"""What-if sweeps on tiny clouds: parsing, the spare-hosts transform, rows and their order,
infeasible rows with reasons, parallel == serial, and the CLI's formats."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.text import Text

from planner.app.planning import solve
from planner.app.whatif import SweepConfig, evaluate, sweep
from planner.checker import check_plan
from planner.cli import cli
from planner.errors import UsageError
from planner.formats import save_inventory, save_policy, validate_inventory
from planner.report import plots
from planner.report.replay import replay
from planner.report.whatif import (
    Outcome,
    Vary,
    add_spare_hosts,
    apply_policy,
    combinations,
    largest_compute_host,
    parse_vary,
)
from solver.greedy import greedy_plan
from tests import solver_clouds as sc
from tests.report.support import Case, example, tiny_cloud, tiny_policy


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "key", "values"),
    [
        ("max_hosts_per_wave=2,4,8", "max_hosts_per_wave", (2, 4, 8)),
        ("headroom.failures=0,1", "headroom.failures", (0, 1)),
        ("failures=2", "headroom.failures", (2,)),
        ("extra_spare_hosts=0,2", "spare_hosts", (0, 2)),
        ("headroom.scope=az,cloud", "headroom.scope", ("az", "cloud")),
        ("allow_stop=yes,false", "allow_stop", (True, False)),
        ("max_hosts_per_wave_per_az=none,1", "max_hosts_per_wave_per_az", (None, 1)),
        ("headroom.reserve_percent=0,12.5", "headroom.reserve_percent", (0.0, 12.5)),
        ("non_converging=force-complete,cold", "non_converging", ("force-complete", "cold")),
        ("max_migration_s=none,600", "max_migration_s", (None, 600.0)),
        ("max_downtime_s=0,30.5", "max_downtime_s", (0.0, 30.5)),
        ("execution=lockstep,pipelined", "execution", ("lockstep", "pipelined")),
    ],
)
def test_parse_vary(text: str, key: str, values: tuple[object, ...]) -> None:
    assert parse_vary(text) == Vary(key, values)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_hosts_per_wave", "expected KEY=V1,V2"),
        ("colour=red", "unknown key 'colour'"),
        ("max_hosts_per_wave=2,,4", "empty value"),
        ("max_hosts_per_wave=two", "'two' is not an integer"),
        ("headroom.reserve_percent=nan", "is not a number"),
        ("allow_stop=maybe", "not true or false"),
        ("spare_hosts=-1", "must not be negative"),
        ("max_hosts_per_wave=2,2", "listed twice"),
    ],
)
def test_parse_vary_rejects_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_vary(text)


def test_combinations_vary_the_first_key_slowest() -> None:
    combos = combinations([Vary("a", (1, 2)), Vary("b", ("x", "y"))])
    assert combos == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]
    with pytest.raises(UsageError, match="given twice"):
        combinations([Vary("a", (1,)), Vary("a", (2,))])


def test_policy_values_are_validated_by_the_policy_reader() -> None:
    with pytest.raises(UsageError, match="max_hosts_per_wave: must be positive, got 0"):
        apply_policy(tiny_policy(), {"max_hosts_per_wave": 0})
    with pytest.raises(UsageError, match=r"headroom\.scope: is 'rack'"):
        apply_policy(tiny_policy(), {"headroom.scope": "rack"})
    p = apply_policy(tiny_policy(), {"headroom.failures": 2, "max_hosts_per_wave": 3})
    assert (p.headroom.failures, p.max_hosts_per_wave) == (2, 3)


def test_the_remedy_and_execution_keys_are_validated_by_the_policy_reader() -> None:
    p = apply_policy(
        tiny_policy(),
        {"non_converging": "cold", "max_downtime_s": 30.0, "execution": "lockstep"},
    )
    assert (p.non_converging, p.max_downtime_s, p.execution) == (("cold",), 30.0, "lockstep")
    with pytest.raises(UsageError, match="'stop' needs allow_stop: true"):
        apply_policy(tiny_policy(), {"non_converging": "stop", "allow_stop": False})
    with pytest.raises(UsageError, match="execution: is 'parallel'"):
        apply_policy(tiny_policy(), {"execution": "parallel"})
    with pytest.raises(UsageError, match="max_migration_s: must be > 0"):
        apply_policy(tiny_policy(), {"max_migration_s": 0.0})


# ---------------------------------------------------------------------------------------------
def test_spare_hosts_copy_the_largest_host_spread_over_azs() -> None:
    inv = tiny_cloud()
    big = largest_compute_host(inv)
    out = add_spare_hosts(inv, 3, "2025.2")
    spares = out.hosts[len(inv.hosts) :]
    assert [h.name for h in spares] == ["spare-01", "spare-02", "spare-03"]
    assert [h.az for h in spares] == ["az1", "az2", "az1"]
    for h in spares:
        assert dict(h.capacity) == dict(big.capacity) and h.version == "2025.2"
        assert h.available and not out.vms_on(h.name)
    assert out.vms == inv.vms and validate_inventory(out) == []
    assert add_spare_hosts(inv, 0) is inv


def test_spares_at_the_target_version_need_no_upgrade_and_take_evacuees(small: Case) -> None:
    inv = add_spare_hosts(small.inventory, 2, small.policy.target_version)
    plan = greedy_plan(inv, small.policy)
    assert not {"spare-01", "spare-02"} & set(plan.hosts)
    assert check_plan(inv, plan).ok
    assert replay(inv, plan).moved_more_than_once() == {}


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 12))
def test_spare_names_never_clash(n: int) -> None:
    inv = add_spare_hosts(tiny_cloud(), 2, None)
    out = add_spare_hosts(inv, n, None)
    names = [h.name for h in out.hosts]
    assert len(names) == len(set(names)) == len(inv.hosts) + n
    assert validate_inventory(out) == []


# ---------------------------------------------------------------------------------------------
def test_an_infeasible_combination_is_a_row_with_the_reason() -> None:
    inv = tiny_cloud()
    # N+2 per AZ with two hosts per AZ: no host can ever go down
    o = evaluate(inv, tiny_policy(), {"headroom.failures": 2}, SweepConfig())
    assert o.status == "infeasible" and o.waves is None
    assert o.reason and "N+2" in o.reason
    # a pre-check's proof: impossible, naming the headroom families it rests on (the exact
    # model's keys) but no relaxation (a pre-check never decides one gives a plan)
    assert o.verdict == "impossible" and o.proven is True and o.blame
    assert all(str(b["key"]).startswith("headroom:") for b in o.blame)
    assert all(b["relaxing_alone"] is None for b in o.blame) and o.relaxations() == []
    assert "N+2" in o.blamed() and o.summary().startswith("impossible: N+2 headroom of ")


def test_a_sweep_tells_proven_impossible_from_a_plan() -> None:
    """through_az(anti): with one host a wave no order works (the exact model proves it, no
    pre-check does); two hosts a wave plan."""
    cloud = sc.through_az(anti=True)
    rows = sweep(
        cloud.inventory,
        cloud.policy,
        combinations([parse_vary("max_hosts_per_wave=1,2")]),
        SweepConfig(),
        jobs=1,
    )
    no, yes = rows
    assert no.status == "infeasible" and no.verdict == "impossible" and no.proven is True
    assert {b["key"] for b in no.blame} >= {"anti:anti", "size"}
    assert no.relaxations()[0] == "max_hosts_per_wave 2 is enough"
    assert any(
        r.startswith("relax the anti-affinity of server group anti") for r in no.relaxations()
    )
    assert no.summary().startswith("impossible: the anti-affinity of server group anti")
    assert no.summary().endswith("; max_hosts_per_wave 2 is enough")
    d = no.to_dict()
    assert (d["outcome"], d["proven"], d["relaxations"]) == ("impossible", True, no.relaxations())
    assert [b["key"] for b in d["blame"]] == [b["key"] for b in no.blame]
    assert yes.ok and yes.verdict == "ok" and yes.proven is None and yes.waves == 2
    assert yes.to_dict()["outcome"] == "ok" and yes.relaxations() == [] and yes.summary() == "ok"
    assert yes.to_dict()["blame"] == []


def test_relaxations_put_enough_steps_first_and_skip_steps_not_enough() -> None:
    n1 = "N+1 everywhere (headroom.failures 1)"
    blame = (
        {"key": "headroom:az1:VCPU", "rule": "N+2 headroom of VCPU in az1", "relax": "lower it",
         "relaxing_alone": False, "one_step": f"{n1} is enough"},
        {"key": "ha:db", "rule": "HA group db", "relax": "a lower min_available",
         "relaxing_alone": True, "one_step": "min_available 1 for HA group db is not enough"},
        {"key": "size", "rule": "max_hosts_per_wave 1", "relax": "a larger max_hosts_per_wave",
         "relaxing_alone": False, "one_step": None},
    )  # fmt: skip
    o = Outcome({"m": 1}, "infeasible", "proven impossible (x): y", proven=True, blame=blame)
    assert o.relaxations() == [f"{n1} is enough", "relax HA group db: a lower min_available"]
    assert o.summary() == (
        "impossible: N+2 headroom of VCPU in az1 + HA group db + max_hosts_per_wave 1; "
        f"{n1} is enough"
    )
    assert Outcome({"m": 1}, "infeasible", "x", proven=False, blame=blame).relaxations() == []


def test_no_plan_found_is_not_called_impossible() -> None:
    """small_two_az(10) with two hosts a wave: the greedy planner alone finds no plan, yet one
    exists (the exact model finds it): not found, no proof, nothing to relax."""
    cloud = sc.small_two_az(10)
    o = evaluate(
        cloud.inventory, cloud.policy, {"max_hosts_per_wave": 2}, SweepConfig(planner="greedy")
    )
    assert o.status == "infeasible" and o.verdict == "not_found" and o.proven is False
    assert o.blame == () and o.relaxations() == []
    assert o.summary().startswith("not found (not proven impossible): the greedy planner")
    assert "a plan exists" in o.summary()
    d = o.to_dict()
    assert (d["outcome"], d["proven"], d["blame"]) == ("not_found", False, [])
    assert evaluate(cloud.inventory, cloud.policy, {"max_hosts_per_wave": 2}, SweepConfig()).ok


def test_a_feasible_row_carries_the_checkers_metrics(small: Case) -> None:
    """The default planner is the solver `rollwave plan` uses (CP-SAT)."""
    o = evaluate(small.inventory, small.policy, {"max_hosts_per_wave": 2}, SweepConfig())
    plan = solve(small.inventory, small.policy.with_changes(max_hosts_per_wave=2))
    assert plan.generator.get("name") == "rollwave-cpsat"
    m = check_plan(small.inventory, plan).metrics
    assert o.ok and o.waves == m["waves"] and o.migrations == m["migrations"]
    assert o.min_headroom_ratio == min(m["min_headroom_ratio"].values())
    absorbed = replay(small.inventory, plan).min_absorbable()
    assert absorbed is not None and o.failures_absorbed == absorbed[0]
    assert o.makespan_s and o.makespan_s > 0
    greedy = evaluate(
        small.inventory, small.policy, {"max_hosts_per_wave": 2}, SweepConfig(planner="greedy")
    )
    g = check_plan(
        small.inventory,
        greedy_plan(small.inventory, small.policy.with_changes(max_hosts_per_wave=2)),
    ).metrics
    assert (greedy.waves, greedy.migrations) == (g["waves"], g["migrations"])


def test_n_plus_1_absorbs_a_failure_that_n_plus_0_may_not(small: Case) -> None:
    rows = sweep(
        small.inventory,
        small.policy,
        combinations([parse_vary("headroom.failures=0,1"), parse_vary("max_hosts_per_wave=4")]),
        jobs=1,
    )
    n0, n1 = rows
    assert n0.ok and n1.ok
    assert n1.failures_absorbed is not None and n1.failures_absorbed >= 1
    assert n0.failures_absorbed is not None and n0.failures_absorbed <= n1.failures_absorbed


def test_parallel_sweep_equals_serial_and_keeps_the_order(small: Case) -> None:
    combos = combinations(
        [parse_vary("max_hosts_per_wave=1,2,4"), parse_vary("headroom.failures=1,3")]
    )
    seen: list[int] = []
    fast = SweepConfig(planner="greedy")
    par = sweep(
        small.inventory,
        small.policy,
        combos,
        fast,
        jobs=2,
        progress=lambda done, total, o: seen.append(done),
    )
    ser = sweep(small.inventory, small.policy, combos, fast, jobs=1)
    strip = [dict(o.to_dict(), solve_s=0, simulate_s=0) for o in par]
    assert strip == [dict(o.to_dict(), solve_s=0, simulate_s=0) for o in ser]
    assert [o.combo for o in par] == combos
    assert seen == list(range(1, len(combos) + 1))


# ---------------------------------------------------------------------------------------------
def test_tradeoff_plot_marks_the_pareto_front_and_lists_infeasible() -> None:
    pts = [
        plots.TradeoffPoint("a", 3600, None, None, 2),
        plots.TradeoffPoint("b", 7200, None, None, 1),  # slower and riskier than a
        plots.TradeoffPoint("c", 1800, None, None, 0),
    ]
    assert plots.pareto([(1.0, -2.0), (2.0, -1.0), (0.5, 0.0)]) == [2, 0]
    fig = plots.tradeoff_figure(pts, [("x=1", "headroom: no host can go down")], key_order="x")
    labels = [a.get_text() for a in fig.findobj(Text) if isinstance(a, Text)]
    assert "no plan: x=1: headroom: no host can go down" in labels
    front = next(ln for ln in fig.axes[0].get_lines() if ln.get_label() == "best trade-offs")
    assert list(front.get_xdata()) == [0.5, 1.0]  # type: ignore[arg-type]


def test_tradeoff_labels_of_coinciding_points_are_merged() -> None:
    import numpy as np

    spots = plots.label_spots(
        np.array([1.0, 1.01, 3.0]), np.array([2.0, 2.0, 2.0]), ["a", "b", "c"], [0, 1, 2]
    )
    assert spots == [(1.0, 2.0, ["a", "b"]), (3.0, 2.0, ["c"])]


# ---------------------------------------------------------------------------------------------
def _cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_cli_whatif_json_csv_and_plot(tmp_path: pytest.TempPathFactory) -> None:
    inv, pol = str(example("small.json")), str(example("small-policy.yaml"))
    plot = f"{tmp_path}/t.png"
    code, stdout, stderr = _cli(
        "whatif",
        inv,
        "--policy",
        pol,
        "--vary",
        "max_hosts_per_wave=2,4",
        "--vary",
        "headroom.failures=1,5",
        "--jobs",
        "1",
        "--format",
        "json",
        "--plot",
        plot,
    )
    assert code == 0, stderr
    data = json.loads(stdout)
    assert data["kind"] == "whatif" and len(data["rows"]) == 4
    statuses = {
        (r["max_hosts_per_wave"], r["headroom.failures"]): r["status"] for r in data["rows"]
    }
    assert statuses[(2, 1)] == "ok" and statuses[(2, 5)] == "infeasible"
    assert "[4/4]" in stderr
    # by default: planned by CP-SAT and simulated 20 times
    assert data["planner"] == "cpsat" and data["runs"] == 20
    ok = [r for r in data["rows"] if r["status"] == "ok"]
    assert all(r["runs"] == 20 and r["makespan_p50_s"] <= r["makespan_p95_s"] for r in ok)
    with open(plot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    code, stdout, _ = _cli(
        "whatif",
        inv,
        "--policy",
        pol,
        "--vary",
        "spare_hosts=0,1",
        "--jobs",
        "1",
        "--planner",
        "greedy",
        "--runs",
        "0",
        "--format",
        "csv",
    )
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert code == 0 and [r["spare_hosts"] for r in rows] == ["0", "1"]
    assert rows[0]["status"] == "ok" and float(rows[0]["migrations_per_vm"]) >= 1.0
    code, stdout, _ = _cli(
        "whatif",
        inv,
        "--policy",
        pol,
        "--vary",
        "headroom.failures=1,9",
        "--jobs",
        "1",
        "--planner",
        "greedy",
    )
    assert code == 0 and "impossible: N+9 headroom of" in " ".join(stdout.replace("│", " ").split())


# CSV columns before the outcome fields were added: they keep their places
OLD_CSV = (
    "status,reason,waves,waves_lower_bound,migrations,migrations_per_vm,vms_moved_twice,"
    "min_headroom_ratio,tightest,failures_absorbed,makespan_estimate_s,makespan_p50_s,"
    "makespan_p95_s,breach_probability,any_breach_probability,stall_probability,runs,solve_s,"
    "simulate_s"
)


def test_cli_whatif_says_impossible_or_not_found_in_every_format(tmp_path: Path) -> None:
    anti, two = sc.through_az(anti=True), sc.small_two_az(10)
    files = {}
    for name, cloud in (("anti", anti), ("two", two)):
        files[name] = (str(tmp_path / f"{name}.json"), str(tmp_path / f"{name}-policy.json"))
        save_inventory(cloud.inventory, files[name][0])
        save_policy(cloud.policy, files[name][1])

    def run(name: str, fmt: str, *extra: str) -> tuple[str, str]:
        inv, pol = files[name]
        args = ["whatif", inv, "--policy", pol, "--vary", "max_hosts_per_wave=1,2"]
        code, stdout, stderr = _cli(*args, "--runs", "0", "--jobs", "1", "--format", fmt, *extra)
        assert code == 0, stderr
        return stdout, stderr

    # JSON: outcome, proven, blame, relaxations per row; counts per outcome
    plot = str(tmp_path / "t.png")
    stdout, stderr = run("anti", "json", "--plot", plot)
    data = json.loads(stdout)
    assert data["outcomes"] == {"ok": 1, "impossible": 1}
    impossible, ok = data["rows"]
    assert (impossible["status"], impossible["outcome"], impossible["proven"]) == (
        "infeasible",
        "impossible",
        True,
    )
    assert impossible["relaxations"][0] == "max_hosts_per_wave 2 is enough"
    assert any(b["key"] == "size" and b["relaxing_alone"] for b in impossible["blame"])
    assert (ok["status"], ok["outcome"], ok["proven"], ok["blame"]) == ("ok", "ok", None, [])
    assert "[1/2] max_hosts_per_wave=1: impossible: the anti-affinity" in stderr
    stdout, stderr = run("two", "json", "--planner", "greedy")
    rows = json.loads(stdout)["rows"]
    assert [r["outcome"] for r in rows] == ["impossible", "not_found"]
    assert rows[1]["proven"] is False and rows[1]["status"] == "infeasible"
    assert "not found (not proven impossible): the greedy planner found no plan" in stderr
    # CSV: the old columns first and in place, then the new ones
    stdout, _ = run("two", "csv", "--planner", "greedy")
    header = stdout.splitlines()[0]
    assert header == "max_hosts_per_wave," + OLD_CSV + ",outcome,proven,blame,relaxations"
    csv_rows = list(csv.DictReader(io.StringIO(stdout)))
    assert [(r["outcome"], r["proven"]) for r in csv_rows] == [
        ("impossible", "true"),
        ("not_found", "false"),
    ]
    assert set(csv_rows[0]["blame"].split("; ")) == {"headroom:az2:VCPU", "size"}
    assert csv_rows[0]["relaxations"] == "max_hosts_per_wave 2 is enough"
    assert csv_rows[1]["blame"] == csv_rows[1]["relaxations"] == ""
    # the table: the verdict, the families, the relaxation; a legend under it
    stdout, _ = run("two", "text", "--planner", "greedy")
    flat = " ".join(stdout.replace("│", " ").split())
    assert "impossible: N+1 headroom of VCPU in az2 + max_hosts_per_wave 1" in flat
    assert "to plan: max_hosts_per_wave 2 is enough" in flat
    assert "not found (not proven impossible): the greedy planner found no plan" in flat
    assert "not found: no plan found, not proven impossible" in flat
    # the plot lists the combination without a plan with its verdict
    with open(plot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_tradeoff_plot_lists_the_verdict_of_each_combination_without_a_plan() -> None:
    from planner.report.whatif import tradeoff

    rows = [
        Outcome({"m": 1}, "infeasible", "proven impossible (x): a cannot hold", proven=True),
        Outcome({"m": 2}, "infeasible", "CP-SAT found no plan", proven=False),
    ]
    fig = tradeoff(rows, [Vary("m", (1, 2))])
    labels = [a.get_text() for a in fig.findobj(Text) if isinstance(a, Text)]
    text = "\n".join(labels)
    assert "no plan: m=1: impossible: a cannot hold" in text
    assert "no plan: m=2: not found (not proven impossible): CP-SAT found no plan" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vary", "max_hosts_per_wave=0"], "must be positive"),
        (["--vary", "nope=1"], "unknown key"),
        (["--vary", "max_hosts_per_wave=1,2,3", "--max-combinations", "2"], "3 combinations"),
    ],
)
def test_cli_whatif_bad_options_exit_2(args: list[str], message: str) -> None:
    from planner.cli import main

    inv, pol = str(example("small.json")), str(example("small-policy.yaml"))
    with pytest.raises(SystemExit) as exc:
        main(["whatif", inv, "--policy", pol, *args])
    assert exc.value.code == 2


def test_outcome_label() -> None:
    assert Outcome({"a": 1, "b": "x"}, "ok").label() == "a=1, b=x"


def test_hosts_down_at_once_per_az_shrinks_with_n_plus_k(small: Case) -> None:
    from planner.app.whatif import hosts_down_at_once

    inv, policy = small.inventory, small.policy
    downs = [
        hosts_down_at_once(inv, policy.with_changes(**{"headroom.failures": k})) for k in (0, 1, 2)
    ]
    assert all(set(d) == set(inv.azs) for d in downs)
    for az in inv.azs:
        assert downs[0][az] >= downs[1][az] >= downs[2][az]  # type: ignore[operator]
    assert downs[0] != downs[2]


def test_hosts_down_at_once_on_a_tiny_cloud() -> None:
    from planner.app.whatif import hosts_down_at_once

    # two 64 GiB hosts per AZ, ~30 GiB of VMs that must stay up in each: one may go down at N+0,
    # none at N+1 (the other host would have to hold them and keep 64 GiB free)
    assert hosts_down_at_once(tiny_cloud(), tiny_policy()) == {"az1": 1, "az2": 1}
    n1 = tiny_policy(**{"headroom.failures": 1})
    assert hosts_down_at_once(tiny_cloud(), n1) == {"az1": 0, "az2": 0}
    cloud = tiny_policy(**{"headroom.scope": "cloud"})
    assert hosts_down_at_once(tiny_cloud(), cloud) == {"cloud": 3}
