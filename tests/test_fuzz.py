"""No input crashes or hangs (issue 18): corrupted, huge, deep and non-regular inputs and outputs
end in a clear exit 2 naming the file and place, never a traceback (exit 70) or a wait forever;
outputs are judged before the work and nothing that is not a regular file is written over.

The property test at the bottom corrupts valid files (inventory, policy, plan, simulation model,
mapping) at random places and runs plan/check/simulate on them: they only ever exit 0 to 3."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import shutil
import signal
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.errors import InputError
from planner.executor.journal import Journal, journal_in_use
from planner.formats import save_inventory, save_policy
from planner.inventory import Inventory
from planner.limits import MAX_EFFECTIVE, MAX_FLOAT, MAX_INT
from planner.openstack import mapping
from planner.policy import Policy
from sim.model import SimModel
from tests.clouds import Cloud, policy
from tests.test_cli import Run, clean, rollwave

DEEP = 950  # under the interpreter's recursion limit: json.loads reads it, later code must cope


def _cloud() -> tuple[Inventory, Policy]:
    """Controllers in an HA group, two AZs, server groups, a stopped and a cold-only VM."""
    c = Cloud("fuzz")
    for i in (1, 2, 3):
        c.controller(f"ctl-{i}")
    c.ha("control-plane", ["ctl-1", "ctl-2", "ctl-3"], 2)
    for az in ("az1", "az2"):
        c.hosts_(*(f"{az}-h{h}" for h in (1, 2, 3)), az=az)
    c.vm("web-1", "az1-h1").vm("web-2", "az1-h2").vm("db-1", "az2-h1").vm("db-2", "az2-h1")
    c.vm("off", "az1-h1", status="SHUTOFF").vm("cold", "az2-h2", migration="cold")
    c.group("web", "anti-affinity", members=["web-1", "web-2"])
    c.group("db", "affinity", members=["db-1", "db-2"])
    # the affinity pair moves by forced live migrations (Nova refuses to move one member alone)
    pol = policy(2, failures=1, first=("role=controller",))
    return c.build(), dataclasses.replace(pol, affinity_moves="forced")


def _make_files(d: Path) -> dict[str, Path]:
    inv, pol = _cloud()
    f = {"inventory": d / "inventory.json", "policy": d / "policy.json", "plan": d / "plan.json"}
    save_inventory(inv, f["inventory"])
    save_policy(pol, f["policy"])
    run = rollwave("plan", f["inventory"], "--policy", f["policy"], "-o", f["plan"])
    assert run.code == 0, run
    f["model"] = d / "model.json"
    f["model"].write_text(
        json.dumps({"format_version": "1.0", "kind": "sim-model", **SimModel().to_dict()})
    )
    f["mapping"] = d / "mapping.json"
    f["mapping"].write_text(
        json.dumps(
            {
                "controllers": [{"name": "ctl-1", "az": "az1", "rack": "r1", "version": "1"}],
                "ha_groups": [{"name": "g", "hosts": ["ctl-1"], "min_available": 1}],
                "hosts": {"cmp-1": {"rack": "r1", "version": "2024.1"}},
                "versions": [{"pattern": "cmp-*", "version": "2024.1"}],
                "racks": [{"pattern": "cmp-*", "rack": "r1"}],
                "default_version": "unknown",
                "vms": {"x": {"migration": "cold", "dirty_rate_mb_s": 80, "local_disk": True}},
                "projects": {"p": {"migration": "none"}},
            }
        )
    )
    return f


@pytest.fixture(scope="module")
def base_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _make_files(tmp_path_factory.mktemp("fuzz-base"))


@pytest.fixture
def files(base_files: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    out = {k: tmp_path / v.name for k, v in base_files.items()}
    for k, v in base_files.items():
        shutil.copyfile(v, out[k])
    return {**out, "dir": tmp_path}


def _edit(path: Path, where: str, value: Any) -> Path:
    """A copy of the JSON file with the value at `where` (keys and list indices split by `.`)."""
    data = json.loads(path.read_text())
    node = data
    *head, last = where.split(".")
    for k in head:
        node = node[int(k)] if isinstance(node, list) else node[k]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    out = path.with_name(f"edited-{path.name}")
    out.write_text(json.dumps(data))
    return out


def commands(f: dict[str, Path], **swap: Path) -> list[list[object]]:
    """plan, check and simulate on the files, with some swapped for corrupted copies."""
    g = {**f, **swap}
    out = f["dir"] / "out" / "plan.json"
    out.parent.mkdir(exist_ok=True)
    return [
        ["plan", g["inventory"], "--policy", g["policy"], "-o", out, "--planner", "greedy"],
        ["check", g["inventory"], g["plan"], "--ignore-digest"],
        ["simulate", g["inventory"], g["plan"], "--ignore-digest", "--model", g["model"]],
    ]


def bad_input(run: Run, file: Path, where: str) -> None:
    clean(run)
    assert run.code == 2, run
    assert f"error: {file}: {where}" in run.err, run


# ---------------------------------------------------------------------------------------------
# Deep nesting, huge numbers
# ---------------------------------------------------------------------------------------------
def test_json_nested_thousands_deep_is_bad_input(files: dict[str, Path]) -> None:
    deep = files["dir"] / "deep.json"
    deep.write_text('{"format_version": "1.0", "kind": "inventory", "hosts": ' + "[" * 100_000)
    deep.write_text(deep.read_text() + "]" * 100_000 + "}")
    for args in commands(files, inventory=deep)[:2]:
        bad_input(rollwave(*args), deep, "nested too deeply")
    yml = files["dir"] / "deep.yaml"
    yml.write_text("kind: inventory\nhosts: " + "[" * 5000 + "]" * 5000 + "\n")
    bad_input(rollwave(*commands(files, inventory=yml)[1]), yml, "line 2 column")


def test_an_integer_of_thousands_of_digits_is_bad_input(files: dict[str, Path]) -> None:
    for name in ("long.json", "long.yaml"):
        f = files["dir"] / name
        f.write_text('{"format_version": "1.0", "kind": "policy", "target_version": "2025.2", '
                     f'"max_hosts_per_wave": {"9" * 5000}}}')  # fmt: skip
        bad_input(rollwave(*commands(files, policy=f)[0]), f, "cannot read: Exceeds the limit")


@pytest.mark.parametrize("value", [10**30, 10**400, MAX_INT + 1])
@pytest.mark.parametrize(
    ("kind", "where", "shown"),
    [
        ("inventory", "hosts.3.capacity.VCPU", "hosts[3].capacity.VCPU"),
        ("inventory", "hosts.3.reserved.MEMORY_MB", "hosts[3].reserved.MEMORY_MB"),
        ("inventory", "vms.0.resources.MEMORY_MB", "vms[0].resources.MEMORY_MB"),
        ("policy", "max_hosts_per_wave", "max_hosts_per_wave"),
        ("policy", "max_concurrent_live_migrations", "max_concurrent_live_migrations"),
        ("plan", "waves.0.index", "waves[0].index"),
        ("plan", "policy.max_hosts_per_wave", "policy.max_hosts_per_wave"),
    ],
)
def test_a_huge_integer_is_bad_input_naming_file_and_place(
    files: dict[str, Path], kind: str, where: str, shown: str, value: int
) -> None:
    f = _edit(files[kind], where, value)
    runs = [a for a in commands(files, **{kind: f}) if str(f) in map(str, a)]
    assert runs
    for args in runs:
        bad_input(rollwave(*args), f, f"{shown}: must be at most 2,147,483,647")


def test_an_allocation_ratio_past_the_effective_ceiling_is_bad_input(
    files: dict[str, Path],
) -> None:
    f = _edit(files["inventory"], "hosts.3.allocation_ratio", {"VCPU": 1e12})
    bad_input(rollwave(*commands(files, inventory=f)[1]), f, "hosts[3].allocation_ratio.VCPU")


def test_a_huge_float_is_bad_input(files: dict[str, Path]) -> None:
    f = _edit(files["model"], "network.nic_gbps", 1e300)
    bad_input(rollwave(*commands(files, model=f)[2]), f, "network.nic_gbps: must be <= 1e+15")


def test_a_lognormal_sigma_that_overflows_is_bad_input(files: dict[str, Path]) -> None:
    f = _edit(files["model"], "upgrade.compute.lognormal.sigma", 500)
    bad_input(rollwave(*commands(files, model=f)[2]), f, "upgrade.compute.lognormal.sigma")


def _at_the_ceilings(files: dict[str, Path]) -> dict[str, Path]:
    inv = json.loads(files["inventory"].read_text())
    for h in inv["hosts"]:
        if h.get("role", "compute") == "compute":
            h["capacity"] = {rc: MAX_INT for rc in h["capacity"]}
            h["reserved"] = {}
            h["allocation_ratio"] = {rc: MAX_EFFECTIVE / MAX_INT for rc in h["capacity"]}
    inv["vms"][0]["resources"] = {rc: MAX_INT for rc in inv["vms"][0]["resources"]}
    inv["vms"][0]["dirty_rate_mb_s"] = MAX_FLOAT
    pol = json.loads(files["policy"].read_text())
    pol["max_hosts_per_wave"] = MAX_INT
    pol["max_concurrent_live_migrations"] = MAX_INT
    pol["headroom"]["failures"] = MAX_INT
    plan = json.loads(files["plan"].read_text())
    plan["waves"][-1]["index"] = MAX_INT
    out = {}
    for kind, data in (("inventory", inv), ("policy", pol), ("plan", plan)):
        out[kind] = files["dir"] / f"ceiling-{kind}.json"
        out[kind].write_text(json.dumps(data))
    return out


def test_values_at_the_ceilings_are_read_and_never_crash(files: dict[str, Path]) -> None:
    """The ceilings are ones the planner, checker and simulator can compute with (int64, CP-SAT):
    every command ends in a result or a clear refusal, never an internal error."""
    ceiling = _at_the_ceilings(files)
    for args in commands(files, **ceiling):
        run = clean(rollwave(*args))
        assert run.code in (0, 1, 3), run
    cpsat = [*commands(files, **ceiling)[0][:-2], "--time-limit", "5"]
    assert clean(rollwave(*cpsat)).code in (0, 3)


def test_an_inventory_with_no_compute_host_plans_its_controllers(files: dict[str, Path]) -> None:
    inv = json.loads(files["inventory"].read_text())
    inv["hosts"] = [h for h in inv["hosts"] if h["role"] == "controller"]
    inv["vms"], inv["server_groups"] = [], []
    f = files["dir"] / "controllers.json"
    f.write_text(json.dumps(inv))
    out = files["dir"] / "controllers-plan.json"
    run = clean(rollwave("plan", f, "--policy", files["policy"], "-o", out))
    assert run.code == 0, run
    assert "no compute host" in run.err, run
    assert clean(rollwave("check", f, out)).code == 0
    waves = json.loads(out.read_text())["waves"]
    assert sorted(h for w in waves for h in w["hosts"]) == ["ctl-1", "ctl-2", "ctl-3"]


# ---------------------------------------------------------------------------------------------
# Files that are not regular files
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _special(d: Path, what: str) -> Iterator[Path]:
    p = d / f"special-{what}.json"
    if what == "fifo":
        os.mkfifo(p)
        yield p
    elif what == "socket":
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(p))
            yield p
    elif what == "directory":
        p.mkdir()
        yield p
    else:
        yield Path("/dev/zero" if what == "device" else "/dev/null")


@contextlib.contextmanager
def _no_hang(seconds: int = 60) -> Iterator[None]:
    def stop(signum: int, frame: Any) -> None:
        raise TimeoutError(f"still waiting after {seconds} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("what", ["fifo", "socket", "directory", "device", "null"])
def test_an_input_that_is_not_a_regular_file_is_refused_without_waiting(
    files: dict[str, Path], what: str
) -> None:
    """A FIFO with no writer used to block every command forever."""
    with _special(files["dir"], what) as p, _no_hang():
        for kind in ("inventory", "policy", "plan", "model"):
            args = next(a for a in commands(files) if files[kind] in a)
            args = [p if a == files[kind] else a for a in args]
            run = clean(rollwave(*args))
            assert run.code == 2, run
            assert str(p) in run.err and "is a" in run.err, run  # click's words for a dir
        with pytest.raises(InputError, match="is a"):
            mapping.load(p)


def test_a_symlinked_output_is_refused_and_the_link_kept(files: dict[str, Path]) -> None:
    target = files["dir"] / "target.json"
    target.write_text("keep me")
    link = files["dir"] / "link.json"
    link.symlink_to(target)
    run = clean(rollwave("plan", files["inventory"], "--policy", files["policy"], "-o", link))
    assert run.code == 2 and "is a symbolic link" in run.err, run
    assert link.is_symlink() and target.read_text() == "keep me"
    sim = ["simulate", files["inventory"], files["plan"], "-o", link]
    assert clean(rollwave(*sim)).code == 2 and link.is_symlink()


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_device_as_output_is_refused_and_kept(files: dict[str, Path]) -> None:
    """As root, the atomic rename used to replace the device node with the plan file."""
    dev = files["dir"] / "full"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 7))  # /dev/full's numbers
    run = clean(rollwave("plan", files["inventory"], "--policy", files["policy"], "-o", dev))
    assert run.code == 2 and "is a device" in run.err, run
    assert stat.S_ISCHR(os.lstat(dev).st_mode)


@pytest.mark.parametrize("what", ["fifo", "device"])
def test_other_special_outputs_are_refused(files: dict[str, Path], what: str) -> None:
    with _special(files["dir"], what) as p:
        run = clean(rollwave("plan", files["inventory"], "--policy", files["policy"], "-o", p))
        assert run.code == 2 and "cannot write: is a" in run.err, run
        assert not stat.S_ISREG(os.lstat(p).st_mode)


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "{inventory}", "--policy", "{policy}", "-o", "{out}"],
        ["simulate", "{inventory}", "{plan}", "-o", "{out}"],
        ["report", "{inventory}", "{plan}", "-o", "{out}"],
        ["generate", "-o", "{out}"],
        ["schema", "plan", "-o", "{out}"],
        ["whatif", "{inventory}", "--policy", "{policy}", "--vary", "max_hosts_per_wave=1,2",
         "--plot", "{out}"],
    ],
)  # fmt: skip
def test_outputs_are_judged_before_any_work(files: dict[str, Path], args: list[str]) -> None:
    """Into a missing directory: exit 2 at once (no solve, no simulation, no progress lines)."""
    out = files["dir"] / "missing" / "out.json"
    names = {k: str(v) for k, v in files.items()} | {"out": str(out)}
    run = clean(rollwave(*[a.format(**names) for a in args]))
    assert run.code == 2, run
    assert run.err.strip() == f"error: {out}: cannot write: directory '{out.parent}' does not exist"
    assert run.out == ""


# ---------------------------------------------------------------------------------------------
# Random corruptions of valid files only ever exit 0-3
# ---------------------------------------------------------------------------------------------
NASTY: list[Any] = [
    None, True, 0, -1, 1.5, -0.0, MAX_INT, MAX_INT + 1, 2**63, 10**30, 10**400, 1e300, -1e300,
    float("nan"), float("inf"), "", "x", "2025.1", "2024.2", "Caracal", "*", "role=compute",
    [], {}, [1], {"VCPU": 1}, "ü" * 50,
]  # fmt: skip


def _paths(x: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield here
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _paths(v, (*here, k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _paths(v, (*here, i))


def _deep() -> Any:
    v: Any = 1
    for _ in range(DEEP):
        v = [v]
    return v


@st.composite
def corruptions(draw: st.DrawFn, data: Any) -> bytes:
    """A valid document with a few values replaced or keys dropped, or its bytes cut or
    flipped."""
    how = draw(st.sampled_from(["value", "value", "value", "drop", "cut", "flip"]))
    text = json.dumps(data).encode()
    if how == "cut":
        return text[: draw(st.integers(0, len(text)))]
    if how == "flip":
        i = draw(st.integers(0, len(text) - 1))
        return text[:i] + bytes([draw(st.integers(0, 255))]) + text[i + 1 :]
    doc = copy.deepcopy(data)
    paths = [p for p in _paths(doc) if p]
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        node = doc
        try:
            for k in path[:-1]:
                node = node[k]
            if how == "drop" and isinstance(node, dict):
                node.pop(path[-1], None)
            else:
                value = draw(st.sampled_from([*NASTY, "deep"]))
                node[path[-1]] = _deep() if value == "deep" else copy.deepcopy(value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier corruption changed the shape above this path
    return json.dumps(doc).encode()


@pytest.mark.parametrize("kind", ["inventory", "policy", "plan", "model", "mapping"])
def test_random_corruptions_only_ever_exit_0_to_3(files: dict[str, Path], kind: str) -> None:
    f = files
    data = json.loads(f[kind].read_text())

    @settings(
        max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(corruptions(data))
    def run(raw: bytes) -> None:
        bad = f["dir"] / f"corrupt-{kind}.json"
        bad.write_bytes(raw)
        if kind == "mapping":
            with contextlib.suppress(InputError):
                mapping.load(bad)
            return
        for args in commands(f, **{kind: bad}):
            if str(bad) in map(str, args):
                r = clean(rollwave(*args))
                assert r.code in (0, 1, 2, 3), r

    run()


@pytest.mark.parametrize("command", ["plan", "whatif"])
def test_a_seed_past_cp_sats_32_bits_is_a_usage_error(files: dict[str, Path], command: str) -> None:
    args: list[object] = [command, files["inventory"], "--policy", files["policy"]]
    args += ["-o", files["dir"] / "p.json"] if command == "plan" else ["--vary", "failures=0"]
    run = clean(rollwave(*args, "--seed", 10**30))
    assert run.code == 2 and "--seed" in run.err, run


@pytest.mark.parametrize("what", ["fifo", "device"])
def test_a_journal_that_is_not_a_regular_file_is_refused_without_waiting(
    files: dict[str, Path], what: str
) -> None:
    """`execute --status` reads the journal, a run appends to it: a FIFO used to block both."""
    with _special(files["dir"], what) as p, _no_hang():
        run = clean(rollwave("execute", files["plan"], "--status", p))
        assert run.code == 2 and str(p) in run.err and "regular file" in run.err, run
        with pytest.raises(InputError, match="regular file"):
            Journal(p)
        assert not journal_in_use(p)
