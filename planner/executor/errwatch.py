"""VMs that land in ERROR during a run: a user's boot on a host the run disabled (Nova's
scheduler finds no valid host; the server is ERROR with no host, so no snapshot lists it), a
failed operation of someone else's. The run does not move them, but it must not be silent
about them: each new one is reported at the end of the wave in which it is seen (a warning, a
`vm-error` note with that wave's number as the run prints it, a `vm_error` notification) and in
the final check. VMs already in ERROR when the run (or its resume) began are not reported.
"""

from __future__ import annotations

from typing import Any

from planner.errors import CloudError
from planner.executor.context import RunContext
from planner.executor.states import Ev, Op


class ErrorWatch:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.before: set[str] | None = None
        self.seen: dict[str, dict[str, Any]] = {}

    def start(self) -> None:
        """The VMs in ERROR before the run touched anything (not reported)."""
        try:
            self.before = {s.id for s in self.ctx.cloud.servers_in_error()}
        except CloudError as exc:
            self.ctx.ui.warn(f"VMs in ERROR not listed: {exc}")

    def check(self, wave: int | None) -> list[dict[str, Any]]:
        """Report the VMs in ERROR now that were not before; the new ones."""
        ctx = self.ctx
        if self.before is None:
            return []
        try:
            now = ctx.cloud.servers_in_error()
        except CloudError as exc:
            ctx.ui.warn(f"VMs in ERROR not listed: {exc}")
            return []
        new = []
        for s in now:
            if s.id in self.before or s.id in self.seen:
                continue
            rec = {"vm": s.id, "name": s.name, "host": s.host, "fault": s.fault}
            self.seen[s.id] = rec
            new.append(rec)
            ctx.log(Ev.NOTE, Op.VM_ERROR, wave=wave, **rec)
            where = f"on {s.host}" if s.host else "on no host"
            fault = f": {s.fault}" if s.fault else ""
            ctx.ui.warn(f"VM {s.name or s.id} ({s.id}) is in ERROR {where}{fault}")
            ctx.notify(
                "vm_error",
                wave=wave,
                vm=s.id,
                vm_name=s.name,
                host=s.host,
                message=f"in ERROR {where}{fault}",
            )
        return new
