"""The event loop of one run (see `sim.engine` for the semantics it implements).

A run is a `Run`: one state object (`sim.loop_state.RunState`: hosts, migrations, queues, the
headroom state, what the result needs) with one handler per event kind (`on_wave`, `on_drain`,
`on_end`, ...). `Run.loop` pops the events in time order and calls each kind's
handler, which changes the state and schedules later events (`push`). A handler returns whether
the event changed anything: a stale one (the old end of a migration given a new share, a
shutdown ending on a host that crashed meanwhile) is not an event and does not move the
makespan. A new event kind is a number in `sim.loop_state`, its handler here, a line of
`Run.loop`, and the `push` that schedules it.

This module and `sim.loop_state` are also compiled with mypyc (C extensions built from these
very files when rollwave is installed, see setup.py); `sim.engine` uses them only while they
were built from the files' current text, else these. Both give the same runs
(tests/test_sim_engine_equivalence.py runs both against the reference engine). Keep them
mypyc-friendly: typed attributes and locals, `Final` constants, no dynamic tricks. `Run` is
final, so its method calls are direct C calls when compiled. What runs once per run (the random
draws, the lower bounds) lives elsewhere.
"""

from __future__ import annotations

import math
from itertools import compress, count
from typing import Final, final

from planner.admission import Admit, admit
from sim.loop_moves import Moves
from sim.loop_state import (
    _CRASH,
    _DRAIN,
    _ENABLE,
    _END,
    _FAIL,
    _HDRAIN,
    _RETRY,
    _ROLLEDBACK,
    _SOAK_END,
    _STOPPED,
    _UPGRADED,
    _WAVE,
    CRASHED,
    DONE_DOWN,
    MAINT,
    NORMAL,
    heap_pop,
    heap_push,
    set_available,
    unpacked,
)
from sim.prepare import OUTCOME_CODE, Prepared
from sim.results import SimResult

__all__ = ["COMPILED", "Run", "heap_pop", "heap_push", "run_loop", "set_available", "unpacked"]

# True in the copy mypyc compiled (its functions have no Python code object). A few scans are
# written two ways: a plain loop, fastest compiled, and one run by C built-ins, fastest in Python.
COMPILED: Final = not hasattr(lambda: None, "__code__")


def run_loop(
    prep: Prepared, seed: int, record: bool, crash: tuple[float, float] | None
) -> SimResult:
    """One run: its events in time order, from the first wave to the last event."""
    run = Run(prep, seed, record, crash)
    run.begin()
    run.loop()
    return run.result()


