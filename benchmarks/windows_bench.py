"""Maintenance windows in simulation: `python -m benchmarks.windows_bench [--quick] [--runs N]`.

Issue 16's windows target: a windowed plan of a generated 200-host cloud with 8-hour nightly
windows (22:00-06:00 Europe/Berlin, `plan --start 2026-12-14T22:00`), simulated in calendar time:
every host's maintenance inside a window, and the number of windows within one of the lower bound
(every host's least maintenance, spread over the hosts that may be down at once, per 8-hour
window: `predict.least_maintenance` and `predict._spread`, as `physics_bench --windows`). Also a
1,000-host cloud, and the 200-host cloud with per-AZ windows: az1 22:00-06:00 Berlin, az2 an hour
later, or 22:00-06:00 New York (six hours later: the AZs' nights overlap 2 hours; windows are
counted as the AZs' openings merged, so one such "night" is 14 hours long), or 22:00-06:00 Tokyo
(never open together with az1's nights in winter).

Per cloud and execution mode (pipelined, the default, and lock-step), each planned with that
`execution` in the policy (lock-step, waves whose AZs' windows are never open together long
enough are split per AZ, `solver.azwaves`; a wave that still cannot run is "refused"): windows
the plan expects, windows used in the simulation (seed 0), the lower bound, hosts that entered
maintenance outside a window or without room for their P95 maintenance before the close (both
must be 0), hosts whose maintenance overran the close (work in flight finishes: reported, not
forbidden), the last host done, and over `--runs` Monte Carlo runs P(more windows than planned)
and the finish P95.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import math
import time
from collections.abc import Sequence
from typing import Literal

from planner.app import predict
from planner.app.planning import plan_with_predictions
from planner.app.simulation import in_calendar, monte_carlo, prepare_run
from planner.errors import InfeasibleError
from planner.generate import GenerateSpec, default_policy, generate
from planner.inventory import Inventory
from planner.plan import Plan
from planner.policy import Policy
from planner.windows import Window
from sim.engine import simulate
from sim.model import DEFAULT

Execution = Literal["pipelined", "lockstep"]
START = _dt.datetime.fromisoformat("2026-12-14T22:00+01:00")
NIGHT_S = 8 * 3600.0
BERLIN = Window(tuple(range(7)), 22 * 60, 6 * 60, "Europe/Berlin")


def per_az(other: Window) -> tuple[Window, ...]:
    """az1 in Berlin's nights, az2 in `other`."""
    return (dataclasses.replace(BERLIN, azs=("az1",)), dataclasses.replace(other, azs=("az2",)))


# az2 an hour later (23:00-07:00 Berlin), or in New York's nights (04:00-12:00 Berlin): a wave
# with hosts of both AZs goes down only while both are open (2 hours a night).
SHIFTED = Window(tuple(range(7)), 23 * 60, 7 * 60, "Europe/Berlin")
NEW_YORK = Window(tuple(range(7)), 22 * 60, 6 * 60, "America/New_York")
# az2 in Tokyo's nights (14:00-22:00 Berlin in winter): never open together with az1's.
TOKYO = Window(tuple(range(7)), 22 * 60, 6 * 60, "Asia/Tokyo")


def windowed(
    hosts: int, windows: tuple[Window, ...], execution: Execution = "pipelined"
) -> tuple[Inventory, Policy, Plan]:
    spec = GenerateSpec(hosts=hosts, seed=0)
    inv = generate(spec)
    pol = dataclasses.replace(default_policy(spec), windows=windows, execution=execution)
    plan, _, _, _ = plan_with_predictions(inv, pol, start=START)
    return inv, pol, plan


def lower_bound(inv: Inventory, pol: Policy) -> int:
    """Windows needed at least: the least maintenance of every host spread over the hosts that
    may be down at once, per 8-hour night."""
    ph = predict.predict(inv, pol, DEFAULT)
    remedies = predict.choose_remedies(inv, pol, ph.est)
    p = predict.least_maintenance(inv, pol, ph, remedies)
    return math.ceil(predict._spread(inv, pol, p) / NIGHT_S)


