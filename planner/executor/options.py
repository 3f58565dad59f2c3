"""The executor's options (the command line's `rollwave execute` options) and what the journal
records of them."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class ExecOptions:
    max_parallel: int = 4
    max_inbound: int | None = 2  # per destination host, as the simulator's executor
    upgrade_command: str | None = None
    rollback_command: str | None = None
    health_command: str | None = None
    replan: bool = True
    on_host_failure: str = "stop"  # or "continue"
    canary: int = 0
    soak_s: float = 0.0
    canary_vms: int = 2
    retries: int = 2  # per destination
    retargets: int = 2  # other destinations asked for after the retries on each
    retry_delay_s: float = 10.0
    poll_s: float = 2.0
    service_timeout_s: float = 600.0
    hook_timeout_s: float = 0.0  # 0: none
    migration_timeout_s: float = 0.0  # 0: none (Nova's own completion timeout applies)
    stop_timeout_s: float = 300.0
    # How long a confirmed cold migration may stay VERIFY_RESIZE (Nova confirms asynchronously).
    confirm_timeout_s: float = 300.0
    replan_time_limit_s: float = 30.0
    # A live migration with a planned force-complete is forced early once its remaining memory
    # has reached no new low for this long; after a force, this long without progress means
    # the force did not take (the fallback runs).
    force_stall_s: float = 30.0
    # Outside the maintenance windows: wait for the next opening (else stop, exit 5).
    window_wait: bool = True


def safe_options(o: ExecOptions) -> dict[str, Any]:
    """The options as the journal records them: no commands (they may carry secrets), only
    whether they were given."""
    return {
        "max_parallel": o.max_parallel,
        "max_inbound": o.max_inbound,
        "upgrade_command": bool(o.upgrade_command),
        "rollback_command": bool(o.rollback_command),
        "health_command": bool(o.health_command),
        "replan": o.replan,
        "on_host_failure": o.on_host_failure,
        "canary": o.canary,
        "soak_s": o.soak_s,
        "canary_vms": o.canary_vms,
        "retries": o.retries,
        "retry_delay_s": o.retry_delay_s,
        "service_timeout_s": o.service_timeout_s,
        "confirm_timeout_s": o.confirm_timeout_s,
        "hook_timeout_s": o.hook_timeout_s,
        "migration_timeout_s": o.migration_timeout_s,
        "poll_s": o.poll_s,
        "replan_time_limit_s": o.replan_time_limit_s,
    } | {k: getattr(o, k) for k in _LATER if getattr(o, k) != _DEFAULT[k]}


# Options added after the journal's first release, recorded only when not at their default: a
# run that does not use them writes the journal an earlier rollwave wrote, and a resume of a
# journal without them takes the command line's value (the default unless given).
_LATER = ("force_stall_s", "window_wait", "retargets")
_DEFAULT = {f.name: f.default for f in fields(ExecOptions)}
