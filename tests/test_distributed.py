"""Monte Carlo and what-if sweeps on a real Dask cluster (`--cluster`, planner.app.distributed):
the same numbers as local processes, a worker killed mid-run, a scheduler out of reach, the
optional extra missing. Every cluster here is a real local one (scheduler in this process,
worker processes); none outlives its test."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dask
import pytest

from planner.app import distributed
from planner.app.distributed import (
    OVERHEAD_TARGET,
    Cluster,
    ClusterSpec,
    batch_size,
    connect,
    parse_cluster,
)
from planner.app.simulation import monte_carlo
from planner.app.whatif import SweepConfig, sweep
from planner.cli import main
from planner.errors import ClusterError, ExitCode, UsageError
from planner.formats import save_plan
from planner.report.whatif import combinations, parse_vary
from sim.engine import Prepared, prepare
from sim.model import DEFAULT
from tests.report.support import Case, bundled, example

ROOT = Path(__file__).resolve().parent.parent


def no_children_left(before: set[int], within_s: float = 15.0) -> list[int]:
    """Child processes started since `before` still alive after `within_s` (reaped as they go)."""
    deadline = time.monotonic() + within_s
    while True:
        left = sorted(children() - before)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def children() -> set[int]:
    return {p.pid for p in mp.active_children() if p.pid is not None}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A local Dask cluster of 2 worker processes, shared by the tests of this module that do
    not break it; its processes are gone after."""
    before = children()
    with connect(ClusterSpec(workers=2)) as c:
        yield c
    assert no_children_left(before) == []


@pytest.fixture(scope="module")
def case() -> tuple[Case, Prepared]:
    """The bundled example, its greedy plan, and a model where things go wrong at times (so
    that runs differ from each other)."""
    c = bundled()
    model = DEFAULT.with_changes(migration_failure_p=0.05, crash_p=0.5, upgrade_failure_p=0.02)
    return c, prepare(c.inventory, c.plan, model, check=False)


def cli(*args: str) -> tuple[int, str, str]:
    """`rollwave ARGS` in a process of its own, as a user runs it: (exit code, stdout, stderr)."""
    r = subprocess.run(
        [sys.executable, "-c", "from planner.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != distributed.ENV_ADDRESS},
    )
    return r.returncode, r.stdout, r.stderr


def exit_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`planner.cli.main(argv)` in this process: (exit code, stderr)."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    return int(e.value.code or 0), capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# --cluster, its values and its extra
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("local", ClusterSpec()),
        ("local:3", ClusterSpec(workers=3)),
        ("tcp://10.0.0.5:8786", ClusterSpec(address="tcp://10.0.0.5:8786")),
        ("10.0.0.5:9000", ClusterSpec(address="tcp://10.0.0.5:9000")),
        ("sched.example.org", ClusterSpec(address="tcp://sched.example.org:8786")),
        ("tls://[::1]:8786", ClusterSpec(address="tls://[::1]:8786")),
    ],
)
def test_cluster_values(text: str, spec: ClusterSpec) -> None:
    assert parse_cluster(text) == spec
    assert parse_cluster(str(spec)) == spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("local:0", "positive integer"),
        ("local:two", "positive integer"),
        ("http://10.0.0.5:8786", "not a Dask scheduler address"),
        ("tcp://host:99999", "not a Dask scheduler address"),
        ("", "not a Dask scheduler address"),
    ],
)
def test_bad_cluster_values_are_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_cluster(text)


CLUSTER_AND_JOBS = ("--cluster", "local:2", "--jobs", "2")


def test_jobs_and_cluster_together_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    inv, pol = str(example("small.json")), str(example("small-policy.yaml"))
    code, err = exit_of(
        ["whatif", inv, "--policy", pol, "--vary", "max_hosts_per_wave=1,2", *CLUSTER_AND_JOBS],
        capsys,
    )
    assert code == ExitCode.BAD_INPUT
    assert "--jobs sets local processes" in err and "Traceback" not in err


