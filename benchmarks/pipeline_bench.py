"""Pipelined execution: `python -m benchmarks.pipeline_bench [--quick] [--big]`.

Prints one table: per cloud (the bundled example, generated clouds of 100 and 1,000 hosts with the
default mixes, k = 1), the simulated makespan over the lower bound with pipelining (policy
`execution: pipelined`, admission control) and lock-step, the pipelined / lock-step ratio, the
invariant breaches of the pipelined run (the simulator checks capacity, anti-affinity, HA groups
and headroom at every event), whether `check` accepts the plan, and admission's refusals. Issue
16's target: pipelined makespan / lower bound <= 1.10.

Plans come from the greedy planner (cached under $TMPDIR/rollwave-bench). Each cloud is run as
planned and "remedied": every live migration the model predicts never to finish by itself (Nova's
timeout aborts it, leaving its host not upgraded) given `force_complete_after_s` (600 s), as the
planner does with `non_converging: force-complete`.

`--big` adds the speed target: one run of the ~100,000-migration plan of `sim_bench`, pipelined
against lock-step, CPU time (medians of 3; target <= ~1.2x).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import statistics
import tempfile
import time
from importlib import resources
from pathlib import Path

from planner.checker import check_plan
from planner.formats import load_inventory, load_policy
from planner.generate import GenerateSpec, default_policy, generate
from planner.inventory import Inventory
from planner.plan import Plan
from sim.engine import OUTCOME_NAMES, prepare, simulate
from sim.model import DEFAULT
from solver.greedy import greedy_plan

CACHE = Path(os.environ.get("TMPDIR", tempfile.gettempdir())) / "rollwave-bench"
FORCE_AFTER_S = 600.0


def _cached(name: str, make: object) -> tuple[Inventory, Plan]:
    CACHE.mkdir(parents=True, exist_ok=True)
    f = CACHE / f"pipeline-{name}.pickle"
    if f.exists():
        with f.open("rb") as fh:
            got: tuple[Inventory, Plan] = pickle.load(fh)
            return got
    got = make()  # type: ignore[operator]
    with f.open("wb") as fh:
        pickle.dump(got, fh)
    return got


def example() -> tuple[Inventory, Plan]:
    ex = resources.files("planner") / "examples"
    inv = load_inventory(str(ex / "small.json"))
    pol = load_policy(str(ex / "small-policy.yaml"))
    return inv, greedy_plan(inv, pol, inventory_sha256=inv.digest or "")


def generated(hosts: int) -> tuple[Inventory, Plan]:
    spec = GenerateSpec(hosts=hosts, seed=0)
    inv = generate(spec)
    return inv, greedy_plan(inv, default_policy(spec), inventory_sha256=inv.digest or "")


def with_execution(plan: Plan, execution: str) -> Plan:
    return dataclasses.replace(
        plan,
        policy=dataclasses.replace(plan.policy, execution=execution),  # type: ignore[arg-type]
    )


def remedied(inv: Inventory, plan: Plan) -> tuple[Plan, int]:
    """The plan with force_complete_after_s on every live migration Nova's timeout would abort."""
    prep = prepare(inv, with_execution(plan, "lockstep"), DEFAULT, check=False)
    bad = {
        (prep.inv.vms[prep.m_vm[mi]].id, prep.hosts[prep.m_src[mi]])
        for mi in range(len(prep.m_vm))
        if not prep.m_cold[mi] and OUTCOME_NAMES[prep.m_outcome[mi]] in ("aborted", "never")
    }
    waves = tuple(
        dataclasses.replace(
            w,
            migrations=tuple(
                dataclasses.replace(
                    m, force_complete_after_s=FORCE_AFTER_S, remedy="force-complete"
                )
                if (m.vm, m.src) in bad
                else m
                for m in w.migrations
            ),
        )
        for w in plan.waves
    )
    return dataclasses.replace(plan, waves=waves), len(bad)


def row(name: str, inv: Inventory, plan: Plan) -> list[str]:
    valid = check_plan(inv, plan).ok
    out = {}
    for ex in ("lockstep", "pipelined"):
        prep = prepare(inv, with_execution(plan, ex), DEFAULT, check=False)
        out[ex] = (prep, simulate(prep, 0, record=False))
    lock, pipe = out["lockstep"][1], out["pipelined"][1]
    lb = pipe.lower_bound_s
    refused = sum(pipe.refusals.values())
    not_up = sum(1 for s in pipe.host_status.values() if s != "upgraded")
    return [
        name,
        f"{len(inv.hosts):,}",
        f"{len(out['pipelined'][0].m_vm):,}",
        f"{lb / 3600:.2f} h",
        f"{lock.makespan_s / lb:.3f}" + ("" if lock.completed else " (stalled)"),
        f"{pipe.makespan_s / lb:.3f}" + ("" if pipe.completed else " (stalled)"),
        f"{pipe.makespan_s / lock.makespan_s:.3f}",
        f"{sum(pipe.breach_counts.values())} ({sum(lock.breach_counts.values())})",
        "valid" if valid else "INVALID",
        str(not_up),
        str(refused),
    ]


def big_speed() -> list[tuple[str, str]]:
    def make() -> tuple[Inventory, Plan]:  # sim_bench's big plan
        spec = GenerateSpec(hosts=3200, vms_per_host=31.0, utilisation=0.5, seed=0)
        inv = generate(spec)
        return inv, greedy_plan(inv, default_policy(spec))

    inv, plan = _cached("big-3200", make)
    rows = []
    cpu = {}
    for ex in ("lockstep", "pipelined"):
        prep = prepare(inv, with_execution(plan, ex), DEFAULT, check=False)
        simulate(prep, 1, record=False)  # fills the per-share cache
        times = []
        for _ in range(3):
            c0 = time.process_time()
            res = simulate(prep, 1, record=False)
            times.append(time.process_time() - c0)
        cpu[ex] = statistics.median(times)
        rows.append(
            (
                f"one run, {ex}",
                f"{cpu[ex]:.3f} s CPU ({len(prep.m_vm):,} migrations, makespan "
                f"{res.makespan_s / 3600:.2f} h, {res.events:,} events)",
            )
        )
    rows.append(("pipelined / lock-step CPU", f"{cpu['pipelined'] / cpu['lockstep']:.2f}x"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the example and 100 hosts only")
    ap.add_argument("--big", action="store_true", help="also the speed of the 100,000 plan")
    args = ap.parse_args()
    clouds = [("example", example), ("generated 100", lambda: generated(100))]
    if not args.quick:
        clouds.append(("generated 1,000", lambda: generated(1000)))
    head = [
        "cloud",
        "hosts",
        "migrations",
        "lower bound",
        "lock-step / LB",
        "pipelined / LB",
        "pipe / lock",
        "breaches (lock-step)",
        "check",
        "not upgraded",
        "refusals",
    ]
    rows = [head]
    for name, make in clouds:
        t0 = time.perf_counter()
        inv, plan = _cached(name.replace(" ", "-").replace(",", ""), make)
        rows.append(row(f"{name}, as planned", inv, plan))
        fixed, n = remedied(inv, plan)
        rows.append(row(f"{name}, {n} remedied", inv, fixed))
        print(f"  ({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    print("target: pipelined makespan / lower bound <= 1.10 (issue 16)")
    for r in rows:
        cells = zip(r, widths, strict=True)
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(cells)))
    if args.big:
        for k, v in big_speed():
            print(f"{k:<28} {v}")


if __name__ == "__main__":
    main()
