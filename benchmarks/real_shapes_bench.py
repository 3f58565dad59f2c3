"""The planner on real-shaped clouds: time limit kept, memory, same plan under any load.

    python -m benchmarks real_shapes_bench                       # every shape, one run each
    python -m benchmarks real_shapes_bench -- --shapes real-100-5k,real-10-big
    python -m benchmarks real_shapes_bench -- --runs 2 --burn     # 2nd run beside a CPU burner
    python -m benchmarks real_shapes_bench -- --repo /path/to/other/checkout   # its planner

The clouds are `tests.solver_clouds.REAL_SHAPES`: `rollwave generate` with many small VMs a host
(`--flavor-mix small`), services as hard anti-affinity groups of 2-10 members (`--service-share
0.3`), two extra resource classes (`--extra-classes`), several AZs and racks of 20 hosts, and a
10-host cloud of big flavors; and `trace-` clouds closer to production traces: each VM its own
size (`--vm-sizes per-vm`), 80% of the VMs in services, SR-IOV VFs on half the hardware models
(`CUSTOM_SRIOV_VF:64:0.1:0.5`), 85% memory asked; policy `default_policy` (N+1 per AZ,
hosts / 20 a wave, at least 2, controllers first). Each is written once to `--cache` and
planned by `rollwave plan --time-limit T --format json` in a fresh process (the CLI of
`--repo`'s .venv), whose wall clock, CPU seconds and peak RSS (`wait4`) are measured. The plan
is judged by this checkout's checker. With `--runs 2 --burn`, the second run has a process
burning a CPU beside it (on a 2-core machine, half the CPU it had): "same plan" compares the
plans' bytes.

Columns: outcome (valid plan, proven impossible, not found), time against the limit, CPU,
peak RSS, waves against the lower bound, migrations per moved VM, VMs moved twice, the load
average at the start, and whether every run gave the same plan.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent


def _burn() -> None:  # pragma: no cover - a CPU burner for the load test
    while True:
        pass


def _files(name: str, cache: Path) -> tuple[Path, Path, float]:
    """The shape's inventory and policy files (written once per spec) and its time limit."""
    from planner.formats import save_inventory, save_policy
    from tests.solver_clouds import REAL_SHAPES, real_cloud

    spec, changes, limit = REAL_SHAPES[name]
    key = hashlib.sha256(repr((spec, sorted(changes.items()))).encode()).hexdigest()[:12]
    inv_path = cache / f"{name}-{key}.inventory.json"
    pol_path = cache / f"{name}-{key}.policy.json"
    if not inv_path.exists() or not pol_path.exists():
        cloud = real_cloud(name)
        cache.mkdir(parents=True, exist_ok=True)
        save_policy(cloud.policy, pol_path)
        save_inventory(cloud.inventory, inv_path)
    return inv_path, pol_path, limit


def _plan_once(
    repo: Path, inv: Path, pol: Path, out: Path, limit: float, seed: int, burn: bool
) -> dict[str, Any]:
    exe = repo / ".venv" / "bin" / "rollwave"
    cmd = [str(exe), "plan", str(inv), "--policy", str(pol), "-o", str(out)]
    cmd += ["--time-limit", str(limit), "--seed", str(seed), "--format", "json"]
    out.unlink(missing_ok=True)
    burner = None
    if burn:
        burner = mp.get_context("spawn").Process(target=_burn, daemon=True)
        burner.start()
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    with (
        open(out.with_suffix(".stdout"), "w+b") as so,
        open(out.with_suffix(".stderr"), "w+b") as se,
    ):
        proc = subprocess.Popen(cmd, stdout=so, stderr=se, cwd=repo)
        # reaped here, not by Popen: wait4 gives this child's own peak RSS and CPU
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        so.seek(0)
        se.seek(0)
        stdout_b, stderr_b = so.read(), se.read()
    out.with_suffix(".stdout").unlink()
    out.with_suffix(".stderr").unlink()
    if burner is not None:
        burner.terminate()
        burner.join()
    row: dict[str, Any] = {"code": proc.returncode, "wall": wall, "load": load, "burn": burn}
    row["cpu"], row["rss"] = usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024
    try:
        row["json"] = json.loads(stdout_b.decode() or "null")
    except json.JSONDecodeError:
        row["json"] = None
    row["stderr"] = stderr_b.decode(errors="replace")[-2000:]
    if out.exists():
        row["sha"] = hashlib.sha256(out.read_bytes()).hexdigest()[:16]
    return row


