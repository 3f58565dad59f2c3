"""Migrations: every VM to its planned host, at most k_out per source, k_in per destination and
`max_parallel` overall; each confirmed ACTIVE (or as it was) on its destination. A failed attempt
is retried (with a growing delay), then another destination is asked of the re-planner, then the
VM is left where it is and its host is not upgraded. A second Ctrl-C aborts the live migrations
in flight through the API.
"""

from __future__ import annotations

from collections import Counter

from planner.checker import vm_label
from planner.errors import CloudError
from planner.executor import moves_nova
from planner.executor.cloud import IN_PROGRESS, Server
from planner.executor.context import RunContext
from planner.executor.eta import vm_step
from planner.executor.force import Forcer
from planner.executor.headroom import HeadroomWatch
from planner.executor.states import (
    STILL_TO_MOVE,
    Ev,
    HostRun,
    HostState,
    Op,
    VmRun,
    VmState,
)
from planner.inventory import Inventory
from planner.plan import Method, Migration

# States compared for every VM at every poll, read once: an enum member read through its
# class costs a call to the enum's metaclass (Python 3.11), about ten times a global's read.
_PENDING, _RUNNING, _RETRY = VmState.PENDING, VmState.RUNNING, VmState.RETRY

# Statuses a VM may be in after its migration, when it was in it before.
KEPT_STATUS = ("ACTIVE", "PAUSED", "SHUTOFF")


