"""`rollwave simulate` end to end: outputs, files, errors (exit codes), Monte Carlo."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from planner.app.demo import example_path
from planner.cli import cli
from planner.formats import load_inventory, load_policy, save_plan
from sim.engine import prepare
from sim.model import DEFAULT, load_model
from sim.montecarlo import run_many, run_seed, summarise
from solver.greedy import greedy_plan


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("sim")
    inv_file = d / "inventory.json"
    shutil.copyfile(example_path("small.json"), inv_file)
    inv = load_inventory(inv_file)
    plan = greedy_plan(
        inv, load_policy(example_path("small-policy.yaml")), inventory_sha256=inv.digest or ""
    )
    plan_file = d / "plan.json"
    save_plan(plan, plan_file)
    return inv_file, plan_file


def invoke(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args), standalone_mode=False, catch_exceptions=True)
    code = r.return_value if isinstance(r.return_value, int) else 0
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        from planner.errors import RollwaveError

        if isinstance(r.exception, RollwaveError):
            return int(r.exception.exit_code), r.stdout, r.exception.render()
        raise r.exception
    return code, r.stdout, r.stderr


def test_text_output_starts_with_the_makespan(files: tuple[Path, Path], tmp_path: Path) -> None:
    inv, plan = files
    tl = tmp_path / "tl.jsonl"
    code, out, _ = invoke("simulate", str(inv), str(plan), "-o", str(tl))
    assert code == 0
    assert out.splitlines()[0].startswith("makespan ")
    lines = tl.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["kind"] == "timeline" and header["format_version"] == "1.0"
    events = [json.loads(x) for x in lines[1:]]
    kinds = {e["event"] for e in events}
    assert {"wave_start", "migration_start", "migration_end", "host_enable", "headroom"} <= kinds
    assert [e["t_s"] for e in events] == sorted(e["t_s"] for e in events)


def test_json_output_and_csv_timeline(files: tuple[Path, Path], tmp_path: Path) -> None:
    inv, plan = files
    tl = tmp_path / "tl.csv"
    code, out, _ = invoke("simulate", str(inv), str(plan), "--format", "json", "-o", str(tl))
    assert code == 0
    d = json.loads(out)
    assert list(d)[:3] == ["format_version", "kind", "makespan_s"]
    assert d["makespan_s"] == d["waves"][-1]["end_s"]
    v = d["vms"][0]
    assert {"vm", "start_s", "end_s", "bytes", "downtime_s"} <= set(v)
    assert all(w["start_s"] <= w["end_s"] for w in d["waves"])
    assert d["check"]["valid"] and d["completed"]
    text = tl.read_text().splitlines()
    assert text[0].startswith("# rollwave timeline format_version=1.0")
    rows = list(csv.DictReader(text[1:]))
    assert rows and rows[0]["event"] == "wave_start"


def test_bad_model_file_is_exit_2_with_its_place(files: tuple[Path, Path], tmp_path: Path) -> None:
    inv, plan = files
    model = tmp_path / "model.yaml"
    model.write_text(
        'format_version: "1.0"\nkind: sim-model\nnova:\n  live_migration_downtime: 20\n'
        "network:\n  nic_gbs: 25\n"
    )
    tl = tmp_path / "tl.jsonl"
    code, out, err = invoke("simulate", str(inv), str(plan), "--model", str(model), "-o", str(tl))
    assert code == 2
    assert "nova.live_migration_downtime: must be at least 100" in err
    assert "network.nic_gbs: unknown key (did you mean 'nic_gbps'?)" in err
    assert str(model) in err
    assert not tl.exists() and out == ""


def test_plan_naming_an_unknown_vm_is_exit_2(files: tuple[Path, Path], tmp_path: Path) -> None:
    inv, plan = files
    data = json.loads(plan.read_text())
    wave = next(w for w in data["waves"] if w["migrations"])
    wave["migrations"][0]["vm"] = "no-such-vm"
    bad = tmp_path / "plan.json"
    bad.write_text(json.dumps(data))
    code, _, err = invoke("simulate", str(inv), str(bad), "--ignore-digest")
    assert code == 2
    assert "migrations[0].vm: unknown VM 'no-such-vm'" in err


def test_model_file_round_trip_and_defaults(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    import yaml

    f.write_text(yaml.safe_dump(DEFAULT.to_dict()))
    assert load_model(f).to_dict() == DEFAULT.to_dict()
    n = DEFAULT.nova  # Nova's defaults
    assert (n.downtime_ms, n.downtime_steps, n.downtime_delay_s) == (500, 10, 75)
    assert (n.completion_timeout_s, n.timeout_action, n.bandwidth_mib_s) == (800, "abort", 0)
    assert not n.permit_auto_converge and not n.permit_post_copy
    assert DEFAULT.nic_gbps == 10 and DEFAULT.nic_gbps * 1e9 / 8 * DEFAULT.efficiency == 1.15e9


def test_monte_carlo_cli(files: tuple[Path, Path]) -> None:
    inv, plan = files
    code, out, _ = invoke(
        "simulate",
        str(inv),
        str(plan),
        "--runs",
        "6",
        "--jobs",
        "2",
        "--format",
        "json",
        "--seed",
        "5",
    )
    assert code == 0
    d = json.loads(out)
    assert d["runs"] == 6 and d["completed_runs"] == 6
    mk = d["makespan_s"]
    assert mk["p50"] <= mk["p95"] <= mk["p99"] <= mk["max"]
    assert 0.0 <= d["p_stall"] <= 1.0 and 0.0 <= d["p_headroom_breach"] <= 1.0
    assert [r["seed"] for r in d["run_results"]] == [run_seed(5, i) for i in range(6)]


def test_monte_carlo_does_not_depend_on_the_processes(files: tuple[Path, Path]) -> None:
    inv_file, plan_file = files
    from planner.formats import load_plan

    inv = load_inventory(inv_file)
    model = DEFAULT.with_changes(migration_failure_p=0.05, crash_p=0.5, upgrade_failure_p=0.02)
    prep = prepare(inv, load_plan(plan_file), model)
    one = run_many(prep, 8, 11, jobs=1)
    two = run_many(prep, 8, 11, jobs=2)
    assert one == two
    s = summarise(one)
    assert s["runs"] == 8
    assert len({r.makespan_s for r in one}) > 1  # the seeds differ, so do the runs


def test_strict_exit_code(files: tuple[Path, Path], tmp_path: Path) -> None:
    inv, plan = files
    model = tmp_path / "m.yaml"
    model.write_text(
        'format_version: "1.0"\nkind: sim-model\nfailures:\n  upgrade: {probability: 1}\n'
    )
    code, _, _ = invoke("simulate", str(inv), str(plan), "--model", str(model))
    assert code == 0  # a result, not an error
    code, out, _ = invoke("simulate", str(inv), str(plan), "--model", str(model), "--strict")
    assert code == 1
    assert "failed its upgrade" in out


def test_monte_carlo_says_when_no_failures_are_modelled(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    inv, plan = files
    code, out, _ = invoke("simulate", str(inv), str(plan), "--runs", "2", "--jobs", "1")
    assert code == 0
    line = next(x for x in out.splitlines() if "P(headroom breach)" in x)
    assert "0.0% (no failures modelled: 0 by construction)" in line
    code, out, _ = invoke(
        "simulate", str(inv), str(plan), "--runs", "2", "--jobs", "1", "--format", "json"
    )
    d = json.loads(out)
    assert d["failures_modelled"] is False
    assert d["breach_note"] == "no failures modelled: 0 by construction"
    model = tmp_path / "failing.yaml"
    model.write_text(
        'kind: sim-model\nformat_version: "1.0"\nfailures:\n  migration: {probability: 0.02}\n'
    )
    code, out, _ = invoke(
        "simulate", str(inv), str(plan), "--runs", "2", "--jobs", "1", "--model", str(model)
    )
    assert code == 0 and "P(headroom breach)" in out and "no failures modelled" not in out


def test_the_breach_note_never_calls_a_breach_zero() -> None:
    from sim.montecarlo import NO_FAILURES, breach_note

    assert breach_note(0.0, False) == NO_FAILURES
    assert breach_note(0.0, True) is None
    assert breach_note(None, False) is None
    note = breach_note(0.5, False)
    assert note is not None and "0 by construction" not in note and "plan itself" in note
    assert not DEFAULT.injects_failures
    for key in ("migration_failure_p", "upgrade_failure_p", "canary_failure_p", "crash_p"):
        assert DEFAULT.with_changes(**{key: 0.1}).injects_failures
