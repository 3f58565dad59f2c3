"""Planned force-completes: a live migration with `force_complete_after_s` is force-completed
through Nova's API that long after it started, or earlier once its remaining memory has reached
no new low for `--force-stall` seconds (it is not converging). Progress comes from the server's
migrations (`GET /servers/{id}/migrations`, 2.23+): the lowest `memory_remaining_bytes` seen,
since a pre-copy pass's remaining memory rises again as the guest dirties pages. A block
migration copies the guest's disks first (`disk_remaining_bytes` above 0), its memory all
remaining meanwhile: nothing is forced then, and the stall is counted from the first read after
the disks are copied (a force now would pause the guest for the rest of the disk copy).

Nova may refuse the force (an error answer), or accept it and the hypervisor do nothing (post-copy
not permitted and the guest's pause refused: libvirt only logs that). The migration then keeps
running with no new low for `--force-stall` seconds after the force. Either way the fallback
runs: the live migration is aborted through the API, then the VM is cold-migrated to the same
destination when the policy's `non_converging` lists `cold` and the VM may be cold-migrated;
else it stays where it is and its host is not upgraded. Each force is a journaled step, each
fallback a note; both are in the run's summary and `--status`.
"""

from __future__ import annotations

from planner.errors import CloudError
from planner.executor.cloud import LiveProgress
from planner.executor.context import RunContext
from planner.executor.states import Ev, Op, VmRun

# Nova refuses a force while the migration is not `running` (queued, preparing): not yet.
_NOT_YET = ("queued", "preparing")


class Forcer:
    """Watches the running live migrations that have a planned force (`tick`, each poll)."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def tick(self, v: VmRun) -> None:
        ctx = self.ctx
        if v.fallback is not None or v.aborting or v.force_after_s is None:
            return
        now = ctx.clock()
        prog = self.progress(v)
        if prog is None or prog.status != "running":
            # Not listed: not begun yet, or past pre-copy (post-copy is not listed), finishing.
            return
        if prog.copying_disks:
            v.low = None  # the memory phase has not begun: no stall, no force yet
            return
        if prog.memory_remaining is not None and (v.low is None or prog.memory_remaining < v.low):
            v.low, v.t_low = prog.memory_remaining, now
        stalled = v.low is not None and now - v.t_low >= ctx.opts.force_stall_s
        if v.forced_t is None:
            due = now - v.t0 >= v.force_after_s
            if due or stalled:
                self.force(v, prog, "planned" if due else "stalled")
            return
        if stalled:
            secs = now - v.forced_t
            self.fallback(
                v,
                f"the force-complete did not take: still running, no progress {secs:.0f} s "
                "after it (the hypervisor could neither switch to post-copy nor pause the guest)",
            )

    def progress(self, v: VmRun) -> LiveProgress | None:
        """This attempt's live migration as Nova lists it (the newest not known before)."""
        mine = [m for m in self.ctx.cloud.live_progress(v.vm) if m.id not in v.known]
        return mine[-1] if mine else None

    def force(self, v: VmRun, prog: LiveProgress, why: str) -> None:
        ctx = self.ctx
        now = ctx.clock()
        v.force_tries += 1
        step = f"{v.step}/force/{v.force_tries}"
        after = round(now - v.t0, 1)
        ctx.log(
            Ev.INTENT,
            Op.FORCE,
            step=step,
            wave=v.wave,
            vm=v.vm,
            migration=prog.id,
            why=why,
            after_s=after,
            planned_s=v.force_after_s,
            remaining=prog.memory_remaining,
        )
        try:
            ctx.cloud.force_complete(v.vm, prog.id)
        except CloudError as exc:
            ctx.log(
                Ev.FAILED,
                Op.FORCE,
                step=step,
                wave=v.wave,
                vm=v.vm,
                migration=prog.id,
                status=exc.status,
                reason=str(exc),
            )
            self._refused(v, exc)
            return
        ctx.log(Ev.DONE, Op.FORCE, step=step, wave=v.wave, vm=v.vm, migration=prog.id, why=why)
        v.forced_t, v.low = now, None
        when = "as planned" if why == "planned" else "early: its remaining memory stopped falling"
        ctx.ui.line(f"  {v.label}: force-complete after {after:g} s ({when})")

    def _refused(self, v: VmRun, exc: CloudError) -> None:
        """Nova answered the force with an error: not yet (queued, a blip), or a refusal."""
        ctx = self.ctx
        again = self.progress(v)
        if again is None or again.status != "running":
            return  # it moved on meanwhile (finished, or post-copy): the polls judge it
        if exc.status is None or exc.status >= 500 or exc.status == 429:
            if v.force_tries <= ctx.opts.retries:
                return  # tried again at the next poll
        elif any(s in str(exc) for s in _NOT_YET):
            return
        self.fallback(v, f"Nova refused the force-complete: {exc}")

    def fallback(self, v: VmRun, why: str) -> None:
        """Abort the live migration; the poll then sends the VM cold, or gives it up."""
        ctx = self.ctx
        to = "cold" if v.cold_ok else None
        ctx.log(
            Ev.NOTE,
            Op.FALLBACK,
            wave=v.wave,
            vm=v.vm,
            src=v.src,
            dst=v.dst,
            to=to,
            reason=why,
        )
        then = f"then a cold migration to {v.dst}" if to else "it stays on its host"
        ctx.ui.warn(f"{v.label}: {why}; aborting the live migration, {then}")
        ctx.notify(
            "force_fallback",
            wave=v.wave,
            vm=v.vm,
            vm_name=ctx.name(v.vm),
            host=v.src,
            message=f"{why}; {then}",
        )
        v.fallback = to or "stay"
        for m in ctx.cloud.migrations(v.vm):
            if m.id not in v.known and m.status in ("running", "queued", "preparing"):
                try:
                    ctx.cloud.abort_migration(v.vm, m.id)
                except CloudError as exc:
                    ctx.ui.warn(f"{v.label}: abort refused: {exc}")
