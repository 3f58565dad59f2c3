"""What the executor's rooms share: the plan, the cloud, the options, the journal and the run state
it folds into, the progress display and the notifications, the clock, the ports, and the work
under way (the wave's VM and host runs).

`RunContext.log` is the one way anything is recorded: it writes the journal record (or, in a dry
run, numbers it) and applies it to `state`, which is the run's only memory.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from planner.executor import view as views
from planner.executor.cloud import Cloud
from planner.executor.eta import Eta
from planner.executor.hooks import Notifier, Running
from planner.executor.journal import Journal, RunState, now_iso
from planner.executor.options import ExecOptions
from planner.executor.ports import Estimator, Replanner
from planner.executor.states import DOING, Ev, HostRun, Op, VmRun, VmState
from planner.executor.ui import Reporter
from planner.inventory import Inventory
from planner.plan import Plan, Wave
from planner.policy import Policy

# The state compared for every VM at every poll, read once: an enum member read through its
# class costs a call to the enum's metaclass (Python 3.11), about ten times a global's read.
_RUNNING = VmState.RUNNING
_NAMED = (Ev.INTENT, Ev.NOTE)  # records that carry a VM's name


class HookRunner(Protocol):
    """What starts commands: `hooks.Hooks` or `hooks.DryRunHooks`."""

    def log_path(self, kind: str, host: str) -> Path | None: ...

    def start(
        self, kind: str, host: str, command: str, *, wave: int, plan: str, version: str | None
    ) -> Running: ...


class RunContext:
    """One run's shared state and services, held by every room."""

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
        estimator: Estimator | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall: Callable[[], _dt.datetime] | None = None,
    ) -> None:
        self.plan = plan
        self.sha = plan_sha
        self.cloud = cloud
        self.opts = opts
        self.ui = reporter
        self.hooks = hooks
        self.notify = notify
        self.replanner = replanner
        self.clock = clock
        self.sleep = sleep
        # the calendar's time (maintenance windows): aware, UTC
        self.wall = wall or (lambda: _dt.datetime.now(_dt.UTC))
        self.dry = cloud.dry
        self.policy: Policy = plan.policy
        self.state = RunState.start(plan)
        self.journal: Journal | None = None
        self._seq = 0
        self.interrupts = 0  # Ctrl-C presses
        self.stop_reason: str | None = None  # the run stops after the wave under way
        self.eta = Eta(estimator) if estimator is not None else None
        self.first_eta_s: float | None = None  # the model's time for the whole run
        self.bar_overall = True  # steps outside the plan (a rollback) do not count overall
        self._eta_rec: tuple[float, float] | None = None  # (clock, ETA s) of its last record
        self._names: dict[str, str] = {}  # VM id -> name, from the snapshots and the journal
        # The work under way: the wave's (or the canary's, or a rollback's) VMs and hosts, the
        # wave being executed and its planning view.
        self.vruns: dict[str, VmRun] = {}
        self.hruns: dict[str, HostRun] = {}
        self.wave: Wave | None = None
        self.view: Inventory | None = None

    # -- the journal ------------------------------------------------------------------------------
    def log(self, ev: Ev, op: Op, **fields: Any) -> dict[str, Any]:
        rec: dict[str, Any] = {"ev": ev, "op": op}
        rec.update((k, v) for k, v in fields.items() if v is not None)
        vm = rec.get("vm")
        if ev in _NAMED and vm and "name" not in rec and self.name(vm):
            rec["name"] = self.name(vm)  # --status names what was in flight
        if self.journal is not None:
            rec = self.journal.write(rec)
        else:
            self._seq += 1
            rec = {"seq": self._seq, "t": now_iso(), **rec}
        self.state.apply(rec)
        return rec

    def log_found(self, wave: int, vm: str, dst: str) -> None:
        """A migration found done on the cloud (not by this run's polling): journal it as done."""
        self.log(
            Ev.DONE,
            Op.MIGRATE,
            step=f"w{wave}/migrate/{vm}/found",
            wave=wave,
            vm=vm,
            host=dst,
            reconciled=True,
        )

    # -- the cloud as the planner sees it ---------------------------------------------------------
    def snapshot(self) -> Inventory:
        live = self.cloud.snapshot()
        self._names.update((v.id, v.name) for v in live.vms if v.name and v.name != v.id)
        return live

    def progress(self) -> views.Progress:
        st = self.state
        left_disabled = {h for h, o in st.outcomes.items() if o.left_disabled}
        return views.Progress(
            upgraded=frozenset(st.upgraded),
            excluded=frozenset(st.excluded),
            ours_in_progress=frozenset(set(st.disabled_by_us) - left_disabled),
            mid_upgrade=frozenset(st.mid_upgrade),
        )

    def planning_view(self, live: Inventory) -> tuple[Inventory, Policy]:
        return views.planning_view(live, self.policy, self.progress())

    def reason(self, k: int) -> str:
        """The disabled reason of a wave's hosts."""
        return f"rollwave: plan {self.sha[:12]} wave {k}"

    # -- names ------------------------------------------------------------------------------------
    def name(self, vm: str) -> str | None:
        return self._names.get(vm) or self.state.vm_names.get(vm)

    def learn_name(self, vm: str, name: str) -> None:
        if name and name != vm:
            self._names[vm] = name

    def label(self, vm: str) -> str:
        """How lines name a VM: its name and the start of its id (as `checker.vm_label`)."""
        name = self.name(vm)
        return f"{name} ({vm[:8]})" if name else vm

    # -- progress ---------------------------------------------------------------------------------
    def steps(self) -> tuple[int, int]:
        """Progress units: one per migration and one per host, over the whole schedule."""
        total = sum(len(w.migrations) + len(w.hosts) for w in self.state.schedule)
        done = len(self.state.done_moves) + len(self.state.outcomes)
        return total, min(done, total)

    def bar(self, key: str | None = None, *, dropped: bool = False) -> None:
        """A step has ended (`key`: `vm_step`, `host_step`); `dropped`: given up, not done."""
        self.ui.advance(overall=self.bar_overall)
        if self.eta is not None:
            now = self.clock()
            self.eta.step_done(now, key, dropped=dropped)
            self.ui.set_work(self.eta.wave_fraction())  # None outside a wave (the canary)
            self.show_eta(now)

    def show_eta(self, now: float | None, *, journal: bool = False) -> None:
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
        self.log(Ev.NOTE, Op.ETA, wave=self.eta.wave, **rec)

    def tick_ui(self, vruns: dict[str, VmRun], hruns: dict[str, HostRun]) -> None:
        """Each poll: what is in flight (VMs by name and short id, hosts at work) and the ETA
        (time passes between steps)."""
        items = [f"{v.label} -> {v.dst}" for v in vruns.values() if v.state is _RUNNING]
        items += [f"{h.host} {DOING[h.state]}" for h in hruns.values() if h.busy]
        self.ui.in_flight(items)
        self.show_eta(self.clock())

    def sleep_tick(self, seconds: float | None = None) -> None:
        if self.dry:
            return
        self.sleep(self.opts.poll_s if seconds is None else seconds)

    def on_host_failure(self, host: str, reason: str) -> None:
        if self.opts.on_host_failure == "stop" and not self.stop_reason:
            self.stop_reason = f"host {host} failed: {reason} (--on-host-failure stop)"
