"""Pipelined execution (policy `execution: pipelined`, the default): a host of a later wave enters
maintenance as soon as admission control (`planner.admission.admit`, the function the simulator
uses) says yes on the live state, instead of waiting for the whole previous wave.

The run keeps an `AdmissionState` built from a fresh snapshot (the planning view) and the plan
still to do, and tells it what happens: a host admitted (disabled), drained (its migrations
over), back in service, lost (failed, left down); a VM that stayed on its source or went
elsewhere. At each poll every host still waiting is asked, in the plan's order; one admitted is
disabled and its migrations and upgrade pipeline join the work under way (the same rooms as a
lock-step wave: `migrations`, `hosts`). Before it is disabled, its evacuees' destinations are
checked up on the cloud itself.

The journal: an `admit` note per host admitted (with the hosts in maintenance then), and one per
change of the reason a waiting host is refused (rule key, words); a wave's intent when its first
host is admitted, its done when its last host has an outcome. A resumed run rebuilds the state
from a fresh snapshot and the journal (the hosts admitted without an outcome are in maintenance)
and asks again. Windows: a host is admitted only inside a window that applies to it (open long
enough for its wave's predicted time); when none is open and nothing is in flight, the run waits
for the next opening (or stops, exit 5, with `--no-window-wait`).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import replace

from planner.admission import DRAINED, IN, PENDING, AdmissionState, Refusal, admit
from planner.errors import ExecutionError
from planner.executor.context import RunContext
from planner.executor.drift import Drift
from planner.executor.errwatch import ErrorWatch
from planner.executor.headroom import HeadroomWatch
from planner.executor.hosts import HostUpgrades
from planner.executor.migrations import Migrations
from planner.executor.states import (
    TERMINAL_VM,
    Ev,
    HostState,
    HostStatus,
    Op,
    VmRun,
    VmState,
)
from planner.executor.ui import hms
from planner.executor.window import WAIT_STEP_S, WindowGate, admission, iso
from planner.inventory import Inventory
from planner.plan import Plan, Wave
from planner.policy import Policy

_RUNNING, _FINISHED = VmState.RUNNING, HostState.FINISHED


class Pipeline:
    """Runs the waves from the first not ended to the end, admitting hosts one by one."""

    def __init__(
        self,
        ctx: RunContext,
        drift: Drift,
        migrations: Migrations,
        hosts: HostUpgrades,
        headroom: HeadroomWatch,
        window: WindowGate,
        errors: ErrorWatch,
    ) -> None:
        self.ctx = ctx
        self.drift = drift
        self.migrations = migrations
        self.hosts = hosts
        self.headroom = headroom
        self.window = window
        self.errors = errors
        self.adm: AdmissionState | None = None
        self.view: Inventory | None = None
        self.live: Inventory | None = None
        self.cur: Inventory | None = None  # the planning view of the last snapshot
        self.pending: list[tuple[int, str]] = []  # (wave, host) still to admit, in plan order
        self.k0 = 1
        self._said: dict[str, tuple[str, str]] = {}  # host -> (rule, until) last journaled
        # (VM, wave) -> (source, destination) admission knows: a VM may move in several waves
        self._dst: dict[tuple[str, int], tuple[str, str]] = {}
        self._t_wave: dict[int, float] = {}
        # the next window opening the run waits for: (opens, closes, the wave waiting)
        self._waiting: tuple[_dt.datetime, _dt.datetime, int] | None = None
        self._closes: dict[str, _dt.datetime] = {}  # host -> when its open window closes

    # -- the state --------------------------------------------------------------------------------
    def in_maintenance(self) -> frozenset[str]:
        """Hosts admitted (or, lock-step, of a started wave) with no outcome yet."""
        st = self.ctx.state
        got = {h for h in st.admitted if h not in st.outcomes}
        for k in st.started - st.ended:
            w = st.schedule[k - 1]
            if not any(h in st.admission for h in w.hosts):  # a lock-step wave (the canary's)
                got.update(h for h in w.hosts if h not in st.outcomes)
        return frozenset(got)

    def _build(self, view: Inventory, vpolicy: Policy, k0: int, inside: frozenset[str]) -> None:
        """The admission state on the live view: the plan from wave k0 without what is done,
        the hosts in maintenance entered (and drained when nothing is left to move off them)."""
        st = self.ctx.state
        # hosts this run works on count as up: they come back (and are in maintenance anyway)
        hosts = tuple(
            replace(h, enabled=True, up=True, disabled_reason=None) if h.name in inside else h
            for h in view.hosts
        )
        inv = replace(view, hosts=hosts)
        waves: list[Wave] = []
        for i, w in enumerate(st.schedule[k0 - 1 :]):
            k = k0 + i
            left = tuple(h for h in w.hosts if h not in st.outcomes)
            migs = tuple(
                m
                for m in w.migrations
                if m.src in left and (k, m.vm) not in st.done_moves and m.vm not in st.skipped
            )
            waves.append(replace(w, index=i + 1, hosts=left, migrations=migs))
        plan = Plan(inventory_sha256="", policy=vpolicy, waves=tuple(waves))
        self.adm = adm = AdmissionState.of(inv, plan)
        self.pending = []
        for i, w in enumerate(waves):
            for h in w.hosts:
                if h in inside:
                    if h in adm.index and adm.status[adm.index[h]] == PENDING:
                        adm.enter(h)
                else:
                    self.pending.append((k0 + i, h))
            for m in w.migrations:
                self._dst[(m.vm, k)] = (m.src, m.dst)

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> None:
        if self._start():
            self._loop()

    def _start(self) -> bool:
        """The re-check from the first wave not ended (re-planned on drift), the admission state
        on its view, the hosts in maintenance back at work. False: nothing left to do."""
        ctx = self.ctx
        st = ctx.state
        k0 = self.k0 = st.next_wave()
        if k0 > len(st.schedule):
            return False
        inside = self.in_maintenance()
        view, vpolicy, live = self.drift.check(k0)
        self.drift.release_hosts_not_in(k0, None, also=inside)
        self.view, self.live, self.cur = view, live, view
        self._build(view, vpolicy, k0, inside)
        self._said = {
            h: (str(r.get("rule", "")), str(r.get("until", "")))
            for h, r in st.admission.items()
            if not r.get("admitted")
        }
        # nothing is under way here (the start, a resume, or nothing in maintenance)
        ctx.hruns, ctx.vruns, ctx.view = {}, {}, view
        ctx.wave = self._stops_of(k0)
        ctx.ui.line(
            f"[bold]pipelined[/] from wave {k0}/{len(st.schedule)}: {len(self.pending)} host(s) "
            f"to admit, {len(inside)} in maintenance"
        )
        self.headroom.start(view, vpolicy, sorted(inside))
        for k, h in self._inside_in_order(k0, inside):
            self._join(k, h)
        return True

    def _stops_of(self, k0: int) -> Wave:
        """One wave holding every stop still to do (the rooms look a host's stops up there)."""
        st = self.ctx.state
        stops = tuple(s for w in st.schedule[k0 - 1 :] for s in w.stops)
        return Wave(k0, tuple(h for w in st.schedule[k0 - 1 :] for h in w.hosts), (), stops)

    def _inside_in_order(self, k0: int, inside: frozenset[str]) -> list[tuple[int, str]]:
        st = self.ctx.state
        return [
            (k0 + i, h) for i, w in enumerate(st.schedule[k0 - 1 :]) for h in w.hosts if h in inside
        ]

    def _loop(self) -> None:
        ctx = self.ctx
        aborted = False
        rechecked = False  # since the last admission
        while True:
            hruns, vruns = ctx.hruns, ctx.vruns
            if ctx.interrupts >= 2 and not aborted:
                self.migrations.abort_in_flight(vruns)
                self.hosts.kill_hooks(hruns)
                aborted = True
            admitted = 0
            if not ctx.interrupts and not ctx.stop_reason:
                admitted = self._admit_round()
            self.migrations.schedule(vruns)
            self.migrations.poll(vruns)
            for hr in list(hruns.values()):
                self.hosts.advance(hr, vruns)
            self._follow()
            unfinished = [hr for hr in hruns.values() if hr.state is not _FINISHED]
            if not self.pending and not unfinished:
                break
            in_flight = any(v.state is _RUNNING for v in vruns.values())
            busy = any(hr.busy for hr in unfinished)
            if ctx.interrupts and not in_flight and (not busy or aborted):
                break
            if ctx.stop_reason and not unfinished:
                break
            if not unfinished and self.pending and not admitted:
                # nothing in maintenance: ask again on the state as it is now
                if self._admit_round():
                    continue
                if self._waiting is not None:
                    self._wait_window()
                    continue
                if not rechecked:  # the cloud may have changed under the plan: re-check it
                    rechecked = True
                    ctx.ui.line("pipelined: no host can be admitted; re-checking the plan")
                    if not self._start():
                        break
                    continue
                self._stuck()
            if admitted:
                rechecked = False
            ctx.tick_ui(vruns, hruns)
            ctx.sleep_tick()

    # -- admission --------------------------------------------------------------------------------
    def _admit_round(self) -> int:
        """Ask every host still waiting, in the plan's order; admit those admission and the
        windows let in. Returns how many were admitted."""
        adm = self.adm
        assert adm is not None
        n = 0
        fresh = False
        closed: list[tuple[_dt.datetime, _dt.datetime, int]] = []
        for k, h in list(self.pending):
            got = admit(adm, h)
            if isinstance(got, Refusal):
                if got.rule == "state":
                    self._gone(k, h)
                    continue
                self._refused(k, got)
                continue
            opens = self._window_closed(k, h)
            if opens is not None:
                closed.append((*opens, k))
                self._refused(
                    k,
                    Refusal(
                        h, "window", f"outside the maintenance windows; next opens {iso(opens[0])}"
                    ),
                )
                continue
            if not fresh:  # the destinations as the cloud has them now
                self._refresh()
                fresh = True
            down = self._destination_down(h)
            if down is not None:
                self._refused(k, Refusal(h, "order", f"its evacuees' destination {down} is down"))
                continue
            self._admit(k, h)
            n += 1
        self._waiting = min(closed) if n == 0 and closed else None
        return n

    def _refused(self, k: int, r: Refusal) -> None:
        """Journaled (and shown) once per change of reason: its rule, and the host it hangs on."""
        key = (r.rule, r.until)
        if self._said.get(r.host) == key:
            return
        self._said[r.host] = key
        self.ctx.log(
            Ev.NOTE,
            Op.ADMIT,
            wave=k,
            host=r.host,
            admitted=False,
            rule=r.rule,
            reason=r.words,
            until=r.until or None,
        )
        self.ctx.ui.line(f"  {r.host} (wave {k}) waits: {r}")

    def _window_closed(self, k: int, h: str) -> tuple[_dt.datetime, _dt.datetime] | None:
        """When the host's window is closed now (or too short for its wave's predicted time):
        when the next opens and closes. None: open."""
        ctx = self.ctx
        windows = ctx.policy.windows
        if not windows:
            return None
        az = self.window._az([h])
        now = ctx.wall()
        got = admission(windows, az, now, ctx.state.schedule[k - 1].predicted_s)
        if got is None:
            raise ExecutionError(
                f"{h} (wave {k}): no maintenance window of the policy applies to it: it can "
                "never go down"
            )
        start, close, _fits = got
        self._closes[h] = close
        return None if start <= now else (start, close)

    def _refresh(self) -> None:
        self.live = self.ctx.snapshot()
        self.cur = self.ctx.planning_view(self.live)[0]

    def _gone(self, k: int, h: str) -> None:
        """A host of the plan admission does not know (not in the cloud when the run began)."""
        self.pending.remove((k, h))
        reason = "not in the cloud when the pipelined run began"
        self.ctx.log(
            Ev.NOTE, Op.HOST, wave=k, host=h, status=HostStatus.NOT_UPGRADED, reason=reason
        )
        self.ctx.ui.warn(f"{h}: {reason}; not upgraded")

    def _destination_down(self, h: str) -> str | None:
        """A destination of the host's evacuees whose compute service the cloud says is down
        (or disabled by someone else) now."""
        live, adm = self.live, self.adm
        assert live is not None and adm is not None
        ours = self.ctx.state.disabled_by_us
        for d in adm.inc[adm.index[h]]:
            name = adm.names[d]
            if not live.has_host(name):
                return name
            host = live.host(name)
            if not host.up or (not host.enabled and name not in ours):
                return name
        return None

    def _admit(self, k: int, h: str) -> None:
        ctx = self.ctx
        adm = self.adm
        assert adm is not None
        self.pending.remove((k, h))
        inside = sorted(self.in_maintenance())
        last = ctx.state.window
        if h in self._closes and (
            k not in ctx.state.started or (last is not None and last.get("what") == "wait")
        ):  # a wave starts (or goes on after a wait) inside a window, as lock-step notes it
            wave = ctx.state.schedule[k - 1]
            ctx.log(
                Ev.NOTE,
                Op.WINDOW,
                what="open",
                wave=k,
                closes=iso(self._closes[h]),
                expected=self.window._expected([x for x in wave.hosts]),
            )
        if k not in ctx.state.started:
            wave = ctx.state.schedule[k - 1]
            ctx.log(Ev.INTENT, Op.WAVE, step=f"w{k}", wave=k, hosts=list(wave.hosts))
            ctx.notify("wave_start", wave=k, hosts=list(wave.hosts))
            ctx.ui.line(  # as a lock-step wave's first line
                f"[bold]wave {k}/{len(ctx.state.schedule)}[/]: {len(wave.hosts)} host(s) "
                f"{', '.join(wave.hosts)}; {len(wave.migrations)} migration(s), "
                f"{len(wave.stops)} stop(s)"
            )
        self._t_wave.setdefault(k, ctx.clock())
        ctx.log(Ev.NOTE, Op.ADMIT, wave=k, host=h, admitted=True, in_maintenance=inside)
        self._said.pop(h, None)
        ctx.ui.line(
            f"[bold]admitted[/] {h} (wave {k})"
            + (f"; in maintenance: {', '.join(inside)}" if inside else "")
        )
        adm.enter(h)
        self.headroom.host_down(h)
        self._join(k, h)

    def _join(self, k: int, h: str) -> None:
        """The host's migrations and pipeline join the work under way."""
        ctx = self.ctx
        st = ctx.state
        vview = self.cur
        assert vview is not None and self.view is not None
        if h not in st.disabled_by_us:
            self.hosts.disable(k, [h], vview)
        for m in st.schedule[k - 1].migrations:
            if m.src != h or m.vm in st.skipped or (k, m.vm) in st.done_moves:
                continue
            if vview.has_vm(m.vm) and vview.vm(m.vm).host == m.dst:
                ctx.log_found(k, m.vm, m.dst)  # moved meanwhile (the canary, a cut run)
                continue
            ctx.vruns[m.vm] = self.migrations.vmrun(m, k, vview)
        ctx.hruns[h] = self.hosts.hostrun(h, k, self.view, self.live or self.view)

    # -- what happened ----------------------------------------------------------------------------
    def _follow(self) -> None:
        """Tell admission what the rooms did since the last poll; close the waves that ended;
        forget the runs of hosts that are over (a long run polls only the work under way)."""
        ctx = self.ctx
        adm = self.adm
        assert adm is not None
        sending: set[str] = set()
        for v in ctx.vruns.values():
            self._follow_vm(v)
            if v.state not in TERMINAL_VM:
                sending.add(v.src)
        over: list[str] = []
        for h, hr in ctx.hruns.items():
            i = adm.index.get(h)
            if i is None:
                continue
            s = adm.status[i]
            if s == IN and (hr.state is not HostState.DRAINING or h not in sending):
                adm.drained(h)
            if hr.state is _FINISHED and adm.status[i] in (IN, DRAINED):
                o = ctx.state.outcomes.get(h)
                if o is not None and o.status == HostStatus.FAILED:
                    adm.lost(h)
                else:
                    adm.leave(h)
            if hr.state is _FINISHED and h not in sending:
                over.append(h)
        if over:
            gone = set(over)
            for h in over:
                del ctx.hruns[h]
            for vm in [vm for vm, v in ctx.vruns.items() if v.src in gone]:
                del ctx.vruns[vm]
        self._close_waves()

    def _follow_vm(self, v: VmRun) -> None:
        adm = self.adm
        assert adm is not None
        key = (v.vm, v.wave)
        known = self._dst.get(key)
        if known is None or v.vm not in adm.vm_index:
            return
        src, dst = known
        if v.state in TERMINAL_VM and v.state is not VmState.DONE:
            if dst in adm.index and src in adm.index:
                adm.stayed(v.vm, src, dst)  # it stays on its source (or is gone)
            del self._dst[key]
        elif v.state is VmState.DONE:
            del self._dst[key]
        elif v.dst != dst and v.dst in adm.index and src in adm.index and dst in adm.index:
            adm.stayed(v.vm, src, dst)  # sent elsewhere: off the old destination,
            adm.stayed(v.vm, v.dst, src)  # onto the new one
            self._dst[key] = (src, v.dst)

    def _close_waves(self) -> None:
        ctx = self.ctx
        st = ctx.state
        waiting = {k for k, _ in self.pending}
        for k in sorted(st.started - st.ended):
            if k in waiting or any(h not in st.outcomes for h in st.schedule[k - 1].hosts):
                continue
            secs = ctx.clock() - self._t_wave.get(k, ctx.clock())
            ctx.log(Ev.DONE, Op.WAVE, step=f"w{k}", wave=k, seconds=round(secs, 3))
            if ctx.eta is not None:
                ctx.eta.wave_done(k, secs)
            self.errors.check(k)
            ctx.ui.line(f"[bold]wave {k} done[/] in {hms(secs)}")
            ctx.notify("wave_end", wave=k, seconds=round(secs, 1))
            if ctx.stop_reason:
                ctx.ui.warn(f"stopping: {ctx.stop_reason}")

    # -- nothing in flight, nothing admitted ------------------------------------------------------
    def _wait_window(self) -> None:
        """Every host still to do is outside its windows and nothing is in maintenance: wait
        for the next opening (or stop: `--no-window-wait`)."""
        ctx = self.ctx
        assert self._waiting is not None
        start, close, k = self._waiting
        opens = iso(start)
        last = ctx.state.window
        new = last is None or last.get("what") != "wait" or last.get("opens") != opens
        if new:
            wave = ctx.state.schedule[k - 1]
            ctx.log(
                Ev.NOTE,
                Op.WINDOW,
                what="wait",
                wave=k,
                opens=opens,
                closes=iso(close),
                expected=self.window._expected(list(wave.hosts)),
            )
            ctx.notify("window_wait", wave=k, message=f"the next window opens at {opens}")
        if not ctx.opts.window_wait:
            raise ExecutionError(
                f"wave {k}: outside the maintenance windows; the next opens at {opens} "
                "(--no-window-wait): resume the run then"
            )
        if new:
            ctx.ui.line(
                f"[bold]wave {k}[/]: the maintenance window is closed; waiting until {opens} "
                "(Ctrl-C stops the run; --resume continues it)"
            )
        left = (start - ctx.wall()).total_seconds()
        ctx.sleep(min(max(left, 0.05), WAIT_STEP_S))
        self._waiting = None

    def _stuck(self) -> None:
        """Nothing in maintenance and admission refuses every host still to do: it never will
        admit one (nothing changes any more). Stop, saying why."""
        adm = self.adm
        assert adm is not None
        why = []
        for k, h in self.pending[:5]:
            got = admit(adm, h)
            why.append(f"{h} (wave {k}): {got}")
        raise ExecutionError(
            "admission refuses every host still to do while none is in maintenance:\n  "
            + "\n  ".join(why)
        )
