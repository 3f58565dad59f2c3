"""Drift: the run against the live cloud. On resume, the steps the journal says were cut are
reconciled with what the cloud shows; at each wave's start, a fresh snapshot, the planning view
(`view`), migrations found already done, and the remaining plan re-checked against it. On drift,
the remaining waves are re-planned from the live state through the re-planner (and re-checked),
or the run stops before touching the wave (`--no-replan`).
"""

from __future__ import annotations

import time
from typing import Any

from planner.checker import check_plan
from planner.errors import ExecutionError, InfeasibleError
from planner.executor import view as views
from planner.executor.cloud import Server
from planner.executor.context import RunContext
from planner.executor.force import Forcer
from planner.executor.journal import parse_iso, wave_to_dict
from planner.executor.migrations import KEPT_STATUS
from planner.executor.states import Ev, Op, VmRun, VmState
from planner.inventory import Inventory
from planner.plan import Plan, Wave
from planner.policy import Policy


class Drift:
    """The run against the live cloud: `reconcile` on resume, `check` before each wave."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    # -- resume: reconcile the steps the journal says were cut ------------------------------------
    def reconcile(self) -> None:
        ctx = self.ctx
        cut = [r for r in ctx.state.iter_open() if r.get("op") not in (Op.WAVE, Op.RUN)]
        if cut:
            ctx.ui.line(f"resuming: {len(cut)} step(s) were cut; reconciling with the cloud")
        for r in cut:
            op = r["op"]
            if op == Op.MIGRATE:
                self._reconcile_migration(r)
            elif op in (Op.DISABLE, Op.ENABLE):
                svc = ctx.cloud.service(r["host"])
                want_enabled = op == Op.ENABLE
                happened = svc is not None and svc.enabled == want_enabled
                ctx.log(
                    Ev.DONE if happened else Ev.FAILED,
                    Op(op),
                    step=r["step"],
                    wave=r.get("wave"),
                    host=r["host"],
                    reason=r.get("reason") if happened else "cut by the interruption",
                    reconciled=True,
                    interrupted=None if happened else True,
                )
            elif op in (Op.STOP, Op.START):
                srv = ctx.cloud.server(r["vm"])
                want = "SHUTOFF" if op == Op.STOP else "ACTIVE"
                happened = srv is not None and srv.status == want
                ctx.log(
                    Ev.DONE if happened else Ev.FAILED,
                    Op(op),
                    step=r["step"],
                    wave=r.get("wave"),
                    vm=r["vm"],
                    host=r.get("host"),
                    was=r.get("was"),
                    reconciled=True,
                    reason=None if happened else "cut by the interruption",
                    interrupted=None if happened else True,
                )
            else:  # upgrade, rollback, wait, health, canary: done again from their start
                ctx.log(
                    Ev.FAILED,
                    Op(op),
                    step=r["step"],
                    wave=r.get("wave"),
                    host=r.get("host"),
                    reason="cut by the interruption; done again",
                    interrupted=True,
                )

    def _reconcile_migration(self, r: dict[str, Any]) -> None:
        ctx = self.ctx
        vm, dst = str(r["vm"]), r["dst"]
        srv = self._wait_settled(vm, self._adopt_force(r))
        if srv is not None and srv.host == dst and srv.status in KEPT_STATUS:
            ctx.log(
                Ev.DONE,
                Op.MIGRATE,
                step=r["step"],
                wave=r.get("wave"),
                vm=vm,
                host=dst,
                reconciled=True,
            )
            ctx.ui.line(f"  {ctx.label(vm)}: its migration finished meanwhile")
        else:
            where = f"{srv.status} on {srv.host}" if srv else "nowhere (deleted)"
            ctx.log(
                Ev.FAILED,
                Op.MIGRATE,
                step=r["step"],
                wave=r.get("wave"),
                vm=vm,
                reason=f"cut by the interruption; the VM is on {where}",
                interrupted=True,
            )

    def _adopt_force(self, r: dict[str, Any]) -> VmRun | None:
        """A live migration cut with a planned force: the run that follows it to its end (the
        force when due, counted from the journal's intent; not again if the journal has it)."""
        ctx = self.ctx
        k, vm = int(r.get("wave") or 0), str(r["vm"])
        if r.get("method") != "live" or not 1 <= k <= len(ctx.state.schedule):
            return None
        m = next((m for m in ctx.state.schedule[k - 1].migrations if m.vm == vm), None)
        if m is None or m.method != "live" or m.force_complete_after_s is None:
            return None
        now = ctx.clock()
        v = VmRun(
            vm=vm,
            label=ctx.label(vm),
            src=str(r["src"]),
            dst=str(r["dst"]),
            method="live",
            wave=k,
            expect_status="ACTIVE",
            state=VmState.RUNNING,
            step=str(r["step"]),
            t0=now - _since(r),
            force_after_s=m.force_complete_after_s,
            cold_ok="cold" in ctx.policy.non_converging,
        )
        done = ctx.state.forced.get((k, vm))
        if done is not None and str(done.get("step", "")).startswith(f"{r['step']}/"):
            v.forced_t = now - _since(done)
            v.force_tries = int(str(done["step"]).rsplit("/", 1)[1])
        return v

    def _wait_settled(self, vm: str, force: VmRun | None = None) -> Server | None:
        """A VM's server once no migration is under way for it (a run killed mid-migration
        leaves Nova to finish it; one with a planned force is forced when due, `force`)."""
        ctx = self.ctx
        t0 = ctx.clock()
        confirmed: float | None = None
        forcer = Forcer(ctx) if force is not None else None
        while True:
            srv = ctx.cloud.server(vm)
            if srv is None:
                return None
            if forcer is not None and force is not None and not srv.settled:
                forcer.tick(force)
            if srv.status == "VERIFY_RESIZE":
                # Nova confirms asynchronously (a cast to the compute): confirm once, then wait
                # for the status to change; a second confirm would be refused.
                if confirmed is None:
                    ctx.cloud.confirm_resize(vm)
                    confirmed = ctx.clock()
                elif ctx.clock() - confirmed >= ctx.opts.confirm_timeout_s:
                    return srv  # not confirmed in time: judged as it is (not on a valid host)
            elif srv.settled:
                return srv
            if ctx.clock() - t0 > 6 * 3600:
                raise ExecutionError(f"the migration of {vm} has not ended after 6 hours")
            ctx.sleep_tick()

    # -- a wave's re-check ------------------------------------------------------------------------
    def check(self, k: int) -> tuple[Inventory, Policy, Inventory]:
        """Before wave k: (the planning view, its policy, the live snapshot) once the remaining
        plan fits the live cloud, re-planned if need be (at most three times)."""
        ctx = self.ctx
        for _attempt in range(3):
            live = ctx.snapshot()
            view, vpolicy = ctx.planning_view(live)
            self._reconcile_moves(k, view)
            remaining = self._remaining(k, vpolicy)
            report = check_plan(view, remaining)
            present = bool(remaining.waves) and remaining.waves[0].hosts == tuple(
                h for h in ctx.state.schedule[k - 1].hosts if h not in ctx.state.outcomes
            )
            now, later = views.split_violations(report, present)
            ctx.log(
                Ev.NOTE,
                Op.CHECK,
                wave=k,
                ok=report.ok,
                violations=[str(v) for v in report.violations[:50]],
                count=len(report.violations),
            )
            if ctx.eta is not None and report.ok:
                # the canary is over (passed or failed): no soak ahead
                if ctx.state.canary_over:
                    ctx.eta.canary = False
                est = ctx.eta.estimate(view, remaining, k, now=ctx.clock())
                if ctx.first_eta_s is None:
                    ctx.first_eta_s = est
            if report.ok:
                return view, vpolicy, live
            drift = [f"wave {k + (v.wave or 1) - 1}: [{v.rule}] {v.message}" for v in now + later]
            ctx.ui.warn(
                f"wave {k}: the live cloud no longer fits the plan ({len(report.violations)} "
                "problem(s)):\n  " + "\n  ".join(drift[:12])
            )
            ctx.notify("drift", wave=k, message="; ".join(drift[:5]), count=len(drift))
            if not ctx.opts.replan:
                if now:
                    self.release_hosts_not_in(k, None)
                    raise ExecutionError(
                        f"wave {k}: drift and --no-replan, stopped before touching the wave:\n  "
                        + "\n  ".join(drift[:12])
                    )
                ctx.ui.warn("later waves no longer fit; they will be checked again in turn")
                return view, vpolicy, live
            self._replan(k, view, vpolicy, remaining, drift)
        self.release_hosts_not_in(k, None)
        raise ExecutionError(f"wave {k}: the cloud keeps changing under the plan; stopped")

    def _replan(
        self, k: int, view: Inventory, vpolicy: Policy, remaining: Plan, drift: list[str]
    ) -> None:
        """The waves from k on, re-planned from the live state, in the journal."""
        ctx = self.ctx
        try:
            new = views.replan(
                ctx.replanner, view, vpolicy, time_limit=ctx.opts.replan_time_limit_s
            )
        except InfeasibleError as exc:
            self.release_hosts_not_in(k, None)
            raise ExecutionError(
                f"wave {k}: drift, and no plan exists from the live state: "
                + "; ".join(exc.reasons)
            ) from None
        waves = views.renumber(new.waves, k)
        ctx.log(
            Ev.NOTE,
            Op.REPLAN,
            wave=k,
            reason="; ".join(drift[:5]),
            planner=str(new.generator.get("name", "")),
            waves=[wave_to_dict(w) for w in waves],
        )
        ctx.ui.line(
            f"re-planned from the live state: {len(waves)} wave(s) left "
            f"(was {len(remaining.waves)})"
        )
        ctx.notify("replan", wave=k, waves=len(waves))

    def _remaining(self, k: int, vpolicy: Policy) -> Plan:
        st = self.ctx.state
        return views.remaining_plan(
            st.schedule,
            k,
            vpolicy,
            terminal=set(st.outcomes),
            done_moves={(w, vm) for w, vm in st.done_moves if w >= k},
            skipped=set(st.skipped),
        )

    def _reconcile_moves(self, k: int, view: Inventory) -> None:
        """A VM already on the host its next migration (from wave k on) goes to has made it
        (the canary moves some early; a run killed after Nova finished one): done. Only its
        next migration: a plan may move a VM twice, and then it sits on the later one's
        destination before the earlier one."""
        st = self.ctx.state
        blocked: set[str] = set()  # VMs whose next migration is not done
        for w in st.schedule[k - 1 :]:
            for m in w.migrations:
                if m.vm in blocked or m.vm in st.skipped or (w.index, m.vm) in st.done_moves:
                    continue
                if not (view.has_vm(m.vm) and view.vm(m.vm).host == m.dst):
                    blocked.add(m.vm)
                    continue
                self.ctx.log_found(w.index, m.vm, m.dst)

    def release_hosts_not_in(
        self, k: int, wave: Wave | None, also: frozenset[str] = frozenset()
    ) -> None:
        """Enable hosts this run disabled that the wave (after a re-plan) no longer holds (nor
        `also`: the hosts a pipelined run has in maintenance)."""
        ctx = self.ctx
        keep = (set(wave.hosts) if wave is not None else set()) | also
        left = {h for h, o in ctx.state.outcomes.items() if o.left_disabled}
        for h in sorted(set(ctx.state.disabled_by_us) - keep - left):
            step = f"w{k}/enable/{h}"
            ctx.log(Ev.INTENT, Op.ENABLE, step=step, wave=k, host=h, why="released")
            ctx.cloud.set_service(h, True)
            ctx.log(Ev.DONE, Op.ENABLE, step=step, wave=k, host=h)
            ctx.ui.line(f"  {h}: enabled again (no longer in this wave)")


def _since(rec: dict[str, Any]) -> float:
    """Seconds since a journal record was written (wall clock)."""
    return max(time.time() - parse_iso(str(rec["t"])), 0.0)
