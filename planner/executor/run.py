"""The executor: runs a plan against a live cloud, wave by wave, closed-loop and idempotent.

For each wave, in order:
1. re-check (`drift`): a fresh snapshot; the remaining plan is checked against it; on drift the
   remaining waves are re-planned from the live state (the `Replanner` port) or the run stops
   (exit 5);
2. disable the wave's compute services ("rollwave: plan <sha12> wave <k>") (`hosts`);
3. migrate every VM to its planned host (`migrations`): named, not forced, block_migration auto,
   at most k_out per source, k_in per destination and `max_parallel` overall; confirm each is
   ACTIVE on its destination; on failure retry, then ask for another destination, then leave the
   VM and its host (not upgraded) and go on;
4. per host, once drained (`hosts`): stop the VMs the plan stops, run the upgrade command, wait
   for the compute service to be up (and to report the target version), enable it, start its
   VMs; when the upgrade fails or the host does not come back healthy: the rollback command,
   then the same wait for the old version, and the host stays not upgraded (`--on-host-failure`);
5. after the first N upgraded hosts: the canary (`canary`: a few VMs moved onto them, a soak,
   checks).

Every step is journaled before and after it happens; `RunState` (journal.py) is the only memory,
so a resumed run continues exactly where the journal says, after reconciling the steps that
were cut with the live cloud (`drift`). This module is the orchestrator: the journal's opening,
the loop over waves, the wave's poll loop, the signals and the end.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from planner import __version__
from planner.checker import check_inventory
from planner.errors import CloudError, ExecutionError, InputError, UsageError
from planner.executor.canary import Canary
from planner.executor.cloud import Cloud
from planner.executor.context import HookRunner, RunContext
from planner.executor.drift import Drift
from planner.executor.errwatch import ErrorWatch
from planner.executor.eta import Eta
from planner.executor.headroom import HeadroomWatch
from planner.executor.hooks import Notifier
from planner.executor.hosts import HostUpgrades
from planner.executor.journal import (
    FORMAT_VERSION,
    KIND,
    Journal,
    RunState,
    read_records,
    wave_to_dict,
)
from planner.executor.migrations import Migrations
from planner.executor.options import ExecOptions, safe_options
from planner.executor.pipeline import Pipeline
from planner.executor.ports import Estimator, Replanner
from planner.executor.states import (
    Ev,
    HostRun,
    HostState,
    Op,
    RunEvent,
    RunStatus,
    VmRun,
    VmState,
)
from planner.executor.ui import Reporter, hms
from planner.executor.window import WindowGate
from planner.inventory import Inventory
from planner.plan import Plan, Wave

__all__ = ["ExecOptions", "Executor", "HookRunner", "RunResult"]

# States compared for every VM and host at every poll, read once: an enum member read through its
# class costs a call to the enum's metaclass (Python 3.11), about ten times a global's read.
_RUNNING, _FINISHED = VmState.RUNNING, HostState.FINISHED


@dataclass
class RunResult:
    status: RunStatus
    reason: str | None
    state: RunState
    final: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return {RunStatus.COMPLETED: 0, RunStatus.INTERRUPTED: 130}.get(self.status, 5)


class Executor:
    """Runs `plan` on `cloud`. The rooms (`drift`, `migrations`, `hosts`, `canary`) share one
    `RunContext`; planning and the ETA go through the ports given (`replanner`, `estimator`)."""

    def __init__(
        self,
        plan: Plan,
        plan_sha: str,
        cloud: Cloud,
        *,
        opts: ExecOptions,
        reporter: Reporter,
        hooks: HookRunner,
        notify: Notifier,
        replanner: Replanner,
        estimator: Estimator | None = None,
        journal_path: Path | None,
        plan_file: str = "",
        resume: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall: Callable[[], _dt.datetime] | None = None,
    ) -> None:
        self.ctx = ctx = RunContext(
            plan,
            plan_sha,
            cloud,
            opts=opts,
            reporter=reporter,
            hooks=hooks,
            notify=notify,
            replanner=replanner,
            estimator=estimator,
            clock=clock,
            sleep=sleep,
            wall=wall,
        )
        self.journal_path = journal_path
        self.plan_file = plan_file
        self.resume = resume
        self.headroom = HeadroomWatch(ctx)
        self.drift = Drift(ctx)
        self.migrations = Migrations(ctx, self.headroom)
        self.hosts = HostUpgrades(ctx, self.migrations, self.headroom)
        self.errors = ErrorWatch(ctx)
        self.canary = Canary(ctx, self.migrations, self.hosts, self.headroom)
        self.window = WindowGate(ctx)
        self.pipeline = Pipeline(
            ctx, self.drift, self.migrations, self.hosts, self.headroom, self.window, self.errors
        )

    # What tests and callers look at.
    @property
    def state(self) -> RunState:
        return self.ctx.state

    @property
    def eta(self) -> Eta | None:
        return self.ctx.eta

    @property
    def interrupts(self) -> int:
        return self.ctx.interrupts

    @interrupts.setter
    def interrupts(self, n: int) -> None:
        self.ctx.interrupts = n

    # -- the journal ------------------------------------------------------------------------------
    def _open_journal(self) -> None:
        ctx = self.ctx
        if ctx.dry or self.journal_path is None:
            return
        path = self.journal_path
        if self.resume:
            if not path.exists():
                raise InputError(str(path), "no such journal: nothing to resume")
            journal = Journal(path)  # the lock first: nobody appends while it is read
            try:
                records = read_records(path)
                self._check_journal_is_ours(path, records[0])
            except BaseException:
                journal.close()
                raise
            ctx.state = RunState.replay(records, ctx.plan)
            journal.seq = int(records[-1].get("seq", len(records)))
            ctx.journal = journal
            return
        if path.exists() and path.stat().st_size > 0:
            raise UsageError(
                f"the journal {path} exists (a run of this plan was started): "
                "resume it with --resume, or give another --journal"
            )
        ctx.journal = Journal(path)
        header: dict[str, Any] = {
            "ev": Ev.HEADER,
            "format_version": FORMAT_VERSION,
            "kind": KIND,
            "rollwave": __version__,
            "plan_sha256": ctx.sha,
            "plan_file": self.plan_file,
            "cloud": ctx.cloud.name,
            "inventory_sha256": ctx.plan.inventory_sha256,
            "target_version": ctx.policy.target_version,
            "options": safe_options(ctx.opts),
            "waves_detail": [wave_to_dict(w) for w in ctx.plan.waves],
        }
        if ctx.policy.execution == "pipelined":  # a journal without it runs (resumes) lock-step
            header["execution"] = "pipelined"
        ctx.state.apply(ctx.journal.write(header))

    def _check_journal_is_ours(self, path: Path, head: dict[str, Any]) -> None:
        ctx = self.ctx
        if head.get("plan_sha256") != ctx.sha:
            raise InputError(
                str(path),
                f"the journal is for plan {str(head.get('plan_sha256'))[:12]}..., "
                f"not this plan ({ctx.sha[:12]}...)",
            )
        if head.get("cloud") and head.get("cloud") != ctx.cloud.name:
            raise UsageError(
                f"the journal {path} is for cloud {head.get('cloud')!r}, not {ctx.cloud.name!r}"
            )

    def _close(self) -> None:
        self.ctx.notify.close()  # a bounded wait for the notifications still queued
        if self.ctx.journal is not None:
            self.ctx.journal.close()

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> RunResult:
        ctx = self.ctx
        self._open_journal()
        if ctx.state.finished:
            end = [r for r in ctx.state.runs if r.get("what") == RunEvent.END][-1]
            self._close()
            return RunResult(
                RunStatus(end.get("status", RunStatus.COMPLETED)),
                f"the journal says this run already ended ({end.get('reason') or 'done'})",
                ctx.state,
            )
        old_int = signal.getsignal(signal.SIGINT)
        old_term = signal.getsignal(signal.SIGTERM)
        with contextlib.suppress(ValueError):  # not in the main thread: no signal handling
            signal.signal(signal.SIGINT, self._on_signal)
            signal.signal(signal.SIGTERM, self._on_signal)
        status: RunStatus = RunStatus.COMPLETED
        reason: str | None = None
        ctx.log(
            Ev.NOTE,
            Op.RUN,
            what=RunEvent.RESUME if self.resume else RunEvent.START,
            pid=os.getpid(),
            dry=ctx.dry or None,
            # a resumed run may be given other options: the next resume keeps these
            options=safe_options(ctx.opts) if self.resume else None,
        )
        ctx.notify("run_start", plan=ctx.sha, cloud=ctx.cloud.name, resume=self.resume)
        self.errors.start()
        total, done = ctx.steps()
        ctx.ui.start(total, done)
        t_run = ctx.clock()
        ended = False  # not by an exception
        try:
            status, reason = self._waves()
            ended = True
        except ExecutionError as exc:  # stopped safely, on purpose: a result, not a crash
            status, reason = RunStatus.STOPPED, str(exc)
            ended = True
        except CloudError as exc:  # the cloud failed us: say so in the journal, then exit 4
            ctx.log(Ev.NOTE, Op.RUN, what=RunEvent.STOP, status=RunStatus.ERROR, reason=str(exc))
            ctx.ui.stop()
            ctx.notify("run_stopped", status=RunStatus.ERROR, message=str(exc))
            self._close()
            raise
        finally:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGINT, old_int)
                signal.signal(signal.SIGTERM, old_term)
            self._finish_bar(status if ended else None, ctx.clock() - t_run)
        return self._end(status, reason)

    def _waves(self) -> tuple[RunStatus, str | None]:
        """Every wave still to do, each followed by the canary when it is due."""
        ctx = self.ctx
        if self.resume:
            self.drift.reconcile()
        while not ctx.stop_reason and not ctx.interrupts:
            k = ctx.state.next_wave()
            if k > len(ctx.state.schedule):
                break
            if self._pipelined():
                self.pipeline.run()
                break
            if k not in ctx.state.started:  # a wave under way finishes, windows or not
                self.window.wait_for(k)
                if ctx.interrupts or ctx.stop_reason:
                    break
            self._wave(k)
            if ctx.interrupts:
                break
            if not ctx.stop_reason:
                self.canary.maybe(k)
        if ctx.interrupts:
            aborted = "; in-flight migrations aborted" if ctx.interrupts > 1 else ""
            return RunStatus.INTERRUPTED, "interrupted (Ctrl-C)" + aborted
        if ctx.stop_reason:
            return RunStatus.STOPPED, ctx.stop_reason
        return RunStatus.COMPLETED, None

    def _pipelined(self) -> bool:
        """Admission-controlled from here on: the policy's (as the journal's header recorded
        it), not a dry run (nothing drains in one: the calls are printed wave by wave), and no
        canary ahead (its hosts go first and alone, lock-step)."""
        ctx = self.ctx
        canary_ahead = ctx.opts.canary > 0 and not ctx.state.canary_over
        mode = ctx.state.pipelined if self.resume else ctx.policy.execution == "pipelined"
        return mode and not ctx.dry and not canary_ahead

    def _finish_bar(self, status: RunStatus | None, seconds: float) -> None:
        """The overall bar ends with the outcome and the time taken, not a stale ETA (`status`
        None: ended by an exception)."""
        ui = self.ctx.ui
        took = hms(seconds)
        if status != RunStatus.COMPLETED:
            ui.finish(f"{status or 'stopped'} after {took}", complete=False)
        elif self.ctx.state.excluded:
            n = len(self.ctx.state.excluded)
            ui.finish(f"done in {took}; {n} host(s) not upgraded", complete=True)
        else:
            ui.finish(f"done in {took}", complete=True)
        ui.stop()

    def _end(self, status: RunStatus, reason: str | None) -> RunResult:
        ctx = self.ctx
        final = self._final_check() if status == RunStatus.COMPLETED else {}
        final["model_eta_s"] = ctx.first_eta_s
        if status == RunStatus.COMPLETED and ctx.state.excluded:
            status = RunStatus.INCOMPLETE
            reason = f"{len(ctx.state.excluded)} host(s) not upgraded"
        if status in (RunStatus.COMPLETED, RunStatus.INCOMPLETE):
            ctx.log(Ev.NOTE, Op.RUN, what=RunEvent.END, status=status, reason=reason)
            ctx.notify("run_end", status=status, message=reason or "", counts=ctx.state.counts())
        else:
            ctx.log(Ev.NOTE, Op.RUN, what=RunEvent.STOP, status=status, reason=reason)
            ctx.notify("run_stopped", status=status, message=reason or "")
        self._close()
        return RunResult(status, reason, ctx.state, final)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        ctx = self.ctx
        ctx.interrupts += 1
        if ctx.interrupts == 1:
            ctx.ui.warn(
                "stopping: in-flight migrations and host upgrades finish, nothing new starts "
                "(Ctrl-C again aborts the migrations in flight)"
            )
        elif ctx.interrupts == 2:
            ctx.ui.warn("aborting the migrations in flight through the API ...")
        else:
            raise KeyboardInterrupt

    # -- one wave ---------------------------------------------------------------------------------
    def _wave(self, k: int) -> None:
        ctx = self.ctx
        if k not in ctx.state.started:
            hosts = list(ctx.state.schedule[k - 1].hosts)
            ctx.log(Ev.INTENT, Op.WAVE, step=f"w{k}", wave=k, hosts=hosts)
        t_wave = ctx.clock()
        view, vpolicy, live = self.drift.check(k)
        wave = ctx.state.schedule[k - 1]
        self.drift.release_hosts_not_in(k, wave)
        hosts = [h for h in wave.hosts if h not in ctx.state.outcomes]
        self._show_wave_start(k, wave, hosts)
        if ctx.interrupts:  # Ctrl-C during the re-check: touch nothing of this wave
            return
        ctx.notify("wave_start", wave=k, hosts=list(hosts))
        if ctx.eta is not None:
            ctx.ui.set_work(ctx.eta.wave_fraction())
        ctx.show_eta(None, journal=True)
        self.headroom.start(view, vpolicy, hosts)
        self.hosts.disable(k, hosts, view)
        self._drain_and_upgrade(k, wave, hosts, view, live)
        if ctx.interrupts:
            return
        secs = ctx.clock() - t_wave
        ctx.log(Ev.DONE, Op.WAVE, step=f"w{k}", wave=k, seconds=round(secs, 3))
        if ctx.eta is not None:
            ctx.eta.wave_done(k, secs)
            ctx.show_eta(None, journal=True)
        self.errors.check(k)
        ctx.ui.line(f"[bold]wave {k} done[/] in {hms(secs)}")
        ctx.notify("wave_end", wave=k, seconds=round(secs, 1))
        if ctx.stop_reason:
            ctx.ui.warn(f"stopping after wave {k}: {ctx.stop_reason}")

    def _show_wave_start(self, k: int, wave: Wave, hosts: list[str]) -> None:
        ctx = self.ctx
        n = len(ctx.state.schedule)
        steps = len(wave.migrations) + len(wave.hosts)
        done = sum(1 for m in wave.migrations if (k, m.vm) in ctx.state.done_moves)
        done += len(wave.hosts) - len(hosts)
        total, all_done = ctx.steps()
        ctx.ui.set_total(total, all_done)
        ctx.bar_overall = True
        eta = ctx.eta.text() if ctx.eta else ""
        ctx.ui.wave_start(f"wave {k}/{n}", steps, done, eta)
        ctx.ui.line(
            f"[bold]wave {k}/{n}[/]: {len(hosts)} host(s) {', '.join(hosts)}; "
            f"{len(wave.migrations)} migration(s), {len(wave.stops)} stop(s)"
            + (f"; {eta}" if eta else "")
        )

    def _drain_and_upgrade(
        self, k: int, wave: Wave, hosts: list[str], view: Inventory, live: Inventory
    ) -> None:
        """The wave's migrations and host pipelines, polled together until every host is
        finished (or, after a Ctrl-C, until nothing is in flight)."""
        ctx = self.ctx
        st = ctx.state
        hs = set(hosts)
        vruns: dict[str, VmRun] = {}
        for m in wave.migrations:
            if m.src not in hs or m.vm in st.skipped:
                continue
            if (k, m.vm) in st.done_moves:
                continue
            vruns[m.vm] = self.migrations.vmrun(m, k, view)
        hruns = {h: self.hosts.hostrun(h, k, view, live) for h in hosts}
        ctx.hruns, ctx.vruns, ctx.view, ctx.wave = hruns, vruns, view, wave
        aborted = False
        while True:
            if ctx.interrupts >= 2 and not aborted:
                self._abort_in_flight(vruns, hruns)
                aborted = True
            self.migrations.schedule(vruns)
            self.migrations.poll(vruns)
            for hr in hruns.values():
                self.hosts.advance(hr, vruns)
            if all(hr.state is _FINISHED for hr in hruns.values()):
                break
            in_flight = any(v.state is _RUNNING for v in vruns.values())
            busy = any(hr.busy for hr in hruns.values())
            if ctx.interrupts and not in_flight and (not busy or aborted):
                break
            ctx.tick_ui(vruns, hruns)
            ctx.sleep_tick()

    def _abort_in_flight(self, vruns: dict[str, VmRun], hruns: dict[str, HostRun]) -> None:
        self.migrations.abort_in_flight(vruns)
        self.hosts.kill_hooks(hruns)

    # -- the end ----------------------------------------------------------------------------------
    def _final_check(self) -> dict[str, Any]:
        """One last snapshot: VMs not ACTIVE, hosts still disabled by rollwave, headroom."""
        ctx = self.ctx
        try:
            live = ctx.snapshot()
        except CloudError as exc:
            ctx.ui.warn(f"final check skipped: {exc}")
            return {}
        bad_vms = [
            {"vm": v.id, "name": v.name, "status": v.status, "host": v.host}
            for v in live.vms
            if v.status in ("ERROR", "MIGRATING", "VERIFY_RESIZE")
            or (v.status == "SHUTOFF" and v.id in ctx.state.stopped_by_us)
        ]
        problems = [
            str(v)
            for v in check_inventory(live, ctx.policy)
            if v.rule in ("inventory.capacity", "inventory.headroom")
        ]
        ours = [
            h.name
            for h in live.hosts
            if h.is_compute
            and not h.enabled
            and (h.disabled_reason or "").startswith(f"rollwave: plan {ctx.sha[:12]}")
        ]
        return {
            "vms_not_running": bad_vms,
            "hosts_disabled_by_rollwave": ours,
            "capacity_problems": problems,
            "min_headroom_slack": dict(sorted(self.headroom.min_slack.items())),
        }
