"""Load, save and check times of the file formats at scale: `python -m benchmarks.formats_bench`.

For generated clouds of 1,000 and 5,000 compute hosts (20 VMs per host by default) it times, as
the median of --repeat runs: writing and reading the inventory, writing and reading a plan, and
`check_plan` on it. The plan comes from the greedy planner (timed once, for information; the
clouds are generated at 50% utilisation so that it finds one). Prints a table; times in seconds.

    python -m benchmarks.formats_bench                   # 1000 and 5000 hosts, 3 runs each
    python -m benchmarks.formats_bench --sizes 200,1000 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from planner.checker import check_plan
from planner.errors import InfeasibleError
from planner.formats import load_inventory, load_plan, save_inventory, save_plan
from planner.generate import GenerateSpec, default_policy, generate
from solver.greedy import greedy_plan

T = TypeVar("T")


def timed(f: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Median wall time of `repeat` calls, and the last result."""
    times = []
    result: Any = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def run(hosts: int, vms_per_host: float, repeat: int, seed: int, work: Path) -> dict[str, Any]:
    spec = GenerateSpec(hosts=hosts, vms_per_host=vms_per_host, utilisation=0.5, seed=seed)
    t_gen, inv = timed(lambda: generate(spec), 1)
    inv_file = work / f"inventory-{hosts}.json"
    t_save, _ = timed(lambda: save_inventory(inv, inv_file), repeat)
    t_load, inv = timed(lambda: load_inventory(inv_file), repeat)
    row: dict[str, Any] = {
        "hosts": hosts,
        "vms": len(inv.vms),
        "inv_mb": inv_file.stat().st_size / 1e6,
        "generate": t_gen,
        "save": t_save,
        "load": t_load,
    }
    policy = default_policy(spec)
    try:
        t_plan, plan = timed(lambda: greedy_plan(inv, policy, inventory_sha256=inv.digest or ""), 1)
    except InfeasibleError:
        return row  # no plan to save, load or check
    plan_file = work / f"plan-{hosts}.json"
    t_psave, _ = timed(lambda: save_plan(plan, plan_file), repeat)
    t_pload, plan = timed(lambda: load_plan(plan_file), repeat)
    t_check, report = timed(lambda: check_plan(inv, plan), repeat)
    row.update(
        {
            "waves": len(plan.waves),
            "migrations": sum(len(w.migrations) for w in plan.waves),
            "plan_mb": plan_file.stat().st_size / 1e6,
            "greedy": t_plan,
            "plan_save": t_psave,
            "plan_load": t_pload,
            "check": t_check,
            "valid": report.ok,
        }
    )
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="1000,5000", help="compute hosts, comma-separated")
    ap.add_argument("--vms-per-host", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=3, help="runs per timing (median)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    console = Console(width=max(Console().width, 120))  # piped: room for the columns
    rows = []
    with tempfile.TemporaryDirectory(prefix="rollwave-bench-") as tmp:
        for n in sizes:
            console.print(f"[dim]{n} hosts ...[/]", highlight=False)
            rows.append(run(n, args.vms_per_host, args.repeat, args.seed, Path(tmp)))

    def f(row: dict[str, Any], key: str, fmt: str = "{:.2f}") -> str:
        return fmt.format(row[key]) if key in row else "n/a"

    title = f"median of {args.repeat} run(s), seconds, {os.cpu_count()} CPUs"
    inv_t = Table(title=f"inventory: {title}", title_justify="left")
    for col in ("hosts", "VMs", "MB", "save", "load", "load µs/VM", "generate (once)"):
        inv_t.add_column(col, justify="right")
    plan_t = Table(title=f"plan: {title}", title_justify="left")
    for col in ("hosts", "waves", "migrations", "MB", "save", "load", "check", "check µs/VM"):
        plan_t.add_column(col, justify="right")
    plan_t.add_column("valid")
    plan_t.add_column("greedy (once)", justify="right")
    for r in rows:
        per_vm = 1e6 / max(r["vms"], 1)
        inv_t.add_row(
            str(r["hosts"]),
            f"{r['vms']:,}",
            f(r, "inv_mb", "{:.1f}"),
            f(r, "save"),
            f(r, "load"),
            f"{r['load'] * per_vm:.0f}",
            f(r, "generate"),
        )
        plan_t.add_row(
            str(r["hosts"]),
            f(r, "waves", "{}"),
            f(r, "migrations", "{:,}"),
            f(r, "plan_mb", "{:.1f}"),
            f(r, "plan_save"),
            f(r, "plan_load"),
            f(r, "check"),
            f"{r['check'] * per_vm:.0f}" if "check" in r else "n/a",
            f(r, "valid", "{}"),
            f(r, "greedy", "{:.1f}"),
        )
    console.print(inv_t)
    console.print(plan_t)
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        scale = b["vms"] / max(a["vms"], 1)
        parts = [f"{k} x{b[k] / a[k]:.1f}" for k in ("save", "load", "check") if k in a and k in b]
        console.print(
            f"{b['hosts']} vs {a['hosts']} hosts ({scale:.1f}x the VMs): " + ", ".join(parts)
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"peak RSS {peak:,.0f} MB")


if __name__ == "__main__":
    main()
