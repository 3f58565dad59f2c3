"""The canary: after the first N upgraded hosts are back, a few VMs of the next wave move onto them
(its own evacuees bound for them first, then others the re-planner sends there), the run soaks,
then judges: each VM ACTIVE where it went, each host's service up at the target version, the
health command. A failed canary rolls every canary host back (they share the new version).
"""

from __future__ import annotations

from planner.executor.context import RunContext
from planner.executor.headroom import HeadroomWatch
from planner.executor.hooks import expand, tail
from planner.executor.hosts import HostUpgrades
from planner.executor.migrations import Migrations
from planner.executor.states import (
    TERMINAL_VM,
    Ev,
    HostRun,
    HostState,
    HostStatus,
    Op,
    VmRun,
    VmState,
)
from planner.executor.ui import hms
from planner.inventory import Inventory
from planner.plan import Migration, Wave
from planner.policy import Policy

STEP = "canary"


class Canary:
    """`maybe` after each wave: the canary once its hosts are there, or a failed one's end."""

    def __init__(
        self,
        ctx: RunContext,
        migrations: Migrations,
        hosts: HostUpgrades,
        headroom: HeadroomWatch,
    ) -> None:
        self.ctx = ctx
        self.migrations = migrations
        self.hosts = hosts
        self.headroom = headroom

    def maybe(self, k: int) -> None:
        """After wave k: the canary, if it is due (or the end of a failed one's rollback)."""
        ctx = self.ctx
        n = ctx.opts.canary
        st = ctx.state
        if n <= 0 or st.canary_over:
            return
        verdict = st.canary_verdict
        if verdict is not None:  # resumed after a failed canary's verdict: finish the rollback
            self._failed(k, list(verdict["hosts"]), verdict["problems"])
            return
        # The canary moves VMs onto its hosts: upgraded compute hosts in service (not a
        # controller, not a host someone else had disabled before the run).
        able = self._able()
        order = [
            h
            for h in st.upgrade_order
            if st.outcomes[h].status == HostStatus.UPGRADED and h in able
        ]
        nxt = st.schedule[k] if k < len(st.schedule) else None
        if not order or (len(order) < n and nxt is not None):
            return
        self._run(k, order[:n], nxt)

    def _able(self) -> set[str]:
        """Hosts the canary may use: compute hosts in service when the wave began (this run's
        own disabled hosts count as in service)."""
        v = self.ctx.view
        return set() if v is None else {h.name for h in v.hosts if h.is_compute and h.enabled}

    def _picks(
        self, k: int, hosts: list[str], nxt: Wave | None, view: Inventory, vpolicy: Policy
    ) -> list[Migration]:
        """The next wave's own evacuees bound for the canary hosts, then more of them
        re-targeted to the canary hosts when the checker agrees."""
        ctx = self.ctx
        want = max(ctx.opts.canary_vms, 0)
        if nxt is None or want == 0:
            return []
        todo = [
            m
            for m in nxt.migrations
            if (k + 1, m.vm) not in ctx.state.done_moves and m.method == "live"
        ]
        picks = [m for m in todo if m.dst in hosts][:want]
        taken = {m.vm for m in picks}
        for m in todo:
            if len(picks) >= want:
                break
            if m.vm in taken:
                continue
            others = tuple(o for o in nxt.migrations if o.vm != m.vm)
            dst = ctx.replanner.reroute(
                view,
                vpolicy,
                m.vm,
                wave_hosts=nxt.hosts,
                others=others,
                stops=nxt.stops,
                avoid=set(),
                only=set(hosts),
            )
            if dst is None:
                continue
            ctx.log(
                Ev.NOTE,
                Op.RETARGET,
                wave=k + 1,
                vm=m.vm,
                src=m.src,
                old=m.dst,
                dst=dst[0],
                method=dst[1],
                reason="canary",
            )
            picks.append(Migration(m.vm, m.src, dst[0], "live"))
            taken.add(m.vm)
        return picks

    def _run(self, k: int, hosts: list[str], nxt: Wave | None) -> None:
        ctx = self.ctx
        view, vpolicy = ctx.planning_view(ctx.snapshot())
        picks = self._picks(k, hosts, nxt, view, vpolicy)
        vms = [m.vm for m in picks]
        ctx.log(Ev.INTENT, Op.CANARY, step=STEP, wave=k, hosts=hosts, vms=vms)
        ctx.ui.line(
            f"[bold]canary[/]: {', '.join(hosts)}; moving {len(picks)} VM(s) of the next wave "
            f"onto them, then a soak of {hms(ctx.opts.soak_s)}"
        )
        ctx.notify("canary", wave=k, hosts=hosts, message="start")
        vruns = self._move(k, picks, view)
        if vruns is None:
            return
        problems: dict[str, list[str]] = {h: [] for h in hosts}
        for v in vruns.values():
            if v.state != VmState.DONE:
                problems.setdefault(v.dst, []).append(f"{v.label} could not be moved onto it")
        if not self._soak():
            return
        self._judge(k, hosts, vruns, problems)
        bad = {h: p for h, p in problems.items() if p}
        if not bad:
            ctx.log(Ev.DONE, Op.CANARY, step=STEP, wave=k, hosts=hosts, vms=vms)
            ctx.ui.line("[green]canary passed[/]")
            ctx.notify("canary", wave=k, hosts=hosts, message="passed")
            return
        ctx.log(Ev.NOTE, Op.CANARY, what="verdict", ok=False, wave=k, hosts=hosts, problems=bad)
        self._failed(k, hosts, bad)

    def _move(self, k: int, picks: list[Migration], view: Inventory) -> dict[str, VmRun] | None:
        """Move the picks onto the canary hosts; None when interrupted."""
        ctx = self.ctx
        vruns = {m.vm: self.migrations.vmrun(m, k + 1, view) for m in picks}
        ctx.vruns = vruns
        ctx.hruns = {}
        ctx.ui.wave_start("canary", len(picks), 0)
        while any(v.state not in TERMINAL_VM for v in vruns.values()):
            if ctx.interrupts >= 2:
                self.migrations.abort_in_flight(vruns)
            self.migrations.schedule(vruns)
            self.migrations.poll(vruns)
            if ctx.interrupts and not any(v.state == VmState.RUNNING for v in vruns.values()):
                return None
            ctx.tick_ui(vruns, {})
            ctx.sleep_tick()
        return vruns

    def _soak(self) -> bool:
        """Wait `--soak` seconds, counted down on the bar and in the ETA; False when
        interrupted."""
        ctx = self.ctx
        if ctx.dry:
            ctx.ui.line(f"SOAK {ctx.opts.soak_s:g} s")
            return True
        if ctx.opts.soak_s <= 0:
            return True
        ctx.ui.line(f"  soaking {hms(ctx.opts.soak_s)} ...")
        t = ctx.clock()
        end = t + ctx.opts.soak_s
        if ctx.eta is not None:
            ctx.eta.soak_begin(t, ctx.opts.soak_s)
        ctx.show_eta(t, journal=True)
        # the bar and the ETA count the soak down (not a frozen ETA for S seconds)
        while (t := ctx.clock()) < end:
            if ctx.interrupts:
                return False
            ctx.ui.soaking(end - t)
            ctx.show_eta(t)
            ctx.sleep(min(ctx.opts.poll_s, max(end - t, 0.0)))
        ctx.ui.soaking(None)
        if ctx.eta is not None:
            ctx.eta.soak_end()
        ctx.show_eta(t, journal=True)
        return True

    def _judge(
        self, k: int, hosts: list[str], vruns: dict[str, VmRun], problems: dict[str, list[str]]
    ) -> None:
        """After the soak: the moved VMs, each host's service, the health command."""
        ctx = self.ctx
        for v in vruns.values():
            if v.state != VmState.DONE:
                continue
            srv = ctx.cloud.server(v.vm)
            if srv is None or srv.status != "ACTIVE" or srv.host != v.dst:
                got = f"{srv.status} on {srv.host}" if srv else "deleted"
                problems[v.dst].append(f"{v.label} is {got} after the soak")
        for h in hosts:
            ok, why = self.hosts.healthy(h, ctx.policy.target_version)
            if not ok:
                problems[h].append(why)
            if ctx.opts.health_command:
                rc, out = self._run_health(h, k)
                if rc != 0:
                    problems[h].append(
                        f"the health command exited {rc}" + (f" ({out})" if out else "")
                    )

    def _failed(self, k: int, hosts: list[str], bad: dict[str, list[str]]) -> None:
        """A failed canary rolls back every canary host (they share the new version)."""
        ctx = self.ctx
        summary = "; ".join(f"{h}: {', '.join(p)}" for h, p in bad.items())
        ctx.ui.error(f"canary failed: {summary}")
        ctx.notify("canary", wave=k, hosts=hosts, message=f"failed: {summary}")
        reasons = {h: f"canary failed: {'; '.join(bad.get(h) or [summary])}" for h in hosts}
        self._roll_back_hosts(k, hosts, reasons)
        if ctx.interrupts:
            return
        ctx.log(Ev.FAILED, Op.CANARY, step=STEP, wave=k, hosts=hosts, reason=summary)

    def _run_health(self, host: str, k: int) -> tuple[int, str]:
        ctx = self.ctx
        assert ctx.opts.health_command
        version = ctx.policy.target_version
        cmd = expand(ctx.opts.health_command, host=host, wave=k, plan=ctx.sha, version=version)
        step = f"w{k}/health/{host}"
        log = ctx.hooks.log_path(Op.HEALTH, host)
        ctx.log(Ev.INTENT, Op.HEALTH, step=step, wave=k, host=host, log=log and str(log))
        proc = ctx.hooks.start(Op.HEALTH, host, cmd, wave=k, plan=ctx.sha, version=version)
        t0 = ctx.clock()
        while (rc := proc.poll()) is None:
            if ctx.opts.hook_timeout_s and ctx.clock() - t0 > ctx.opts.hook_timeout_s:
                proc.kill()
                rc = -1
                break
            ctx.sleep(min(ctx.opts.poll_s, 0.5))
        out = tail(proc.log, 1)
        ev = Ev.DONE if rc == 0 else Ev.FAILED
        ctx.log(ev, Op.HEALTH, step=step, wave=k, host=host, rc=rc)
        return rc, out

    def _roll_back_hosts(self, k: int, hosts: list[str], reasons: dict[str, str]) -> None:
        """The rollback path for hosts already upgraded and back in service: disable, run the
        rollback command, wait for the old version, enable; their guests stay where they are
        (the daemons restart under them, as during the upgrade)."""
        ctx = self.ctx
        view, vpolicy = ctx.planning_view(ctx.snapshot())
        hruns: dict[str, HostRun] = {}
        for h in hosts:
            if ctx.state.outcomes.get(h) and ctx.state.outcomes[h].status != HostStatus.UPGRADED:
                continue  # rolled back already (a resumed run)
            hr = HostRun(h, True, k, ctx.state.first_version.get(h) or None)
            hr.failure = reasons[h]
            hruns[h] = hr
            self._begin_rollback(hr, k)
        ctx.hruns = hruns
        ctx.vruns = {}
        self.headroom.start(view, vpolicy, list(hruns))
        ctx.bar_overall = False
        ctx.ui.wave_start("rollback", len(hruns), 0)
        while not all(hr.state == HostState.FINISHED for hr in hruns.values()):
            for hr in hruns.values():
                self.hosts.advance(hr, {})
            if ctx.interrupts and not any(hr.busy for hr in hruns.values()):
                return
            if all(hr.state == HostState.FINISHED for hr in hruns.values()):
                break
            ctx.tick_ui({}, hruns)
            ctx.sleep_tick()

    def _begin_rollback(self, hr: HostRun, k: int) -> None:
        """Where the journal says the host's rollback stands, or its start: disabled again, the
        rollback command (without one: the host is failed, left disabled)."""
        ctx = self.ctx
        h = hr.host
        last = ctx.state.last_steps.get(h, {})
        if last.get(Op.RBWAIT) == Ev.DONE:
            hr.state, hr.rolled_back = HostState.ENABLING, True
            return
        if last.get(Op.ROLLBACK) == Ev.DONE:
            hr.state, hr.t0, hr.rolled_back = HostState.RB_WAITING, ctx.clock(), True
            return
        svc = ctx.cloud.service(h)
        if svc is not None and svc.enabled:
            step = f"w{k}/disable/{h}"
            why = f"rollwave: plan {ctx.sha[:12]} canary failed"
            ctx.log(Ev.INTENT, Op.DISABLE, step=step, wave=k, host=h, reason=why)
            ctx.cloud.set_service(h, False, why)
            ctx.log(Ev.DONE, Op.DISABLE, step=step, wave=k, host=h, reason=why)
        if ctx.opts.rollback_command:
            self.hosts.begin_hook(hr, Op.ROLLBACK, ctx.opts.rollback_command)
        else:
            self.hosts.host_failed(hr, f"{hr.failure}; no --rollback-command", left_disabled=True)
