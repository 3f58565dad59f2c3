"""Host upgrades: each host of a wave is disabled, drained (its migrations), checked empty, its
stopped VMs shut down, upgraded (the upgrade command), waited for (its compute service up at the
target version), enabled, its VMs started again. When the upgrade fails or the host does not come
back healthy: the rollback command, the same wait for the old version, and the host stays not
upgraded (`--on-host-failure` says whether the run goes on).

`advance` moves one host's pipeline (`HostRun`) one step; the orchestrator calls it at each poll.
"""

from __future__ import annotations

from planner.errors import ExecutionError
from planner.executor.context import RunContext
from planner.executor.eta import host_step
from planner.executor.headroom import HeadroomWatch
from planner.executor.hooks import expand, tail
from planner.executor.journal import RUNNING
from planner.executor.migrations import Migrations
from planner.executor.states import (
    STILL_TO_MOVE,
    TERMINAL_VM,
    Ev,
    HostRun,
    HostState,
    HostStatus,
    Op,
    VmRun,
    VmState,
)
from planner.inventory import Inventory

# States compared for every host at every poll, read once: an enum member read through its
# class costs a call to the enum's metaclass (Python 3.11), about ten times a global's read.
_DRAINING, _FINISHED = HostState.DRAINING, HostState.FINISHED