def test_rollwave_imports_no_dask_until_a_cluster_is_asked_for() -> None:
    code = (
        "import sys, planner.cli, planner.app.simulation, planner.app.whatif;"
        "loaded = sorted(m for m in ('dask', 'distributed') if m in sys.modules);"
        "sys.exit(str(loaded) if loaded else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_without_the_extra_cluster_says_which_to_install_and_local_runs_still_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # None in sys.modules makes `import distributed` fail as if it were not installed
    monkeypatch.setitem(sys.modules, "distributed", None)
    monkeypatch.setitem(sys.modules, "dask", None)
    c = bundled()
    plan = tmp_path / "plan.json"
    save_plan(c.plan, plan)
    inv = str(example("small.json"))
    code, err = exit_of(["simulate", inv, str(plan), "--runs", "4", "--cluster", "local:2"], capsys)
    assert code == ExitCode.BAD_INPUT
    assert "pip install 'rollwave[dask]'" in err and err.count("\n") == 1
    pol = str(example("small-policy.yaml"))
    code, err = exit_of(
        ["whatif", inv, "--policy", pol, "--vary", "failures=0,1", "--cluster", "tcp://h:8786"],
        capsys,
    )
    assert code == ExitCode.BAD_INPUT and "rollwave[dask]" in err
    code, err = exit_of(["simulate", inv, str(plan), "--runs", "4", "--format", "json"], capsys)
    assert code == 0, err


def test_batches_keep_the_overhead_under_its_target() -> None:
    # 10 ms per task, 1 ms per item: 500 items a task make the overhead 2% of its work
    assert batch_size(0.010, 0.001, 100_000, 4) == 500
    assert 0.010 / (batch_size(0.010, 0.001, 100_000, 4) * 0.001) <= OVERHEAD_TARGET
    # one item a task when an item is long against the overhead
    assert batch_size(0.010, 2.0, 1_000, 4) == 1
    # never more than an even share of what remains per worker thread, never none
    assert batch_size(0.010, 0.001, 600, 4) == 150
    assert batch_size(0.010, 0.001, 1, 4) == 1
    assert batch_size(0.010, 0.0, 10, 2) == 5
    assert batch_size(0.010, 0.001, 0, 2) == 0


# ---------------------------------------------------------------------------------------------
# Same seed, same numbers
# ---------------------------------------------------------------------------------------------
def test_monte_carlo_on_the_cluster_equals_local_processes(
    cluster: Cluster, case: tuple[Case, Prepared]
) -> None:
    _, prep = case
    local = monte_carlo(prep, 240, 11, jobs=2)
    seen: list[int] = []
    remote = monte_carlo(prep, 240, 11, cluster=cluster, progress=lambda d, n: seen.append(d))
    assert remote.results == local.results
    assert remote.stats == local.stats
    assert remote.median_run == local.median_run
    assert len({r.makespan_s for r in remote.results}) > 1  # the runs differ from each other
    # results streamed back batch by batch into the progress, up to every run
    assert seen == sorted(seen) and seen[-1] == 240 and len(seen) == remote.batches.tasks  # type: ignore[union-attr]
    b = remote.batches
    assert b is not None and b.items == 240 and b.slots == 2
    assert 1 < b.largest_batch < 240  # batched, yet not one task
    assert b.overhead_s > 0 and b.work_s > 0
    assert remote.engine.startswith("Dask cluster local:2 (2 worker(s)")


def _where(shared: Any, items: list[int]) -> list[tuple[int, int, int]]:
    """A task: which process ran each item, and which copy of the shared data it saw."""
    return [(i, os.getpid(), id(shared)) for i in items]


def test_the_shared_data_is_scattered_once_per_worker(
    cluster: Cluster, case: tuple[Case, Prepared]
) -> None:
    _, prep = case
    shared = cluster.scatter(prep)
    try:
        rows, stats = cluster.map_batched(_where, shared, list(range(40)))
    finally:
        shared.release()
    assert [r[0] for r in rows] == list(range(40))  # in the order of the items
    copies: dict[int, set[int]] = {}
    for _, pid, ident in rows:
        copies.setdefault(pid, set()).add(ident)
    # every task of a worker got the one copy scattered there, never one of its own
    assert stats.tasks > len(copies) >= 1
    assert all(len(c) == 1 for c in copies.values())


def test_a_sweep_on_the_cluster_equals_the_local_sweep(cluster: Cluster) -> None:
    c = bundled()
    combos = combinations(
        [parse_vary("max_hosts_per_wave=1,3"), parse_vary("headroom.failures=1,5")]
    )
    config = SweepConfig(runs=4, seed=3, planner="greedy")
    seen: list[int] = []
    remote = sweep(
        c.inventory,
        c.policy,
        combos,
        config,
        cluster=cluster,
        progress=lambda done, total, o: seen.append(done),
    )
    local = sweep(c.inventory, c.policy, combos, config, jobs=1)
    strip = [dict(o.to_dict(), solve_s=0, simulate_s=0) for o in local]
    assert [dict(o.to_dict(), solve_s=0, simulate_s=0) for o in remote] == strip
    assert {o.status for o in remote} == {"ok", "infeasible"}  # a row without a plan too
    assert any(o.makespan_p50_s for o in remote)  # simulated
    assert seen == list(range(1, len(combos) + 1))


@pytest.mark.slow
def test_cli_monte_carlo_on_a_local_cluster_prints_what_local_processes_print(
    tmp_path: Path,
) -> None:
    c = bundled()
    inv, plan = tmp_path / "inventory.json", tmp_path / "plan.json"
    shutil.copyfile(example("small.json"), inv)
    save_plan(c.plan, plan)
    args = ["simulate", str(inv), str(plan), "--runs", "60", "--seed", "4", "--format", "json"]
    before = children()
    code, out, err = cli(*args, "--cluster", "local:2")
    assert code == 0, err
    assert "runs 60/60" in err  # the progress
    code, local_out, err = cli(*args, "--jobs", "2")
    assert code == 0, err
    remote, local = json.loads(out), json.loads(local_out)
    assert remote.pop("time_s") >= 0 and local.pop("time_s") >= 0
    assert remote == local
    assert no_children_left(before) == []


@pytest.mark.slow
def test_cli_whatif_on_a_scheduler_address_prints_the_local_rows(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The address of a running scheduler (the module's cluster), from DASK_SCHEDULER_ADDRESS."""
    inv, pol = str(example("small.json")), str(example("small-policy.yaml"))
    args = ["whatif", inv, "--policy", pol, "--vary", "max_hosts_per_wave=1,2,4", "--runs", "3"]
    args += ["--format", "json"]

    def run(argv: list[str]) -> tuple[list[dict[str, Any]], str]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        out, err = capsys.readouterr()
        assert e.value.code == 0, err
        return [dict(r, solve_s=0, simulate_s=0) for r in json.loads(out)["rows"]], err

    local, _ = run([*args, "--jobs", "1"])
    monkeypatch.setenv(distributed.ENV_ADDRESS, cluster.client.scheduler.address)
    remote, err = run(args)
    assert remote == local
    assert "[3/3]" in err


# ---------------------------------------------------------------------------------------------
# Failures: a worker killed mid-run, a scheduler out of reach, a scheduler without workers
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_worker_killed_mid_run_costs_nothing_but_time(case: tuple[Case, Prepared]) -> None:
    _, prep = case
    local = monte_carlo(prep, 1500, 7, jobs=1)
    before = children()
    with connect("local:2") as c:
        pids = c.client.run(os.getpid)
        killed: dict[str, tuple[int, tuple[str, ...]]] = {}

        def kill_a_busy_worker(done: int, runs: int) -> None:
            if killed or done == runs:
                return
            busy = {w: keys for w, keys in c.client.processing().items() if keys}
            if busy:  # a worker running a task now: SIGKILL, no goodbye to the scheduler
                w, keys = sorted(busy.items())[0]
                os.kill(pids[w], signal.SIGKILL)
                killed[w] = (pids[w], tuple(keys))

        remote = monte_carlo(prep, 1500, 7, cluster=c, progress=kill_a_busy_worker)
        assert killed, "no worker was busy to be killed"
        ((_, (pid, keys)),) = killed.items()
        assert keys  # it had work in hand
        assert pid not in c.client.run(os.getpid).values()  # it is gone (or replaced)
    assert remote.results == local.results  # complete, identical
    assert remote.stats == local.stats
    assert no_children_left(before) == []


def free_port() -> int:
    """A port of localhost nobody listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def started_cluster(
    nworkers: int, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The docs' commands on one machine (localhost only): `dask scheduler`, then `dask worker
    ADDRESS --nworkers N --nthreads 1` (in `env`), as separate processes; (its address, the
    scheduler's process). Both are ended after, whatever happens."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask_cli = [sys.executable, "-m", "dask"]
    local = ("--host", "127.0.0.1", "--no-dashboard")
    sched = subprocess.Popen(
        [*dask_cli, "scheduler", *local, "--port", str(port), "--dashboard-address", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    one_per_core = ("--nworkers", str(nworkers), "--nthreads", "1", "--death-timeout", "30")
    workers = subprocess.Popen(
        [*dask_cli, "worker", address, *local, *one_per_core],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # A scheduler still starting may accept a connection and drop it ("Stream is closed"):
        # the fixture retries until it answers, as an operator would; the tests start after.
        deadline = time.monotonic() + 60
        while True:
            try:
                with connect(address, timeout_s=60) as c:
                    c.client.wait_for_workers(nworkers, timeout=60)
                break
            except ClusterError:
                if time.monotonic() > deadline or sched.poll() is not None:
                    raise
                time.sleep(0.5)
        yield address, sched
    finally:
        for p in (workers, sched):
            if p.poll() is None:
                p.terminate()
        for p in (workers, sched):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def scheduler_and_workers() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`dask scheduler` and `dask worker ADDRESS --nworkers 2 --nthreads 1`, Dask's defaults."""
    with started_cluster(2) as started:
        yield started


@pytest.mark.slow
def test_a_scheduler_and_workers_started_as_the_docs_say(
    scheduler_and_workers: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """`dask scheduler` and `dask worker` as separate processes: the runs equal the local ones;
    the scheduler killed mid-run is exit 4 with one message."""
    address, sched = scheduler_and_workers
    c = bundled()
    plan = tmp_path / "plan.json"
    save_plan(c.plan, plan)
    args = ["simulate", str(example("small.json")), str(plan), "--seed", "9", "--format", "json"]
    code, out, err = cli(*args, "--runs", "50", "--cluster", address)
    assert code == 0, err
    code, local_out, err = cli(*args, "--runs", "50", "--jobs", "1")
    assert code == 0, err
    remote, local = json.loads(out), json.loads(local_out)
    assert remote.pop("time_s") >= 0 and local.pop("time_s") >= 0
    assert remote == local

    env = {k: v for k, v in os.environ.items() if k != distributed.ENV_ADDRESS}
    env["DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT"] = "3s"
    many = ("--runs", "20000", "--cluster", address)
    run = subprocess.Popen(
        [sys.executable, "-c", "from planner.cli import main; main()", *args, *many],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert run.stderr is not None
        first = run.stderr.readline()  # the first tenth of the runs is back: kill the scheduler
        assert first.strip().startswith("runs "), first
        sched.kill()
        rest = run.stderr.read()
        code = run.wait(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert code == ExitCode.CLOUD, rest
    lines = [ln for ln in rest.splitlines() if not ln.strip().startswith("runs ")]
    assert len(lines) == 1 and lines[0].startswith(f"error: Dask cluster {address}: "), rest


@pytest.mark.slow
def test_the_workers_profiler_is_paused_while_rollwave_is_connected(
    scheduler_and_workers: tuple[str, subprocess.Popen[bytes]], case: tuple[Case, Prepared]
) -> None:
    """Workers started by `dask worker` run Dask's statistical profiler (its default config):
    paused while a rollwave client is connected, for as long as any is, resumed after."""
    from distributed import Client

    from planner.app.dask_plugin import profiler_running

    address, _ = scheduler_and_workers
    with Client(address, set_as_default=False) as watcher:  # type: ignore[no-untyped-call]

        def running() -> list[bool]:
            return sorted(watcher.run(profiler_running).values())

        # the fixture's own connection has come and gone: resumed
        assert running() == [True, True]
        with connect(address) as c:
            assert running() == [False, False]
            with connect(address):
                assert running() == [False, False]
            assert running() == [False, False]  # the first client is still connected
            runs, _ = distributed.run_many(c, case[1], 4, 3)
            assert len(runs) == 4
        assert running() == [True, True]


def _housekeeping(dask_worker: Any) -> dict[str, Any]:
    pcs = dask_worker.periodic_callbacks
    return {
        "profiler": "profile" in pcs,
        "memory monitor ms": pcs["memory_monitor"].callback_time,
        "tick ms": pcs["tick"].callback_time,
        "system monitor ms": pcs["monitor"].callback_time,
        "MALLOC_TRIM_THRESHOLD_": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
    }


@pytest.mark.slow
def test_workers_started_with_the_documented_config_file_keep_house_as_a_local_cluster(
    tmp_path: Path,
) -> None:
    """docs/simulation.md's Dask config file for workers, in DASK_CONFIG: `dask worker` starts
    without the profiler, with the monitors and environment of a local cluster's workers."""
    from distributed import Client

    text = (ROOT / "docs" / "simulation.md").read_text()
    section = text.split("**Workers for simulation work.**", 1)[1]
    (tmp_path / "rollwave.yaml").write_text(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    env = {**os.environ, "DASK_CONFIG": str(tmp_path)}
    with started_cluster(1, env) as (address, _), connect("local:1") as local:
        expected = list(local.client.run(_housekeeping).values())
        with Client(address, set_as_default=False) as c:  # type: ignore[no-untyped-call]
            assert list(c.run(_housekeeping).values()) == expected
    assert expected == [
        {
            "profiler": False,
            "memory monitor ms": 1000,
            "tick ms": 1000,
            "system monitor ms": 5000,
            "MALLOC_TRIM_THRESHOLD_": None,
        }
    ]


def test_an_unreachable_scheduler_is_exit_4_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    c = bundled()
    plan = tmp_path / "plan.json"
    save_plan(c.plan, plan)
    inv, pol = str(example("small.json")), str(example("small-policy.yaml"))
    address = f"tcp://127.0.0.1:{port}"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code, err = exit_of(
            ["simulate", inv, str(plan), "--runs", "5", "--cluster", address], capsys
        )
        assert code == ExitCode.CLOUD and int(code) == 4
        assert err.startswith(f"error: cannot reach the Dask scheduler at {address}")
        assert "Traceback" not in err and err.count("\n") == 1
        code, err = exit_of(
            ["whatif", inv, "--policy", pol, "--vary", "failures=0,1", "--cluster", address],
            capsys,
        )
        assert code == ExitCode.CLOUD and "cannot reach the Dask scheduler" in err


def test_a_scheduler_without_workers_is_a_cluster_error() -> None:
    d = distributed.require_dask()
    before = children()
    with (
        d.LocalCluster(
            n_workers=0,
            dashboard_address=None,
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        ) as empty,
        pytest.raises(ClusterError, match="has no workers") as e,
        connect(empty.scheduler_address, timeout_s=1),
    ):
        pass
    assert e.value.exit_code == ExitCode.CLOUD
    assert no_children_left(before) == []


@pytest.mark.slow
def test_workers_with_another_rollwave_are_refused_before_any_work(tmp_path: Path) -> None:
    """A worker whose rollwave says another version (set by a Dask preload script at its start,
    as another install would) stops the command before any task, naming it."""
    other = tmp_path / "other_version.py"
    other.write_text("import planner\nplanner.__version__ = '0.0.0+other'\n")
    d = distributed.require_dask()
    before = children()
    with (
        d.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            preload=[str(other)],
            dashboard_address=None,
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        ) as lc,
        pytest.raises(ClusterError, match=r"runs another rollwave") as e,
        connect(lc.scheduler_address, timeout_s=30),
    ):
        pass
    assert "has 0.0.0+other" in str(e.value) and "the scheduler has" not in str(e.value)
    assert no_children_left(before) == []
