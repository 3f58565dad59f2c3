"""Side-by-side execution's wall time on two sandboxes (issue 19's "sandbox execution" row).

    python -m benchmarks xcloud_bench -- [--hosts 8] [--vms-per-host 1] [--seed 1]

A generated cloud (one AZ, N+1, no controllers) seeded into a sandbox with a real Glance, snapshot,
`rollwave plan --mode side-by-side`, then `rollwave execute --source-cloud --target-cloud` with
the hooks of tests/xcloud_hooks.py (the deployment starts the new cloud's sandbox, each hand-over
moves a compute across), the old cloud's headroom sampled from outside every second. Prints the
start-up of the old cloud with and without Glance, the run's wall time and its parts from the
journal (deployment, hand-overs, cross-cloud moves and their steps), and the load. Exit 1 if a
VM is not in the new cloud as it was in the old, or a headroom sample breached.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from planner import formats
from planner.capacity import CapacityModel, headroom
from planner.openstack import clouds_yaml, mapping, snapshot
from planner.openstack.connect import Api, connect
from planner.openstack.sandbox import manager

ROOT = Path(__file__).resolve().parent.parent
HOOKS = ROOT / "tests" / "xcloud_hooks.py"
ROLLWAVE = str(Path(sys.executable).with_name("rollwave"))


def _run(*args: str) -> None:
    subprocess.run([ROLLWAVE, *args], check=True, capture_output=True, text=True)


def _facts(cloud: str) -> list[tuple[Any, ...]]:
    servers = Api(connect(cloud)).get("compute", "/servers/detail?all_tenants=1", "2.74")["servers"]
    return sorted(
        (s["name"], s["tenant_id"], s["status"], s["flavor"]["original_name"]) for s in servers
    )


def _at(rec: dict[str, Any]) -> float:
    return dt.datetime.strptime(rec["at"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def _spans(journal: list[dict[str, Any]], start: str, end: str, key: str) -> list[float]:
    begun: dict[str, float] = {}
    out = []
    for r in journal:
        if r.get("event") == start:
            begun[str(r.get(key))] = _at(r)
        elif r.get("event") == end and str(r.get(key)) in begun:
            out.append(_at(r) - begun.pop(str(r.get(key))))
    return out


def _hook_spans(journal: list[dict[str, Any]], kind: str) -> list[float]:
    picked = [r for r in journal if r.get("kind") == kind]
    return _spans(picked, "hook-start", "hook-end", "host")


def bench(root: Path, hosts: int, vms_per_host: float, seed: int, con: Console) -> int:
    os.environ.update(
        HOME=str(root / "home"),
        XDG_CONFIG_HOME=str(root / "home" / ".config"),
        OS_CLIENT_CONFIG_FILE=str(root / "home" / "clouds.yaml"),
    )
    gen, pol = root / "gen.json", root / "policy.json"
    _run(
        "generate", "--hosts", str(hosts), "--vms-per-host", str(vms_per_host), "--seed",
        str(seed), "--azs", "1", "--disabled", "0", "--controllers", "0", "--utilisation", "0.1",
        "-o", str(gen), "--policy-out", str(pol),
    )  # fmt: skip
    inv = json.loads(gen.read_text())
    load0 = os.getloadavg()
    t = time.monotonic()
    sb = manager.start(
        inv, directory=root / "plain", write_clouds_yaml=False, exit_with_parent=True
    )
    plain_s = time.monotonic() - t
    manager.stop(root / "plain", remove_cloud_entry=False)
    t = time.monotonic()
    sb = manager.start(
        inv, directory=root / "old", write_clouds_yaml=False, exit_with_parent=True, with_image=True
    )
    image_s = time.monotonic() - t
    try:
        clouds_yaml.merge_entry("old", sb.cloud_entry())
        snap, plan = root / "snap.json", root / "plan.json"
        t = time.monotonic()
        _run("snapshot", "--os-cloud", "old", "--mapping", str(sb.mapping_file), "-o", str(snap))
        _run("plan", str(snap), "--policy", str(pol), "--mode", "side-by-side", "-o", str(plan))
        plan_s = time.monotonic() - t
        before = _facts("old")
        policy = formats.load_policy(pol)
        api, mp = Api(connect("old")), mapping.load(sb.mapping_file)
        samples, breaches = 0, 0
        py = sys.executable
        cmd = [
            ROLLWAVE, "execute", str(plan), "--source-cloud", "old", "--target-cloud", "new",
            "--poll-interval", "0.3",
            "--deploy-hook", f"{py} {HOOKS} deploy {root / 'new'} new {snap} {{hosts}}",
            "--handover-hook",
            f"{py} {HOOKS} handover {root / 'old'} {root / 'new'} {snap} {{host}}",
        ]  # fmt: skip
        t = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None:
            try:
                data, _ = snapshot.collect(api, "old", mp)
                rows = headroom(CapacityModel(formats.inventory_from_dict(data)), policy.headroom)
            except Exception:  # a host leaving between two calls
                continue
            samples += 1
            breaches += sum(1 for r in rows if not r.ok)
            time.sleep(1.0)
        run_s = time.monotonic() - t
        err = proc.stderr.read() if proc.stderr else ""
        if proc.returncode != 0:
            con.print(f"execute exited {proc.returncode}:\n{err}")
            return 1
        after = _facts("new")
        journal = [
            json.loads(x) for x in plan.with_name("plan.journal.jsonl").read_text().splitlines()
        ]
    finally:
        for d in ("old", "new"):
            manager.stop(root / d, remove_cloud_entry=False)
    load1 = os.getloadavg()
    moves = _spans(journal, "xc-stopped", "xc-moved", "vm")
    waves = json.loads(plan.read_text())["waves"]
    crossing = sum(1 for w in waves for m in w["migrations"] if m["method"] == "cross-cloud")
    table = Table(title="side-by-side execution on two sandboxes", title_justify="left", box=None)
    for col in ("", "value"):
        table.add_column(col, justify="right" if col else "left")
    inside = sum(len(w["migrations"]) for w in waves) - crossing
    handovers = _hook_spans(journal, "handover")
    loads = " / ".join(" ".join(f"{x:.2f}" for x in ld) for ld in (load0, load1))
    rows = [
        ("hosts / VMs / waves", f"{hosts} / {len(before)} / {len(waves)}"),
        ("cross-cloud moves (moves inside the old cloud)", f"{crossing} ({inside})"),
        ("old cloud start-up: without / with Glance", f"{plain_s:.1f} s / {image_s:.1f} s"),
        ("snapshot + plan", f"{plan_s:.1f} s"),
        ("execute: wall", f"{run_s:.1f} s"),
        ("  deployment hook (new cloud up)", f"{sum(_hook_spans(journal, 'deploy')):.1f} s"),
        (
            "  hand-overs: count, mean",
            f"{len(handovers)}, {statistics.mean(handovers or [0]):.1f} s",
        ),
        (
            "  cross-cloud move: mean / max",
            f"{statistics.mean(moves or [0]):.1f} s / {max(moves or [0]):.1f} s",
        ),
        ("VMs in the new cloud as in the old", str(after == before)),
        ("old cloud headroom samples / breaches", f"{samples} / {breaches}"),
        ("load (1, 5, 15 min) before / after", loads),
    ]
    for r in rows:
        table.add_row(*r)
    con.print(table)
    return 0 if after == before and not breaches else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="xcloud_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--vms-per-host", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="xcloud-bench-") as tmp:
        return bench(Path(tmp), a.hosts, a.vms_per_host, a.seed, Console())


if __name__ == "__main__":
    sys.exit(main())
