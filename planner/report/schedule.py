"""A plan in time, as the report draws it: when each wave, host maintenance and migration runs.

It comes from a simulation's timeline when one is given, else from an estimate: by default
`estimate_with_simulator` (each migration's duration from the simulator's migration model, no
failures, no randomness), or `estimate_schedule`, a small documented model (no failures, no
network sharing, no dirty pages):

- a live migration takes (memory + local disk) / bandwidth + a fixed orchestration overhead;
- a cold migration takes local disk / bandwidth + shut-down-and-boot time + the overhead, and the
  VM is down for all of it;
- each source host runs its migrations in plan order, at most `max_concurrent_live_migrations`
  at once (cold ones share the same slots), every host of a wave starting with the wave;
- a host is upgraded once drained, for `upgrade_s`; VMs stopped in place go down when the host
  is drained and come back when its upgrade ends;
- the next wave starts when every host of the previous one is back.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from planner.inventory import VM, Inventory
from planner.plan import Migration, Plan
from sim.model import SimModel
from sim.prepare import OUTCOME_NAMES, prepare

if TYPE_CHECKING:
    from planner.report.calendar import CalendarAxis


@dataclass(frozen=True, slots=True)
class EstimateModel:
    """Parameters of the estimate. Defaults: a 10 GbE migration network (~1.15 GB/s of payload,
    the reference point in the simulator's notes), Nova's per-migration orchestration in seconds,
    a 20-minute host upgrade."""

    bandwidth_mib_s: float = 1100.0
    overhead_s: float = 10.0
    upgrade_s: float = 1200.0
    cold_boot_s: float = 60.0  # shut down at the source and boot at the destination

    def __post_init__(self) -> None:
        for name in ("bandwidth_mib_s",):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        for name in ("overhead_s", "upgrade_s", "cold_boot_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


@dataclass(frozen=True, slots=True)
class MigrationSpan:
    vm: str
    src: str
    dst: str
    wave: int
    method: str
    start: float  # seconds from the start of the upgrade
    end: float
    downtime_s: float
    ok: bool = True  # False: failed (the VM stayed on its source)
    lane: int = 0  # which of the source host's concurrent slots it ran in


@dataclass(frozen=True, slots=True)
class HostSpan:
    """A host's maintenance: disabled at `start`, drained at `drained`, back at `end`."""

    host: str
    wave: int
    start: float
    drained: float
    end: float
    ok: bool = True  # False: its upgrade failed or it could not be drained


@dataclass(frozen=True, slots=True)
class StopSpan:
    vm: str
    host: str
    wave: int
    start: float
    end: float

    @property
    def downtime_s(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of time with a label: a host rolling back, the canary soaking."""

    start: float
    end: float
    label: str = ""
    host: str | None = None


@dataclass(frozen=True, slots=True)
class WaveSpan:
    index: int
    start: float
    end: float


@dataclass(frozen=True)
class Schedule:
    source: str  # "estimate" or "simulation"
    waves: tuple[WaveSpan, ...]
    hosts: tuple[HostSpan, ...]
    migrations: tuple[MigrationSpan, ...]
    stops: tuple[StopSpan, ...]
    note: str = ""  # how it was obtained, for the report
    rollbacks: tuple[Span, ...] = ()  # hosts rolling back (a failed upgrade, a failed canary)
    soaks: tuple[Span, ...] = ()  # the canary's soak: nothing else runs
    # Times count from a date (`planner.report.calendar`): the Gantt chart shows the calendar.
    calendar: CalendarAxis | None = None

    @property
    def makespan_s(self) -> float:
        ends = [w.end for w in self.waves] + [h.end for h in self.hosts]
        ends += [s.end for s in self.rollbacks] + [s.end for s in self.soaks]
        return max(ends, default=0.0)


def migration_seconds(vm: VM, method: str, model: EstimateModel) -> tuple[float, float]:
    """(duration, downtime) of one migration in the estimate (see the module docstring)."""
    # MEMORY_MB is in MiB (as Nova counts it), local disk in GiB; bandwidth in MiB/s
    disk_mib = vm.local_disk_gb * 1024
    if method == "live":
        copy = (vm.memory_mb + disk_mib) / model.bandwidth_mib_s
        return copy + model.overhead_s, 0.0
    total = disk_mib / model.bandwidth_mib_s + model.cold_boot_s + model.overhead_s
    return total, total


# Outcomes (the simulator's names) after which the VM is still on its source.
FAILED_OUTCOMES = ("aborted", "never", "failed", "lost", "skipped", "fallback-stayed")

# (duration, downtime, ok) of the n-th migration of the plan (in plan order)
DurationOf = Callable[[int, Migration], tuple[float, float, bool]]


def list_schedule(
    plan: Plan,
    k: int,
    duration: DurationOf,
    upgrade_s: Callable[[str], float],
    note: str,
    *,
    start_s: float = 0.0,
) -> Schedule:
    """Waves back to back; in each, every source host runs its migrations in plan order on `k`
    slots from `start_s` after the wave starts; a host upgrades once drained; stopped VMs are
    down while their host upgrades. A host whose migration did not succeed is not upgraded."""
    k = max(1, k)
    waves: list[WaveSpan] = []
    hosts: list[HostSpan] = []
    migrations: list[MigrationSpan] = []
    stops: list[StopSpan] = []
    t = 0.0
    n = 0
    for wave in plan.waves:
        by_src: dict[str, list[int]] = {h: [] for h in wave.hosts}
        for i, m in enumerate(wave.migrations):
            by_src.setdefault(m.src, []).append(i)
        flat = {i: n + i for i in range(len(wave.migrations))}
        n += len(wave.migrations)
        drained: dict[str, float] = {}
        failed: set[str] = set()
        for src, idx in by_src.items():
            slots = [(t + start_s, lane) for lane in range(min(k, max(1, len(idx))))]
            heapq.heapify(slots)
            end = t + start_s if idx else t
            for i in idx:
                m = wave.migrations[i]
                dur, down, ok = duration(flat[i], m)
                free_at, lane = heapq.heappop(slots)
                migrations.append(
                    MigrationSpan(
                        m.vm,
                        m.src,
                        m.dst,
                        wave.index,
                        m.method,
                        free_at,
                        free_at + dur,
                        down,
                        ok,
                        lane,
                    )
                )
                heapq.heappush(slots, (free_at + dur, lane))
                end = max(end, free_at + dur)
                if not ok:
                    failed.add(src)
            drained[src] = end
        wave_end = t
        for h in dict.fromkeys(wave.hosts):
            d = drained.get(h, t)
            up = 0.0 if h in failed else upgrade_s(h)
            hosts.append(HostSpan(h, wave.index, t, d, d + up, h not in failed))
            wave_end = max(wave_end, d + up)
        for s in wave.stops:
            d = drained.get(s.host, t)
            stops.append(StopSpan(s.vm, s.host, wave.index, d, d + upgrade_s(s.host)))
        waves.append(WaveSpan(wave.index, t, wave_end))
        t = wave_end
    return Schedule("estimate", tuple(waves), tuple(hosts), tuple(migrations), tuple(stops), note)


def estimate_schedule(inv: Inventory, plan: Plan, model: EstimateModel | None = None) -> Schedule:
    """The simple estimate described in the module docstring. Unknown VMs (an invalid plan) cost
    only the overhead, so the picture still shows where the plan breaks."""
    model = model or EstimateModel()
    k = max(1, plan.policy.max_concurrent_live_migrations)

    def duration(_n: int, m: Migration) -> tuple[float, float, bool]:
        if inv.has_vm(m.vm):
            return (*migration_seconds(inv.vm(m.vm), m.method, model), True)
        return model.overhead_s, 0.0, True

    note = (
        f"estimated: {model.bandwidth_mib_s:g} MiB/s per migration, {model.overhead_s:g} s "
        f"overhead each, {k} at a time per source host, {model.upgrade_s / 60:g} min upgrade "
        "per host"
    )
    return list_schedule(plan, k, duration, lambda _h: model.upgrade_s, note)


def estimate_with_simulator(inv: Inventory, plan: Plan, model: SimModel) -> Schedule:
    """The estimate with the simulator's migration model (`sim.prepare`): every migration's
    duration and downtime as the simulator computes them (Nova's live-migration settings, dirty
    pages, completion timeouts, the NIC shared by a host's concurrent migrations, orchestration
    overhead), upgrades at the mean of the model's distributions; no failures, no randomness,
    no per-destination queueing. A migration that Nova would abort leaves its host not
    upgraded."""
    prep = prepare(inv, plan, model, check=False)

    def duration(n: int, _m: Migration) -> tuple[float, float, bool]:
        ok = OUTCOME_NAMES[prep.m_outcome[n]] not in FAILED_OUTCOMES
        return prep.m_dur[n], prep.m_down[n], ok

    def upgrade_s(host: str) -> float:
        return model.upgrade_distribution(inv.host(host)).mean + model.enable_s

    k = min(prep.k_out, max((len(w.migrations) for w in plan.waves), default=1))
    src = model.source or "Nova's defaults on 10 GbE"
    note = (
        f"estimated with the simulator's migration model ({src}; no failures, upgrades at "
        "their mean); a simulated run's timeline (--timeline) shows contention and failures"
    )
    return list_schedule(plan, k, duration, upgrade_s, note, start_s=model.disable_s)


@dataclass(frozen=True)
class MonteCarlo:
    """Monte Carlo results to show: the makespan of every completed run, and how many of all the
    runs breached headroom or stalled."""

    makespans_s: tuple[float, ...]
    breaches: int = 0
    stalls: int = 0
    total_runs: int | None = None  # all runs, completed or not (default: the makespans)
    source: str = ""  # where they came from, for the report
    lower_bound_s: float | None = None  # the simulator's makespan lower bound

    @property
    def runs(self) -> int:
        return self.total_runs if self.total_runs is not None else len(self.makespans_s)

    @property
    def breach_probability(self) -> float:
        return self.breaches / self.runs if self.runs else 0.0

    @property
    def stall_probability(self) -> float:
        return self.stalls / self.runs if self.runs else 0.0

    def percentile(self, q: float) -> float:
        """Of the completed runs' makespans (0 when none completed)."""
        if not self.makespans_s:
            return 0.0
        return float(np.percentile(np.asarray(self.makespans_s, float), q))
