"""The moves of one run's migrations on its state: a migration starting counts its VM on the
destination (`occupy`: capacity, anti-affinity, headroom) and runs (`launch`: its share of both
NICs, its end or failure scheduled); one ending with its VM moved stops counting it on the source
(`landed`). Split out of `sim.loop` (whose `Run` inherits them); compiled with it (setup.py's
LOOP_MODULES): keep it mypyc-friendly as `sim.loop`'s docstring says.
"""

from __future__ import annotations

import math

from sim.loop_state import _END, _FAIL, RunState

__all__ = ["Moves"]


class Moves(RunState):
    """A run's state (`RunState`) with its migrations' moves (see the module's docstring)."""

    def landed(self, t: float, mi: int, v: int, d: int) -> None:
        """Migration mi moved VM v to d: it no longer counts where it was."""
        vm_host = self.vm_host
        cur = vm_host[v]
        gc = self.group_of[cur]
        if gc >= 0 and self.st_avail[cur]:
            self.note_min(gc)
            self.st.remove(cur, self.demand[v])
            self.check_group(t, gc)
        else:  # the source is in maintenance: its usage only, no headroom to update
            self.room[cur] += self.dem_p[v]
        g = self.vm_group[v]
        if g >= 0:
            self.gcount[(g, cur)] -= 1
        if self.in_breach:
            self.cap_recovered(cur)
        vm_host[v] = d
        if self.m_dup[mi]:  # another migration of v may wait in cur's queue: a skip now
            self.skips[cur] = sum(1 for _, u, _ in self.queue[cur] if vm_host[u] != cur)

    def occupy(self, t: float, mi: int, v: int, d: int) -> None:
        """VM v of migration mi, starting, counts on its destination d: capacity, anti-affinity
        and headroom."""
        gd = self.group_of[d]
        counted = gd >= 0 and self.st_avail[d]
        dp = self.dem_p[v]
        room = self.room
        before = room[d]
        after = room[d] = before - dp
        mask = self.dem_mask[v]
        if after & mask == mask:  # room left in every class it needs: free falls by it
            if counted:
                self.free_p[gd] -= dp
        else:
            if counted:
                self.free_p[gd] -= self.st.freed(before, after)
            bk = ("cap", d)
            if bk not in self.in_breach:
                self.in_breach.add(bk)
                hosts, classes = self.hosts, self.prep.classes
                self.breach(
                    t,
                    "capacity",
                    f"{hosts[d]} over capacity in "
                    + ", ".join(classes[c] for c in self.st.over(d))
                    + f" with {self.vms[v].id} arriving",
                    (hosts[d], self.vms[v].id),
                )
        g = self.vm_group[v]
        if g >= 0:
            gcount = self.gcount
            gcount[(g, d)] += 1
            if gcount[(g, d)] > self.group_max[g]:
                gid = self.prep.group_ids[g]
                self.breach(
                    t,
                    "anti_affinity",
                    f"server group {gid}: {gcount[(g, d)]} members on "
                    f"{self.hosts[d]} while {self.vms[v].id} migrates",
                    (gid, self.hosts[d]),
                )
        if counted:  # the full check when a class is short; else only note the minimum
            if (self.free_p[gd] - self.req_p[gd]) & self.all_ok != self.all_ok:
                self.check_group(t, gd)
            else:
                self.min_pending[gd] = True

    def launch(self, t: float, mi: int, h: int, d: int, ob: int, ib: int) -> None:
        """Migration mi's attempt runs from h to d (ob, ib: the migrations running on each, it
        included): its share, and its end (or failure) scheduled."""
        tries = self.tries
        dyn = self.dyn
        if tries[mi] == 0:
            self.mig_start[mi] = t
        elif dyn:  # a new attempt: its transfer starts again (first attempts find these)
            self.prog[mi] = 0.0
            self.bw_acc[mi] = 0.0
            self.target[mi] = 1.0
            self.ekind[mi] = _END
        tries[mi] += 1
        mb = self.box[mi]
        overhead = self.overhead
        if dyn:
            self.run_out[h].add(mb)
            self.run_in[d].add(mb)
            # Its share of both NICs (out_busy and in_busy count the running migrations).
            nic = self.nic
            sa = nic[h] / ob
            sb = nic[d] / ib
            share = sa if sa < sb else sb
            try:
                tr = self.by_share[share][self.m_kind[mi]]
            except KeyError:
                tr = None
            if tr is None:
                tr = self.prep.transfer(mi, share)
            self.cur_bw[mi] = share
            self.cur_tr[mi] = tr
            self.x0[mi] = self.seg_t[mi] = t + overhead
            self.dirty.add(self.box[h])
            self.dirty.add(self.box[d])
            dur = tr.total_s
        else:
            dur = self.m_dur[mi]
        if self.record:
            wave = self.prep.m_wave[mi] + 1
            attempt = self.attempts[mi] + 1
            self.log(t, "migration_start", wave, self.hosts[h], mi, self.hosts[d], attempt)
        if dur == math.inf:
            self.in_flight.add(mb)  # it never ends: a stall names it
            return
        if self.track:
            self.in_flight.add(mb)
        if self.failing and self.attempts[mi] < self.fails[mi]:
            u = self.frac_rng.random()
            if dyn:  # fails at that fraction of its transfer, whatever the bandwidth does
                self.target[mi] = u
                self.ekind[mi] = _FAIL
                self.push(t + overhead + u * (dur - overhead), _FAIL, mi, self.token[mi])
            else:
                self.push(t + u * dur, _FAIL, mi, self.token[mi])
        else:
            self.push(t + dur, _END, mi, self.token[mi])
