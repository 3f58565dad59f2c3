"""Pipelined execution: `python -m benchmarks.pipeline_bench [--before ROLLWAVE] [--quick] [--big]`.

Plans each cloud with `rollwave plan` (the planner as shipped: CP-SAT, predictions, durations and,
run pipelined, the pass that plans for it) with this checkout and, with `--before`, another
checkout's rollwave (today's main), then simulates each plan with this checkout's simulator,
pipelined (policy `execution: pipelined`, admission control) and lock-step, over `--seeds` runs.
Clouds: the bundled example, generated clouds of 100 and 1,000 hosts (seed 0, default mixes,
k = 1), and with `--unseen` a cloud the planner was not tuned on (300 hosts, seed 7, the large
flavor mix, utilisation 0.6).

Per plan, one row: the simulated makespan over the lower bound, pipelined and lock-step (means
over the seeds), the pipelined / lock-step ratio, the invariant breaches over every run (the
simulator checks capacity, anti-affinity, HA groups and headroom at every event), whether `check`
accepts the plan, hosts left not upgraded, migrations per moved VM, the plan's predicted
pipelined makespan over the simulated one, and the planning CPU time. Issue 16's target:
pipelined makespan / lower bound <= 1.10.

The lower bound is the simulator's (`lower_bound_s`, from each run's own upgrade times,
failure-free): max_h p_h, sum p_h over the hosts that may be down at once, bytes; and with
`policy.first`, the chain it forces on every plan, lock-step or pipelined: no other host may
enter maintenance before the last host `first` selects has, and those go at most c at once (the
wave size, their HA groups' members less min_available), so the ceil(n / c) - 1 smallest of
their p_h pass before any other host starts (docs/simulation.md, "The lower bound"). The
example's and generated clouds' controllers (first, an HA group of 3 with min_available 2) go
one at a time: two controllers' maintenance before the first compute host. "/ LB w/o first" is
the same runs over the bound without that chain (as the simulator gave it before).

`--big` adds the speed target: one run of the ~100,000-migration plan of `sim_bench` (greedy),
pipelined against lock-step, CPU time (medians of 3; target <= ~1.2x).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

from benchmarks.cache import cached
from planner.checker import check_plan
from planner.formats import load_inventory, load_plan, load_policy, save_inventory, save_policy
from planner.generate import GenerateSpec, default_policy, generate
from planner.inventory import Inventory
from planner.plan import Plan
from sim.engine import SimResult, prepare, simulate
from sim.lowerbound import lower_bound
from sim.model import DEFAULT
from sim.prepare import Prepared
from solver.greedy import greedy_plan

HERE = Path(sys.executable).with_name("rollwave")


def with_execution(plan: Plan, execution: str) -> Plan:
    return dataclasses.replace(
        plan,
        policy=dataclasses.replace(plan.policy, execution=execution),  # type: ignore[arg-type]
    )


def without_first(prep: Prepared, res: SimResult) -> float:
    """The run's lower bound without policy.first's chain (upgrade times from the run)."""
    up = [0.0] * len(prep.hosts)
    for h, (_, up_at, end) in res.host_times.items():
        if res.host_status.get(h) != "upgraded" or math.isnan(up_at) or math.isnan(end):
            return res.lower_bound_s  # not failure-free: the bound as it is
        up[h] = end - up_at - prep.model.enable_s
    return lower_bound(dataclasses.replace(prep, lb_first=(), lb_first_chain=0), up)


def _run(cmd: list[str]) -> tuple[int, float, str]:
    """Exit code, children's CPU seconds, stdout."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if p.returncode != 0:
        print(p.stderr[-2000:], file=sys.stderr)
    return p.returncode, cpu, p.stdout


def clouds(d: Path, quick: bool, unseen: bool) -> list[tuple[str, Path, Path]]:
    ex = resources.files("planner") / "examples"
    out = [("example", Path(str(ex / "small.json")), Path(str(ex / "small-policy.yaml")))]
    gens = [("generated 100", GenerateSpec(hosts=100, seed=0))]
    if not quick:
        gens.append(("generated 1,000", GenerateSpec(hosts=1000, seed=0)))
    if unseen:
        mix = GenerateSpec(hosts=300, seed=7, utilisation=0.6, flavor_mix="large")
        gens.append(("unseen 300", mix))
    for name, spec in gens:
        inv, pol = d / f"g{spec.hosts}.json", d / f"g{spec.hosts}-policy.json"
        save_inventory(generate(spec), inv)
        save_policy(default_policy(spec), pol)
        out.append((name, inv, pol))
    return out


