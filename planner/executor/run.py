"""The executor's state machine: per wave, per host and per VM, closed-loop and idempotent.

For each wave, in order:
1. re-check: a fresh snapshot; the remaining plan is checked against it (`view`); on drift the
   remaining waves are re-planned from the live state (`replan`) or the run stops (exit 5);
2. disable the wave's compute services ("rollwave: plan <sha12> wave <k>");
3. migrate every VM to its planned host (named, not forced, block_migration auto), at most
   k_out per source, k_in per destination and `max_parallel` overall; confirm each is ACTIVE on
   its destination; on failure retry, then ask for another destination, then leave the VM and
   its host (not upgraded) and go on;
4. per host, once drained: stop the VMs the plan stops, run the upgrade command, wait for the
   compute service to be up (and to report the target version), enable it, start its VMs;
   when the upgrade fails or the host does not come back healthy: the rollback command, then
   the same wait for the old version, and the host stays not upgraded (`--on-host-failure`);
5. after the first N upgraded hosts: the canary (a few VMs moved onto them, a soak, checks).

Every step is journaled before and after it happens; `RunState` (journal.py) is the only memory,
so a resumed run continues exactly where the journal says, after reconciling the steps that
were cut with the live cloud.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import numpy as np

from planner import __version__
from planner.capacity import CapacityModel, headroom
from planner.checker import check_inventory, check_plan, vm_label
from planner.errors import CloudError, ExecutionError, InfeasibleError, InputError, UsageError
from planner.executor import view as views
from planner.executor.cloud import IN_PROGRESS, Cloud, Server
from planner.executor.eta import Eta, host_step, vm_step
from planner.executor.hooks import Notifier, Running, expand, tail
from planner.executor.journal import (
    DONE,
    FAILED,
    FORMAT_VERSION,
    HEADER,
    HOST_FAILED,
    HOST_NOT_UPGRADED,
    HOST_UPGRADED,
    INTENT,
    KIND,
    NOTE,
    RUNNING,
    Journal,
    RunState,
    now_iso,
    read_records,
    wave_to_dict,
)
from planner.executor.ui import Reporter, hms
from planner.inventory import Inventory
from planner.plan import Migration, Plan, Wave
from planner.policy import Policy
from sim.model import SimModel


class HookRunner(Protocol):
    """What starts commands: `hooks.Hooks` or `hooks.DryRunHooks`."""

    def log_path(self, kind: str, host: str) -> Path | None: ...

    def start(
        self, kind: str, host: str, command: str, *, wave: int, plan: str, version: str | None
    ) -> Running: ...


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
    retargets: int = 2  # other destinations tried after the retries
    retry_delay_s: float = 10.0
    poll_s: float = 2.0
    service_timeout_s: float = 600.0
    hook_timeout_s: float = 0.0  # 0: none
    migration_timeout_s: float = 0.0  # 0: none (Nova's own completion timeout applies)
    stop_timeout_s: float = 300.0
    # How long a confirmed cold migration may stay VERIFY_RESIZE (Nova confirms asynchronously).
    confirm_timeout_s: float = 300.0
    replan_time_limit_s: float = 30.0
    model: SimModel | None = None


@dataclass
class RunResult:
    status: str  # completed, incomplete, stopped, interrupted
    reason: str | None
    state: RunState
    final: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return {"completed": 0, "interrupted": 130}.get(self.status, 5)


# VM task states
PENDING, RUNNING_, RETRY, DONE_, GAVE_UP, SKIPPED, GONE = (
    "pending",
    "running",
    "retry",
    "done",
    "gave-up",
    "skipped",
    "gone",
)
TERMINAL_VM = (DONE_, GAVE_UP, SKIPPED, GONE)
# host pipeline states
(
    DRAINING,
    STOPPING,
    UPGRADING,
    WAITING,
    ROLLING_BACK,
    RB_WAITING,
    ENABLING,
    STARTING,
    FINISHED,
) = (
    "draining",
    "stopping",
    "upgrading",
    "waiting",
    "rolling-back",
    "rollback-waiting",
    "enabling",
    "starting",
    "finished",
)


@dataclass
class VmRun:
    vm: str
    label: str
    src: str
    dst: str
    method: str
    wave: int
    expect_status: str
    state: str = PENDING
    step: str | None = None
    t0: float = 0.0
    next_try: float = 0.0
    fails_here: int = 0
    known: set[int] = field(default_factory=set)
    tried: set[str] = field(default_factory=set)
    aborting: bool = False
    confirmed_resize: bool = False
    t_confirm: float = 0.0


@dataclass
class HostRun:
    host: str
    compute: bool
    wave: int
    version_before: str | None  # observed before the wave (None: not observable)
    state: str = DRAINING
    hook: Running | None = None
    t0: float = 0.0
    last_poll: float = 0.0
    abandoned: str | None = None  # why it is not upgraded (its VMs stay)
    failure: str | None = None  # why the upgrade failed (rollback path)
    rolled_back: bool = False
    stopping: dict[str, str] = field(default_factory=dict)  # vm -> step
    starting: dict[str, str] = field(default_factory=dict)
    verified_empty: bool = False

    @property
    def busy(self) -> bool:
        """Work under way that must finish before the run can stop cleanly."""
        return self.state in (
            STOPPING,
            UPGRADING,
            WAITING,
            ROLLING_BACK,
            RB_WAITING,
            ENABLING,
            STARTING,
        )


class Executor:
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
        journal_path: Path | None,
        plan_file: str = "",
        resume: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.plan = plan
        self.sha = plan_sha
        self.cloud = cloud
        self.opts = opts
        self.ui = reporter
        self.hooks = hooks
        self.notify = notify
        self.journal_path = journal_path
        self.plan_file = plan_file
        self.resume = resume
        self.clock = clock
        self._sleep = sleep
        self.dry = cloud.dry
        self.policy: Policy = plan.policy
        self.state = RunState.start(plan)
        self.journal: Journal | None = None
        self._seq = 0
        self.interrupts = 0
        self.stop_reason: str | None = None
        self.eta = Eta(opts.model) if opts.model is not None else None
        self.k_out = plan.policy.max_concurrent_live_migrations or 1 << 30
        self.k_in = opts.max_inbound or 1 << 30
        # headroom sampled on the executor's own model of the state between snapshots
        self._cap: CapacityModel | None = None
        self._down: np.ndarray[Any, np.dtype[np.bool_]] | None = None
        self._vpolicy: Policy = plan.policy
        self._breached: set[tuple[str, str]] = set()
        self.min_slack: dict[str, int] = {}
        self._bar_overall = True  # steps outside the plan (a rollback) do not count overall
        self.first_eta_s: float | None = None  # the model's time for the whole run
        self._eta_rec: tuple[float, float] | None = None  # (clock, ETA s) of its last record
        self._view: Inventory | None = None  # the planning view of the wave under way
        self._names: dict[str, str] = {}  # VM id -> name, from the snapshots and the journal

    # =========================================================================================
    # Journal
    # =========================================================================================
    def _log(self, ev: str, op: str, **fields: Any) -> dict[str, Any]:
        rec: dict[str, Any] = {"ev": ev, "op": op}
        rec.update((k, v) for k, v in fields.items() if v is not None)
        vm = rec.get("vm")
        if ev in (INTENT, NOTE) and vm and "name" not in rec and self._name(vm):
            rec["name"] = self._name(vm)  # --status names what was in flight
        if self.journal is not None:
            rec = self.journal.write(rec)
        else:
            self._seq += 1
            rec = {"seq": self._seq, "t": now_iso(), **rec}
        self.state.apply(rec)
        return rec

    def _log_found(self, wave: int, vm: str, dst: str) -> None:
        """A migration found done on the cloud (not by this run's polling): journal it as done."""
        self._log(
            DONE,
            "migrate",
            step=f"w{wave}/migrate/{vm}/found",
            wave=wave,
            vm=vm,
            host=dst,
            reconciled=True,
        )

    def _snapshot(self) -> Inventory:
        live = self.cloud.snapshot()
        self._names.update((v.id, v.name) for v in live.vms if v.name and v.name != v.id)
        return live

    def _name(self, vm: str) -> str | None:
        return self._names.get(vm) or self.state.vm_names.get(vm)

    def _label(self, vm: str) -> str:
        """How lines name a VM: its name and the start of its id (as `checker.vm_label`)."""
        name = self._name(vm)
        return f"{name} ({vm[:8]})" if name else vm

    def _open_journal(self) -> None:
        if self.dry or self.journal_path is None:
            return
        path = self.journal_path
        if self.resume:
            if not path.exists():
                raise InputError(str(path), "no such journal: nothing to resume")
            journal = Journal(path)  # the lock first: nobody appends while it is read
            try:
                records = read_records(path)
                head = records[0]
                if head.get("plan_sha256") != self.sha:
                    raise InputError(
                        str(path),
                        f"the journal is for plan {str(head.get('plan_sha256'))[:12]}..., "
                        f"not this plan ({self.sha[:12]}...)",
                    )
                if head.get("cloud") and head.get("cloud") != self.cloud.name:
                    raise UsageError(
                        f"the journal {path} is for cloud {head.get('cloud')!r}, "
                        f"not {self.cloud.name!r}"
                    )
            except BaseException:
                journal.close()
                raise
            self.state = RunState.replay(records, self.plan)
            journal.seq = int(records[-1].get("seq", len(records)))
            self.journal = journal
            return
        if path.exists() and path.stat().st_size > 0:
            raise UsageError(
                f"the journal {path} exists (a run of this plan was started): "
                "resume it with --resume, or give another --journal"
            )
        self.journal = Journal(path)
        self.state.apply(
            self.journal.write(
                {
                    "ev": HEADER,
                    "format_version": FORMAT_VERSION,
                    "kind": KIND,
                    "rollwave": __version__,
                    "plan_sha256": self.sha,
                    "plan_file": self.plan_file,
                    "cloud": self.cloud.name,
                    "inventory_sha256": self.plan.inventory_sha256,
                    "target_version": self.policy.target_version,
                    "options": _safe_options(self.opts),
                    "waves_detail": [wave_to_dict(w) for w in self.plan.waves],
                }
            )
        )

    # =========================================================================================
    # The run
    # =========================================================================================
    def run(self) -> RunResult:
        self._open_journal()
        if self.state.finished:
            end = [r for r in self.state.runs if r.get("what") == "end"][-1]
            self.notify.close()
            if self.journal is not None:
                self.journal.close()
            return RunResult(
                str(end.get("status", "completed")),
                f"the journal says this run already ended ({end.get('reason') or 'done'})",
                self.state,
            )
        old_int = signal.getsignal(signal.SIGINT)
        old_term = signal.getsignal(signal.SIGTERM)
        with contextlib.suppress(ValueError):  # not in the main thread: no signal handling
            signal.signal(signal.SIGINT, self._on_signal)
            signal.signal(signal.SIGTERM, self._on_signal)
        status, reason = "completed", None
        self._log(
            NOTE,
            "run",
            what="resume" if self.resume else "start",
            pid=os.getpid(),
            dry=self.dry or None,
            # a resumed run may be given other options: the next resume keeps these
            options=_safe_options(self.opts) if self.resume else None,
        )
        self.notify("run_start", plan=self.sha, cloud=self.cloud.name, resume=self.resume)
        total, done = self._steps()
        self.ui.start(total, done)
        t_run = self.clock()
        ended = False  # not by an exception
        try:
            if self.resume:
                self._reconcile()
            while not self.stop_reason and not self.interrupts:
                k = self.state.next_wave()
                if k > len(self.state.schedule):
                    break
                self._wave(k)
                if self.interrupts:
                    break
                if not self.stop_reason:
                    self._maybe_canary(k)
            if self.interrupts:
                status = "interrupted"
                reason = "interrupted (Ctrl-C)" + (
                    "; in-flight migrations aborted" if self.interrupts > 1 else ""
                )
            elif self.stop_reason:
                status, reason = "stopped", self.stop_reason
            ended = True
        except ExecutionError as exc:  # stopped safely, on purpose: a result, not a crash
            status, reason = "stopped", str(exc)
            ended = True
        except CloudError as exc:  # the cloud failed us: say so in the journal, then exit 4
            self._log(NOTE, "run", what="stop", status="error", reason=str(exc))
            self.ui.stop()
            self.notify("run_stopped", status="error", message=str(exc))
            self.notify.close()
            if self.journal is not None:
                self.journal.close()
            raise
        finally:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGINT, old_int)
                signal.signal(signal.SIGTERM, old_term)
            # the overall bar ends with the outcome and the time taken, not a stale ETA
            took = hms(self.clock() - t_run)
            if status != "completed" or not ended:
                self.ui.finish(f"{status if ended else 'stopped'} after {took}", complete=False)
            elif self.state.excluded:
                n = len(self.state.excluded)
                self.ui.finish(f"done in {took}; {n} host(s) not upgraded", complete=True)
            else:
                self.ui.finish(f"done in {took}", complete=True)
            self.ui.stop()
        final = self._final_check() if status == "completed" else {}
        final["model_eta_s"] = self.first_eta_s
        if status == "completed" and self.state.excluded:
            status = "incomplete"
            reason = f"{len(self.state.excluded)} host(s) not upgraded"
        if status in ("completed", "incomplete"):
            self._log(NOTE, "run", what="end", status=status, reason=reason)
            self.notify("run_end", status=status, message=reason or "", counts=self.state.counts())
        else:
            self._log(NOTE, "run", what="stop", status=status, reason=reason)
            self.notify("run_stopped", status=status, message=reason or "")
        self.notify.close()  # a bounded wait for the notifications still queued
        if self.journal is not None:
            self.journal.close()
        return RunResult(status, reason, self.state, final)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.interrupts += 1
        if self.interrupts == 1:
            self.ui.warn(
                "stopping: in-flight migrations and host upgrades finish, nothing new starts "
                "(Ctrl-C again aborts the migrations in flight)"
            )
        elif self.interrupts == 2:
            self.ui.warn("aborting the migrations in flight through the API ...")
        else:
            raise KeyboardInterrupt

    def _steps(self) -> tuple[int, int]:
        """Progress units: one per migration and one per host, over the whole schedule."""
        total = sum(len(w.migrations) + len(w.hosts) for w in self.state.schedule)
        done = len(self.state.done_moves) + len(self.state.outcomes)
        return total, min(done, total)

    def _bar(self, key: str | None = None, *, dropped: bool = False) -> None:
        """A step has ended (`key`: `vm_step`, `host_step`); `dropped`: given up, not done."""
        self.ui.advance(overall=self._bar_overall)
        if self.eta is not None:
            now = self.clock()
            self.eta.step_done(now, key, dropped=dropped)
            self.ui.set_work(self.eta.wave_fraction())  # None outside a wave (the canary)
            self._show_eta(now)

    def _show_eta(self, now: float | None, *, journal: bool = False) -> None:
        """The ETA on the progress display, and in the journal for `--status`: always when
        `journal`, else when the last record's countdown has drifted from it."""
        if self.eta is None:
            return
        self.ui.set_eta(self.eta.text(now))
        t = self.clock() if now is None else now
        rec = self.eta.record(now if now is not None else t)
        if rec is None:
            return
        last = self._eta_rec
        if not journal and last is not None:
            counted = max(last[1] - (t - last[0]), 0.0)
            off = abs(counted - rec["left_s"])
            # a record when the countdown is off by a minute (or 5%), at most every 30 s
            if t - last[0] < 30.0 or off <= max(60.0, 0.05 * rec["left_s"]):
                return
        self._eta_rec = (t, float(rec["left_s"]))
        self._log(NOTE, "eta", wave=self.eta.wave, **rec)

    def _tick_ui(self, vruns: dict[str, VmRun], hruns: dict[str, HostRun]) -> None:
        """Each poll: what is in flight (VMs by name and short id, hosts at work) and the ETA
        (time passes between steps)."""
        items = [f"{v.label} -> {v.dst}" for v in vruns.values() if v.state == RUNNING_]
        items += [f"{h.host} {_DOING.get(h.state, h.state)}" for h in hruns.values() if h.busy]
        self.ui.in_flight(items)
        self._show_eta(self.clock())

    def _sleep_tick(self, seconds: float | None = None) -> None:
        if self.dry:
            return
        self._sleep(self.opts.poll_s if seconds is None else seconds)

    # =========================================================================================
    # Resume: reconcile the steps the journal says were cut
    # =========================================================================================
    def _reconcile(self) -> None:
        cut = [r for r in self.state.iter_open() if r.get("op") not in ("wave", "run")]
        if cut:
            self.ui.line(f"resuming: {len(cut)} step(s) were cut; reconciling with the cloud")
        for r in cut:
            op, step = r["op"], r["step"]
            if op == "migrate":
                srv = self._wait_settled(r["vm"])
                ok = srv is not None and srv.host == r["dst"] and srv.status in _OK_STATUS
                if ok:
                    self._log(
                        DONE,
                        "migrate",
                        step=step,
                        wave=r.get("wave"),
                        vm=r["vm"],
                        host=r["dst"],
                        reconciled=True,
                    )
                    self.ui.line(f"  {self._label(r['vm'])}: its migration finished meanwhile")
                else:
                    where = f"{srv.status} on {srv.host}" if srv else "nowhere (deleted)"
                    self._log(
                        FAILED,
                        "migrate",
                        step=step,
                        wave=r.get("wave"),
                        vm=r["vm"],
                        reason=f"cut by the interruption; the VM is on {where}",
                        interrupted=True,
                    )
            elif op in ("disable", "enable"):
                svc = self.cloud.service(r["host"])
                want_enabled = op == "enable"
                happened = svc is not None and svc.enabled == want_enabled
                self._log(
                    DONE if happened else FAILED,
                    op,
                    step=step,
                    wave=r.get("wave"),
                    host=r["host"],
                    reason=r.get("reason") if happened else "cut by the interruption",
                    reconciled=True,
                    interrupted=None if happened else True,
                )
            elif op in ("stop", "start"):
                srv = self.cloud.server(r["vm"])
                want = "SHUTOFF" if op == "stop" else "ACTIVE"
                happened = srv is not None and srv.status == want
                self._log(
                    DONE if happened else FAILED,
                    op,
                    step=step,
                    wave=r.get("wave"),
                    vm=r["vm"],
                    host=r.get("host"),
                    was=r.get("was"),
                    reconciled=True,
                    reason=None if happened else "cut by the interruption",
                    interrupted=None if happened else True,
                )
            else:  # upgrade, rollback, wait, health, canary: done again from their start
                self._log(
                    FAILED,
                    op,
                    step=step,
                    wave=r.get("wave"),
                    host=r.get("host"),
                    reason="cut by the interruption; done again",
                    interrupted=True,
                )

    def _wait_settled(self, vm: str) -> Server | None:
        """A VM's server once no migration is under way for it (a run killed mid-migration
        leaves Nova to finish it)."""
        t0 = self.clock()
        confirmed: float | None = None
        while True:
            srv = self.cloud.server(vm)
            if srv is None:
                return None
            if srv.status == "VERIFY_RESIZE":
                # Nova confirms asynchronously (a cast to the compute): confirm once, then wait
                # for the status to change; a second confirm would be refused.
                if confirmed is None:
                    self.cloud.confirm_resize(vm)
                    confirmed = self.clock()
                elif self.clock() - confirmed >= self.opts.confirm_timeout_s:
                    return srv  # not confirmed in time: judged as it is (not on a valid host)
            elif srv.settled:
                return srv
            if self.clock() - t0 > 6 * 3600:
                raise ExecutionError(f"the migration of {vm} has not ended after 6 hours")
            self._sleep_tick()

    # =========================================================================================
    # One wave
    # =========================================================================================
    def _wave(self, k: int) -> None:
        n = len(self.state.schedule)
        if k not in self.state.started:
            self._log(
                INTENT,
                "wave",
                step=f"w{k}",
                wave=k,
                hosts=list(self.state.schedule[k - 1].hosts),
            )
        t_wave = self.clock()
        view, vpolicy, live = self._check(k)
        wave = self.state.schedule[k - 1]
        n = len(self.state.schedule)
        self._release_hosts_not_in(k, wave)
        hosts = [h for h in wave.hosts if h not in self.state.outcomes]
        steps = len(wave.migrations) + len(wave.hosts)
        done = sum(1 for m in wave.migrations if (k, m.vm) in self.state.done_moves)
        done += len(wave.hosts) - len(hosts)
        total, all_done = self._steps()
        self.ui.set_total(total, all_done)
        self._bar_overall = True
        self.ui.wave_start(f"wave {k}/{n}", steps, done, self.eta.text() if self.eta else "")
        self.ui.line(
            f"[bold]wave {k}/{n}[/]: {len(hosts)} host(s) {', '.join(hosts)}; "
            f"{len(wave.migrations)} migration(s), {len(wave.stops)} stop(s)"
            + (f"; {self.eta.text()}" if self.eta and self.eta.text() else "")
        )
        if self.interrupts:  # Ctrl-C during the re-check: touch nothing of this wave
            return
        self.notify("wave_start", wave=k, hosts=list(hosts))
        if self.eta is not None:
            self.ui.set_work(self.eta.wave_fraction())
        self._show_eta(None, journal=True)
        self._start_sampling(view, vpolicy, hosts)
        self._disable(k, hosts, view)
        self._drain_and_upgrade(k, wave, hosts, view, vpolicy, live)
        if self.interrupts:
            return
        secs = self.clock() - t_wave
        self._log(DONE, "wave", step=f"w{k}", wave=k, seconds=round(secs, 3))
        if self.eta is not None:
            self.eta.wave_done(k, secs)
            self._show_eta(None, journal=True)
        self.ui.line(f"[bold]wave {k} done[/] in {hms(secs)}")
        self.notify("wave_end", wave=k, seconds=round(secs, 1))
        if self.stop_reason:
            self.ui.warn(f"stopping after wave {k}: {self.stop_reason}")

    # -- 1. re-check ------------------------------------------------------------------------------
    def _progress(self) -> views.Progress:
        st = self.state
        left_disabled = {h for h, o in st.outcomes.items() if o.left_disabled}
        return views.Progress(
            upgraded=frozenset(st.upgraded),
            excluded=frozenset(st.excluded),
            ours_in_progress=frozenset(set(st.disabled_by_us) - left_disabled),
            mid_upgrade=frozenset(st.mid_upgrade),
        )

    def _check(self, k: int) -> tuple[Inventory, Policy, Inventory]:
        for _attempt in range(3):
            live = self._snapshot()
            view, vpolicy = views.planning_view(live, self.policy, self._progress())
            self._reconcile_moves(k, view)
            remaining = self._remaining(k, vpolicy)
            report = check_plan(view, remaining)
            present = bool(remaining.waves) and remaining.waves[0].hosts == tuple(
                h for h in self.state.schedule[k - 1].hosts if h not in self.state.outcomes
            )
            now, later = views.split_violations(report, present)
            self._log(
                NOTE,
                "check",
                wave=k,
                ok=report.ok,
                violations=[str(v) for v in report.violations[:50]],
                count=len(report.violations),
            )
            if self.eta is not None and report.ok:
                c = self.state.canary
                # the canary is over (passed or failed, as _maybe_canary judges): no soak ahead
                over = c is not None and c.get("ev") in (DONE, FAILED) and not c.get("interrupted")
                if self.eta.model.canary_hosts and over:
                    self.eta.model = self.eta.model.with_changes(canary_hosts=0)
                est = self.eta.estimate(view, remaining, k, now=self.clock())
                if self.first_eta_s is None:
                    self.first_eta_s = est
            if report.ok:
                return view, vpolicy, live
            drift = [f"wave {k + (v.wave or 1) - 1}: {_drop_where(v)}" for v in now + later]
            self.ui.warn(
                f"wave {k}: the live cloud no longer fits the plan ({len(report.violations)} "
                "problem(s)):\n  " + "\n  ".join(drift[:12])
            )
            self.notify("drift", wave=k, message="; ".join(drift[:5]), count=len(drift))
            if not self.opts.replan:
                if now:
                    self._release_hosts_not_in(k, None)
                    raise ExecutionError(
                        f"wave {k}: drift and --no-replan, stopped before touching the wave:\n  "
                        + "\n  ".join(drift[:12])
                    )
                self.ui.warn("later waves no longer fit; they will be checked again in turn")
                return view, vpolicy, live
            try:
                new = views.replan(view, vpolicy, time_limit=self.opts.replan_time_limit_s)
            except InfeasibleError as exc:
                self._release_hosts_not_in(k, None)
                raise ExecutionError(
                    f"wave {k}: drift, and no plan exists from the live state: "
                    + "; ".join(exc.reasons)
                ) from None
            waves = views.renumber(new.waves, k)
            self._log(
                NOTE,
                "replan",
                wave=k,
                reason="; ".join(drift[:5]),
                planner=str(new.generator.get("name", "")),
                waves=[wave_to_dict(w) for w in waves],
            )
            self.ui.line(
                f"re-planned from the live state: {len(waves)} wave(s) left "
                f"(was {len(remaining.waves)})"
            )
            self.notify("replan", wave=k, waves=len(waves))
        self._release_hosts_not_in(k, None)
        raise ExecutionError(f"wave {k}: the cloud keeps changing under the plan; stopped")

    def _remaining(self, k: int, vpolicy: Policy) -> Plan:
        st = self.state
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
        st = self.state
        blocked: set[str] = set()  # VMs whose next migration is not done
        for w in st.schedule[k - 1 :]:
            for m in w.migrations:
                if m.vm in blocked or m.vm in st.skipped or (w.index, m.vm) in st.done_moves:
                    continue
                if not (view.has_vm(m.vm) and view.vm(m.vm).host == m.dst):
                    blocked.add(m.vm)
                    continue
                self._log_found(w.index, m.vm, m.dst)

    def _release_hosts_not_in(self, k: int, wave: Wave | None) -> None:
        """Enable hosts this run disabled that the wave (after a re-plan) no longer holds."""
        keep = set(wave.hosts) if wave is not None else set()
        left = {h for h, o in self.state.outcomes.items() if o.left_disabled}
        for h in sorted(set(self.state.disabled_by_us) - keep - left):
            step = f"w{k}/enable/{h}"
            self._log(INTENT, "enable", step=step, wave=k, host=h, why="released")
            self.cloud.set_service(h, True)
            self._log(DONE, "enable", step=step, wave=k, host=h)
            self.ui.line(f"  {h}: enabled again (no longer in this wave)")

    # -- 2. disable -------------------------------------------------------------------------------
    def reason(self, k: int) -> str:
        return f"rollwave: plan {self.sha[:12]} wave {k}"

    def _disable(self, k: int, hosts: list[str], view: Inventory) -> None:
        for h in hosts:
            if not view.has_host(h) or not view.host(h).is_compute:
                continue
            if h in self.state.disabled_by_us:
                continue
            svc = self.cloud.service(h)
            if svc is None:
                self.ui.warn(f"{h}: no nova-compute service found; not disabled")
                continue
            if not svc.enabled:
                self._log(
                    NOTE,
                    "disable",
                    wave=k,
                    host=h,
                    already=True,
                    reason=svc.disabled_reason,
                )
                self.ui.line(
                    f"  {h}: already disabled ({svc.disabled_reason or 'no reason'}); "
                    "it stays disabled after its upgrade"
                )
                continue
            step = f"w{k}/disable/{h}"
            self._log(INTENT, "disable", step=step, wave=k, host=h, reason=self.reason(k))
            self.cloud.set_service(h, False, self.reason(k))
            self._log(DONE, "disable", step=step, wave=k, host=h, reason=self.reason(k))
            self.ui.line(f"  {h}: disabled")

    # -- 3 and 4. migrations and host pipelines ---------------------------------------------------
    def _drain_and_upgrade(
        self,
        k: int,
        wave: Wave,
        hosts: list[str],
        view: Inventory,
        vpolicy: Policy,
        live: Inventory,
    ) -> None:
        st = self.state
        hs = set(hosts)
        vruns: dict[str, VmRun] = {}
        for m in wave.migrations:
            if m.src not in hs or m.vm in st.skipped:
                continue
            if (k, m.vm) in st.done_moves:
                continue
            vruns[m.vm] = self._vmrun(m, k, view)
        hruns = {h: self._hostrun(h, k, view, live) for h in hosts}
        self._hruns = hruns
        self._vruns = vruns
        self._view = view
        self._vpolicy = vpolicy
        self._wave_obj = wave
        aborted = False
        while True:
            if self.interrupts >= 2 and not aborted:
                self._abort_in_flight(vruns, hruns)
                aborted = True
            self._schedule(vruns)
            self._poll_migrations(vruns, hruns)
            for hr in hruns.values():
                self._advance(hr, vruns)
            if all(hr.state == FINISHED for hr in hruns.values()):
                break
            in_flight = any(v.state == RUNNING_ for v in vruns.values())
            busy = any(hr.busy for hr in hruns.values())
            if self.interrupts and not in_flight and (not busy or aborted):
                break
            self._tick_ui(vruns, hruns)
            self._sleep_tick()

    def _vmrun(self, m: Migration, k: int, view: Inventory) -> VmRun:
        status = view.vm(m.vm).status if view.has_vm(m.vm) else "ACTIVE"
        return VmRun(
            vm=m.vm,
            label=vm_label(view, m.vm),
            src=m.src,
            dst=m.dst,
            method=m.method,
            wave=k,
            expect_status=status if status in ("ACTIVE", "PAUSED", "SHUTOFF") else "ACTIVE",
            tried={m.dst},
        )

    def _hostrun(self, h: str, k: int, view: Inventory, live: Inventory) -> HostRun:
        st = self.state
        compute = view.has_host(h) and view.host(h).is_compute
        hr = HostRun(h, compute, k, None)
        if compute:
            hr.version_before = self._observed_version_before(h, live)
        last = st.last_steps.get(h, {})
        if last.get("rbwait") == DONE:
            hr.state, hr.rolled_back = ENABLING, True
            hr.failure = last.get("failure_reason", "upgrade failed")
        elif last.get("rollback") == DONE and last.get("rbwait") != FAILED:
            hr.state, hr.t0, hr.rolled_back = RB_WAITING, self.clock(), True
            hr.failure = last.get("failure_reason", "upgrade failed")
        elif last.get("rollback") == FAILED or last.get("rbwait") == FAILED:
            hr.failure = last.get("failure_reason", "upgrade failed")
            self._host_failed(hr, "the rollback failed earlier", left_disabled=True)
        elif last.get("upgrade") == FAILED or last.get("wait") == FAILED:
            hr.failure = last.get("failure_reason", "upgrade failed")
            self._fail_path(hr, hr.failure)
        elif last.get("wait") == DONE:
            hr.state = ENABLING
        elif last.get("upgrade") == DONE:
            hr.state, hr.t0 = WAITING, self.clock()
        return hr

    def _observed_version_before(self, h: str, live: Inventory) -> str | None:
        """The version the cloud reported before this run touched the host, when it publishes
        one (None otherwise: nothing to compare after a rollback)."""
        first = self.state.first_version.get(h)
        if first is not None:
            return first or None
        v = self.cloud.host_version(h)
        self._log(NOTE, "version", host=h, version=v or "")
        return v

    # -- scheduling -------------------------------------------------------------------------------
    def _schedule(self, vruns: dict[str, VmRun]) -> None:
        if self.interrupts:
            return
        running = [v for v in vruns.values() if v.state == RUNNING_]
        if len(running) >= self.opts.max_parallel:
            return
        out_busy = Counter(v.src for v in running)
        in_busy = Counter(v.dst for v in running)
        now = self.clock()
        for v in vruns.values():
            # A Ctrl-C may come during one of these calls: nothing new starts after it.
            if len(running) >= self.opts.max_parallel or self.interrupts:
                return
            if v.state == RETRY and (now >= v.next_try or self.dry):
                v.state = PENDING
            if v.state != PENDING:
                continue
            if out_busy[v.src] >= self.k_out or in_busy[v.dst] >= self.k_in:
                continue
            if self._start(v):
                running.append(v)
                out_busy[v.src] += 1
                in_busy[v.dst] += 1

    def _start(self, v: VmRun) -> bool:
        attempt = self.state.attempts[(v.wave, v.vm)] + 1
        if attempt > 1 and self._found_on_destination(v):
            return False
        v.known = {m.id for m in self.cloud.migrations(v.vm)}
        v.step = f"w{v.wave}/migrate/{v.vm}/{attempt}"
        self._log(
            INTENT,
            "migrate",
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
                self.cloud.live_migrate(v.vm, v.dst)
            else:
                self.cloud.cold_migrate(v.vm, v.dst)
        except CloudError as exc:
            if exc.status is not None and 400 <= exc.status < 500:
                v.state = RUNNING_
                self._attempt_failed(v, f"Nova refused: {exc}")
                return False
            # No answer: the request may or may not have been taken. The server says.
            srv = self.cloud.server(v.vm)
            if srv is None or srv.settled:
                v.state = RUNNING_
                self._attempt_failed(v, f"the request failed: {exc}")
                return False
        v.state = RUNNING_
        v.t0 = self.clock()
        v.confirmed_resize = False
        self._sample_move(v, forward=True)
        self.ui.line(f"  {v.label}: {v.src} -> {v.dst} ({v.method}) ...")
        return True

    def _found_on_destination(self, v: VmRun) -> bool:
        """Before another attempt: a VM an attempt judged failed may have arrived since (Nova
        finished it late); it is not moved again (Nova would refuse: it is there)."""
        srv = self.cloud.server(v.vm)
        if srv is None or not srv.settled or srv.host != v.dst or srv.status != v.expect_status:
            return False
        self._log_found(v.wave, v.vm, v.dst)
        v.state = DONE_
        self._sample_move(v, forward=True)
        self._bar(vm_step(v.vm))
        self.ui.line(f"  [green]ok[/] {v.label}: found on {v.dst}, {srv.status}")
        return True

    def _poll_migrations(self, vruns: dict[str, VmRun], hruns: dict[str, HostRun]) -> None:
        for v in vruns.values():
            if v.state != RUNNING_:
                continue
            srv = self.cloud.server(v.vm)
            if srv is None:
                self._log(FAILED, "migrate", step=v.step, wave=v.wave, vm=v.vm, reason="VM deleted")
                self._log(NOTE, "skip", wave=v.wave, vm=v.vm, reason="deleted during the run")
                v.state = GONE
                self._sample_move(v, forward=False, gone=True)
                self.ui.line(f"  {v.label}: deleted meanwhile; nothing to move")
                continue
            if v.method == "cold" and srv.status == "VERIFY_RESIZE":
                if not v.confirmed_resize:
                    self.cloud.confirm_resize(v.vm)
                    v.confirmed_resize = True
                    v.t_confirm = self.clock()
                    continue
                # Nova confirms asynchronously: VERIFY_RESIZE until the source compute is done.
                t = self.opts.confirm_timeout_s
                if self.clock() - v.t_confirm < t:
                    continue
                # Not retried: Nova refuses another migration of a VM whose resize is open, and
                # its source keeps the allocation (a revert would land there): it stays as is.
                self._attempt_failed(
                    v,
                    f"still VERIFY_RESIZE on {srv.host} {t:g} s after confirmResize",
                    no_retry=f"its resize was not confirmed within --confirm-timeout {t:g} s",
                    stays=f"{srv.host}, VERIFY_RESIZE",
                )
                continue
            if not srv.settled:
                t = self.opts.migration_timeout_s
                if t and self.clock() - v.t0 > t and not v.aborting:
                    self.ui.warn(f"{v.label}: migration over {t:.0f} s; aborting it")
                    self._abort(v)
                continue
            secs = self.clock() - v.t0
            if srv.host == v.dst and srv.status == v.expect_status:
                self._log(
                    DONE,
                    "migrate",
                    step=v.step,
                    wave=v.wave,
                    vm=v.vm,
                    host=v.dst,
                    seconds=round(secs, 3),
                )
                v.state = DONE_
                self._bar(vm_step(v.vm))
                self.ui.line(f"  [green]ok[/] {v.label}: on {v.dst}, {srv.status} ({secs:.1f} s)")
                continue
            self._attempt_failed(v, self._why_failed(v, srv))

    def _why_failed(self, v: VmRun, srv: Server) -> str:
        new = [m for m in self.cloud.migrations(v.vm) if m.id not in v.known]
        rec = f"migration {new[-1].status}" if new else "no migration record"
        where = f"the VM is {srv.status} on {srv.host}"
        fault = f"; fault: {srv.fault}" if srv.fault else ""
        return f"{rec}; {where}{fault}"

    def _attempt_failed(
        self, v: VmRun, reason: str, *, no_retry: str | None = None, stays: str | None = None
    ) -> None:
        if no_retry is None and "is ERROR" in reason:
            no_retry = "the VM is in ERROR"
        self._log(FAILED, "migrate", step=v.step, wave=v.wave, vm=v.vm, reason=reason)
        self._sample_move(v, forward=False)
        self.notify(
            "migration_failed",
            wave=v.wave,
            vm=v.vm,
            vm_name=self._name(v.vm),
            host=v.src,
            message=reason,
        )
        v.fails_here += 1
        if self.interrupts:
            v.state = PENDING  # resume tries again
            return
        if no_retry:
            self._give_up(v, f"could not be moved: {reason} (not retried: {no_retry})", stays)
            return
        if v.fails_here <= self.opts.retries:
            # Backing off: a refusal is often a view that catches up (Nova's scheduler keeps a
            # migrated VM listed on its source until its periodic sync, every 120 s by default).
            delay = self.opts.retry_delay_s * 2 ** (v.fails_here - 1)
            v.state = RETRY
            v.next_try = self.clock() + delay
            self.ui.line(
                f"  [yellow]retry[/] {v.label}: {reason}; attempt {v.fails_here + 1} of "
                f"{self.opts.retries + 1} in {delay:.0f} s"
            )
            return
        if len(v.tried) <= self.opts.retargets:
            dst = self._another_destination(v)
            if dst is not None:
                host, method = dst
                self._log(
                    NOTE,
                    "retarget",
                    wave=v.wave,
                    vm=v.vm,
                    src=v.src,
                    old=v.dst,
                    dst=host,
                    method=method,
                    reason=reason,
                )
                self.ui.line(f"  [yellow]re-planned[/] {v.label}: {v.dst} failed; now -> {host}")
                v.dst, v.method, v.fails_here = host, method, 0
                v.tried.add(host)
                v.state = PENDING
                return
        self._give_up(v, f"could not be moved: {reason}")

    def _another_destination(self, v: VmRun) -> tuple[str, str] | None:
        """Ask for another host from the live state (a fresh snapshot), judged by the checker."""
        live = self._snapshot()
        view, vpolicy = views.planning_view(live, self.policy, self._progress())
        hosts = tuple(
            h for h, hr in self._hruns.items() if not hr.abandoned and hr.state == DRAINING
        )
        if v.src not in hosts:
            return None
        others = tuple(
            Migration(o.vm, o.src, o.dst, o.method)  # type: ignore[arg-type]
            for o in self._vruns.values()
            if o.vm != v.vm and o.src in hosts and o.state in (PENDING, RUNNING_, RETRY)
        )
        stops = tuple(s for s in self._wave_obj.stops if s.host in hosts)
        return views.find_destination(view, vpolicy, v.vm, hosts, others, stops, avoid=set(v.tried))

    def _give_up(self, v: VmRun, reason: str, stays: str | None = None) -> None:
        v.state = GAVE_UP
        self._log(NOTE, "skip", wave=v.wave, vm=v.vm, host=v.src, reason=reason)
        self.ui.line(f"  [red]failed[/] {v.label}: {reason}; it stays on {stays or v.src}")
        self._bar(vm_step(v.vm), dropped=True)
        hr = self._hruns.get(v.src)
        if hr is not None and not hr.abandoned:
            self._abandon(hr, f"{v.label} could not be moved off it")

    def _abandon(self, hr: HostRun, reason: str) -> None:
        """The host will not be upgraded: its VMs not yet moved stay where they are."""
        hr.abandoned = reason
        for o in self._vruns.values():
            if o.src == hr.host and o.state in (PENDING, RETRY):
                o.state = SKIPPED
                self._log(
                    NOTE,
                    "skip",
                    wave=o.wave,
                    vm=o.vm,
                    host=o.src,
                    reason=f"its host is not upgraded ({reason})",
                )
                self._bar(vm_step(o.vm), dropped=True)
        self.notify("host_failed", wave=hr.wave, host=hr.host, message=reason)

    def _abort(self, v: VmRun) -> None:
        v.aborting = True
        if v.method != "live":
            return  # a cold migration cannot be aborted; it finishes
        for m in self.cloud.migrations(v.vm):
            if m.id not in v.known and m.status in IN_PROGRESS:
                try:
                    self.cloud.abort_migration(v.vm, m.id)
                except CloudError as exc:
                    self.ui.warn(f"{v.label}: abort refused: {exc}")

    def _abort_in_flight(self, vruns: dict[str, VmRun], hruns: dict[str, HostRun]) -> None:
        for v in vruns.values():
            if v.state == RUNNING_ and not v.aborting:
                self._abort(v)
        for hr in hruns.values():
            if hr.hook is not None and hr.hook.poll() is None:
                hr.hook.kill()

    # -- headroom sampling ------------------------------------------------------------------------
    def _start_sampling(self, view: Inventory, vpolicy: Policy, hosts: list[str]) -> None:
        self._cap = CapacityModel(view)
        self._vpolicy = vpolicy
        self._down = np.zeros(len(self._cap.host_names), dtype=bool)
        for h in hosts:
            i = self._cap.host_index.get(h)
            if i is not None:
                self._down[i] = True
        self._sample()

    def _sample_move(self, v: VmRun, *, forward: bool, gone: bool = False) -> None:
        """An in-flight VM counts on its destination (Placement holds both ends); a failed one
        returns to its source."""
        cap = self._cap
        if cap is None or v.vm not in cap.vm_index:
            return
        j = cap.vm_index[v.vm]
        target = v.dst if forward and not gone else v.src
        if target in cap.host_index and int(cap.vm_host[j]) != cap.host_index[target]:
            cap.move(j, cap.host_index[target])
        if forward:
            self._sample()

    def _host_back(self, h: str) -> None:
        if self._cap is not None and self._down is not None and h in self._cap.host_index:
            self._down[self._cap.host_index[h]] = False
            self._sample()

    def _sample(self) -> None:
        if self._cap is None:
            return
        rows = headroom(self._cap, self._vpolicy.headroom, self._down)
        for r in rows:
            key = f"{r.group}/{r.rc}"
            self.min_slack[key] = min(self.min_slack.get(key, r.slack), r.slack)
            if not r.ok and (r.group, r.rc) not in self._breached:
                self._breached.add((r.group, r.rc))
                msg = f"{r.group}: {r.rc} free {r.free} < {r.required} required"
                self._log(NOTE, "headroom", ok=False, group=r.group, rc=r.rc, message=msg)
                self.ui.warn(f"headroom: {msg}")
            elif r.ok:
                self._breached.discard((r.group, r.rc))

    # -- host pipeline ----------------------------------------------------------------------------
    def _advance(self, hr: HostRun, vruns: dict[str, VmRun]) -> None:
        if hr.state == FINISHED:
            return
        mine = [v for v in vruns.values() if v.src == hr.host]
        if hr.state == DRAINING:
            if any(v.state not in TERMINAL_VM for v in mine):
                return
            if hr.abandoned:
                self._finish_not_upgraded(hr, hr.abandoned)
                return
            if self.interrupts:
                return
            if hr.compute and not hr.verified_empty and not self._verify_empty(hr, vruns):
                return
            self._begin_stops(hr)
        elif hr.state == STOPPING:
            self._poll_stops(hr)
        elif hr.state == UPGRADING:
            self._poll_hook(hr, "upgrade")
        elif hr.state == WAITING:
            self._poll_service(hr, "wait", self.policy.target_version)
        elif hr.state == ROLLING_BACK:
            self._poll_hook(hr, "rollback")
        elif hr.state == RB_WAITING:
            self._poll_service(hr, "rbwait", hr.version_before)
        elif hr.state == ENABLING:
            self._enable(hr)
        elif hr.state == STARTING:
            self._poll_starts(hr)

    def _verify_empty(self, hr: HostRun, vruns: dict[str, VmRun]) -> bool:
        """Nothing may be left on a host about to be upgraded but what the plan stops: a VM that
        appeared on it meanwhile gets a destination too (or the host is not upgraded)."""
        wave = self._wave_obj
        stops = {s.vm for s in wave.stops if s.host == hr.host}
        on = set(self.cloud.servers_on(hr.host))
        extra = sorted(on - stops - {v.vm for v in vruns.values() if v.state == GAVE_UP})
        if not extra:
            hr.verified_empty = True
            return True
        self.ui.warn(f"{hr.host}: {len(extra)} VM(s) appeared on it during the wave: {extra[:5]}")
        self.notify("drift", wave=hr.wave, host=hr.host, message=f"new VMs on {hr.host}")
        for vm in extra:
            if vm in vruns and vruns[vm].state in (PENDING, RUNNING_, RETRY):
                continue
            v = VmRun(vm, self._label(vm), hr.host, hr.host, "live", hr.wave, "ACTIVE")
            v.state = PENDING
            self._vruns[vm] = v
            dst = self._another_destination(v)
            if dst is None:
                v.state = GAVE_UP
                self._log(
                    NOTE,
                    "skip",
                    wave=hr.wave,
                    vm=vm,
                    host=hr.host,
                    reason="could not be moved: appeared during the wave and no host can take it",
                )
                self._abandon(hr, f"{v.label} appeared on it and no other host can take it")
                return False
            v.dst, v.method = dst
            v.tried = {dst[0]}
            srv = self.cloud.server(vm)
            if srv is not None:
                if srv.name and srv.name != vm:
                    self._names[vm] = srv.name
                v.label = self._label(vm)
                v.expect_status = srv.status if srv.status in ("ACTIVE", "SHUTOFF") else "ACTIVE"
            self._log(
                NOTE,
                "retarget",
                wave=hr.wave,
                vm=vm,
                src=hr.host,
                old=None,
                dst=v.dst,
                method=v.method,
                reason="appeared on the host during the wave",
            )
        return False

    def _begin_stops(self, hr: HostRun) -> None:
        wave = self._wave_obj
        for s in wave.stops:
            if s.host != hr.host or s.vm in self.state.stopped_by_us:
                continue
            srv = self.cloud.server(s.vm)
            if srv is None or srv.status not in RUNNING:
                self._log(
                    NOTE,
                    "stop",
                    wave=hr.wave,
                    vm=s.vm,
                    host=hr.host,
                    was=srv.status if srv else "deleted",
                )
                continue
            step = f"w{hr.wave}/stop/{s.vm}"
            self._log(
                INTENT, "stop", step=step, wave=hr.wave, vm=s.vm, host=hr.host, was=srv.status
            )
            self.cloud.stop_server(s.vm)
            hr.stopping[s.vm] = step
        hr.state, hr.t0 = STOPPING, self.clock()
        self._poll_stops(hr)

    def _poll_stops(self, hr: HostRun) -> None:
        for vm, step in list(hr.stopping.items()):
            srv = self.cloud.server(vm)
            if srv is None or (srv.status == "SHUTOFF" and srv.settled):
                self._log(
                    DONE,
                    "stop",
                    step=step,
                    wave=hr.wave,
                    vm=vm,
                    host=hr.host,
                    was=self.state.open_steps.get(step, {}).get("was", "ACTIVE"),
                )
                del hr.stopping[vm]
                self.ui.line(f"  {self._label(vm)}: stopped on {hr.host}")
        if hr.stopping:
            if self.clock() - hr.t0 > self.opts.stop_timeout_s:
                for vm, step in hr.stopping.items():
                    self._log(FAILED, "stop", step=step, wave=hr.wave, vm=vm, reason="timeout")
                hr.stopping.clear()
                self._abandon(hr, "a VM it holds did not shut down")
                hr.state = ENABLING  # starts again what was stopped, then not upgraded
            return
        if not self.opts.upgrade_command:
            raise ExecutionError("no --upgrade-command: nothing upgrades the hosts")
        if self.interrupts:
            return
        self._begin_hook(hr, "upgrade", self.opts.upgrade_command)

    def _begin_hook(self, hr: HostRun, kind: str, template: str) -> None:
        cmd = expand(
            template,
            host=hr.host,
            wave=hr.wave,
            plan=self.sha,
            version=self.policy.target_version,
        )
        step = f"w{hr.wave}/{kind}/{hr.host}"
        log = self.hooks.log_path(kind, hr.host)
        self._log(INTENT, kind, step=step, wave=hr.wave, host=hr.host, log=log and str(log))
        hr.hook = self.hooks.start(
            kind, hr.host, cmd, wave=hr.wave, plan=self.sha, version=self.policy.target_version
        )
        hr.state = UPGRADING if kind == "upgrade" else ROLLING_BACK
        hr.t0 = self.clock()
        self.ui.line(f"  {hr.host}: {kind} started")

    def _poll_hook(self, hr: HostRun, kind: str) -> None:
        assert hr.hook is not None
        rc = hr.hook.poll()
        step = f"w{hr.wave}/{kind}/{hr.host}"
        if rc is None:
            t = self.opts.hook_timeout_s
            if t and self.clock() - hr.t0 > t:
                hr.hook.kill()
                rc = -1
                why = f"the {kind} command did not finish within {t:.0f} s (killed)"
            else:
                return
        else:
            why = f"the {kind} command exited {rc}"
        secs = round(self.clock() - hr.t0, 3)
        if rc == 0:
            self._log(DONE, kind, step=step, wave=hr.wave, host=hr.host, rc=0, seconds=secs)
            self.ui.line(f"  {hr.host}: {kind} done ({secs:.0f} s)")
            hr.state = WAITING if kind == "upgrade" else RB_WAITING
            hr.t0 = self.clock()
            if kind == "rollback":
                hr.rolled_back = True
            return
        if self.interrupts >= 2:
            self._log(
                FAILED,
                kind,
                step=step,
                wave=hr.wave,
                host=hr.host,
                rc=rc,
                reason="killed by the abort",
                interrupted=True,
            )
            hr.state = DRAINING  # resume runs it again
            return
        out = tail(hr.hook.log)
        detail = f"{why}" + (f"; last output: {out.splitlines()[-1]}" if out else "")
        self._log(FAILED, kind, step=step, wave=hr.wave, host=hr.host, rc=rc, reason=detail)
        self.ui.warn(f"{hr.host}: {detail}" + (f" (log: {hr.hook.log})" if hr.hook.log else ""))
        if kind == "upgrade":
            self._fail_path(hr, detail)
        else:
            self._host_failed(hr, f"{hr.failure}; then {detail}", left_disabled=True)

    def _poll_service(self, hr: HostRun, what: str, version: str | None) -> None:
        if not hr.compute:
            self._log(DONE, what, step=f"w{hr.wave}/{what}/{hr.host}", wave=hr.wave, host=hr.host)
            hr.state = ENABLING
            return
        now = self.clock()
        if now - hr.last_poll < self.opts.poll_s and not self.dry:
            return
        hr.last_poll = now
        ok, why = self._healthy(hr.host, version)
        step = f"w{hr.wave}/{what}/{hr.host}"
        if ok:
            self._log(DONE, what, step=step, wave=hr.wave, host=hr.host, version=version)
            hr.state = ENABLING
            return
        if now - hr.t0 > self.opts.service_timeout_s or self.dry:
            after = "upgrade" if what == "wait" else "rollback"
            reason = f"not healthy {self.opts.service_timeout_s:.0f} s after the {after}: {why}"
            self._log(FAILED, what, step=step, wave=hr.wave, host=hr.host, reason=reason)
            self.ui.warn(f"{hr.host}: {reason}")
            if what == "wait":
                self._fail_path(hr, reason)
            else:
                self._host_failed(hr, f"{hr.failure}; then {reason}", left_disabled=True)

    def _healthy(self, host: str, version: str | None) -> tuple[bool, str]:
        svc = self.cloud.service(host)
        if svc is None:
            return False, "no nova-compute service"
        if not svc.up:
            return False, "its compute service is down"
        if version:
            got = self.cloud.host_version(host)
            if got is not None and got != version:
                return False, f"it reports version {got}, expected {version}"
        return True, ""

    def _fail_path(self, hr: HostRun, reason: str) -> None:
        """The upgrade failed or the host did not come back healthy: roll back if we can."""
        hr.failure = reason
        self.notify("host_failed", wave=hr.wave, host=hr.host, message=reason)
        if self.opts.rollback_command:
            self.ui.line(f"  {hr.host}: rolling back ({reason})")
            self._begin_hook(hr, "rollback", self.opts.rollback_command)
            hr.state = ROLLING_BACK
            return
        self._host_failed(hr, reason, left_disabled=True)

    def _host_failed(self, hr: HostRun, reason: str, *, left_disabled: bool) -> None:
        disabled = left_disabled and hr.host in self.state.disabled_by_us
        self._log(
            NOTE,
            "host",
            wave=hr.wave,
            host=hr.host,
            status=HOST_FAILED,
            reason=reason,
            disabled=disabled,
        )
        hr.state = FINISHED
        self._bar(host_step(hr.host))
        self.ui.error(
            f"{hr.host}: {reason}; "
            + ("left disabled by rollwave" if disabled else "not back in service")
        )
        self._on_host_failure(hr.host, reason)

    def _on_host_failure(self, host: str, reason: str) -> None:
        if self.opts.on_host_failure == "stop" and not self.stop_reason:
            self.stop_reason = f"host {host} failed: {reason} (--on-host-failure stop)"

    def _finish_not_upgraded(self, hr: HostRun, reason: str) -> None:
        hr.abandoned = reason
        hr.state = ENABLING
        self._enable(hr)

    def _enable(self, hr: HostRun) -> None:
        if hr.host in self.state.disabled_by_us:
            step = f"w{hr.wave}/enable/{hr.host}"
            self._log(INTENT, "enable", step=step, wave=hr.wave, host=hr.host)
            self.cloud.set_service(hr.host, True)
            self._log(DONE, "enable", step=step, wave=hr.wave, host=hr.host)
            self.ui.line(f"  {hr.host}: enabled")
        self._host_back(hr.host)
        for vm, host in list(self.state.stopped_by_us.items()):
            if host != hr.host or vm in hr.starting:
                continue
            step = f"w{hr.wave}/start/{vm}"
            self._log(INTENT, "start", step=step, wave=hr.wave, vm=vm, host=hr.host)
            self.cloud.start_server(vm)
            hr.starting[vm] = step
        hr.state, hr.t0 = STARTING, self.clock()
        self._poll_starts(hr)

    def _poll_starts(self, hr: HostRun) -> None:
        for vm, step in list(hr.starting.items()):
            srv = self.cloud.server(vm)
            if srv is not None and srv.status == "ACTIVE" and srv.settled:
                self._log(DONE, "start", step=step, wave=hr.wave, vm=vm, host=hr.host)
                del hr.starting[vm]
                self.ui.line(f"  {self._label(vm)}: started on {hr.host}")
            elif srv is None or self.clock() - hr.t0 > self.opts.stop_timeout_s:
                why = "deleted" if srv is None else f"{srv.status} after the timeout"
                self._log(FAILED, "start", step=step, wave=hr.wave, vm=vm, reason=why)
                self.ui.warn(f"{self._label(vm)} on {hr.host} did not start: {why}")
                del hr.starting[vm]
        if hr.starting:
            return
        if hr.abandoned or hr.rolled_back:
            reason = hr.abandoned or f"rolled back: {hr.failure}"
            self._log(
                NOTE, "host", wave=hr.wave, host=hr.host, status=HOST_NOT_UPGRADED, reason=reason
            )
            self.ui.line(f"  [yellow]{hr.host}: not upgraded[/] ({reason})")
            if hr.rolled_back or hr.failure:
                self._on_host_failure(hr.host, reason)
        else:
            self._log(NOTE, "host", wave=hr.wave, host=hr.host, status=HOST_UPGRADED)
            self.ui.line(f"  [green]{hr.host}: upgraded[/]")
        hr.state = FINISHED
        self._bar(host_step(hr.host), dropped=bool(hr.abandoned and not hr.rolled_back))

    # =========================================================================================
    # 5. The canary
    # =========================================================================================
    def _maybe_canary(self, k: int) -> None:
        n = self.opts.canary
        st = self.state
        if n <= 0:
            return
        c = st.canary
        if c is not None and c.get("ev") in (DONE, FAILED) and not c.get("interrupted"):
            return
        verdict = st.canary_verdict
        if verdict is not None:  # resumed after a failed canary's verdict: finish the rollback
            self._canary_failed(k, list(verdict["hosts"]), verdict["problems"])
            return
        # The canary moves VMs onto its hosts: upgraded compute hosts in service (not a
        # controller, not a host someone else had disabled before the run).
        order = [
            h
            for h in st.upgrade_order
            if st.outcomes[h].status == HOST_UPGRADED and h in self._canary_able
        ]
        nxt = st.schedule[k] if k < len(st.schedule) else None
        if not order or (len(order) < n and nxt is not None):
            return
        self._canary(k, order[:n], nxt)

    @property
    def _canary_able(self) -> set[str]:
        """Hosts the canary may use: compute hosts in service when the wave began (this run's
        own disabled hosts count as in service)."""
        v = self._view
        return set() if v is None else {h.name for h in v.hosts if h.is_compute and h.enabled}

    def _canary_picks(
        self, k: int, hosts: list[str], nxt: Wave | None, view: Inventory, vpolicy: Policy
    ) -> list[Migration]:
        """The next wave's own evacuees bound for the canary hosts, then more of them
        re-targeted to the canary hosts when the checker agrees."""
        want = max(self.opts.canary_vms, 0)
        if nxt is None or want == 0:
            return []
        todo = [
            m
            for m in nxt.migrations
            if (k + 1, m.vm) not in self.state.done_moves and m.method == "live"
        ]
        picks = [m for m in todo if m.dst in hosts][:want]
        taken = {m.vm for m in picks}
        for m in todo:
            if len(picks) >= want:
                break
            if m.vm in taken:
                continue
            others = tuple(o for o in nxt.migrations if o.vm != m.vm)
            dst = views.find_destination(
                view, vpolicy, m.vm, nxt.hosts, others, nxt.stops, avoid=set(), only=set(hosts)
            )
            if dst is None:
                continue
            self._log(
                NOTE,
                "retarget",
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

    def _canary(self, k: int, hosts: list[str], nxt: Wave | None) -> None:
        live = self._snapshot()
        view, vpolicy = views.planning_view(live, self.policy, self._progress())
        picks = self._canary_picks(k, hosts, nxt, view, vpolicy)
        step = "canary"
        self._log(INTENT, "canary", step=step, wave=k, hosts=hosts, vms=[m.vm for m in picks])
        self.ui.line(
            f"[bold]canary[/]: {', '.join(hosts)}; moving {len(picks)} VM(s) of the next wave "
            f"onto them, then a soak of {hms(self.opts.soak_s)}"
        )
        self.notify("canary", wave=k, hosts=hosts, message="start")
        vruns = {m.vm: self._vmrun(m, k + 1, view) for m in picks}
        self._vruns = vruns
        self._hruns = {}
        self.ui.wave_start("canary", len(picks), 0)
        while any(v.state not in TERMINAL_VM for v in vruns.values()):
            if self.interrupts >= 2:
                self._abort_in_flight(vruns, {})
            self._schedule(vruns)
            self._poll_migrations(vruns, {})
            if self.interrupts and not any(v.state == RUNNING_ for v in vruns.values()):
                return
            self._tick_ui(vruns, {})
            self._sleep_tick()
        problems: dict[str, list[str]] = {h: [] for h in hosts}
        for v in vruns.values():
            if v.state != DONE_:
                problems.setdefault(v.dst, []).append(f"{v.label} could not be moved onto it")
        if self.dry:
            self.ui.line(f"SOAK {self.opts.soak_s:g} s")
        elif self.opts.soak_s > 0:
            self.ui.line(f"  soaking {hms(self.opts.soak_s)} ...")
            t = self.clock()
            end = t + self.opts.soak_s
            if self.eta is not None:
                self.eta.soak_begin(t, self.opts.soak_s)
            self._show_eta(t, journal=True)
            # the bar and the ETA count the soak down (not a frozen ETA for S seconds)
            while (t := self.clock()) < end:
                if self.interrupts:
                    return
                self.ui.soaking(end - t)
                self._show_eta(t)
                self._sleep(min(self.opts.poll_s, max(end - t, 0.0)))
            self.ui.soaking(None)
            if self.eta is not None:
                self.eta.soak_end()
            self._show_eta(t, journal=True)
        for v in vruns.values():
            if v.state != DONE_:
                continue
            srv = self.cloud.server(v.vm)
            if srv is None or srv.status != "ACTIVE" or srv.host != v.dst:
                got = f"{srv.status} on {srv.host}" if srv else "deleted"
                problems[v.dst].append(f"{v.label} is {got} after the soak")
        for h in hosts:
            ok, why = self._healthy(h, self.policy.target_version)
            if not ok:
                problems[h].append(why)
            if self.opts.health_command:
                rc, out = self._run_health(h, k)
                if rc != 0:
                    problems[h].append(
                        f"the health command exited {rc}" + (f" ({out})" if out else "")
                    )
        bad = {h: p for h, p in problems.items() if p}
        if not bad:
            self._log(DONE, "canary", step=step, wave=k, hosts=hosts, vms=[m.vm for m in picks])
            self.ui.line("[green]canary passed[/]")
            self.notify("canary", wave=k, hosts=hosts, message="passed")
            return
        self._log(NOTE, "canary", what="verdict", ok=False, wave=k, hosts=hosts, problems=bad)
        self._canary_failed(k, hosts, bad)

    def _canary_failed(self, k: int, hosts: list[str], bad: dict[str, list[str]]) -> None:
        """A failed canary rolls back every canary host (they share the new version)."""
        summary = "; ".join(f"{h}: {', '.join(p)}" for h, p in bad.items())
        self.ui.error(f"canary failed: {summary}")
        self.notify("canary", wave=k, hosts=hosts, message=f"failed: {summary}")
        reasons = {h: f"canary failed: {'; '.join(bad.get(h) or [summary])}" for h in hosts}
        self._roll_back_hosts(k, hosts, reasons)
        if self.interrupts:
            return
        self._log(FAILED, "canary", step="canary", wave=k, hosts=hosts, reason=summary)

    def _run_health(self, host: str, k: int) -> tuple[int, str]:
        assert self.opts.health_command
        cmd = expand(
            self.opts.health_command,
            host=host,
            wave=k,
            plan=self.sha,
            version=self.policy.target_version,
        )
        step = f"w{k}/health/{host}"
        log = self.hooks.log_path("health", host)
        self._log(INTENT, "health", step=step, wave=k, host=host, log=log and str(log))
        proc = self.hooks.start(
            "health", host, cmd, wave=k, plan=self.sha, version=self.policy.target_version
        )
        t0 = self.clock()
        while (rc := proc.poll()) is None:
            if self.opts.hook_timeout_s and self.clock() - t0 > self.opts.hook_timeout_s:
                proc.kill()
                rc = -1
                break
            self._sleep(min(self.opts.poll_s, 0.5))
        out = tail(proc.log, 1)
        self._log(DONE if rc == 0 else FAILED, "health", step=step, wave=k, host=host, rc=rc)
        return rc, out

    def _roll_back_hosts(self, k: int, hosts: list[str], reasons: dict[str, str]) -> None:
        """The rollback path for hosts already upgraded and back in service: disable, run the
        rollback command, wait for the old version, enable; their guests stay where they are
        (the daemons restart under them, as during the upgrade)."""
        live = self._snapshot()
        view, vpolicy = views.planning_view(live, self.policy, self._progress())
        hruns: dict[str, HostRun] = {}
        for h in hosts:
            if self.state.outcomes.get(h) and self.state.outcomes[h].status != HOST_UPGRADED:
                continue  # rolled back already (a resumed run)
            hr = HostRun(h, True, k, self.state.first_version.get(h) or None)
            hr.failure = reasons[h]
            hruns[h] = hr
            last = self.state.last_steps.get(h, {})
            if last.get("rbwait") == DONE:
                hr.state, hr.rolled_back = ENABLING, True
                continue
            if last.get("rollback") == DONE:
                hr.state, hr.t0, hr.rolled_back = RB_WAITING, self.clock(), True
                continue
            svc = self.cloud.service(h)
            if svc is not None and svc.enabled:
                step = f"w{k}/disable/{h}"
                why = f"rollwave: plan {self.sha[:12]} canary failed"
                self._log(INTENT, "disable", step=step, wave=k, host=h, reason=why)
                self.cloud.set_service(h, False, why)
                self._log(DONE, "disable", step=step, wave=k, host=h, reason=why)
            if self.opts.rollback_command:
                self._begin_hook(hr, "rollback", self.opts.rollback_command)
            else:
                self._host_failed(hr, f"{reasons[h]}; no --rollback-command", left_disabled=True)
        self._hruns = hruns
        self._vruns = {}
        self._start_sampling(view, vpolicy, list(hruns))
        self._bar_overall = False
        self.ui.wave_start("rollback", len(hruns), 0)
        while not all(hr.state == FINISHED for hr in hruns.values()):
            for hr in hruns.values():
                self._advance(hr, {})
            if self.interrupts and not any(hr.busy for hr in hruns.values()):
                return
            if all(hr.state == FINISHED for hr in hruns.values()):
                break
            self._tick_ui({}, hruns)
            self._sleep_tick()

    # =========================================================================================
    # The end
    # =========================================================================================
    def _final_check(self) -> dict[str, Any]:
        """One last snapshot: VMs not ACTIVE, hosts still disabled by rollwave, headroom."""
        try:
            live = self._snapshot()
        except CloudError as exc:
            self.ui.warn(f"final check skipped: {exc}")
            return {}
        bad_vms = [
            {"vm": v.id, "name": v.name, "status": v.status, "host": v.host}
            for v in live.vms
            if v.status in ("ERROR", "MIGRATING", "VERIFY_RESIZE")
            or (v.status == "SHUTOFF" and v.id in self.state.stopped_by_us)
        ]
        problems = [
            str(v)
            for v in check_inventory(live, self.policy)
            if v.rule in ("inventory.capacity", "inventory.headroom")
        ]
        ours = [
            h.name
            for h in live.hosts
            if h.is_compute
            and not h.enabled
            and (h.disabled_reason or "").startswith(f"rollwave: plan {self.sha[:12]}")
        ]
        return {
            "vms_not_running": bad_vms,
            "hosts_disabled_by_rollwave": ours,
            "capacity_problems": problems,
            "min_headroom_slack": dict(sorted(self.min_slack.items())),
        }


_OK_STATUS = ("ACTIVE", "PAUSED", "SHUTOFF")
# A host at work, as the progress says it
_DOING = {
    STOPPING: "stopping its VMs",
    UPGRADING: "upgrading",
    WAITING: "coming back",
    ROLLING_BACK: "rolling back",
    RB_WAITING: "coming back from its rollback",
    ENABLING: "enabling",
    STARTING: "starting its VMs",
}


def _drop_where(v: Any) -> str:
    return f"[{v.rule}] {v.message}"


def _safe_options(o: ExecOptions) -> dict[str, Any]:
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
    }
