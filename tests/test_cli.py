"""The command line through click's CliRunner, with the exit codes `planner.cli.main` gives: 0 ok,
1 violations, 2 bad input, 3 infeasible; never a traceback, never a partial output file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from planner.cli import main
from planner.formats import load_plan, save_inventory, save_plan, save_policy
from tests.clouds import Fixture, drop_migration, three_plus_spare, with_policy


@dataclass
class Run:
    code: int
    out: str
    err: str

    def __str__(self) -> str:  # shown when an assertion fails
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def rollwave(*args: object) -> Run:
    """Run `rollwave ARGS` as the console script does (main maps errors to exit codes)."""
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        return Run(code, out.getvalue().decode(), err.getvalue().decode())


def clean(run: Run) -> Run:
    assert "Traceback" not in run.out + run.err, run
    assert "internal error" not in run.err, run
    return run


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """three_plus_spare as files: inventory, policy, and its valid plan (with the real digest)."""
    fx: Fixture = three_plus_spare()
    inv = tmp_path / "inventory.json"
    digest = save_inventory(fx.inventory, inv)
    pol = tmp_path / "policy.json"
    save_policy(fx.policy, pol)
    plan = tmp_path / "plan.json"
    save_plan(fx.plan.__class__(digest, fx.plan.policy, fx.plan.waves), plan)
    return {"inventory": inv, "policy": pol, "plan": plan, "dir": tmp_path}


def save_variant(files: dict[str, Path], name: str, plan: Any) -> Path:
    path = files["dir"] / name
    base = load_plan(files["plan"])
    save_plan(plan.__class__(base.inventory_sha256, plan.policy, plan.waves), path)
    return path


# ---------------------------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------------------------
def test_check_a_valid_plan(files: dict[str, Path]) -> None:
    r = clean(rollwave("check", files["inventory"], files["plan"]))
    assert r.code == 0, r
    assert "plan is valid" in r.out


def test_check_json_is_only_json(files: dict[str, Path]) -> None:
    r = clean(rollwave("check", files["inventory"], files["plan"], "--format", "json"))
    assert r.code == 0, r
    data = json.loads(r.out)
    assert data["valid"] is True
    assert data["metrics"]["waves"] == 4
    assert data["metrics"]["migrations"] == 6


def test_check_reports_violations_with_exit_1(files: dict[str, Path]) -> None:
    bad = save_variant(files, "bad.json", drop_migration(three_plus_spare().plan, "vm-2a"))
    r = clean(rollwave("check", files["inventory"], bad, "--format", "json"))
    assert r.code == 1, r
    (v,) = json.loads(r.out)["violations"]
    assert (v["rule"], v["wave"], v["objects"]) == ("evacuation", 3, ["cmp-2", "vm-2a"])
    text = clean(rollwave("check", files["inventory"], bad))
    assert text.code == 1
    assert "evacuation" in text.out and "plan is invalid" in text.out


def test_check_reports_a_digest_mismatch(files: dict[str, Path]) -> None:
    inv = files["inventory"]
    inv.write_text(inv.read_text().replace('"cloud": "three-plus-spare"', '"cloud": "renamed"'))
    r = clean(rollwave("check", inv, files["plan"], "--format", "json"))
    assert r.code == 1
    assert [v["rule"] for v in json.loads(r.out)["violations"]] == ["digest"]
    assert rollwave("check", inv, files["plan"], "--ignore-digest").code == 0


def test_check_with_the_arguments_swapped(files: dict[str, Path]) -> None:
    r = clean(rollwave("check", files["plan"], files["inventory"]))
    assert r.code == 2
    assert f"error: {files['plan']}: kind: is 'plan', expected 'inventory'" in r.err
    assert "right order" in r.err
    assert r.out == ""


def test_check_a_missing_file(files: dict[str, Path]) -> None:
    r = clean(rollwave("check", files["inventory"], files["dir"] / "nope.json"))
    assert r.code == 2
    assert r.err.strip() == f"error: {files['dir'] / 'nope.json'}: no such file"


def test_check_a_directory(files: dict[str, Path]) -> None:
    r = clean(rollwave("check", files["dir"], files["plan"]))
    assert r.code == 2
    assert "is a directory" in r.err


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ('"VCPU": 16', '"VCPU": -16', "hosts[0].capacity.VCPU: must be positive, got -16"),
        ('"host": "cmp-2"', '"host": "cmp-9"', "vms[2].host: unknown host 'cmp-9'"),
        ('"name": "cmp-2"', '"name": "cmp-1"', "hosts[1].name: duplicate host name 'cmp-1'"),
        ('"kind": "inventory"', '"kind": "policy"', "kind: is 'policy', expected 'inventory'"),
        ('"format_version": "1.0"', '"format_version": "2.0"', "format_version: unsupported"),
        ('"up": true', '"up": "true"', "hosts[0].up: must be true or false, got a string"),
        ('"hosts": [', '"hosts": [,', "line 6 column 13: invalid JSON"),
    ],
)
def test_check_a_bad_inventory(files: dict[str, Path], old: str, new: str, where: str) -> None:
    inv = files["inventory"]
    inv.write_text(inv.read_text().replace(old, new, 1))
    for fmt in ("text", "json"):
        r = clean(rollwave("check", inv, files["plan"], "--format", fmt))
        assert r.code == 2, r
        assert f"error: {inv}: {where}" in r.err, r
        assert r.out == ""


def test_check_a_bad_plan_in_yaml(files: dict[str, Path]) -> None:
    plan = files["dir"] / "plan.yaml"
    plan.write_text("format_version: '1.0'\nkind: plan\ninventory_sha256: xyz\nwaves: {}\n")
    r = clean(rollwave("check", files["inventory"], plan))
    assert r.code == 2
    assert r.err.splitlines() == [
        f"error: {plan}: inventory_sha256: must be 64 lower-case hex digits (a sha256)",
        f"error: {plan}: policy: missing",
        f"error: {plan}: waves: must be a list, got an object",
    ]


# ---------------------------------------------------------------------------------------------
# plan: no partial output, an existing output file never truncated
# ---------------------------------------------------------------------------------------------
def test_plan_writes_a_plan_that_checks(files: dict[str, Path]) -> None:
    out = files["dir"] / "new-plan.json"
    r = clean(rollwave("plan", files["inventory"], "--policy", files["policy"], "-o", out))
    assert r.code == 0, r
    assert clean(rollwave("check", files["inventory"], out)).code == 0
    assert load_plan(out).inventory_sha256 == load_plan(files["plan"]).inventory_sha256


def test_plan_json_output(files: dict[str, Path]) -> None:
    out = files["dir"] / "new-plan.json"
    args = ("plan", files["inventory"], "--policy", files["policy"], "-o", out, "--format", "json")
    r = clean(rollwave(*args))
    assert r.code == 0, r
    data = json.loads(r.out)
    assert data["plan"] == str(out)
    assert data["summary"]["waves"] == len(load_plan(out).waves)


@pytest.mark.parametrize(
    ("policy_text", "where"),
    [
        ("kind: policy\nformat_version: '1.0'\nmax_hosts_per_wave: 0\n", "max_hosts_per_wave"),
        ("kind: policy\nformat_version: '1.0'\nmax_hosts_per_wave: [\n", "invalid YAML"),
        ("kind: policy\nformat_version: '1.0'\n", "max_hosts_per_wave: missing"),
        (
            "kind: policy\nformat_version: '1.0'\nmax_hosts_per_wave: 1\nfirst: [role=ctl, x=y]\n",
            "first[1]: unknown selector key 'x'",
        ),
    ],
)
def test_plan_with_a_bad_policy_writes_nothing(
    files: dict[str, Path], policy_text: str, where: str
) -> None:
    pol = files["dir"] / "bad-policy.yaml"
    pol.write_text(policy_text)
    fresh = files["dir"] / "fresh.json"
    r = clean(rollwave("plan", files["inventory"], "--policy", pol, "-o", fresh))
    assert r.code == 2, r
    assert f"error: {pol}: " in r.err and where in r.err, r
    assert not fresh.exists()
    existing = files["plan"]
    before = existing.read_bytes()
    r = clean(rollwave("plan", files["inventory"], "--policy", pol, "-o", existing))
    assert r.code == 2
    assert existing.read_bytes() == before
    assert sorted(p.name for p in files["dir"].iterdir() if p.name.startswith(".")) == []


def test_plan_that_is_infeasible_exits_3_and_writes_nothing(files: dict[str, Path]) -> None:
    pol = files["dir"] / "tight.json"
    save_policy(with_policy(three_plus_spare().plan, **{"headroom.failures": 3}).policy, pol)
    existing = files["plan"]
    before = existing.read_bytes()
    r = clean(rollwave("plan", files["inventory"], "--policy", pol, "-o", existing))
    assert r.code == 3, r
    assert "no plan exists" in r.err
    assert existing.read_bytes() == before


def test_plan_into_a_missing_directory(files: dict[str, Path]) -> None:
    out = files["dir"] / "no" / "plan.json"
    r = clean(rollwave("plan", files["inventory"], "--policy", files["policy"], "-o", out))
    assert r.code == 2, r
    assert "does not exist" in r.err


# ---------------------------------------------------------------------------------------------
# generate, schema, usage
# ---------------------------------------------------------------------------------------------
def test_generate_is_deterministic_by_seed(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    for path, seed in ((a, 7), (b, 7), (c, 8)):
        r = clean(rollwave("generate", "--hosts", 15, "--seed", seed, "-o", path))
        assert r.code == 0, r
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_generate_then_plan_then_check(tmp_path: Path) -> None:
    inv, pol, plan = tmp_path / "inv.json", tmp_path / "pol.json", tmp_path / "plan.json"
    args = ("generate", "--hosts", 10, "--seed", 1, "--utilisation", 0.4)
    assert clean(rollwave(*args, "-o", inv, "--policy-out", pol)).code == 0
    r = clean(rollwave("plan", inv, "--policy", pol, "-o", plan))
    assert r.code == 0, r
    assert clean(rollwave("check", inv, plan)).code == 0


@pytest.mark.parametrize("kind", ["inventory", "policy", "plan"])
def test_schema_prints_the_schema(tmp_path: Path, kind: str) -> None:
    r = clean(rollwave("schema", kind))
    assert r.code == 0
    assert json.loads(r.out)["properties"]["kind"] == {"const": kind}
    out = tmp_path / f"{kind}.json"
    assert clean(rollwave("schema", kind, "-o", out)).code == 0
    assert out.read_text() == r.out


def test_usage_errors_exit_2(files: dict[str, Path]) -> None:
    assert clean(rollwave("schema", "flavor")).code == 2
    assert clean(rollwave("check", files["inventory"])).code == 2
    r = clean(rollwave("plan", files["inventory"], "--policy", files["policy"]))
    assert r.code == 2 and "--output" in r.err
    assert clean(rollwave("no-such-command")).code == 2


def test_demo_plans_checks_and_simulates_the_bundled_example(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = clean(rollwave("demo", "--out", out))
    assert r.code == 0, r
    assert sorted(p.name for p in out.iterdir()) == [
        "inventory.json",
        "plan.json",
        "policy.yaml",
        "report.html",
        "timeline.jsonl",
    ]
    assert clean(rollwave("check", out / "inventory.json", out / "plan.json")).code == 0
    assert "makespan" in r.out
    first = json.loads((out / "timeline.jsonl").read_text().splitlines()[0])
    assert first["kind"] == "timeline"


def test_plan_rejects_a_mistyped_selector(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    r = clean(
        rollwave(
            "plan",
            files["inventory"],
            "--policy",
            files["policy"],
            "-o",
            out,
            "--first",
            "roel=controller",
        )
    )
    assert r.code == 2 and "unknown selector key 'roel'" in r.err
    assert not out.exists()