@final
class Run(Moves):
    """One run's state (`RunState`), its migrations' moves (`Moves`) and its event handlers
    (see the module's docstring)."""

    # --- the loop --------------------------------------------------------------------------------
    def begin(self) -> None:
        """The state before the first event: breaches already there, the first samples, and the
        first events (the first wave, the crash)."""
        prep, st, hosts = self.prep, self.st, self.hosts
        for h in range(len(hosts)):
            over = st.over(h)
            if over:
                msg = f"{hosts[h]} over capacity in " + ", ".join(prep.classes[c] for c in over)
                self.breach(0.0, "capacity", msg, (hosts[h],))
        for (g, h), n in self.gcount.items():
            if n > self.group_max[g]:
                msg = f"server group {prep.group_ids[g]}: {n} members on {hosts[h]}"
                self.breach(0.0, "anti_affinity", msg, (prep.group_ids[g], hosts[h]))
        self.check_ha(0.0, list(range(len(prep.ha))))
        self.sample_all(0.0)
        if self.pipelined:
            self.admit_more(0.0)
        elif self.n_waves:
            self.push(0.0, _WAVE, 0, 0)
        if self.track:
            self.push(self.crash_t, _CRASH, 0, 0)

    def loop(self) -> None:
        """Each event in time order, to its kind's handler (the most frequent kinds first)."""
        heap = self.heap
        while heap:
            t, _, kind, a, b = heap_pop(heap)
            self.now = t
            if kind == _END:
                done = self.on_end(t, a, b)
            elif kind == _FAIL:
                done = self.on_fail(t, a, b)
            elif kind == _RETRY:
                done = self.on_retry(t, a)
            elif kind == _WAVE:
                done = self.on_wave(t, a)
            elif kind == _DRAIN:
                done = self.on_drain(t, a)
            elif kind == _STOPPED:
                done = self.on_stopped(t, a)
            elif kind == _UPGRADED:
                done = self.on_upgraded(t, a)
            elif kind == _ROLLEDBACK:
                done = self.on_rolled_back(t, a)
            elif kind == _SOAK_END:
                done = self.on_soak_end(t, a)
            elif kind == _ENABLE:
                done = self.on_enable(t, a, b)
            elif kind == _HDRAIN:
                done = self.on_host_drain(t, a)
            elif kind == _CRASH:
                done = self.on_crash(t)
            else:
                raise AssertionError(f"unknown event kind {kind}")
            if done:  # a handler returns False for a stale event: it changed nothing
                if self.dirty:
                    self.rebalance(t)
                self.last = t
                self.popped += 1

    # --- handlers: migrations --------------------------------------------------------------------
    def on_end(self, t: float, mi: int, b: int) -> bool:
        """Migration mi ends: its VM is on the destination (or stays, aborted by the timeout)."""
        if b != self.token[mi]:
            return False
        box = self.box
        mb = box[mi]
        if self.track:
            self.in_flight.discard(mb)
        s, d, v = self.m_src[mi], self.m_dst[mi], self.m_vm[mi]
        self.out_busy[s] -= 1
        self.in_busy[d] -= 1
        self.open_[d] = self.dest_ok[d]
        self.mig_end[mi] = t
        prep = self.prep
        if self.dyn:
            tr = self.cur_tr[mi]
            self.run_out[s].discard(mb)
            self.run_in[d].discard(mb)
            dirty = self.dirty
            dirty.add(box[s])
            dirty.add(box[d])
            sg, x0 = self.seg_t[mi], self.x0[mi]
            if sg != x0:  # reshared since its transfer began: its mean share, reported
                cur_bw, bw_acc = self.cur_bw, self.bw_acc
                if t > sg:
                    bw_acc[mi] += cur_bw[mi] * (t - sg)
                cur_bw[mi] = bw_acc[mi] / (t - x0)
            moved, down, code = tr.moves, tr.downtime_s, tr.outcome
            self.mig_bytes[mi] = tr.bytes  # an end is final: set once
        else:
            moved, down, code = prep.m_moves[mi], prep.m_down[mi], prep.m_outcome[mi]
            self.mig_bytes[mi] = prep.m_bytes[mi]
        self.mig_state[mi] = code
        if moved:
            self.landed(t, mi, v, d)
            self.mig_down[mi] = down
        else:
            self.release_dst(mi)
            self.host_failed.add(s)
            if self.adm is not None:
                self.adm.stayed(self.vms[v].id, self.hosts[s], self.hosts[d])
            self.record_failure(
                t,
                "timeout",
                s,
                v,
                f"{self.vms[v].id} did not converge; Nova's completion timeout "
                f"aborted it after {t - self.mig_start[mi]:.0f} s; left on {self.hosts[s]}",
            )
        if self.record:
            self.log(
                t, "migration_end", prep.m_wave[mi] + 1, self.hosts[s], mi, self.hosts[d], None
            )
        pending = self.pending
        pending[s] -= 1
        if pending[s] == 0:
            self.drained(s, t)
        if self.queue[s]:
            self.try_start(s, t)
        if self.waiting_on[d]:
            self.wake(d, t)
        return True

    def on_fail(self, t: float, mi: int, b: int) -> bool:
        """An attempt of migration mi fails: it is retried later, or its VM stays on the source."""
        if b != self.token[mi]:
            return False
        if self.track:
            self.in_flight.discard(mi)
        s, d, v = self.m_src[mi], self.m_dst[mi], self.m_vm[mi]
        self.out_busy[s] -= 1
        self.in_busy[d] -= 1
        self.open_[d] = self.dest_ok[d]
        if self.dyn:
            self.leave(mi)
        self.release_dst(mi)
        self.attempts[mi] += 1
        n = self.attempts[mi]
        if self.record:
            wave = self.prep.m_wave[mi] + 1
            self.log(t, "migration_failed", wave, self.hosts[s], mi, self.hosts[d], n)
        if n <= self.retries and self.hstate[s] == MAINT:
            self.push(t + self.prep.model.retry_delay_s, _RETRY, mi, 0)
        else:
            self.mig_end[mi] = t
            self.mig_state[mi] = OUTCOME_CODE["failed"]
            self.host_failed.add(s)
            if self.adm is not None:
                self.adm.stayed(self.vms[v].id, self.hosts[s], self.hosts[d])
            self.record_failure(
                t,
                "migration",
                s,
                v,
                f"{self.vms[v].id} failed {n} time(s); left on {self.hosts[s]}, "
                f"which cannot be upgraded",
            )
            self.finish_one(s, t)
        self.try_start(s, t)
        self.wake(d, t)
        return True

    def on_retry(self, t: float, mi: int) -> bool:
        """Migration mi waits again at the head of its source's queue."""
        s = self.m_src[mi]
        if self.hstate[s] != MAINT:  # its host crashed meanwhile
            self.mig_state[mi] = OUTCOME_CODE[
                "lost" if self.m_vm[mi] in self.lost_vm else "skipped"
            ]
            return False
        self.requeue(s, mi)
        self.try_start(s, t)
        return True

    # --- handlers: waves and hosts ---------------------------------------------------------------
    def on_wave(self, t: float, w: int) -> bool:
        """Wave w starts (after its window opens): its hosts are disabled (those down are done)."""
        if w < 0:  # pipelined: a window opened, admit more
            n = len(self.cand)
            self.admit_more(t)
            return len(self.cand) < n
        if self.cal is not None and self.wait_window(t, w, -1):
            return False
        prep, hstate = self.prep, self.hstate
        whosts, queues, _ = prep.waves[w]
        self.wave_start[w] = t
        self.wave_left[w] = len(whosts)
        if self.record:
            self.log(t, "wave_start", w + 1, None, None, None, None)
        changed_ha: set[int] = set()
        live = False
        for h in whosts:
            self.host_wave[h] = w
            if hstate[h] != NORMAL:
                # Crashed or failed earlier: nothing to do; its VMs went down with it.
                for mi in queues.get(h, ()):
                    gone = self.m_vm[mi] in self.lost_vm
                    self.mig_state[mi] = OUTCOME_CODE["lost" if gone else "skipped"]
                self.host_done(h, t, "down")
                continue
            self.maint_start[h] = t
            self.set_down(h, MAINT)
            changed_ha.update(prep.host_ha[h])
            live = True
            if self.record:
                self.log(t, "host_disable", w + 1, self.hosts[h], None, None, None)
        self.check_ha(t, sorted(changed_ha))
        self.sample_all(t)
        if live:
            self.push(t + prep.model.disable_s, _DRAIN, w, 0)
        return True

    def on_drain(self, t: float, w: int) -> bool:
        """Wave w's hosts are disabled: their migrations queue and start, their stops begin."""
        hstate = self.hstate
        whosts = self.prep.waves[w][0]
        if all(hstate[h] != MAINT for h in whosts):
            return False  # its hosts crashed while being disabled: the wave is over already
        for h in whosts:
            if hstate[h] == MAINT:
                self.drain_host(h, w, t)
        for h in whosts:
            if hstate[h] == MAINT:
                self.try_start(h, t)
        return True

    def drain_host(self, h: int, w: int, t: float) -> None:
        """Host h (disabled, of wave w): its migrations queue, its stops begin."""
        prep = self.prep
        _, queues, stops = prep.waves[w]
        entry, m_dst, m_vm, vm_host = self.entry, self.m_dst, self.m_vm, self.vm_host
        # (map copies references; compiled, a comprehension would rebuild each tuple)
        mis = queues.get(h, ())
        q = list(map(entry.__getitem__, mis))
        self.queue[h] = q
        self.qdst[h] = list(map(m_dst.__getitem__, mis))
        sk = 0
        for mi in mis:
            if vm_host[m_vm[mi]] != h:
                sk += 1
        self.skips[h] = sk
        sv = [j for j in stops.get(h, ()) if j not in self.lost_vm]
        self.pending[h] = len(q) + (1 if sv else 0)
        if sv:
            for j in sv:
                self.stop_begin[j] = t
            wait = prep.model.shutdown_s if any(prep.stop_active[j] for j in sv) else 0.0
            self.push(t + wait, _STOPPED, h, 0)
        if self.pending[h] == 0:
            self.drained(h, t)

    # --- pipelined execution: admission ----------------------------------------------------------
    def admit_more(self, t: float) -> None:
        """Admit the hosts waiting that admission control lets in now, of any wave: asked
        earliest wave first, then in the plan's order (`admit` re-proves every rule and the
        order the plan must keep on this state); a refusal by the wave size ends the scan (no
        other host fits either)."""
        if self.admitting:
            self.again = True
            return
        self.admitting = True
        adm = self.adm
        assert adm is not None
        cand = self.cand
        again = True
        while again:
            self.again = False
            i = 0
            while i < len(cand):
                w, h = cand[i]
                if self.parked_on[h] >= 0:  # refused until another host moves
                    i += 1
                    continue
                if self.hstate[h] != NORMAL:  # crashed (or failed) before its turn
                    cand.pop(i)
                    self.skip_host(h, w, t)
                    continue
                if self.cal is not None and self.wait_window(t, w, h):
                    i += 1
                    continue
                r = admit(adm, self.hosts[h])
                if isinstance(r, Admit):
                    cand.pop(i)
                    self.refused.pop(h, None)
                    self.enter_host(h, w, t)
                    continue
                why = f"{r.rule}: {r.words}"
                if self.refused.get(h) != why:
                    self.refused[h] = why
                    self.refusals[r.rule] += 1
                    if self.record:
                        self.log(t, "admission_refused", w + 1, self.hosts[h], None, None, why)
                if r.rule == "size":
                    break
                if r.until:
                    b = adm.index[r.until]
                    self.parked_on[h] = b
                    self.parked[b].append(h)
                i += 1
            again = self.again
        self.admitting = False

    def unpark(self, b: int) -> None:
        """Host b changed state: the hosts refused until it did are asked again."""
        waiting = self.parked[b]
        if waiting:
            for h in waiting:
                self.parked_on[h] = -1
            self.parked[b] = []

    def enter_host(self, h: int, w: int, t: float) -> None:
        """Host h of wave w is admitted: disabled now, its drain after `disable_s`."""
        adm = self.adm
        assert adm is not None
        self.unpark(h)
        if math.isnan(self.wave_start[w]):
            self.wave_start[w] = t
            if self.record:
                self.log(t, "wave_start", w + 1, None, None, None, None)
        self.host_wave[h] = w
        self.maint_start[h] = t
        self.set_down(h, MAINT)
        adm.enter(self.hosts[h])
        self.check_ha(t, self.prep.host_ha[h])
        g = self.group_of[h]
        if g >= 0:
            self.check_group(t, g)
            if self.record:
                self.sample_group(t, g)
        if self.record:
            self.log(t, "host_disable", w + 1, self.hosts[h], None, None, None)
        self.push(t + self.prep.model.disable_s, _HDRAIN, h, 0)

    def skip_host(self, h: int, w: int, t: float) -> None:
        """Host h's turn came while it is down (crashed, or failed earlier): nothing to do."""
        if math.isnan(self.wave_start[w]):
            self.wave_start[w] = t
        self.host_wave[h] = w
        for mi in self.prep.waves[w][1].get(h, ()):
            gone = self.m_vm[mi] in self.lost_vm
            self.mig_state[mi] = OUTCOME_CODE["lost" if gone else "skipped"]
        self.host_done(h, t, "down")

    def on_host_drain(self, t: float, h: int) -> bool:
        """Admitted host h is disabled: its migrations queue and start, its stops begin."""
        if self.hstate[h] != MAINT:
            return False  # it crashed while being disabled
        self.drain_host(h, self.host_wave[h], t)
        if self.hstate[h] == MAINT:
            self.try_start(h, t)
        return True

    def on_stopped(self, t: float, h: int) -> bool:
        """Host h's stopped VMs are shut down."""
        if self.hstate[h] != MAINT:
            return False  # the host crashed while its VMs shut down: nothing happens now
        self.finish_one(h, t)
        return True

    def on_upgraded(self, t: float, h: int) -> bool:
        """Host h's upgrade ends: it is enabled, or it failed (rolled back, or it stays down)."""
        if self.hstate[h] != MAINT:
            return False
        model, hosts = self.prep.model, self.hosts
        if self.up_fail[h] and model.rollback:
            rb = self.rb_dur[h]
            msg = f"{hosts[h]} failed its upgrade; rolled back ({rb:.0f} s)"
            self.record_failure(t, "upgrade", h, None, msg)
            self.rolled_back.add(h)
            self.rollback_total += rb
            if self.record:
                self.log(t, "rollback_start", self.host_wave[h] + 1, hosts[h], None, None, None)
            self.push(t + rb, _ROLLEDBACK, h, 0)
        elif self.up_fail[h]:
            self.hstate[h] = DONE_DOWN
            msg = f"{hosts[h]} failed its upgrade and stays down"
            self.record_failure(t, "upgrade", h, None, msg)
            for j in self.prep.waves[self.host_wave[h]][2].get(h, ()):
                self.lost_vm.add(j)
            self.host_done(h, t, "upgrade-failed")
        else:
            self.push(t + self.enable_s, _ENABLE, h, 1)
        return True

    def on_rolled_back(self, t: float, h: int) -> bool:
        """Host h's rollback ends: it is enabled at its old version."""
        if self.hstate[h] != MAINT:
            return False
        if self.record:
            self.log(t, "rollback_end", self.host_wave[h] + 1, self.hosts[h], None, None, None)
        self.push(t + self.enable_s, _ENABLE, h, 0)
        return True

    def on_enable(self, t: float, h: int, upgraded: int) -> bool:
        """Host h is enabled: back in service (upgraded or not), its stopped VMs boot."""
        if self.hstate[h] != MAINT:
            return False
        prep, avail0 = self.prep, self.avail0
        self.hstate[h] = NORMAL
        self.dest_ok[h] = avail0[h]
        self.open_[h] = avail0[h] and self.in_busy[h] < self.k_in
        g = self.group_of[h]
        if avail0[h]:
            if g >= 0:
                self.note_min(g)
            set_available(self.st, h, True)
        self.check_ha(t, prep.host_ha[h])
        if g >= 0:
            self.check_group(t, g)
            if self.record:
                self.sample_group(t, g)
        if self.canary_state == 1 and h in self.canary and h in self.host_status:
            # A canary host back at its old version: the run goes on once all are. (Not
            # counted as an event, as before: its rebalance waits for the next event.)
            self.host_status[h] = "rolled-back"
            if self.record:
                self.log(
                    t,
                    "host_enable",
                    self.host_wave[h] + 1,
                    self.hosts[h],
                    None,
                    None,
                    "rolled-back",
                )
            self.canary_left -= 1
            if self.canary_left == 0:
                self.canary_over(t)
            self.wake(h, t)
            return False
        model = prep.model
        for j in prep.waves[self.host_wave[h]][2].get(h, ()):
            if j in self.stop_begin and j not in self.lost_vm:
                boot = model.boot_s if prep.stop_active[j] else 0.0
                self.stop_down[j] = t + boot - self.stop_begin[j]
        status = (
            "upgraded" if upgraded else "rolled-back" if h in self.rolled_back else "not-upgraded"
        )
        if self.record:
            self.log(t, "host_enable", self.host_wave[h] + 1, self.hosts[h], None, None, status)
        self.host_done(h, t, status)
        self.wake(h, t)
        return True

    # --- handlers: the canary and crashes --------------------------------------------------------
    def on_soak_end(self, t: float, w: int) -> bool:
        """The canary's soak after wave w ends: it passed, or its hosts are rolled back."""
        model, hosts = self.prep.model, self.hosts
        self.soak_total += model.soak_s
        if self.record:
            verdict = "failed: rolling back" if self.canary_fails else "passed"
            self.log(t, "soak_end", w + 1, None, None, None, f"canary {verdict}")
        if self.canary_fails:
            names = ", ".join(hosts[c] for c in self.canary)
            msg = "the canary failed its checks; rolling back " + names
            self.record_failure(t, "canary", self.canary[0], None, msg)
            changed: set[int] = set()
            for c in self.canary:
                if self.hstate[c] != NORMAL:
                    continue
                self.set_down(c, MAINT)
                changed.update(self.prep.host_ha[c])
                self.rolled_back.add(c)
                self.rollback_total += self.rb_dur[c]
                self.canary_left += 1
                if self.record:
                    self.log(t, "rollback_start", self.host_wave[c] + 1, hosts[c], None, None, None)
                self.push(t + model.disable_s + self.rb_dur[c], _ROLLEDBACK, c, 0)
            self.check_ha(t, sorted(changed))
            self.sample_all(t)
        if self.canary_left == 0:
            self.canary_over(t)
        return True

    def canary_over(self, t: float) -> None:
        """The canary passed, or its hosts are all back: the waiting wave starts."""
        self.canary_state = 2
        if self.canary_next < self.n_waves:
            self.push(t, _WAVE, self.canary_next, 0)

    def on_crash(self, t: float) -> bool:
        """A random compute host up crashes: its VMs are lost, its migrations lost or failed."""
        if self.waves_done >= self.n_waves:
            return False  # the upgrade is over: not its concern
        prep, hstate, m_src, m_dst = self.prep, self.hstate, self.m_src, self.m_dst
        H = len(self.hosts)
        cands = [h for h in range(H) if prep.capacity.compute[h] and hstate[h] in (NORMAL, MAINT)]
        if not cands:
            return False
        h = cands[min(len(cands) - 1, int(self.crash_u * len(cands)))]
        was = hstate[h]
        lost = [j for j, hh in enumerate(self.vm_host) if hh == h and j not in self.lost_vm]
        self.lost_vm.update(lost)
        g = self.group_of[h]
        need = [0] * len(prep.classes)
        for j in lost:
            for c, n in enumerate(self.demand[j]):
                need[c] += n
        self.set_down(h, CRASHED)
        if self.adm is not None and was == NORMAL:
            self.adm.lost(self.hosts[h])
            self.unpark(h)
        fits = bool(g < 0) or all(f >= n for f, n in zip(self.st.free_of(g), need, strict=True))
        msg = f"{self.hosts[h]} crashed with {len(lost)} VM(s) on it"
        self.record_failure(t, "crash", h, None, msg, fits)
        touched: set[int] = set()
        for mi in sorted(self.in_flight):
            if m_src[mi] == h or m_dst[mi] == h:
                touched.add(m_src[mi])
                self.token[mi] += 1
                self.in_flight.discard(mi)
                s, d = m_src[mi], m_dst[mi]
                self.out_busy[s] -= 1
                self.in_busy[d] -= 1
                self.open_[d] = self.dest_ok[d]
                if self.dyn:
                    self.leave(mi)
                self.release_dst(mi)
                if s == h:
                    self.mig_end[mi] = t
                    self.mig_state[mi] = OUTCOME_CODE["lost"]
                else:  # the destination is gone: the attempt fails; it waits for a destination
                    self.requeue(s, mi)
        if was == MAINT:
            for mi, _, _ in self.queue[h]:
                self.mig_state[mi] = OUTCOME_CODE["lost"]
            # Its migrations not started yet (its drain had not begun, or they waited):
            for mi in prep.waves[self.host_wave[h]][1].get(h, ()):
                if self.mig_state[mi] < 0 and self.tries[mi] == 0:
                    gone = self.m_vm[mi] in self.lost_vm
                    self.mig_state[mi] = OUTCOME_CODE["lost" if gone else "skipped"]
            self.queue[h] = []
            self.qdst[h] = []
            self.skips[h] = 0
            self.host_done(h, t, "crashed")
        for j in lost:
            self.vm_host[j] = -1
        self.check_ha(t, prep.host_ha[h])
        self.sample_all(t)
        for s in sorted(touched):
            self.try_start(s, t)
        for d in [d for d in range(H) if self.waiting_on[d]]:
            self.wake(d, t)
        if self.adm is not None:
            self.admit_more(t)
        return True

    # --- helpers: starting migrations ------------------------------------------------------------
    def try_start(self, h: int, t: float) -> None:
        """Start h's first startable migrations (plan order) while h has free slots; note the
        destinations it waits for."""
        q = self.queue[h]
        if not q:
            return
        out_busy, in_busy = self.out_busy, self.in_busy
        slots = self.k_out - out_busy[h]
        if slots <= 0:
            return
        qd = self.qdst[h]
        hb = self.box[h]
        open_, skips, vm_host, waiting_on = self.open_, self.skips, self.vm_host, self.waiting_on
        i = 0
        n = len(q)
        while i < n:
            if skips[h]:  # entry by entry
                mi, v, d = q[i]
                if vm_host[v] != h:
                    # Lost in a crash, or not on this host (an earlier migration of it failed):
                    # nothing to move off this host.
                    q.pop(i)
                    qd.pop(i)
                    n -= 1
                    skips[h] -= 1
                    gone = v in self.lost_vm
                    self.mig_state[mi] = OUTCOME_CODE["lost" if gone else "skipped"]
                    self.finish_one(h, t)
                    continue
                if not open_[d]:
                    waiting_on[d].add(hb)
                    i += 1
                    continue
            else:  # every VM is here: the first entry whose destination has room, found in C
                # (a slice copy is cheaper than islice, which pays a step per item it yields)
                if COMPILED:
                    j = i
                    while j < n and not open_[qd[j]]:
                        j += 1
                else:
                    j = next(compress(count(i), map(open_.__getitem__, qd[i:] if i else qd)), n)
                if j > i:  # h waits for the destinations before it
                    for d in qd[i:j]:
                        waiting_on[d].add(hb)
                    if j == n:
                        break
                    i = j
                mi, v, d = q[i]
            q.pop(i)
            qd.pop(i)
            n -= 1
            # Start mi (a state change and checks: an event of its own).
            ob = out_busy[h] = out_busy[h] + 1
            ib = in_busy[d] = in_busy[d] + 1
            if ib >= self.k_in:
                open_[d] = False
            self.occupy(t, mi, v, d)
            self.launch(t, mi, h, d, ob, ib)
            slots -= 1
            if slots == 0:
                return

    def wake(self, d: int, t: float) -> None:
        """Destination d has room again (a slot freed, or it is back): retry who waited for it."""
        ws = self.waiting_on[d]
        if not ws:
            return
        self.waiting_on[d] = set()
        order = sorted(ws) if len(ws) > 1 else list(ws)
        for i, h in enumerate(order):
            if self.in_busy[d] >= self.k_in:  # full again: the others go on waiting for it
                self.waiting_on[d].update(order[i:])
                return
            if self.out_busy[h] < self.k_out:  # a source with no free slot rescans when one frees
                self.try_start(h, t)

    # --- helpers: hosts and waves ----------------------------------------------------------------
    def finish_one(self, h: int, t: float) -> None:
        """One of h's migrations or its stops is done (or will never be)."""
        self.pending[h] -= 1
        if self.pending[h] == 0:
            self.drained(h, t)

    def drained(self, h: int, t: float) -> None:
        """Host h has nothing left to move: its upgrade starts (or it returns to service)."""
        if self.hstate[h] != MAINT:
            return
        adm = self.adm
        if adm is not None:
            adm.drained(self.hosts[h])
            self.unpark(h)
            self.admit_more(t)
        if h in self.host_failed:
            # back in service, not upgraded
            self.push(t + self.enable_s, _ENABLE, h, 0)
            return
        self.upgrade_start[h] = t
        g = self.group_of[h]
        if self.record and g >= 0:  # its VMs have landed: the group's low point before h is back
            self.sample_group(t, g)
        if self.record:
            self.log(t, "upgrade_start", self.host_wave[h] + 1, self.hosts[h], None, None, None)
        self.push(t + self.up_dur[h], _UPGRADED, h, 0)

    def host_done(self, h: int, t: float, status: str) -> None:
        """Host h is done with its wave; the last of a wave starts the next (or the canary)."""
        if h in self.host_status:
            return
        self.host_status[h] = status
        if status == "upgraded" and self.canary_host_ok[h]:
            self.upgraded_order.append(h)
        self.host_times[h] = (self.maint_start.get(h, t), self.upgrade_start.get(h, math.nan), t)
        w = self.host_wave[h]
        self.wave_left[w] -= 1
        adm = self.adm
        if adm is not None:
            if status in ("upgraded", "not-upgraded", "rolled-back"):
                adm.leave(self.hosts[h])
            else:  # down for good: crashed, or failed its upgrade
                adm.lost(self.hosts[h])
            self.unpark(h)
        if self.wave_left[w] != 0:
            if adm is not None:
                self.admit_more(t)
            return
        self.wave_end[w] = t
        self.waves_done += 1
        if self.record:
            self.log(t, "wave_end", w + 1, None, None, None, None)
        self.sample_all(t)
        if adm is not None:
            self.admit_more(t)
            return
        n_canary = self.prep.model.canary_hosts
        order = self.upgraded_order
        if self.canary_state == 0 and order and (len(order) >= n_canary or w + 1 == self.n_waves):
            # The canary: its hosts soak; nothing starts meanwhile.
            self.canary_state = 1
            self.canary.extend(order[:n_canary])
            self.canary_next = w + 1
            if self.record:
                names = ", ".join(self.hosts[c] for c in self.canary)
                self.log(t, "soak_start", w + 1, None, None, None, f"canary: {names}")
            self.push(t + self.prep.model.soak_s, _SOAK_END, w, 0)
        elif w + 1 < self.n_waves:
            self.push(t, _WAVE, w + 1, 0)
