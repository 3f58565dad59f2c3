"""The upgrade policy: what must hold at every step of a plan (headroom, wave sizes, HA) and what
may be done to VMs. Immutable; read and written by `planner.formats`."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from planner.inventory import Host, Inventory
from planner.windows import Window

Scope = Literal["az", "cloud"]
SCOPES: tuple[Scope, ...] = ("az", "cloud")
SELECTOR_KEYS = ("role", "az", "rack", "aggregate", "version")
# What to do with a VM whose live migration is predicted not to finish by itself (or to take
# longer than max_migration_s), in order of preference: `force-complete` (live, then Nova's
# force-complete after a planned time), `cold` (cold migration), `stop` (stopped in place, needs
# allow_stop), `refuse` (no plan). Only the last may be `refuse`.
Remedy = Literal["force-complete", "cold", "stop", "refuse"]
REMEDIES: tuple[Remedy, ...] = ("force-complete", "cold", "stop", "refuse")
DEFAULT_NON_CONVERGING: tuple[Remedy, ...] = ("force-complete",)
# How waves run: `pipelined` (a later wave's host enters maintenance as soon as admission control
# allows) or `lockstep` (each wave waits for the whole previous one).
Execution = Literal["pipelined", "lockstep"]
EXECUTIONS: tuple[Execution, ...] = ("pipelined", "lockstep")
# A VM no move permitted by the policy can take (Nova's state rules, planner.rules.method), and
# that may not be stopped in place (allow_stop false): `refuse` (no plan, exit 3) or `leave` its
# host out of the plan, not upgraded (reported).
Unmovable = Literal["refuse", "leave"]
UNMOVABLES: tuple[Unmovable, ...] = ("refuse", "leave")
# How a hard affinity group's members move (Nova's affinity filter refuses moving one alone):
# `shelve` (shelve the whole group, unshelve each to the planned host; downtime) or `forced`
# (forced live migrations, microversions 2.30-2.67; needs the operator's
# [workarounds] disable_group_policy_check_upcall=True). None: shelve when allow_stop is set.
AffinityMoves = Literal["shelve", "forced"]
AFFINITY_MOVES: tuple[AffinityMoves, ...] = ("shelve", "forced")
# The largest max_migrations_per_wave a policy may set: more migrations than any cloud has VMs;
# beyond it the number is a typo (leave the key out for no cap).
MAX_MIGRATIONS_PER_WAVE = 1_000_000


@dataclass(frozen=True, slots=True)
class Headroom:
    """N+k: per scope group (each AZ, or the whole cloud), over the available compute hosts, for
    every class, free capacity >= the k largest effective capacities, and >= reserve_percent of
    the group's total effective capacity."""

    failures: int = 1
    scope: Scope = "az"
    reserve_percent: float = 0.0


@dataclass(frozen=True, slots=True)
class Policy:
    max_hosts_per_wave: int
    target_version: str | None = None
    max_hosts_per_wave_per_az: int | None = None
    max_hosts_per_wave_per_rack: int | None = None
    headroom: Headroom = field(default_factory=Headroom)
    max_concurrent_live_migrations: int = 1
    allow_stop: bool = False
    # Host selectors upgraded before / after every other host (see `select_hosts`).
    first: tuple[str, ...] = ()
    last: tuple[str, ...] = ()
    # Migrations one wave may hold at most (its network load); None: no cap.
    max_migrations_per_wave: int | None = None
    # Remedies for VMs predicted not to converge, in order of preference (see REMEDIES).
    non_converging: tuple[Remedy, ...] = DEFAULT_NON_CONVERGING
    # A live migration predicted longer than this (s) is remedied like a non-converging one.
    max_migration_s: float | None = None
    # Any remedy's predicted downtime (s) at most this.
    max_downtime_s: float | None = None
    execution: Execution = "pipelined"
    # Maintenance windows (planner.windows); empty: hosts may go down at any time.
    windows: tuple[Window, ...] = ()
    # Nova's state rules (planner.rules.method): see UNMOVABLES and AFFINITY_MOVES.
    unmovable: Unmovable = "refuse"
    # VMs on a host that is down are evacuated (rebuilt elsewhere; shared storage or volume-backed
    # disks only); without it such a host is left out of the plan.
    allow_evacuate: bool = False
    affinity_moves: AffinityMoves | None = None
    # Side by side only: (project, its windows) pairs, sorted by project (a tuple: policies are
    # hashed); a VM of such a project crosses into the new cloud only inside one of its windows.
    # Empty: any time. See planner.project_windows.
    project_windows: tuple[tuple[str, tuple[Window, ...]], ...] = ()

    def windows_of_project(self, project: str) -> tuple[Window, ...]:
        """The project's windows; empty: it crosses at any time."""
        for name, windows in self.project_windows:
            if name == project:
                return windows
        return ()

    def with_changes(self, **changes: Any) -> Policy:
        """A copy with some fields replaced; `headroom.failures`-style keys reach into headroom."""
        head: dict[str, Any] = {}
        top: dict[str, Any] = {}
        for key, value in changes.items():
            if key.startswith("headroom."):
                head[key.split(".", 1)[1]] = value
            else:
                top[key] = value
        if head:
            top["headroom"] = replace(top.get("headroom", self.headroom), **head)
        return replace(self, **top)


def selector_matches(selector: str, host: Host) -> bool:
    """`name-glob` matches the host name; `key=value` matches role, az, rack, aggregate or version
    (value may be a glob too), e.g. `role=controller`, `az=az1`, `cmp-00*`."""
    if "=" in selector:
        key, _, pattern = selector.partition("=")
        key = key.strip()
        pattern = pattern.strip()
        if key == "aggregate":
            return any(fnmatch.fnmatchcase(a, pattern) for a in host.aggregates)
        value = {"role": host.role, "az": host.az, "rack": host.rack, "version": host.version}.get(
            key
        )
        return value is not None and fnmatch.fnmatchcase(value, pattern)
    return fnmatch.fnmatchcase(host.name, selector)


def selector_problem(selector: str) -> str | None:
    """Why a selector can never match anything (a typo'd key, an empty value), or None."""
    if "=" not in selector:
        return None if selector.strip() else "an empty selector matches no host"
    key, _, pattern = selector.partition("=")
    if key.strip() not in SELECTOR_KEYS:
        return (
            f"unknown selector key {key.strip()!r} in {selector!r}; "
            f"use a host name glob or one of {', '.join(k + '=' for k in SELECTOR_KEYS)}"
        )
    if not pattern.strip():
        return f"selector {selector!r} has no value after '='"
    return None


def select_hosts(inventory: Inventory, selectors: tuple[str, ...]) -> frozenset[str]:
    """Names of the hosts any selector matches."""
    if not selectors:
        return frozenset()
    return frozenset(
        h.name for h in inventory.hosts if any(selector_matches(s, h) for s in selectors)
    )
