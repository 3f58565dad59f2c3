"""The predicted pipelined makespan: admission control (`planner.admission`) replayed over each
host's predicted maintenance, deterministic, failure-free.

Hosts are asked as the simulator and the executor ask them: every host still waiting, of any
wave, earliest wave first, then in its wave's order (admission re-proves every rule and the order
the plan must keep); a refusal by the wave size ends the scan; the others are asked again when a
host drains or comes back. Lock-step, a refusal because an earlier wave is not over leaves the
later waves unasked (each would hear the same). A host admitted at t is drained at t + `drain_s`
(disable and its migrations) and back at t + `total_s` (then upgraded and enabled). The same
replay with `execution: lockstep` waits for whole waves.

Core only: the predictions come in as plain numbers (the application layer's `planner.app.
predict`, or the solver's durations from `planner.estimates`); nothing here imports an engine.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from planner.admission import AdmissionState, Admit, admit
from planner.estimates import Estimates, How
from planner.inventory import Inventory
from planner.plan import Plan, Wave


@dataclass(frozen=True, slots=True)
class Maintenance:
    """One host's predicted maintenance, from the moment it is admitted: drained after
    `drain_s` (disable and its migrations), back in service after `total_s`."""

    drain_s: float
    total_s: float


@dataclass(frozen=True)
class Replay:
    makespan_s: float
    start_s: Mapping[str, float]  # each host's admission
    end_s: Mapping[str, float]  # and its return to service
    refusals: Counter[str] = field(default_factory=Counter)  # admission's, by rule
    stalled: tuple[str, ...] = ()  # hosts never admitted (a plan admission cannot finish)


class Gate(Protocol):
    """Time outside admission's rules (maintenance windows): the earliest time from t at which
    host h may go down (t itself when it may now), and word of each host that does."""

    def earliest(self, h: str, t: float) -> float: ...

    def entered(self, h: str, t: float) -> None: ...


_DRAINED, _BACK, _WAKE = 0, 1, 2


def replay(
    inv: Inventory,
    plan: Plan,
    maintenance: Mapping[str, Maintenance],
    execution: str | None = None,
    state: AdmissionState | None = None,
    gate: Gate | None = None,
) -> Replay:
    """The plan run host by host under admission control with these durations (`execution`:
    the policy's when None). `state`: a fresh `AdmissionState` of (inv, plan) to reuse (copied).
    `gate`: a host admission accepts waits, as refused for `window`, until the gate lets it."""
    if execution is not None and execution != plan.policy.execution:
        plan = dataclasses.replace(
            plan,
            policy=dataclasses.replace(plan.policy, execution=execution),  # type: ignore[arg-type]
        )
    st = state.copy() if state is not None else AdmissionState.of(inv, plan)
    if execution is not None:
        st.lockstep = execution == "lockstep"
    cand: list[tuple[int, str]] = []
    seen: set[str] = set()
    for w in plan.waves:
        for h in w.hosts:
            if h not in seen and h in st.index:
                seen.add(h)
                cand.append((w.index, h))
    heap: list[tuple[float, int, int, str]] = []
    start: dict[str, float] = {}
    end: dict[str, float] = {}
    refusals: Counter[str] = Counter()
    last: dict[str, str] = {}
    # Hosts refused until another host changes state (Refusal.until): not asked meanwhile.
    parked: dict[str, str] = {}
    waiting: dict[str, list[str]] = {}
    seq = 0
    t = 0.0
    wakes: set[float] = set()  # times a host held by the gate is asked again

    def moved(b: str) -> None:
        for h in waiting.pop(b, ()):
            parked.pop(h, None)

    def admit_more() -> None:
        nonlocal seq
        i = 0
        limit = len(plan.waves)  # lock-step: the waves after one refused for it go unasked
        while i < len(cand):
            w, h = cand[i]
            if w > limit:
                break
            if h in parked:
                i += 1
                continue
            r = admit(st, h)
            if isinstance(r, Admit) and gate is not None:
                at = gate.earliest(h, t)
                if at > t:
                    if last.get(h) != "window":
                        last[h] = "window"
                        refusals["window"] += 1
                    if at not in wakes:
                        wakes.add(at)
                        heapq.heappush(heap, (at, seq, _WAKE, h))
                        seq += 1
                    i += 1
                    continue
                gate.entered(h, t)
            if isinstance(r, Admit):
                cand.pop(i)
                st.enter(h)
                moved(h)
                m = maintenance.get(h, Maintenance(0.0, 0.0))
                start[h] = t
                heapq.heappush(heap, (t + m.drain_s, seq, _DRAINED, h))
                heapq.heappush(heap, (t + max(m.total_s, m.drain_s), seq + 1, _BACK, h))
                seq += 2
                continue
            if last.get(h) != r.rule:
                last[h] = r.rule
                refusals[r.rule] += 1
            if r.rule == "size":
                break
            if r.rule == "lockstep":
                limit = w
            if r.until:
                parked[h] = r.until
                waiting.setdefault(r.until, []).append(h)
            i += 1

    def happen(kind: int, h: str) -> None:
        if kind == _WAKE:
            wakes.discard(t)
            return
        if kind == _DRAINED:
            st.drained(h)
        else:
            st.leave(h)
            end[h] = t
        moved(h)

    admit_more()
    while heap:
        t, _, kind, h = heapq.heappop(heap)
        happen(kind, h)
        # events at the same moment first, then one scan (as the simulator does)
        while heap and heap[0][0] <= t:
            _, _, kind, h = heapq.heappop(heap)
            happen(kind, h)
        admit_more()
    makespan = max(end.values(), default=0.0)
    return Replay(makespan, start, end, refusals, tuple(h for _, h in cand))


def evacuees(w: Wave) -> dict[str, list[str]]:
    """Each host a wave drains (its hosts, and sources of its moves), with the VMs it sends."""
    by_src: dict[str, list[str]] = {h: [] for h in w.hosts}
    for m in w.migrations:
        by_src.setdefault(m.src, []).append(m.vm)
    return by_src


def maintenance_of(
    inv: Inventory,
    plan: Plan,
    est: Estimates,
    how: Mapping[str, How],
    shutdown_s: float = 0.0,
) -> dict[str, Maintenance]:
    """Each host's predicted maintenance in its wave: disable, its drain (its migrations k_out at
    a time, at least `shutdown_s` when it stops a running VM), the upgrade's median, enable."""
    out: dict[str, Maintenance] = {}
    for w in plan.waves:
        by_src = evacuees(w)
        stopping = {s.host for s in w.stops if inv.vm(s.vm).status == "ACTIVE"}
        for host, vms in by_src.items():
            if host in out:
                continue
            h = est.hosts[host]
            drain = est.drain_s(host, vms, how)
            if host in stopping:
                drain = max(drain, shutdown_s)
            out[host] = Maintenance(
                h.disable_s + drain, h.disable_s + drain + h.upgrade_s + h.enable_s
            )
    return out


def predicted_makespan(
    inv: Inventory,
    plan: Plan,
    est: Estimates,
    how: Mapping[str, How],
    shutdown_s: float = 0.0,
    execution: str | None = None,
) -> float:
    """The plan's predicted makespan run pipelined (or as `execution` says): `replay` over
    `maintenance_of`."""
    return replay(inv, plan, maintenance_of(inv, plan, est, how, shutdown_s), execution).makespan_s
