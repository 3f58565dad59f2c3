"""The executor's own costs, apart from the cloud's: the journal, and the state machine with its
per-wave re-checks (through the dry run, whose model of the cloud answers at once).

    python -m benchmarks exec_bench -- [--quick] [--sizes 100,1000] [--records 20000]
    python -m benchmarks exec_bench -- --sandbox        # also a 20-host run on the Nova sandbox
    python -m benchmarks exec_bench -- --pipeline [--jitter 0,20] [--sample-every 2]

Prints tables: journal records written per second (each flushed and fsync'd) and replayed per
second; for generated clouds, the dry run's wall and CPU seconds in total, per wave (the re-check:
a snapshot of the model, the planning view, the checker on the remaining plan, the ETA's
simulation) and per migration, and how many calls it makes; with --sandbox, a real run's wall
time, time per wave and per migration, and API calls per migration; with --pipeline, the same
20-host plan executed lock-step and pipelined on fresh sandboxes (upgrades of equal length, and
of lengths spread per host: `--jitter`), the live cloud's headroom sampled from outside every
few seconds during both, and the wall-clock ratio (exit 1 if a sample breached).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from planner.app.execute import SimEstimator, SolverReplanner
from planner.executor.cloud import DryRunCloud
from planner.executor.hooks import DryRunHooks, Notifier
from planner.executor.journal import Journal, RunState, read_records
from planner.executor.run import ExecOptions, Executor
from planner.executor.ui import Reporter
from planner.generate import GenerateSpec, default_policy, generate
from sim.model import DEFAULT
from solver.greedy import greedy_plan


def journal_bench(n: int, root: Path) -> dict[str, float]:
    p = root / "bench.journal.jsonl"
    j = Journal(p)
    j.write({"ev": "header", "format_version": "1.0", "kind": "rollwave-journal"})
    t0 = time.perf_counter()
    for i in range(n):
        step = f"w1/migrate/vm-{i}/1"
        ev = "intent" if i % 2 == 0 else "done"
        j.write({"ev": ev, "op": "migrate", "step": step, "wave": 1, "vm": f"vm-{i}", "host": "h"})
    write_s = time.perf_counter() - t0
    j.close()
    t1 = time.perf_counter()
    st = RunState.replay(read_records(p))
    replay_s = time.perf_counter() - t1
    assert len(st.done_moves) == n // 2
    return {"records": n, "write_s": write_s, "replay_s": replay_s, "bytes": p.stat().st_size}


def dry_bench(hosts: int) -> dict[str, Any]:
    spec = GenerateSpec(hosts=hosts, vms_per_host=10, seed=1, controllers=3)
    inv = generate(spec)
    pol = default_policy(spec)
    plan = greedy_plan(inv, pol)
    calls: list[str] = []
    cloud = DryRunCloud(inv, calls.append, pol.target_version)
    ex = Executor(
        plan,
        "b" * 64,
        cloud,
        opts=ExecOptions(upgrade_command="true"),
        reporter=Reporter(Console(file=open(os.devnull, "w")), quiet=True),  # noqa: SIM115
        hooks=DryRunHooks(cloud.run_hook),
        notify=Notifier(None, None, lambda s: None),
        replanner=SolverReplanner(),
        estimator=SimEstimator(DEFAULT),
        journal_path=None,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    res = ex.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert res.status == "completed", res.reason
    migrations = sum(len(w.migrations) for w in plan.waves)
    return {
        "hosts": len(inv.hosts),
        "vms": len(inv.vms),
        "waves": len(plan.waves),
        "migrations": migrations,
        "wall_s": wall,
        "cpu_s": cpu,
        "per_wave_ms": 1000 * wall / max(len(plan.waves), 1),
        "per_migration_ms": 1000 * wall / max(migrations, 1),
        "calls": len(calls),
    }


def sandbox_bench(root: Path) -> dict[str, Any]:
    """One 20-host plan executed on the sandbox (a few minutes)."""
    from planner import formats
    from planner.checker import check_plan
    from planner.executor.cloud import LiveCloud
    from planner.executor.hooks import Hooks
    from planner.openstack import invio, mapping, snapshot
    from planner.openstack.connect import Api, connect
    from planner.openstack.sandbox import manager

    os.environ["OS_CLIENT_CONFIG_FILE"] = str(root / "clouds.yaml")
    spec = GenerateSpec(hosts=20, vms_per_host=1.5, utilisation=0.4, controllers=0, seed=0)
    data = formats.inventory_to_dict(generate(spec))
    d = root / "state"
    sb = manager.start(data, directory=d, migration_seconds=0.5, exit_with_parent=True)
    try:
        m = mapping.load(sb.mapping_file)
        api = Api(connect(manager.CLOUD_NAME))
        snap = root / "inv.json"
        invio.write(snap, snapshot.collect(api, manager.CLOUD_NAME, m)[0])
        inv = formats.load_inventory(snap)
        pol = default_policy(spec).with_changes(max_hosts_per_wave=4)
        plan = greedy_plan(inv, pol, inventory_sha256=inv.digest or "")
        assert check_plan(inv, plan).ok
        rollwave = str(Path(sys.executable).with_name("rollwave"))
        cmd = f"{rollwave} sandbox ctl upgrade {{host}} --version {pol.target_version}"
        env = {"ROLLWAVE_SANDBOX_DIR": str(d)}
        os.environ.update(env)
        calls0 = api.calls
        ex = Executor(
            plan,
            "c" * 64,
            LiveCloud(api, manager.CLOUD_NAME, m),
            opts=ExecOptions(upgrade_command=cmd, poll_s=0.5, retry_delay_s=1.0),
            reporter=Reporter(Console(file=open(os.devnull, "w")), quiet=True),  # noqa: SIM115
            hooks=Hooks(root / "logs"),
            notify=Notifier(None, None, lambda s: None),
            replanner=SolverReplanner(),
            journal_path=root / "run.journal.jsonl",
        )
        t0 = time.perf_counter()
        res = ex.run()
        wall = time.perf_counter() - t0
        assert res.status == "completed", res.reason
        migrations = sum(len(w.migrations) for w in plan.waves)
        secs = list(res.state.wave_seconds().values())
        mig_s = [
            r["seconds"]
            for r in read_records(root / "run.journal.jsonl")
            if r.get("op") == "migrate" and r["ev"] == "done" and "seconds" in r
        ]
        return {
            "waves": len(plan.waves),
            "migrations": migrations,
            "wall_s": wall,
            "wave_median_s": statistics.median(secs),
            "migration_median_s": statistics.median(mig_s),
            "calls_per_migration": (api.calls - calls0) / max(migrations, 1),
        }
    finally:
        manager.stop(d, remove_cloud_entry=False)


class LiveSampler:
    """Headroom of the live cloud, sampled from outside (a snapshot every `every` seconds, on a
    connection of its own) while a run goes on: hosts in maintenance are disabled, so they
    count as down, as the rule wants. Keeps the least slack seen per group and class."""

    def __init__(self, cloud: str, mapping_file: str, policy: Any, every: float) -> None:
        import threading

        self.cloud, self.mapping_file, self.policy, self.every = cloud, mapping_file, policy, every
        self.samples = 0
        self.breaches: list[str] = []
        self.min_slack: dict[str, int] = {}
        self.max_down = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LiveSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        from planner import formats
        from planner.capacity import CapacityModel, headroom
        from planner.openstack import mapping, snapshot
        from planner.openstack.connect import Api, connect

        api = Api(connect(self.cloud))
        m = mapping.load(self.mapping_file)
        while not self._stop.is_set():
            inv = formats.inventory_from_dict(snapshot.collect(api, self.cloud, m)[0])
            self.samples += 1
            down = sum(1 for h in inv.hosts if h.is_compute and not h.enabled)
            self.max_down = max(self.max_down, down)
            for r in headroom(CapacityModel(inv), self.policy.headroom):
                key = f"{r.group}/{r.rc}"
                self.min_slack[key] = min(self.min_slack.get(key, r.slack), r.slack)
                if not r.ok:
                    self.breaches.append(f"{inv.taken_at} {key}: {r.free} < {r.required}")
            self._stop.wait(self.every)


def upgrade_command(hosts: list[str], version: str, jitter_s: float) -> str:
    """The sandbox's upgrade (nova-compute restarted at `version`), after a pause of 0 to
    `jitter_s` seconds fixed per host (its name's CRC): upgrades that do not all take as long,
    the same in every run."""
    import zlib

    rollwave = str(Path(sys.executable).with_name("rollwave"))
    cmd = f"{rollwave} sandbox ctl upgrade {{host}} --version {version}"
    if jitter_s <= 0:
        return cmd
    cases = " ".join(
        f"{h}) S={jitter_s * (zlib.crc32(h.encode()) % 1000) / 1000:.1f};;" for h in hosts
    )
    return f"S=0; case {{host}} in {cases} esac; sleep $S; {cmd}"


def pipeline_run(root: Path, execution: str, jitter_s: float, every: float) -> dict[str, Any]:
    """A fresh sandbox of the same 20-host cloud, planned (the same plan every time: the greedy
    is deterministic) and executed `execution`, its headroom sampled from outside."""
    from planner import formats
    from planner.checker import check_plan
    from planner.executor.cloud import LiveCloud
    from planner.executor.hooks import Hooks
    from planner.openstack import invio, mapping, snapshot
    from planner.openstack.connect import Api, connect
    from planner.openstack.sandbox import manager

    os.environ["OS_CLIENT_CONFIG_FILE"] = str(root / "clouds.yaml")
    spec = GenerateSpec(hosts=20, vms_per_host=1.5, utilisation=0.4, controllers=0, seed=0)
    data = formats.inventory_to_dict(generate(spec))
    name = f"{execution}-{jitter_s:g}"
    d = root / f"state-{name}"
    sb = manager.start(data, directory=d, migration_seconds=0.5, exit_with_parent=True)
    try:
        m = mapping.load(sb.mapping_file)
        api = Api(connect(manager.CLOUD_NAME))
        snap = root / "inv.json"
        invio.write(snap, snapshot.collect(api, manager.CLOUD_NAME, m)[0])
        inv = formats.load_inventory(snap)
        pol = default_policy(spec).with_changes(max_hosts_per_wave=4, execution=execution)
        plan = greedy_plan(inv, pol, inventory_sha256=inv.digest or "")
        assert check_plan(inv, plan).ok
        cmd = upgrade_command(list(plan.hosts), str(pol.target_version), jitter_s)
        os.environ["ROLLWAVE_SANDBOX_DIR"] = str(d)
        journal = root / f"{name}.journal.jsonl"
        before = sum(1 for h in inv.hosts if h.is_compute and not h.enabled)
        ex = Executor(
            plan,
            "d" * 64,
            LiveCloud(api, manager.CLOUD_NAME, m),
            opts=ExecOptions(upgrade_command=cmd, poll_s=0.5, retry_delay_s=1.0),
            reporter=Reporter(Console(file=open(os.devnull, "w")), quiet=True),  # noqa: SIM115
            hooks=Hooks(root / f"logs-{name}"),
            notify=Notifier(None, None, lambda s: None),
            replanner=SolverReplanner(),
            journal_path=journal,
        )
        with LiveSampler(manager.CLOUD_NAME, str(sb.mapping_file), pol, every) as sampler:
            t0 = time.perf_counter()
            res = ex.run()
            wall = time.perf_counter() - t0
        assert res.status == "completed", res.reason
        recs = read_records(journal)
        refusals = sum(1 for r in recs if r.get("op") == "admit" and not r.get("admitted"))
        return {
            "execution": execution,
            "waves": [tuple(w.hosts) for w in plan.waves],
            "migrations": sum(len(w.migrations) for w in plan.waves),
            "wall_s": wall,
            "samples": sampler.samples,
            "breaches": sampler.breaches,
            "min_slack": min(((v, k) for k, v in sampler.min_slack.items()), default=(0, "-")),
            "max_down": sampler.max_down - before,  # disabled by the run (not before it)
            "limit": pol.max_hosts_per_wave,
            "refusals": refusals,
            "upgraded": len(res.state.upgraded),
        }
    finally:
        manager.stop(d, remove_cloud_entry=False)


def pipeline_table(root: Path, jitters: list[float], every: float) -> bool:
    """Lock-step then pipelined, per jitter; a table; True when no sample breached."""
    print(
        "| upgrade jitter | execution | hosts | migrations | wall | headroom samples | "
        "breaches | least slack (group/class) | most hosts disabled by the run (limit) | "
        "refusals journaled | pipelined / lock-step |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    for jitter in jitters:
        runs = [pipeline_run(root, e, jitter, every) for e in ("lockstep", "pipelined")]
        assert runs[0]["waves"] == runs[1]["waves"], "not the same plan"
        for r in runs:
            ok = ok and not r["breaches"]
            ratio = runs[1]["wall_s"] / runs[0]["wall_s"] if r is runs[1] else None
            print(
                f"| {jitter:g} s | {r['execution']} | {r['upgraded']} | {r['migrations']} | "
                f"{r['wall_s']:.1f} s | {r['samples']} | {len(r['breaches'])} | "
                f"{r['min_slack'][0]:,} ({r['min_slack'][1]}) | {r['max_down']} ({r['limit']}) | "
                f"{r['refusals']} | " + (f"{ratio:.3f} |" if ratio is not None else "|"),
                flush=True,
            )
            for b in r["breaches"][:5]:
                print(f"  breach: {b}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(prog="benchmarks.exec_bench")
    ap.add_argument("--quick", action="store_true", help="small sizes only")
    ap.add_argument("--sizes", default="100,1000", help="generated clouds' host counts")
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--sandbox", action="store_true", help="also a 20-host run on the sandbox")
    ap.add_argument(
        "--pipeline",
        action="store_true",
        help="only: a 20-host plan on the sandbox, lock-step then pipelined, headroom sampled",
    )
    ap.add_argument(
        "--jitter",
        default="0,20",
        help="--pipeline: upgrades take 0 to this many seconds more, per host (comma list)",
    )
    ap.add_argument("--sample-every", type=float, default=2.0, help="--pipeline: seconds")
    a = ap.parse_args()
    if a.pipeline:
        with tempfile.TemporaryDirectory() as tmp:
            jitters = [float(x) for x in a.jitter.split(",")]
            return 0 if pipeline_table(Path(tmp), jitters, a.sample_every) else 1
    sizes = [100] if a.quick else [int(s) for s in a.sizes.split(",")]
    records = 2000 if a.quick else a.records
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        j = journal_bench(records, root)
        print("| journal records | write (fsync each) | records/s | replay | records/s | bytes |")
        print("|---|---|---|---|---|---|")
        print(
            f"| {j['records']:,} | {j['write_s']:.2f} s | {j['records'] / j['write_s']:,.0f} | "
            f"{j['replay_s']:.2f} s | {j['records'] / j['replay_s']:,.0f} | {j['bytes']:,} |"
        )
        print()
        print(
            "| hosts | VMs | waves | migrations | dry run wall | CPU | per wave | "
            "per migration | calls printed |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for n in sizes:
            r = dry_bench(n)
            print(
                f"| {r['hosts']:,} | {r['vms']:,} | {r['waves']} | {r['migrations']:,} | "
                f"{r['wall_s']:.1f} s | {r['cpu_s']:.1f} s | {r['per_wave_ms']:,.0f} ms | "
                f"{r['per_migration_ms']:.1f} ms | {r['calls']:,} |",
                flush=True,
            )
        if a.sandbox:
            s = sandbox_bench(root)
            print()
            print(
                "| sandbox: waves | migrations | wall | wave (median) | migration (median) | "
                "API calls per migration |"
            )
            print("|---|---|---|---|---|---|")
            print(
                f"| {s['waves']} | {s['migrations']} | {s['wall_s']:.0f} s | "
                f"{s['wave_median_s']:.1f} s | {s['migration_median_s']:.2f} s | "
                f"{s['calls_per_migration']:.1f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
