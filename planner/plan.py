"""The plan: an immutable, serialisable schedule of waves. Written by the solver, read by the
checker, the simulator, the reports and the executor alike.

Semantics (judged by `planner.checker`): waves run in order; in wave i its hosts enter maintenance,
every VM on them migrates (`src` = its current host) or is stopped in place; at the end of the wave
its hosts hold only stopped VMs and run the target version.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from planner.policy import Policy

# How a VM moves (Nova's API for each: docs/executor.md). `live` and `cold` are the usual;
# `shelve` is shelve then unshelve to the planned host (a SUSPENDED VM, or a hard affinity group;
# the VM comes back ACTIVE); `evacuate` rebuilds a VM of a host that is down elsewhere;
# `live-forced` is a forced live migration (a hard affinity group's members, policy
# affinity_moves: forced). See planner.rules.method for when each is permitted.
Method = Literal["live", "cold", "shelve", "evacuate", "live-forced", "cross-cloud"]
# The in-place methods (Nova's own moves inside one cloud).
METHODS: tuple[Method, ...] = ("live", "cold", "shelve", "evacuate", "live-forced")
# The methods during which the guest does not run: the estimates and the simulator price them as
# a cold migration (shut down, copy a local disk, boot); the others are live migrations.
DOWN_METHODS: frozenset[str] = frozenset({"cold", "shelve", "evacuate"})
# Side by side (`Plan.mode`): a VM stopped, copied and booted in the new cloud (not a Nova
# migration: the old cloud does not know the new one).
CROSS_CLOUD: Method = "cross-cloud"
ALL_METHODS: tuple[Method, ...] = (*METHODS, CROSS_CLOUD)
PlanMode = Literal["in-place", "side-by-side"]
PLAN_MODES: tuple[PlanMode, ...] = ("in-place", "side-by-side")
# What a host becomes at the end of its wave in a side-by-side plan: it leaves the old cloud
# (empty) and joins the new one as a controller or a compute, or joins nothing (retired).
HostRole = Literal["new-controller", "new-compute", "retired"]
HOST_ROLES: tuple[HostRole, ...] = ("new-controller", "new-compute", "retired")
# Why a migration is not a plain live migration (the policy's `non_converging` remedies that
# move a VM); a stop's remedy is "stop".
MigrationRemedy = Literal["force-complete", "cold"]
MIGRATION_REMEDIES: tuple[MigrationRemedy, ...] = ("force-complete", "cold")
STOP_REMEDIES: tuple[Literal["stop"], ...] = ("stop",)
# A predicted outcome: sim.migration.OUTCOMES (a live migration's) or "cold"; the core cannot
# import sim, a test keeps the two in step.
OUTCOMES: tuple[str, ...] = ("converged", "post-copy", "paused", "aborted", "never", "cold")


@dataclass(frozen=True, slots=True)
class Predicted:
    """What the planner predicted for a migration or stop (informative: nobody relies on it; the
    checker judges with its own estimates). Seconds and bytes; a stop has only `downtime_s`."""

    downtime_s: float  # the guest not running (switch-over, forced pause, cold copy, stop)
    duration_s: float | None = None  # the migration, start to guest running on its destination
    bytes: float | None = None  # sent over the network
    outcome: str | None = None  # one of OUTCOMES


@dataclass(frozen=True, slots=True)
class Migration:
    vm: str
    src: str  # "from" in the file
    dst: str  # "to" in the file
    method: Method = "live"
    # Live only: force-complete this many seconds after it started (earlier when its remaining
    # memory stops falling); None: never force it.
    force_complete_after_s: float | None = None
    remedy: MigrationRemedy | None = None
    predicted: Predicted | None = None


@dataclass(frozen=True, slots=True)
class Stop:
    vm: str
    host: str
    # "stop": a VM that could migrate, stopped in place as the policy's non_converging remedy.
    remedy: Literal["stop"] | None = None
    predicted: Predicted | None = None


@dataclass(frozen=True, slots=True)
class Wave:
    index: int  # 1-based, in execution order
    hosts: tuple[str, ...]
    migrations: tuple[Migration, ...] = ()
    stops: tuple[Stop, ...] = ()
    predicted_s: float | None = None  # its predicted lock-step duration (informative)
    # Side by side only: host -> the role it takes at the wave's end (every host of the wave).
    roles: Mapping[str, HostRole] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScheduledWindow:
    """One opening of the maintenance windows the plan expects hosts in: `index` from 1 in time
    order, `start` and `end` aware datetimes, the hosts that go down in it."""

    index: int
    start: _dt.datetime
    end: _dt.datetime
    hosts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ScheduledCrossing:
    """Side by side, with the policy's `project_windows`: an opening of `project`'s windows
    (`start`, `end`, aware datetimes) and the VMs of that project expected to cross into the new
    cloud inside it (`vms`, in the plan's order)."""

    project: str
    start: _dt.datetime
    end: _dt.datetime
    vms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Schedule:
    """When the plan expects each host to go down (with windows or `plan --start`): from
    `start` on, in `windows`; `last_done` the predicted end of the last host's maintenance (side
    by side: of the last wave)."""

    start: _dt.datetime
    windows: tuple[ScheduledWindow, ...]
    last_done: _dt.datetime | None = None
    # Side by side with the policy's project_windows: when each windowed project's VMs cross
    # (`windows` is then empty: hosts leave the old cloud at any time).
    crossings: tuple[ScheduledCrossing, ...] = ()

    def window_of(self) -> dict[str, ScheduledWindow]:
        """Host name -> the (first) window it is in."""
        out: dict[str, ScheduledWindow] = {}
        for w in self.windows:
            for h in w.hosts:
                out.setdefault(h, w)
        return out


@dataclass(frozen=True)
class Plan:
    inventory_sha256: str
    policy: Policy
    waves: tuple[Wave, ...]
    # Metrics as written by the planner (waves, migrations, lower bounds, ...); informative only:
    # the checker recomputes everything from the waves.
    summary: Mapping[str, Any] = field(default_factory=dict)
    # Who made it and how: {"name": "cp-sat", "version": ..., "seed": ..., "time_s": ...}.
    generator: Mapping[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    schedule: Schedule | None = None
    # "side-by-side": the waves move every VM into a new cloud built of the freed hosts
    # (`Wave.roles`, cross-cloud migrations); `az_map` maps each old AZ to its new name.
    mode: PlanMode = "in-place"
    az_map: Mapping[str, str] | None = None

    @property
    def side_by_side(self) -> bool:
        return self.mode == "side-by-side"

    def migrations(self) -> Iterator[tuple[int, Migration]]:
        for w in self.waves:
            for m in w.migrations:
                yield w.index, m

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(h for w in self.waves for h in w.hosts)

    def wave_of(self) -> dict[str, int]:
        """Host name -> index of the (first) wave that upgrades it."""
        out: dict[str, int] = {}
        for w in self.waves:
            for h in w.hosts:
                out.setdefault(h, w.index)
        return out
