"""`rollwave plan`: exit codes, files written (or not), text and JSON output, reproducibility."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.checker import check_plan
from planner.cli import main
from planner.formats import load_inventory, load_plan, save_inventory, save_policy
from tests import solver_clouds as sc


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


def files(tmp_path: Path, cloud: sc.Cloud) -> tuple[str, str]:
    inv, pol = tmp_path / "cloud.json", tmp_path / "policy.json"
    save_inventory(cloud.inventory, inv)
    save_policy(cloud.policy, pol)
    return str(inv), str(pol)


def test_plan_writes_a_valid_plan_and_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inv, pol = files(tmp_path, sc.three_plus_spare())
    out = tmp_path / "plan.json"
    code, stdout, stderr = run(["plan", inv, "--policy", pol, "-o", str(out)], capsys)
    assert code == 0, stderr
    assert "plan summary" in stdout and "waves" in stdout
    plan = load_plan(out)
    assert check_plan(load_inventory(inv), plan).ok
    assert plan.generator["name"] == "rollwave-cpsat"
    assert plan.summary["waves"] == 4 and plan.summary["lower_bounds"]["waves"] == 4


def test_plan_json_output_is_json_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv, pol = files(tmp_path, sc.ha_trio())
    out = tmp_path / "plan.json"
    code, stdout, _ = run(
        ["plan", inv, "--policy", pol, "-o", str(out), "--format", "json"], capsys
    )
    assert code == 0
    data = json.loads(stdout)
    assert data["plan"] == str(out) and data["planner"] == "cpsat"
    assert data["summary"]["waves"] == len(load_plan(out).waves)


def test_same_seed_same_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv, pol = files(tmp_path, sc.disabled_and_upgraded())
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for p in (a, b):
        code, _, err = run(["plan", inv, "--policy", pol, "-o", str(p), "--seed", "7"], capsys)
        assert code == 0, err
    assert a.read_bytes() == b.read_bytes()
    assert load_plan(a).generator["seed"] == 7


def test_no_plan_exits_3_with_reasons_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inv, pol = files(tmp_path, sc.anti_affinity_too_wide())
    out = tmp_path / "plan.json"
    code, _, stderr = run(["plan", inv, "--policy", pol, "-o", str(out)], capsys)
    assert code == 3
    assert "no plan exists" in stderr and "server group db" in stderr
    assert "Traceback" not in stderr
    assert not out.exists()


def test_bad_input_exits_2_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inv, _ = files(tmp_path, sc.ha_trio())
    bad = tmp_path / "policy.yaml"
    bad.write_text("max_hosts_per_wave: [1\n")
    out = tmp_path / "plan.json"
    code, _, stderr = run(["plan", inv, "--policy", str(bad), "-o", str(out)], capsys)
    assert code == 2
    assert str(bad) in stderr and "Traceback" not in stderr
    assert not out.exists()


def test_unknown_planner_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inv, pol = files(tmp_path, sc.ha_trio())
    code, _, _ = run(
        ["plan", inv, "--policy", pol, "-o", str(tmp_path / "p.json"), "--planner", "magic"],
        capsys,
    )
    assert code == 2


def test_greedy_planner_and_first_last_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud = sc.first_and_last()
    inv, pol = files(
        tmp_path, sc.Cloud("plain", cloud.inventory, cloud.policy.with_changes(first=(), last=()))
    )
    out = tmp_path / "plan.json"
    argv = ["plan", inv, "--policy", pol, "-o", str(out), "--first", "cmp-3", "--last", "cmp-1"]
    for planner in ("greedy", "cpsat"):
        code, _, err = run([*argv, "--planner", planner], capsys)
        assert code == 0, err
        plan = load_plan(out)
        assert plan.waves[0].hosts == ("cmp-3",) and plan.waves[-1].hosts == ("cmp-1",)
        assert check_plan(load_inventory(inv), plan).ok