class HostUpgrades:
    """The host runs of the work under way (`RunContext.hruns`), each moved by `advance`."""

    def __init__(self, ctx: RunContext, migrations: Migrations, headroom: HeadroomWatch) -> None:
        self.ctx = ctx
        self.migrations = migrations
        self.headroom = headroom

    # -- before the drain -------------------------------------------------------------------------
    def disable(self, k: int, hosts: list[str], view: Inventory) -> None:
        ctx = self.ctx
        for h in hosts:
            if not view.has_host(h) or not view.host(h).is_compute:
                continue
            if h in ctx.state.disabled_by_us:
                continue
            svc = ctx.cloud.service(h)
            if svc is None:
                ctx.ui.warn(f"{h}: no nova-compute service found; not disabled")
                continue
            if not svc.enabled:
                ctx.log(
                    Ev.NOTE,
                    Op.DISABLE,
                    wave=k,
                    host=h,
                    already=True,
                    reason=svc.disabled_reason,
                )
                ctx.ui.line(
                    f"  {h}: already disabled ({svc.disabled_reason or 'no reason'}); "
                    "it stays disabled after its upgrade"
                )
                continue
            step = f"w{k}/disable/{h}"
            ctx.log(Ev.INTENT, Op.DISABLE, step=step, wave=k, host=h, reason=ctx.reason(k))
            ctx.cloud.set_service(h, False, ctx.reason(k))
            ctx.log(Ev.DONE, Op.DISABLE, step=step, wave=k, host=h, reason=ctx.reason(k))
            ctx.ui.line(f"  {h}: disabled")

    def hostrun(self, h: str, k: int, view: Inventory, live: Inventory) -> HostRun:
        """The host's pipeline, where the journal says it stands (a resumed run)."""
        ctx = self.ctx
        compute = view.has_host(h) and view.host(h).is_compute
        hr = HostRun(h, compute, k, None)
        if compute:
            hr.version_before = self._observed_version_before(h)
        last = ctx.state.last_steps.get(h, {})
        if last.get(Op.RBWAIT) == Ev.DONE:
            hr.state, hr.rolled_back = HostState.ENABLING, True
            hr.failure = last.get("failure_reason", "upgrade failed")
        elif last.get(Op.ROLLBACK) == Ev.DONE and last.get(Op.RBWAIT) != Ev.FAILED:
            hr.state, hr.t0, hr.rolled_back = HostState.RB_WAITING, ctx.clock(), True
            hr.failure = last.get("failure_reason", "upgrade failed")
        elif last.get(Op.ROLLBACK) == Ev.FAILED or last.get(Op.RBWAIT) == Ev.FAILED:
            hr.failure = last.get("failure_reason", "upgrade failed")
            self.host_failed(hr, "the rollback failed earlier", left_disabled=True)
        elif last.get(Op.UPGRADE) == Ev.FAILED or last.get(Op.WAIT) == Ev.FAILED:
            hr.failure = last.get("failure_reason", "upgrade failed")
            self._fail_path(hr, hr.failure)
        elif last.get(Op.WAIT) == Ev.DONE:
            hr.state = HostState.ENABLING
        elif last.get(Op.UPGRADE) == Ev.DONE:
            hr.state, hr.t0 = HostState.WAITING, ctx.clock()
        return hr

    def _observed_version_before(self, h: str) -> str | None:
        """The version the cloud reported before this run touched the host, when it publishes
        one (None otherwise: nothing to compare after a rollback)."""
        ctx = self.ctx
        first = ctx.state.first_version.get(h)
        if first is not None:
            return first or None
        v = ctx.cloud.host_version(h)
        ctx.log(Ev.NOTE, Op.VERSION, host=h, version=v or "")
        return v

    # -- the pipeline -----------------------------------------------------------------------------
    def advance(self, hr: HostRun, vruns: dict[str, VmRun]) -> None:
        if hr.state is _FINISHED:
            return
        if hr.state is _DRAINING:
            mine = [v for v in vruns.values() if v.src == hr.host]
            if any(v.state not in TERMINAL_VM for v in mine):
                return
            if hr.abandoned:
                self._finish_not_upgraded(hr, hr.abandoned)
                return
            if self.ctx.interrupts:
                return
            if hr.compute and not hr.verified_empty and not self._verify_empty(hr, vruns):
                return
            self._begin_stops(hr)
        elif hr.state == HostState.STOPPING:
            self._poll_stops(hr)
        elif hr.state == HostState.UPGRADING:
            self._poll_hook(hr, Op.UPGRADE)
        elif hr.state == HostState.WAITING:
            self._poll_service(hr, Op.WAIT, self.ctx.policy.target_version)
        elif hr.state == HostState.ROLLING_BACK:
            self._poll_hook(hr, Op.ROLLBACK)
        elif hr.state == HostState.RB_WAITING:
            self._poll_service(hr, Op.RBWAIT, hr.version_before)
        elif hr.state == HostState.ENABLING:
            self._enable(hr)
        elif hr.state == HostState.STARTING:
            self._poll_starts(hr)

    def _verify_empty(self, hr: HostRun, vruns: dict[str, VmRun]) -> bool:
        """Nothing may be left on a host about to be upgraded but what the plan stops: a VM that
        appeared on it meanwhile gets a destination too (or the host is not upgraded)."""
        ctx = self.ctx
        assert ctx.wave is not None
        stops = {s.vm for s in ctx.wave.stops if s.host == hr.host}
        on = set(ctx.cloud.servers_on(hr.host))
        gave_up = {v.vm for v in vruns.values() if v.state == VmState.GAVE_UP}
        extra = sorted(on - stops - gave_up)
        if not extra:
            hr.verified_empty = True
            return True
        ctx.ui.warn(f"{hr.host}: {len(extra)} VM(s) appeared on it during the wave: {extra[:5]}")
        ctx.notify("drift", wave=hr.wave, host=hr.host, message=f"new VMs on {hr.host}")
        for vm in extra:
            if vm in vruns and vruns[vm].state in STILL_TO_MOVE:
                continue
            if not self._send_elsewhere(hr, vm):
                return False
        return False

    def _send_elsewhere(self, hr: HostRun, vm: str) -> bool:
        """A VM that appeared on the host: a destination from the re-planner, or the host is not
        upgraded (False)."""
        ctx = self.ctx
        v = VmRun(vm, ctx.label(vm), hr.host, hr.host, "live", hr.wave, "ACTIVE")
        v.state = VmState.PENDING
        ctx.vruns[vm] = v
        dst = self.migrations.another_destination(v)
        if dst is None:
            v.state = VmState.GAVE_UP
            ctx.log(
                Ev.NOTE,
                Op.SKIP,
                wave=hr.wave,
                vm=vm,
                host=hr.host,
                reason="could not be moved: appeared during the wave and no host can take it",
            )
            self.migrations.abandon(hr, f"{v.label} appeared on it and no other host can take it")
            return False
        v.dst, v.method = dst
        v.tried = {dst[0]}
        srv = ctx.cloud.server(vm)
        if srv is not None:
            ctx.learn_name(vm, srv.name)
            v.label = ctx.label(vm)
            v.expect_status = srv.status if srv.status in ("ACTIVE", "SHUTOFF") else "ACTIVE"
        ctx.log(
            Ev.NOTE,
            Op.RETARGET,
            wave=hr.wave,
            vm=vm,
            src=hr.host,
            old=None,
            dst=v.dst,
            method=v.method,
            reason="appeared on the host during the wave",
        )
        return True

    def _begin_stops(self, hr: HostRun) -> None:
        ctx = self.ctx
        assert ctx.wave is not None
        for s in ctx.wave.stops:
            if s.host != hr.host or s.vm in ctx.state.stopped_by_us:
                continue
            srv = ctx.cloud.server(s.vm)
            if srv is None or srv.status not in RUNNING:
                ctx.log(
                    Ev.NOTE,
                    Op.STOP,
                    wave=hr.wave,
                    vm=s.vm,
                    host=hr.host,
                    was=srv.status if srv else "deleted",
                )
                continue
            step = f"w{hr.wave}/stop/{s.vm}"
            ctx.log(
                Ev.INTENT, Op.STOP, step=step, wave=hr.wave, vm=s.vm, host=hr.host, was=srv.status
            )
            ctx.cloud.stop_server(s.vm)
            hr.stopping[s.vm] = step
        hr.state, hr.t0 = HostState.STOPPING, ctx.clock()
        self._poll_stops(hr)

    def _poll_stops(self, hr: HostRun) -> None:
        ctx = self.ctx
        for vm, step in list(hr.stopping.items()):
            srv = ctx.cloud.server(vm)
            if srv is None or (srv.status == "SHUTOFF" and srv.settled):
                ctx.log(
                    Ev.DONE,
                    Op.STOP,
                    step=step,
                    wave=hr.wave,
                    vm=vm,
                    host=hr.host,
                    was=ctx.state.open_steps.get(step, {}).get("was", "ACTIVE"),
                )
                del hr.stopping[vm]
                ctx.ui.line(f"  {ctx.label(vm)}: stopped on {hr.host}")
        if hr.stopping:
            if ctx.clock() - hr.t0 > ctx.opts.stop_timeout_s:
                for vm, step in hr.stopping.items():
                    ctx.log(Ev.FAILED, Op.STOP, step=step, wave=hr.wave, vm=vm, reason="timeout")
                hr.stopping.clear()
                self.migrations.abandon(hr, "a VM it holds did not shut down")
                hr.state = HostState.ENABLING  # starts again what was stopped, then not upgraded
            return
        if not ctx.opts.upgrade_command:
            raise ExecutionError("no --upgrade-command: nothing upgrades the hosts")
        if ctx.interrupts:
            return
        self.begin_hook(hr, Op.UPGRADE, ctx.opts.upgrade_command)

    # -- commands and the service -----------------------------------------------------------------
    def begin_hook(self, hr: HostRun, kind: Op, template: str) -> None:
        """Start the upgrade or the rollback command."""
        ctx = self.ctx
        version = ctx.policy.target_version
        cmd = expand(template, host=hr.host, wave=hr.wave, plan=ctx.sha, version=version)
        step = f"w{hr.wave}/{kind}/{hr.host}"
        log = ctx.hooks.log_path(kind, hr.host)
        ctx.log(Ev.INTENT, kind, step=step, wave=hr.wave, host=hr.host, log=log and str(log))
        hr.hook = ctx.hooks.start(
            kind, hr.host, cmd, wave=hr.wave, plan=ctx.sha, version=ctx.policy.target_version
        )
        hr.state = HostState.UPGRADING if kind == Op.UPGRADE else HostState.ROLLING_BACK
        hr.t0 = ctx.clock()
        ctx.ui.line(f"  {hr.host}: {kind} started")

    def _poll_hook(self, hr: HostRun, kind: Op) -> None:
        ctx = self.ctx
        assert hr.hook is not None
        rc = hr.hook.poll()
        step = f"w{hr.wave}/{kind}/{hr.host}"
        if rc is None:
            t = ctx.opts.hook_timeout_s
            if t and ctx.clock() - hr.t0 > t:
                hr.hook.kill()
                rc = -1
                why = f"the {kind} command did not finish within {t:.0f} s (killed)"
            else:
                return
        else:
            why = f"the {kind} command exited {rc}"
        secs = round(ctx.clock() - hr.t0, 3)
        if rc == 0:
            ctx.log(Ev.DONE, kind, step=step, wave=hr.wave, host=hr.host, rc=0, seconds=secs)
            ctx.ui.line(f"  {hr.host}: {kind} done ({secs:.0f} s)")
            hr.state = HostState.WAITING if kind == Op.UPGRADE else HostState.RB_WAITING
            hr.t0 = ctx.clock()
            if kind == Op.ROLLBACK:
                hr.rolled_back = True
            return
        if ctx.interrupts >= 2:
            ctx.log(
                Ev.FAILED,
                kind,
                step=step,
                wave=hr.wave,
                host=hr.host,
                rc=rc,
                reason="killed by the abort",
                interrupted=True,
            )
            hr.state = HostState.DRAINING  # resume runs it again
            return
        out = tail(hr.hook.log)
        detail = f"{why}" + (f"; last output: {out.splitlines()[-1]}" if out else "")
        ctx.log(Ev.FAILED, kind, step=step, wave=hr.wave, host=hr.host, rc=rc, reason=detail)
        ctx.ui.warn(f"{hr.host}: {detail}" + (f" (log: {hr.hook.log})" if hr.hook.log else ""))
        if kind == Op.UPGRADE:
            self._fail_path(hr, detail)
        else:
            self.host_failed(hr, f"{hr.failure}; then {detail}", left_disabled=True)

    def _poll_service(self, hr: HostRun, what: Op, version: str | None) -> None:
        ctx = self.ctx
        if not hr.compute:
            ctx.log(Ev.DONE, what, step=f"w{hr.wave}/{what}/{hr.host}", wave=hr.wave, host=hr.host)
            hr.state = HostState.ENABLING
            return
        now = ctx.clock()
        if now - hr.last_poll < ctx.opts.poll_s and not ctx.dry:
            return
        hr.last_poll = now
        ok, why = self.healthy(hr.host, version)
        step = f"w{hr.wave}/{what}/{hr.host}"
        if ok:
            ctx.log(Ev.DONE, what, step=step, wave=hr.wave, host=hr.host, version=version)
            hr.state = HostState.ENABLING
            return
        if now - hr.t0 > ctx.opts.service_timeout_s or ctx.dry:
            after = "upgrade" if what == Op.WAIT else "rollback"
            reason = f"not healthy {ctx.opts.service_timeout_s:.0f} s after the {after}: {why}"
            ctx.log(Ev.FAILED, what, step=step, wave=hr.wave, host=hr.host, reason=reason)
            ctx.ui.warn(f"{hr.host}: {reason}")
            if what == Op.WAIT:
                self._fail_path(hr, reason)
            else:
                self.host_failed(hr, f"{hr.failure}; then {reason}", left_disabled=True)

    def healthy(self, host: str, version: str | None) -> tuple[bool, str]:
        """The host's compute service is up and reports `version` (when it reports one)."""
        svc = self.ctx.cloud.service(host)
        if svc is None:
            return False, "no nova-compute service"
        if not svc.up:
            return False, "its compute service is down"
        if version:
            got = self.ctx.cloud.host_version(host)
            if got is not None and got != version:
                return False, f"it reports version {got}, expected {version}"
        return True, ""

    def kill_hooks(self, hruns: dict[str, HostRun]) -> None:
        for hr in hruns.values():
            if hr.hook is not None and hr.hook.poll() is None:
                hr.hook.kill()

    # -- failures ---------------------------------------------------------------------------------
    def _fail_path(self, hr: HostRun, reason: str) -> None:
        """The upgrade failed or the host did not come back healthy: roll back if we can."""
        ctx = self.ctx
        hr.failure = reason
        ctx.notify("host_failed", wave=hr.wave, host=hr.host, message=reason)
        if ctx.opts.rollback_command:
            ctx.ui.line(f"  {hr.host}: rolling back ({reason})")
            self.begin_hook(hr, Op.ROLLBACK, ctx.opts.rollback_command)
            hr.state = HostState.ROLLING_BACK
            return
        self.host_failed(hr, reason, left_disabled=True)

    def host_failed(self, hr: HostRun, reason: str, *, left_disabled: bool) -> None:
        ctx = self.ctx
        disabled = left_disabled and hr.host in ctx.state.disabled_by_us
        ctx.log(
            Ev.NOTE,
            Op.HOST,
            wave=hr.wave,
            host=hr.host,
            status=HostStatus.FAILED,
            reason=reason,
            disabled=disabled,
        )
        hr.state = HostState.FINISHED
        ctx.bar(host_step(hr.host))
        ctx.ui.error(
            f"{hr.host}: {reason}; "
            + ("left disabled by rollwave" if disabled else "not back in service")
        )
        ctx.on_host_failure(hr.host, reason)

    # -- back in service --------------------------------------------------------------------------
    def _finish_not_upgraded(self, hr: HostRun, reason: str) -> None:
        hr.abandoned = reason
        hr.state = HostState.ENABLING
        self._enable(hr)

    def _enable(self, hr: HostRun) -> None:
        ctx = self.ctx
        if hr.host in ctx.state.disabled_by_us:
            step = f"w{hr.wave}/enable/{hr.host}"
            ctx.log(Ev.INTENT, Op.ENABLE, step=step, wave=hr.wave, host=hr.host)
            ctx.cloud.set_service(hr.host, True)
            ctx.log(Ev.DONE, Op.ENABLE, step=step, wave=hr.wave, host=hr.host)
            ctx.ui.line(f"  {hr.host}: enabled")
        self.headroom.host_back(hr.host)
        for vm, host in list(ctx.state.stopped_by_us.items()):
            if host != hr.host or vm in hr.starting:
                continue
            step = f"w{hr.wave}/start/{vm}"
            ctx.log(Ev.INTENT, Op.START, step=step, wave=hr.wave, vm=vm, host=hr.host)
            ctx.cloud.start_server(vm)
            hr.starting[vm] = step
        hr.state, hr.t0 = HostState.STARTING, ctx.clock()
        self._poll_starts(hr)

    def _poll_starts(self, hr: HostRun) -> None:
        ctx = self.ctx
        for vm, step in list(hr.starting.items()):
            srv = ctx.cloud.server(vm)
            if srv is not None and srv.status == "ACTIVE" and srv.settled:
                ctx.log(Ev.DONE, Op.START, step=step, wave=hr.wave, vm=vm, host=hr.host)
                del hr.starting[vm]
                ctx.ui.line(f"  {ctx.label(vm)}: started on {hr.host}")
            elif srv is None or ctx.clock() - hr.t0 > ctx.opts.stop_timeout_s:
                why = "deleted" if srv is None else f"{srv.status} after the timeout"
                ctx.log(Ev.FAILED, Op.START, step=step, wave=hr.wave, vm=vm, reason=why)
                ctx.ui.warn(f"{ctx.label(vm)} on {hr.host} did not start: {why}")
                del hr.starting[vm]
        if hr.starting:
            return
        if hr.abandoned or hr.rolled_back:
            reason = hr.abandoned or f"rolled back: {hr.failure}"
            ctx.log(
                Ev.NOTE,
                Op.HOST,
                wave=hr.wave,
                host=hr.host,
                status=HostStatus.NOT_UPGRADED,
                reason=reason,
            )
            ctx.ui.line(f"  [yellow]{hr.host}: not upgraded[/] ({reason})")
            if hr.rolled_back or hr.failure:
                ctx.on_host_failure(hr.host, reason)
        else:
            ctx.log(Ev.NOTE, Op.HOST, wave=hr.wave, host=hr.host, status=HostStatus.UPGRADED)
            ctx.ui.line(f"  [green]{hr.host}: upgraded[/]")
        hr.state = HostState.FINISHED
        ctx.bar(host_step(hr.host), dropped=bool(hr.abandoned and not hr.rolled_back))
