"""`rollwave execute PLAN --source-cloud A --target-cloud B`: a side-by-side plan executed across
two clouds (planner/executor/crosscloud.py); the options that fit together, the run."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from planner.cli.common import emit_json, err, out
from planner.documents import read_bytes
from planner.errors import ExitCode, InputError, UsageError

# The in-place run's options a side-by-side run does not take (their defaults aside).
IN_PLACE_ONLY = (
    "upgrade_command",
    "rollback_command",
    "health_command",
    "canary",
    "dry_run",
    "mapping_path",
    "model_path",
    "notify_command",
    "notify_webhook",
)


def run_side_by_side(p: dict[str, Any]) -> int:
    from planner.app.crosscloud import execute_side_by_side
    from planner.cli.execute import default_journal
    from planner.executor.crosscloud import CrossOptions, read_network_map

    if not (p["source_cloud"] and p["target_cloud"]):
        raise UsageError("give both --source-cloud and --target-cloud")
    if p["plan"] is None:
        raise UsageError("give the side-by-side PLAN to execute")
    wrong = [f"--{k.removesuffix('_path').replace('_', '-')}" for k in IN_PLACE_ONLY if p[k]]
    if wrong:
        raise UsageError(f"{', '.join(wrong)}: not for a side-by-side run")
    networks = read_network_map(p["network_map"]) if p["network_map"] else {}
    opts = CrossOptions(
        source_cloud=p["source_cloud"],
        target_cloud=p["target_cloud"],
        networks=networks,
        deploy_hook=p["deploy_hook"],
        handover_hook=p["handover_hook"],
        poll_s=p["poll_s"],
        timeout_s=p["migration_timeout_s"] or 600.0,
        hook_timeout_s=p["hook_timeout_s"],
        network_map_path=p["network_map"] or "--network-map",
        allow_api_loss=p["allow_api_loss"],
        window_wait=p["window_wait"],
    )
    journal = Path(p["journal_path"]) if p["journal_path"] else default_journal(p["plan"])

    def echo(line: str) -> None:
        if not p["quiet"]:
            err.print(line, markup=False, highlight=False)

    execute_side_by_side(
        p["plan"],
        opts,
        journal,
        resume=p["resume"],
        inventory_path=p["inventory_path"],
        allow_digest_mismatch=p["allow_digest_mismatch"],
        allow_check_failures=p["allow_check_failures"],
        echo=echo,
        warn=lambda line: err.print(line, markup=False, highlight=False),
    )
    echo(f"every wave done; journal {journal}")
    return 0


def is_crosscloud_journal(path: str) -> bool:
    from planner.executor.crosscloud import JOURNAL_KIND

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False  # a FIFO or a device: the in-place reader refuses it, without reading
        with open(path) as f:
            head = json.loads(f.readline() or "{}")
    except (OSError, ValueError):
        return False  # the in-place reader says what is wrong with it
    return isinstance(head, dict) and head.get("kind") == JOURNAL_KIND


def status_side_by_side(path: str, fmt: str) -> int:
    """`execute --status` of a side-by-side run's journal: where it stands (no cloud touched)."""
    recs = []
    raw = read_bytes(path)  # a regular file only (a FIFO or a device: exit 2, not a hang)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text (byte {exc.start})") from None
    for line in text.splitlines():
        try:
            recs.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a kill
    if not recs:
        raise InputError(path, "empty journal")
    head, body = recs[0], recs[1:]
    done = [str(r["step"]) for r in body if r.get("event") == "done"]
    waves = [s for s in done if s.startswith("wave:")]
    moved = [r["vm"] for r in body if r.get("event") == "xc-moved"]
    last = body[-1] if body else head
    # Crossings that met their project's window closed and have not crossed since.
    waiting = {
        str(r["vm"]): str(r.get("opens"))
        for r in body
        if r.get("event") == "window-wait" and f"vm:{r['vm']}:{r.get('wave')}" not in done
    }
    data = {
        "plan_sha256": head.get("plan_sha256"),
        "source": head.get("source"),
        "target": head.get("target"),
        "finished": any(r.get("event") == "run-done" for r in body),
        "waves_done": len(waves),
        "vms_crossed": len(moved),
        "deployed": "deploy" in done,
        "hosts_handed_over": sorted(s[5:] for s in done if s.startswith("role:")),
        "waiting_for_window": [{"vm": vm, "opens": t} for vm, t in sorted(waiting.items())],
        "last_event": last.get("event"),
        "last_record_at": last.get("at"),
    }
    if fmt == "json":
        emit_json(data)
        return int(ExitCode.OK)
    out.print(
        f"journal {path}: side-by-side, plan {str(data['plan_sha256'])[:12]}, "
        f"{data['source']} -> {data['target']}"
    )
    out.print(
        f"status: {'finished' if data['finished'] else 'not finished (--resume continues it)'}; "
        f"waves done: {data['waves_done']}; VMs crossed: {data['vms_crossed']}; new control "
        f"plane {'deployed' if data['deployed'] else 'not deployed'}; hosts with their role: "
        f"{len(data['hosts_handed_over'])}"
    )
    if waiting:
        first = min(waiting.values())
        out.print(
            f"waiting for their project's window: {len(waiting)} VM(s) "
            f"({', '.join(sorted(waiting)[:5])}); the first window opens at {first}"
        )
    out.print(f"last: {data['last_event']} at {data['last_record_at']}")
    return int(ExitCode.OK)
