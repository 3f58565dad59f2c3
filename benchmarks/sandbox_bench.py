"""Start-up time of the Nova sandbox and time of `rollwave snapshot` against it.

    python -m benchmarks sandbox_bench -- [--runs 3] [--sizes 20x0,20x2,100x0,100x2] [--quick]

A size HxV is H compute hosts from `rollwave generate` (same seed) keeping the first V of each
host's VMs (0: the generated hosts, AZs, aggregates, versions and controllers, no VMs). Prints a
table: median (min-max) over the runs of start-up, its phases and the snapshot (wall seconds),
and the sandbox's CPU seconds for the whole start-up and for booting the VMs (all threads; on a
shared machine wall time varies with the load, CPU time much less).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from planner import formats
from planner.generate import GenerateSpec, generate
from planner.openstack import mapping, snapshot
from planner.openstack.connect import Api, connect
from planner.openstack.sandbox import manager


def inventory(hosts: int, vms_per_host: int) -> dict[str, Any]:
    inv = formats.inventory_to_dict(generate(GenerateSpec(hosts=hosts, seed=1)))
    kept: dict[str, int] = {}
    vms = []
    for v in inv["vms"]:
        if kept.get(v["host"], 0) < vms_per_host:
            kept[v["host"]] = kept.get(v["host"], 0) + 1
            vms.append(v)
    groups = {v["server_group"] for v in vms}
    inv["vms"] = vms
    inv["server_groups"] = [g for g in inv["server_groups"] if g["id"] in groups]
    return inv


def one_run(inv: dict[str, Any], root: Path) -> dict[str, float]:
    d = root / "state"
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(root / "clouds.yaml")
    t0 = time.monotonic()
    sb = manager.start(inv, directory=d, exit_with_parent=True)
    wall = time.monotonic() - t0
    try:
        t1 = time.monotonic()
        got, _ = snapshot.collect(
            Api(connect(manager.CLOUD_NAME)), "bench", mapping.load(sb.mapping_file)
        )
        snap = time.monotonic() - t1
        assert len(got["vms"]) == len(inv["vms"])
        timings = dict(sb.state["timings"])
    finally:
        manager.stop(d)
    return {
        "start": wall,
        "computes": timings["computes"],
        "aggregates": timings["aggregates"],
        "vms": timings["vms"],
        "snapshot": snap,
        "cpu": timings["services_cpu_total"],
        "vm_cpu": timings["vms_cpu_total"] - timings["aggregates_cpu_total"],
    }


def fmt(xs: list[float]) -> str:
    med = statistics.median(xs)
    return f"{med:6.1f}" if len(xs) == 1 else f"{med:6.1f} ({min(xs):.1f}-{max(xs):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="20x0,20x2,100x0,100x2")
    ap.add_argument("--quick", action="store_true", help="one run of 20x0 and 20x2")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.sizes = 1, "20x0,20x2"
    cols = ["start", "computes", "aggregates", "vms", "snapshot", "cpu", "vm_cpu"]
    print(f"{'hosts':>5} {'VMs':>5} | " + " | ".join(f"{c + ' s':>16}" for c in cols))
    print("-" * (14 + 19 * len(cols)))
    for size in args.sizes.split(","):
        h, v = size.lower().split("x")
        inv = inventory(int(h), int(v))
        runs: list[dict[str, float]] = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="rw-bench-") as tmp:
                runs.append(one_run(inv, Path(tmp)))
        print(
            f"{int(h):5d} {len(inv['vms']):5d} | "
            + " | ".join(f"{fmt([r[c] for r in runs]):>16}" for c in cols),
            flush=True,
        )


if __name__ == "__main__":
    main()