def measure(inv: Inventory, plan: Plan, seeds: int) -> dict[str, Any]:
    got: dict[str, Any] = {"check": check_plan(inv, plan).ok}
    for ex in ("lockstep", "pipelined"):
        prep = prepare(inv, with_execution(plan, ex), DEFAULT, check=False)
        runs = [simulate(prep, s, record=False) for s in range(seeds)]
        got[ex] = {
            "makespan_s": statistics.mean(r.makespan_s for r in runs),
            "lb": statistics.mean(r.makespan_s / r.lower_bound_s for r in runs),
            "lb_plain": statistics.mean(r.makespan_s / without_first(prep, r) for r in runs),
            "breaches": sum(sum(r.breach_counts.values()) for r in runs),
            "not_upgraded": max(
                sum(1 for s in r.host_status.values() if s != "upgraded") for r in runs
            ),
            "stalled": any(not r.completed for r in runs),
        }
    return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default=None, help="another checkout's rollwave to compare with")
    ap.add_argument("--seeds", type=int, default=3, help="simulated runs per plan and mode")
    ap.add_argument("--quick", action="store_true", help="the example and 100 hosts only")
    ap.add_argument("--unseen", action="store_true", help="also a 300-host cloud of another mix")
    ap.add_argument("--big", action="store_true", help="also the speed of the 100,000 plan")
    args = ap.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} (1 min)", flush=True)
    head = [
        "cloud",
        "planner",
        "pipelined / LB",
        "/ LB w/o first",
        "lock-step / LB",
        "/ LB w/o first",
        "pipe / lock",
        "breaches",
        "check",
        "not upgraded",
        "migr/moved VM",
        "predicted / sim",
        "plan CPU",
    ]
    rows = [head]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for name, inv_path, pol_path in clouds(d, args.quick, args.unseen):
            inv = load_inventory(str(inv_path))
            load_policy(str(pol_path))
            who = [("after", str(HERE))] + ([("before", args.before)] if args.before else [])
            for tag, exe in who:
                out = d / f"{tag}.json"
                cmd = [exe, "plan", str(inv_path), "--policy", str(pol_path), "-o", str(out)]
                rc, cpu, _ = _run([*cmd, "--format", "json"])
                if rc != 0:
                    print(f"{name}: {tag} plan exited {rc}")
                    return 1
                plan = load_plan(str(out))
                r = measure(inv, plan, args.seeds)
                pipe, lock = r["pipelined"], r["lockstep"]
                pred = (plan.summary.get("predicted_makespan_s") or {}).get("pipelined")
                rows.append(
                    [
                        name,
                        tag,
                        f"{pipe['lb']:.3f}" + (" (stalled)" if pipe["stalled"] else ""),
                        f"{pipe['lb_plain']:.3f}",
                        f"{lock['lb']:.3f}" + (" (stalled)" if lock["stalled"] else ""),
                        f"{lock['lb_plain']:.3f}",
                        f"{pipe['makespan_s'] / lock['makespan_s']:.3f}",
                        f"{pipe['breaches']} ({lock['breaches']})",
                        "valid" if r["check"] else "INVALID",
                        f"{pipe['not_upgraded']}",
                        f"{plan.summary.get('migrations_per_moved_vm', 0):.4f}",
                        f"{pred / pipe['makespan_s']:.3f}" if pred else "-",
                        f"{cpu:.1f} s",
                    ]
                )
                print(f"  ({name}, {tag}: planned in {cpu:.1f} s CPU)", flush=True)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    print(f"target: pipelined makespan / lower bound <= 1.10 (issue 16); {args.seeds} seeds")
    print("breaches: pipelined (lock-step), over every run; load now", end=" ")
    print(f"{os.getloadavg()[0]:.2f}")
    for row in rows:
        cells = zip(row, widths, strict=True)
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(cells)))
    if args.big:
        for k, v in big_speed():
            print(f"{k:<28} {v}")
    return 0


def big_speed() -> list[tuple[str, str]]:
    def make() -> tuple[Inventory, Plan]:  # sim_bench's big plan
        spec = GenerateSpec(hosts=3200, vms_per_host=31.0, utilisation=0.5, seed=0)
        inv = generate(spec)
        return inv, greedy_plan(inv, default_policy(spec))

    inv, plan = cached("pipeline-big-3200", make)  # keyed by the planner's source
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


if __name__ == "__main__":
    raise SystemExit(main())
