"""Plans that finish: the planning targets of "migration physics in the planner".

    python -m benchmarks.physics_bench                     # 30, 100 and 1,000 hosts
    python -m benchmarks.physics_bench --sizes 30,100 --before ../base/.venv/bin/rollwave
    python -m benchmarks.physics_bench --sizes "" --windows 200   # 16's windows target only

Clouds: `rollwave generate --hosts N --seed S` (the default mixes) with its policy (N+1 per AZ,
k = 1). Each plan is made by `rollwave plan` in a process of its own, this checkout's and, with
`--before`, another checkout's (today's planner), interleaved, `--repeat` times each; time is
the median wall clock and the children's CPU seconds (compare these on a shared machine).

Columns, per cloud:
- bound / lower bound: the plan's predicted lock-step makespan (its waves' `predicted_s` one
  after another: each its slowest host's expected maintenance, upgrade times drawn) against
  `makespan_lower_bound_s` and `lockstep_lower_bound_s` (no plan, no lock-step plan, finishes
  sooner; they count each upgrade at its median); for the plan of `--before`, its waves
  priced with the same predictions;
- a lower bound on any lock-step plan's expected makespan with upgrade times drawn: a wave
  lasts its slowest upgrade, and the slowest of 50 is far above the median (why 1.25x of the
  median-based bounds is out of reach with big waves);
- the best any lock-step plan with these wave sizes could do if hosts could go in any wave
  (hosts sorted by their maintenance, the longest together, priced as the plan's waves): what
  the waves' sizes and the spread of upgrade times alone allow, whatever the placement of VMs;
- migrations per moved VM (before / after), planning time (before / after, and the ratio);
- remedies, and `rollwave simulate --strict` on the plan: its exit code, the simulated
  makespan against the plan's bound (within 5% is the target), hosts not upgraded; and with
  `--sim-runs N` (default 20) the mean and median of N simulated runs against it: the bound is
  an expectation over drawn upgrade times, one run is one draw.

First (`--windows HOSTS`, default 200): a cloud planned with nightly 8-hour windows (`plan
--start`), its number of windows against their lower bound (every host's least maintenance,
spread over the hosts that may be down at once, in 8-hour windows).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(sys.executable).parent / "rollwave"


def _run(cmd: list[str]) -> tuple[int, float, float, str]:
    """Exit code, wall seconds, children's CPU seconds, stdout."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return p.returncode, wall, cpu, p.stdout


def _priced(inv_path: Path, pol_path: Path, plan_path: Path) -> dict[str, float]:
    """A plan's waves priced with this checkout's predictions (default model): its lock-step
    bound, and the best lock-step sum its wave sizes allow (both with upgrade times drawn)."""
    from planner.app import predict
    from planner.formats import load_inventory, load_plan, load_policy
    from sim.model import DEFAULT
    from solver.durations import host_durations

    inv, pol, plan = load_inventory(inv_path), load_policy(pol_path), load_plan(plan_path)
    ph = predict.predict(inv, pol, DEFAULT)
    remedies = predict.choose_remedies(inv, pol, ph.est)
    how = {m.vm: predict.how_of(m, remedies) for _, m in plan.migrations()}
    dur = host_durations(inv, plan, ph.est, how, ph.shutdown_s)
    bound = sum(predict.wave_s(ph, inv, w, remedies)[0] for w in plan.waves)
    return {"bound": bound, "ideal": _sorted_waves(inv, plan, dur, ph)}