class Migrations:
    """The VM runs of the work under way (`RunContext.vruns`): `schedule` starts what the limits
    allow, `poll` follows what runs."""

    def __init__(self, ctx: RunContext, headroom: HeadroomWatch) -> None:
        self.ctx = ctx
        self.headroom = headroom
        self.k_out = ctx.policy.max_concurrent_live_migrations or 1 << 30
        self.k_in = ctx.opts.max_inbound or 1 << 30
        self.forcer = Forcer(ctx)

    def vmrun(self, m: Migration, k: int, view: Inventory) -> VmRun:
        status = view.vm(m.vm).status if view.has_vm(m.vm) else "ACTIVE"
        kind = view.vm(m.vm).migration if view.has_vm(m.vm) else "live"
        group = view.vm(m.vm).server_group if view.has_vm(m.vm) else None
        if m.method == "shelve":
            status = "ACTIVE"  # unshelved, a VM boots
        return VmRun(
            vm=m.vm,
            label=vm_label(view, m.vm),
            src=m.src,
            dst=m.dst,
            method=m.method,
            wave=k,
            expect_status=status if status in KEPT_STATUS else "ACTIVE",
            tried={m.dst},
            force_after_s=m.force_complete_after_s if m.method == "live" else None,
            # the fallback of a force that does not take: cold, if the policy and the VM allow
            cold_ok="cold" in self.ctx.policy.non_converging and kind != "none",
            mates=tuple(x.id for x in view.members(group) if x.id != m.vm) if group else (),
        )

    # -- scheduling -------------------------------------------------------------------------------
    def schedule(self, vruns: dict[str, VmRun]) -> None:
        ctx = self.ctx
        if ctx.interrupts:
            return
        running = [v for v in vruns.values() if v.state is _RUNNING]
        if len(running) >= ctx.opts.max_parallel:
            return
        out_busy = Counter(v.src for v in running)
        in_busy = Counter(v.dst for v in running)
        now = ctx.clock()
        for v in vruns.values():
            # A Ctrl-C may come during one of these calls: nothing new starts after it.
            if len(running) >= ctx.opts.max_parallel or ctx.interrupts:
                return
            if v.state is _RETRY and (now >= v.next_try or ctx.dry):
                v.state = _PENDING
            if v.state is not _PENDING:
                continue
            # A shelve waits for its affinity mates: per-host limits would keep them out.
            shelve = v.method == "shelve"
            if not shelve and (out_busy[v.src] >= self.k_out or in_busy[v.dst] >= self.k_in):
                continue
            if self.start(v):
                running.append(v)
                out_busy[v.src] += 1
                in_busy[v.dst] += 1

    def start(self, v: VmRun) -> bool:
        ctx = self.ctx
        attempt = ctx.state.attempts[(v.wave, v.vm)] + 1
        if attempt > 1 and self._found_on_destination(v):
            return False
        v.known = {m.id for m in ctx.cloud.migrations(v.vm)}
        v.step = f"w{v.wave}/migrate/{v.vm}/{attempt}"
        ctx.log(
            Ev.INTENT,
            Op.MIGRATE,
            step=v.step,
            wave=v.wave,
            vm=v.vm,
            src=v.src,
            dst=v.dst,
            method=v.method,
            attempt=attempt,
        )
        try:
            if v.method == "live":
                ctx.cloud.live_migrate(v.vm, v.dst)
            elif v.method == "cold":
                ctx.cloud.cold_migrate(v.vm, v.dst)
            else:
                moves_nova.start(ctx.cloud, v)
        except CloudError as exc:
            if exc.status is not None and 400 <= exc.status < 500:
                v.state = VmState.RUNNING
                self.attempt_failed(v, f"Nova refused: {exc}")
                return False
            # No answer: the request may or may not have been taken. The server says.
            srv = ctx.cloud.server(v.vm)
            if srv is None or srv.settled:
                v.state = VmState.RUNNING
                self.attempt_failed(v, f"the request failed: {exc}")
                return False
        v.state = VmState.RUNNING
        v.t0 = ctx.clock()
        v.confirmed_resize = False
        v.low, v.forced_t, v.force_tries = None, None, 0
        self.headroom.move(v, forward=True)
        force = ""
        if v.method == "live" and v.force_after_s is not None:
            force = f"; force-complete at {v.force_after_s:g} s"
            if ctx.dry:  # the call it would make, if the migration is still running then
                ctx.cloud.force_complete(v.vm, 0)
        ctx.ui.line(f"  {v.label}: {v.src} -> {v.dst} ({v.method}{force}) ...")
        return True

    def _found_on_destination(self, v: VmRun) -> bool:
        """Before another attempt: a VM an attempt judged failed may have arrived since (Nova
        finished it late); it is not moved again (Nova would refuse: it is there)."""
        ctx = self.ctx
        srv = ctx.cloud.server(v.vm)
        if srv is None or not srv.settled or srv.host != v.dst or srv.status != v.expect_status:
            return False
        ctx.log_found(v.wave, v.vm, v.dst)
        v.state = VmState.DONE
        self.headroom.move(v, forward=True)
        ctx.bar(vm_step(v.vm))
        ctx.ui.line(f"  [green]ok[/] {v.label}: found on {v.dst}, {srv.status}")
        return True

    # -- polling ----------------------------------------------------------------------------------
    def poll(self, vruns: dict[str, VmRun]) -> None:
        ctx = self.ctx
        for v in vruns.values():
            if v.state is not _RUNNING:
                continue
            srv = ctx.cloud.server(v.vm)
            if srv is None:
                ctx.log(
                    Ev.FAILED, Op.MIGRATE, step=v.step, wave=v.wave, vm=v.vm, reason="VM deleted"
                )
                ctx.log(Ev.NOTE, Op.SKIP, wave=v.wave, vm=v.vm, reason="deleted during the run")
                v.state = VmState.GONE
                self.headroom.move(v, forward=False, gone=True)
                ctx.ui.line(f"  {v.label}: deleted meanwhile; nothing to move")
                continue
            if v.method == "cold" and srv.status == "VERIFY_RESIZE":
                self._confirm(v, srv)
                continue
            if v.method == "shelve" and moves_nova.shelve_poll(ctx.cloud, v, srv) is not None:
                continue
            if not srv.settled:
                if v.force_after_s is not None and v.method == "live":
                    self.forcer.tick(v)
                t = ctx.opts.migration_timeout_s
                if t and ctx.clock() - v.t0 > t and not v.aborting:
                    ctx.ui.warn(f"{v.label}: migration over {t:.0f} s; aborting it")
                    self.abort(v)
                continue
            secs = ctx.clock() - v.t0
            if srv.host == v.dst and srv.status == v.expect_status:
                ctx.log(
                    Ev.DONE,
                    Op.MIGRATE,
                    step=v.step,
                    wave=v.wave,
                    vm=v.vm,
                    host=v.dst,
                    seconds=round(secs, 3),
                )
                v.state = VmState.DONE
                ctx.bar(vm_step(v.vm))
                ctx.ui.line(f"  [green]ok[/] {v.label}: on {v.dst}, {srv.status} ({secs:.1f} s)")
                continue
            if v.fallback is not None:
                self._after_fallback(v, srv)
                continue
            self.attempt_failed(v, self._why_failed(v, srv))

    def _after_fallback(self, v: VmRun, srv: Server) -> None:
        """The live migration aborted for the fallback has ended: cold next, or it stays."""
        ctx = self.ctx
        reason = f"aborted for the fallback; {self._why_failed(v, srv)}"
        ctx.log(Ev.FAILED, Op.MIGRATE, step=v.step, wave=v.wave, vm=v.vm, reason=reason)
        self.headroom.move(v, forward=False)
        to, v.fallback = v.fallback, None
        v.force_after_s = v.forced_t = v.low = None
        if to == "cold" and srv.status != "ERROR":
            v.method, v.fails_here, v.state = "cold", 0, VmState.PENDING
            ctx.ui.line(f"  [yellow]fallback[/] {v.label}: cold migration to {v.dst} next")
            return
        v.state = VmState.RUNNING  # give_up ends it
        why = "not converging and the force-complete did not take"
        self.give_up(
            v,
            f"could not be moved: {why}; no cold fallback "
            + ("(it is in ERROR)" if to == "cold" else "(the policy's non_converging lacks cold)"),
        )

    def _confirm(self, v: VmRun, srv: Server) -> None:
        """A cold migration waits in VERIFY_RESIZE: confirm it once, then wait for Nova."""
        ctx = self.ctx
        if not v.confirmed_resize:
            ctx.cloud.confirm_resize(v.vm)
            v.confirmed_resize = True
            v.t_confirm = ctx.clock()
            return
        # Nova confirms asynchronously: VERIFY_RESIZE until the source compute is done.
        t = ctx.opts.confirm_timeout_s
        if ctx.clock() - v.t_confirm < t:
            return
        # Not retried: Nova refuses another migration of a VM whose resize is open, and its
        # source keeps the allocation (a revert would land there): it stays as is.
        self.attempt_failed(
            v,
            f"still VERIFY_RESIZE on {srv.host} {t:g} s after confirmResize",
            no_retry=f"its resize was not confirmed within --confirm-timeout {t:g} s",
            stays=f"{srv.host}, VERIFY_RESIZE",
        )

    def _why_failed(self, v: VmRun, srv: Server) -> str:
        new = [m for m in self.ctx.cloud.migrations(v.vm) if m.id not in v.known]
        rec = f"migration {new[-1].status}" if new else "no migration record"
        where = f"the VM is {srv.status} on {srv.host}"
        fault = f"; fault: {srv.fault}" if srv.fault else ""
        return f"{rec}; {where}{fault}"

    # -- failures ---------------------------------------------------------------------------------
    def attempt_failed(
        self, v: VmRun, reason: str, *, no_retry: str | None = None, stays: str | None = None
    ) -> None:
        """An attempt failed: retry it (`--retries` times on one destination), else ask the
        re-planner for another destination (up to `--retargets` more), else give it up, saying
        why (the last failure, the destinations tried)."""
        ctx = self.ctx
        if no_retry is None and "is ERROR" in reason:
            no_retry = "the VM is in ERROR"
        ctx.log(Ev.FAILED, Op.MIGRATE, step=v.step, wave=v.wave, vm=v.vm, reason=reason)
        self.headroom.move(v, forward=False)
        ctx.notify(
            "migration_failed",
            wave=v.wave,
            vm=v.vm,
            vm_name=ctx.name(v.vm),
            host=v.src,
            message=reason,
        )
        v.fails_here += 1
        if ctx.interrupts:
            v.state = VmState.PENDING  # resume tries again
            return
        if no_retry:
            self.give_up(v, f"could not be moved: {reason} (not retried: {no_retry})", stays)
            return
        if v.fails_here <= ctx.opts.retries:
            # Backing off: a refusal is often a view that catches up (Nova's scheduler keeps a
            # migrated VM listed on its source until its periodic sync, every 120 s by default).
            delay = ctx.opts.retry_delay_s * 2 ** (v.fails_here - 1)
            v.state = VmState.RETRY
            v.next_try = ctx.clock() + delay
            ctx.ui.line(
                f"  [yellow]retry[/] {v.label}: {reason}; attempt {v.fails_here + 1} of "
                f"{ctx.opts.retries + 1} in {delay:.0f} s"
            )
            return
        tried = ", ".join(sorted(v.tried))
        if len(v.tried) > ctx.opts.retargets:
            why = f"{len(v.tried)} destination(s) tried ({tried}), the limit"
        else:
            dst = self.another_destination(v)
            why = f"no other destination fits from the live state (tried {tried})"
            if dst is not None:
                host, method = dst
                ctx.log(
                    Ev.NOTE,
                    Op.RETARGET,
                    wave=v.wave,
                    vm=v.vm,
                    src=v.src,
                    old=v.dst,
                    dst=host,
                    method=method,
                    reason=reason,
                )
                ctx.ui.line(f"  [yellow]re-planned[/] {v.label}: {v.dst} failed; now -> {host}")
                v.dst, v.method, v.fails_here = host, method, 0
                v.tried.add(host)
                v.state = VmState.PENDING
                return
        self.give_up(v, f"could not be moved: {reason}; {why}")

    def another_destination(self, v: VmRun) -> tuple[str, Method] | None:
        """Ask the re-planner for another host from the live state (a fresh snapshot)."""
        ctx = self.ctx
        view, vpolicy = ctx.planning_view(ctx.snapshot())
        hosts = tuple(
            h for h, hr in ctx.hruns.items() if not hr.abandoned and hr.state == HostState.DRAINING
        )
        if v.src not in hosts:
            return None
        others = tuple(
            Migration(o.vm, o.src, o.dst, o.method)  # type: ignore[arg-type]
            for o in ctx.vruns.values()
            if o.vm != v.vm and o.src in hosts and o.state in STILL_TO_MOVE
        )
        assert ctx.wave is not None
        stops = tuple(s for s in ctx.wave.stops if s.host in hosts)
        return ctx.replanner.reroute(
            view, vpolicy, v.vm, wave_hosts=hosts, others=others, stops=stops, avoid=set(v.tried)
        )

    def give_up(self, v: VmRun, reason: str, stays: str | None = None) -> None:
        ctx = self.ctx
        v.state = VmState.GAVE_UP
        ctx.log(Ev.NOTE, Op.SKIP, wave=v.wave, vm=v.vm, host=v.src, reason=reason)
        ctx.ui.line(f"  [red]failed[/] {v.label}: {reason}; it stays on {stays or v.src}")
        ctx.bar(vm_step(v.vm), dropped=True)
        hr = ctx.hruns.get(v.src)
        if hr is not None and not hr.abandoned:
            self.abandon(hr, f"{v.label} could not be moved off it ({reason})")

    def abandon(self, hr: HostRun, reason: str) -> None:
        """The host will not be upgraded: its VMs not yet moved stay where they are."""
        ctx = self.ctx
        hr.abandoned = reason
        for o in ctx.vruns.values():
            if o.src == hr.host and o.state in (VmState.PENDING, VmState.RETRY):
                o.state = VmState.SKIPPED
                ctx.log(
                    Ev.NOTE,
                    Op.SKIP,
                    wave=o.wave,
                    vm=o.vm,
                    host=o.src,
                    reason=f"its host is not upgraded ({reason})",
                )
                ctx.bar(vm_step(o.vm), dropped=True)
        ctx.notify("host_failed", wave=hr.wave, host=hr.host, message=reason)

    # -- aborting ---------------------------------------------------------------------------------
    def abort(self, v: VmRun) -> None:
        v.aborting = True
        if v.method != "live":
            return  # a cold migration cannot be aborted; it finishes
        for m in self.ctx.cloud.migrations(v.vm):
            if m.id not in v.known and m.status in IN_PROGRESS:
                try:
                    self.ctx.cloud.abort_migration(v.vm, m.id)
                except CloudError as exc:
                    self.ctx.ui.warn(f"{v.label}: abort refused: {exc}")

    def abort_in_flight(self, vruns: dict[str, VmRun]) -> None:
        for v in vruns.values():
            if v.state == VmState.RUNNING and not v.aborting:
                self.abort(v)