def _judge(inv_path: Path, pol_path: Path, plan_path: Path) -> dict[str, Any]:
    from planner.bounds import lower_bounds
    from planner.checker import check_plan
    from planner.formats import load_inventory, load_plan, load_policy

    inv, pol = load_inventory(inv_path), load_policy(pol_path)
    lb = lower_bounds(inv, pol)
    out: dict[str, Any] = {"bound": lb.waves, "hosts": len(inv.compute_hosts), "vms": len(inv.vms)}
    if plan_path.exists():
        report = check_plan(inv, load_plan(plan_path))
        m = report.metrics
        out.update(
            valid=report.ok,
            violations=dict(report.by_rule()),
            waves=m["waves"],
            per_vm=m["migrations_per_moved_vm"],
            twice=m["vms_moved_more_than_once"],
        )
    return out


def main(argv: list[str] | None = None) -> int:
    from tests.solver_clouds import REAL_SHAPES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--shapes", default=",".join(REAL_SHAPES), help="names, comma-separated")
    ap.add_argument("--repo", default=str(HERE), help="checkout whose .venv plans")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--burn", action="store_true", help="runs after the first beside a burner")
    ap.add_argument("--time-limit", type=float, default=None, help="instead of the shape's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="/tmp/rollwave-real-shapes")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    args = ap.parse_args(argv)
    repo, cache = Path(args.repo), Path(args.cache)
    rows = []
    for name in [s for s in args.shapes.split(",") if s]:
        inv, pol, limit = _files(name, cache)
        limit = args.time_limit or limit
        runs = []
        for k in range(max(1, args.runs)):
            out = cache / f"{name}.plan-{os.getpid()}-{k}.json"
            r = _plan_once(repo, inv, pol, out, limit, args.seed, args.burn and k > 0)
            r.update(_judge(inv, pol, out))
            out.unlink(missing_ok=True)
            runs.append(r)
            print(f"{name} run {k + 1}: {_line(r, limit)}", file=sys.stderr, flush=True)
        rows.append((name, limit, runs))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
    print(
        f"\nreal-shaped clouds (tests.solver_clouds.REAL_SHAPES), planner of {repo}, seed "
        f"{args.seed}, {args.runs} run(s) each"
        + (" (runs after the first beside a CPU burner)" if args.burn else "")
    )
    header = (
        "cloud",
        "hosts / VMs",
        "outcome",
        "time (limit)",
        "CPU",
        "peak RSS",
        "waves (bound)",
        "migr./moved VM",
        "moved twice",
        "load",
        "same plan",
    )
    table = [header]
    for name, limit, runs in rows:
        r = runs[0]
        shas = {x.get("sha") for x in runs}
        same = "" if len(runs) < 2 else ("yes" if len(shas) == 1 else "NO")
        table.append(
            (
                name,
                f"{r['hosts']:,} / {r['vms']:,}",
                _outcome(r),
                " / ".join(f"{x['wall']:.0f}" for x in runs) + f" s ({limit:.0f})",
                " / ".join(f"{x.get('cpu', 0):.0f}" for x in runs) + " s",
                " / ".join(f"{x.get('rss', 0) / 1024:.2f}" for x in runs) + " GiB",
                f"{r['waves']} ({r['bound']})" if "waves" in r else f"- ({r['bound']})",
                f"{r['per_vm']:.3f}" if "per_vm" in r else "-",
                f"{r['twice']:,}" if "twice" in r else "-",
                " / ".join(f"{x['load']:.1f}" for x in runs),
                same,
            )
        )
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for k, row in enumerate(table):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
        if k == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def _outcome(r: dict[str, Any]) -> str:
    if r["code"] == 0:
        return "valid" if r.get("valid") else "INVALID " + json.dumps(r.get("violations"))
    js = r.get("json") or {}
    if r["code"] == 3:
        return "proven impossible" if js.get("proven") else "not found (exit 3)"
    return f"exit {r['code']}"


def _line(r: dict[str, Any], limit: float) -> str:
    tail = r["stderr"].strip().splitlines()[-3:] if r["code"] else []
    return (
        f"{_outcome(r)} in {r['wall']:.1f} s (limit {limit:.0f}, CPU {r.get('cpu', 0):.1f} s), "
        f"{r.get('rss', 0):.0f} MiB, waves {r.get('waves', '-')} (bound {r.get('bound')}), "
        f"{r.get('per_vm', 0):.3f} per moved VM, {r.get('twice', '-')} moved twice, load "
        f"{r['load']:.1f}, sha {r.get('sha', '-')}" + (f"; {' | '.join(tail)}" if tail else "")
    )


if __name__ == "__main__":
    sys.exit(main())
