"""`rollwave execute PLAN --source-cloud A --target-cloud B`: a side-by-side plan executed across
two clouds (planner/executor/crosscloud.py); the options that fit together, the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from planner.cli.common import err
from planner.errors import UsageError

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
    )
    echo(f"every wave done; journal {journal}")
    return 0