def rows(
    name: str, inv: Inventory, pol: Policy, plans: dict[str, Plan], runs: int
) -> list[list[str]]:
    """One row per execution, its plan planned for it (`execution` in the policy)."""
    lb = lower_bound(inv, pol)
    out = []
    for execution, p in plans.items():
        planned = p.schedule.windows if p.schedule is not None else ()
        try:
            prep = in_calendar(prepare_run(inv, p, DEFAULT))
        except InfeasibleError as e:  # a lock-step wave whose AZs' windows never fit it
            out.append([name, execution, f"{len(inv.hosts):,}", str(len(planned)), "refused"])
            out[-1] += [str(lb)] + ["-"] * 6
            print(f"  ({name}, {execution}: {str(e).splitlines()[0][:120]})")
            continue
        cal = prep.calendar
        assert cal is not None
        res = simulate(prep, 0, record=False)
        c = res.calendar
        assert c is not None
        # Every host: entered inside an opening of its windows, with room for its P95.
        bad = 0
        for h, (s, _, _) in res.host_times.items():
            o = cal.opening_of(h, s)
            if res.host_status.get(h) != "down" and (o is None or s + cal.need[h] > o[1] + 1e-6):
                bad += 1
        mc = monte_carlo(prep, runs, 0, jobs=2).stats["calendar"] if runs > 1 else None
        out.append(
            [
                name,
                execution,
                f"{len(inv.hosts):,}",
                str(len(planned)),
                str(c.used),
                str(lb),
                f"{c.used - lb:+d}",
                str(bad),
                str(len(c.overruns)),
                f"{c.last_done:%a %m-%d %H:%M}" if c.last_done else "-",
                f"{sum(1 for s in res.host_status.values() if s != 'upgraded')}",
                (
                    f"{100 * (mc['p_more_windows_than_planned'] or 0):.0f}%, "
                    f"{_dt.datetime.fromisoformat(mc['finish']['p95']):%a %m-%d %H:%M}"
                    if mc
                    else "-"
                ),
            ]
        )
    return out


def table(head: Sequence[str], body: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    for r in [head, *body]:
        cells = zip(r, widths, strict=True)
        print("  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(cells)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the 200-host clouds only")
    ap.add_argument("--runs", type=int, default=20, help="Monte Carlo runs per row (1: none)")
    args = ap.parse_args()
    clouds: list[tuple[str, int, tuple[Window, ...]]] = [
        ("200, nightly", 200, (BERLIN,)),
        ("200, per-AZ, az2 1 h later", 200, per_az(SHIFTED)),
        ("200, per-AZ, az2 New York", 200, per_az(NEW_YORK)),
        ("200, per-AZ, az2 Tokyo", 200, per_az(TOKYO)),
    ]
    if not args.quick:
        clouds.append(("1,000, nightly", 1000, (BERLIN,)))
    head = [
        "cloud",
        "execution",
        "hosts",
        "planned",
        "used",
        "LB",
        "used-LB",
        "outside/no room",
        "overran close",
        "last host done",
        "not upgraded",
        f"P(>planned), finish P95 ({args.runs} runs)",
    ]
    body: list[list[str]] = []
    for name, n, windows in clouds:
        t0 = time.perf_counter()
        inv, pol, piped = windowed(n, windows)
        plans = {"pipelined": piped, "lockstep": windowed(n, windows, "lockstep")[2]}
        t1 = time.perf_counter()
        body += rows(name, inv, pol, plans, args.runs)
        print(f"  ({name}: plan {t1 - t0:.0f} s, simulations {time.perf_counter() - t1:.0f} s)")
    print(
        "target: every host inside a window in simulation (outside/no room 0), windows used "
        "within one of the lower bound (issue 16); start Mon 2026-12-14 22:00 +01:00"
    )
    table(head, body)


if __name__ == "__main__":
    main()