def _drawn_lockstep_bound(inv_path: Path, pol_path: Path) -> float:
    """A lower bound on any lock-step plan's expected makespan with upgrade times drawn (the
    default model): compute hosts go at most m a wave (max_hosts_per_wave, and what headroom
    lets down at once), a wave lasts at least its slowest upgrade plus the least of its hosts'
    other steps, and E[slowest of n upgrades] = g(n) is concave with g(0) = 0, so full waves
    cost least: floor(N/m) g(m) + g(N mod m); before them, the `first` hosts' waves of their own
    (as `lockstep_lower_bound_s` counts them, each upgrade at its mean). g by 20,000 draws."""
    import numpy as np

    from planner.app import predict
    from planner.bounds import lower_bounds
    from planner.formats import load_inventory, load_policy
    from planner.policy import selector_matches
    from sim.model import DEFAULT

    inv, pol = load_inventory(inv_path), load_policy(pol_path)
    ph = predict.predict(inv, pol, DEFAULT)
    remedies = predict.choose_remedies(inv, pol, ph.est)
    p = predict.least_maintenance(inv, pol, ph, remedies)
    first = {h for h in p if any(selector_matches(s, inv.host(h)) for s in pol.first)}
    comps = [h for h in p if inv.host(h).is_compute and h not in first]
    if not comps:
        return 0.0
    cap = lower_bounds(inv, pol).max_compute_hosts_down
    m = max(1, min(pol.max_hosts_per_wave, cap) if cap else pol.max_hosts_per_wave)
    dist = DEFAULT.upgrade_distribution(inv.host(comps[0]))
    rng = np.random.default_rng(0)

    def g(n: int) -> float:
        return (
            float(dist.sample(rng, 20_000 * n).reshape(20_000, n).max(axis=1).mean()) if n else 0.0
        )

    other = min(p[h] - ph.est.hosts[h].upgrade_s for h in comps)
    n = len(comps)
    bound = (n // m) * (g(m) + other) + ((g(n % m) + other) if n % m else 0.0)
    if first:
        w_first = -(-len(first) // pol.max_hosts_per_wave)
        for grp in inv.ha_groups:
            members = first & set(grp.hosts)
            w_first = max(w_first, -(-len(members) // max(1, len(grp.hosts) - grp.min_available)))
        mean = {
            h: p[h] - ph.est.hosts[h].upgrade_s + DEFAULT.upgrade_distribution(inv.host(h)).mean
            for h in first
        }
        bound += sum(sorted(mean.values())[: w_first - 1])
    return bound


def _expected_max(inv: Any, hosts: list[str], dur: dict[str, float], ph: Any) -> float:
    """A wave of these hosts, as `predict.wave_s` prices it: the mean slowest host, upgrade
    times drawn (their medians in `dur` replaced by draws)."""
    import numpy as np

    from planner.app.predict import DRAWS

    rng = np.random.default_rng(0)
    draws = np.stack(
        [
            ph.model.upgrade_distribution(inv.host(h)).sample(rng, DRAWS)
            + dur[h]
            - ph.est.hosts[h].upgrade_s
            for h in hosts
        ]
    )
    return float(draws.max(axis=0).mean())


def _sorted_waves(inv: Any, plan: Any, dur: dict[str, float], ph: Any) -> float:
    """The least sum of expected wave durations with these waves' sizes if any host could go
    in any wave (the waves with a controller keep theirs; the other hosts sorted by their
    median maintenance, longest together)."""
    ctl = {h.name for h in inv.hosts if h.role == "controller"}
    fixed = [w for w in plan.waves if ctl & set(w.hosts)]
    free_slots = sum(len(set(w.hosts) - ctl) for w in fixed)
    rest = sorted((h for h in dur if h not in ctl), key=lambda h: dur[h], reverse=True)
    quick, rest = rest[len(rest) - free_slots :], rest[: len(rest) - free_slots]
    total = 0.0
    for w in fixed:  # the quickest hosts beside the controllers
        n = len(set(w.hosts) - ctl)
        hosts, quick = [*sorted(set(w.hosts) & ctl), *quick[:n]], quick[n:]
        total += _expected_max(inv, hosts, dur, ph)
    pos = 0
    for size in sorted((len(w.hosts) for w in plan.waves if not ctl & set(w.hosts)), reverse=True):
        if pos < len(rest):
            total += _expected_max(inv, rest[pos : pos + size], dur, ph)
        pos += size
    return total


def _cloud(n: int, seed: int, d: Path) -> tuple[Path, Path]:
    inv, pol = d / f"g{n}.json", d / f"g{n}-policy.json"
    cmd = [str(HERE), "generate", "--hosts", str(n), "--seed", str(seed), "-o", str(inv)]
    subprocess.run([*cmd, "--policy-out", str(pol)], check=True, capture_output=True)
    return inv, pol


def _plan(rollwave: str, inv: Path, pol: Path, out: Path) -> tuple[int, float, float, Any]:
    rc, wall, cpu, stdout = _run(
        [rollwave, "plan", str(inv), "--policy", str(pol), "-o", str(out), "--format", "json"]
    )
    return rc, wall, cpu, json.loads(stdout) if rc == 0 else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="30,100,1000")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument(
        "--before",
        default=None,
        help="another checkout's rollwave (today's planner) to compare with",
    )
    ap.add_argument("--no-simulate", action="store_true")
    ap.add_argument(
        "--sim-runs",
        type=int,
        default=20,
        metavar="N",
        help="also N simulated runs (Monte Carlo): their mean and median against the bound",
    )
    ap.add_argument(
        "--windows",
        type=int,
        default=200,
        metavar="HOSTS",
        help="also plan a cloud of HOSTS hosts in nightly 8-hour windows (0: not)",
    )
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",") if x]
    print(f"load: {os.getloadavg()[0]:.2f} (1 min)")
    if args.windows:
        with tempfile.TemporaryDirectory() as tmp:
            if _windows(args.windows, args.seed, Path(tmp)):
                return 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for n in sizes:
            inv, pol = _cloud(n, args.seed, d)
            # 15's targets are about lock-step waves: the simulation runs them so (the policy's
            # `execution`; today's planner does not know the key, it gets the policy as made)
            lock = d / f"g{n}-policy-lockstep.json"
            lock.write_text(json.dumps({**json.loads(pol.read_text()), "execution": "lockstep"}))
            after, before = d / f"g{n}.plan.json", d / f"g{n}.before.json"
            times: dict[str, list[tuple[float, float]]] = {"after": [], "before": []}
            res: dict[str, Any] = {}
            for _ in range(args.repeat):
                for who, exe, out, p in (
                    ("before", args.before, before, pol),
                    ("after", str(HERE), after, lock),
                ):
                    if exe is None:
                        continue
                    rc, wall, cpu, got = _plan(exe, inv, p, out)
                    if rc != 0:
                        print(f"{n} hosts: {who} plan exited {rc}")
                        return 1
                    times[who].append((wall, cpu))
                    res[who] = got
            s = res["after"]["summary"]
            mine = _priced(inv, pol, after)
            row: dict[str, Any] = {
                "hosts": n,
                "bound_s": s["predicted_makespan_s"]["lockstep"],
                "lb_s": s["makespan_lower_bound_s"],
                "lock_lb_s": s.get("lockstep_lower_bound_s"),
                "ideal_s": mine["ideal"],
                "drawn_lb_s": _drawn_lockstep_bound(inv, pol),
                "moves_after": s["migrations_per_moved_vm"],
                "remedies": s["remedies"],
                "wall_after": statistics.median(t for t, _ in times["after"]),
                "cpu_after": statistics.median(c for _, c in times["after"]),
            }
            if args.before:
                b = _priced(inv, pol, before)
                row.update(
                    before_bound_s=b["bound"],
                    moves_before=res["before"]["summary"]["migrations_per_moved_vm"],
                    wall_before=statistics.median(t for t, _ in times["before"]),
                    cpu_before=statistics.median(c for _, c in times["before"]),
                )
            if not args.no_simulate:
                sim_cmd = [str(HERE), "simulate", str(inv), str(after), "--strict", "--no-vms"]
                rc, wall, _, out = _run([*sim_cmd, "--format", "json"])
                sim = json.loads(out) if out.strip() else {}
                row.update(
                    sim_rc=rc,
                    sim_makespan_s=sim.get("makespan_s"),
                    sim_not_upgraded=(sim.get("summary") or {}).get("hosts_not_upgraded"),
                    sim_s=wall,
                )
                if args.sim_runs:  # the bound is an expectation: compare the runs' mean too
                    runs = ["--runs", str(args.sim_runs), "--format", "json"]
                    rc, _, _, out = _run([*sim_cmd, *runs])
                    mc = (json.loads(out) if out.strip() else {}).get("makespan_s") or {}
                    row.update(mc_rc=rc, mc_mean_s=mc.get("mean"), mc_p50_s=mc.get("p50"))
            rows.append(row)
            _print(row)
    return 0


WINDOWS = """
windows:
  - {days: daily, start: "22:00", end: "06:00", tz: Europe/Berlin}
"""


def _windows(n: int, seed: int, d: Path) -> int:
    """16's windows target: a plan of an n-host cloud with 8-hour nightly windows, `plan
    --start`; its number of windows against the lower bound (the hosts' least maintenance,
    spread over the hosts that may be down at once, per 8-hour window)."""
    import math

    import yaml

    from planner.app import predict
    from planner.formats import load_inventory, load_policy
    from sim.model import DEFAULT

    inv_path, pol_json = _cloud(n, seed, d)
    pol_path = d / f"g{n}-nights.yaml"
    pol_path.write_text(yaml.safe_dump(json.loads(pol_json.read_text())) + WINDOWS)
    out = d / f"g{n}-nights.plan.json"
    cmd = [str(HERE), "plan", str(inv_path), "--policy", str(pol_path), "-o", str(out)]
    rc, wall, cpu, _ = _run([*cmd, "--start", "2026-12-14T22:00", "--format", "json"])
    if rc != 0:
        print(f"{n} hosts with nightly windows: plan exited {rc}")
        return 1
    plan = json.loads(out.read_text())
    inv, pol = load_inventory(inv_path), load_policy(pol_path)
    ph = predict.predict(inv, pol, DEFAULT)
    remedies = predict.choose_remedies(inv, pol, ph.est)
    p = predict.least_maintenance(inv, pol, ph, remedies)
    spread = predict._spread(inv, pol, {h: x for h, x in p.items()})
    lb = math.ceil(spread / (8 * 3600))
    got = plan["summary"]["windows"]
    print(f"\n{n} hosts, nightly 8-hour windows (plan --start 2026-12-14T22:00)")
    print(f"  windows                           {got} (lower bound {lb}, target: within one)")
    print(f"  last host done                    {plan['summary']['last_done']}")
    print(f"  planning time                     {wall:.1f} s wall, {cpu:.1f} s CPU")
    return 0


def _print(r: dict[str, Any]) -> None:
    lb, ll = r["lb_s"], r.get("lock_lb_s") or r["lb_s"]

    def row(label: str, x: float) -> None:
        print(f"  {label:<34}{x:10,.0f} s  {x / lb:.3f} x any plan's, {x / ll:.3f} x lock-step's")

    print(f"\n{r['hosts']} hosts")
    print(f"  {'lower bound (any plan)':<34}{lb:10,.0f} s")
    print(f"  {'lower bound (any lock-step plan)':<34}{ll:10,.0f} s")
    row("plan's bound (lock-step)", r["bound_s"])
    if "before_bound_s" in r:
        row("today's plan, same predictions", r["before_bound_s"])
    row("best with these wave sizes", r["ideal_s"])
    if r.get("drawn_lb_s"):
        dl = r["drawn_lb_s"]
        print(
            f"  {'lower bound, lock-step, drawn':<34}{dl:10,.0f} s  (any lock-step plan's "
            f"expected makespan; the plan's bound {r['bound_s'] / dl:.3f} x)"
        )
    mb = r.get("moves_before")
    print(
        f"  migrations per moved VM           {r['moves_after']:.4f}"
        + (f" (today {mb:.4f}, {r['moves_after'] - mb:+.4f})" if mb is not None else "")
    )
    if "wall_before" in r:
        print(
            f"  planning time                     {r['wall_after']:.1f} s wall, "
            f"{r['cpu_after']:.1f} s CPU (today {r['wall_before']:.1f} s, "
            f"{r['cpu_before']:.1f} s CPU: {r['cpu_after'] / r['cpu_before']:.2f} x CPU, "
            f"{r['wall_after'] / r['wall_before']:.2f} x wall)"
        )
    rem = ", ".join(f"{k} {v}" for k, v in r["remedies"].items())
    print(f"  remedies                          {rem}")
    if "sim_rc" in r:
        mk = r["sim_makespan_s"]
        ratio = f"{mk / r['bound_s']:.3f} x the plan's bound" if mk else "-"
        print(
            f"  simulate --strict                 exit {r['sim_rc']}, makespan "
            f"{mk or 0:,.0f} s ({ratio}), hosts not upgraded {r['sim_not_upgraded']}"
        )
    if r.get("mc_mean_s"):
        b = r["bound_s"]
        print(
            f"  simulate --runs (exit {r['mc_rc']})           mean {r['mc_mean_s']:,.0f} s "
            f"({r['mc_mean_s'] / b:.3f} x the plan's bound), median {r['mc_p50_s']:,.0f} s "
            f"({r['mc_p50_s'] / b:.3f} x)"
        )


if __name__ == "__main__":
    sys.exit(main())
