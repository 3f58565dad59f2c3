"""The time limit of a planning run as one budget, from the start of `rollwave plan` to the plan
written: the search, then the optional passes that improve its plan, then the steps that must
follow.

- **Mandatory** after the search: annotating the predictions, the schedule, the checker's replay
  with the estimates, the summary, writing the plan. Their cost is estimated from the instance's
  size (`mandatory_s`: seconds a VM and a host), never from the clock, and kept back from the
  search (`SolveOptions.reserve`): the search's wall clock ends that much before the limit.
- **Optional**: the split per AZ (`solver.azwaves`), the shaping by durations
  (`solver.durations`), the planning for pipelining (`solver.pipeline`). They share an allowance,
  also from the size and the limit (`Budget.optional_s`); each runs only when its estimated cost
  (seconds a migration of the solved plan) fits what is left of it, so the same input and seed
  skip the same passes under any load. The exact model's pass on small clouds runs inside the
  search, within its deterministic time and the search's deadline.
- The wall clock is only the outer safety: a pass whose estimate no longer fits the time really
  left (with the mandatory steps after it) is skipped too, and the run is marked cut by the wall
  clock (another run may differ). There the estimates, and the search's reserve, are scaled by
  how slow the run really is (wall clock over CPU time so far, when that is above LOAD).

Each skipped pass is named in the notes and in the plan's summary (`skipped_for_time`).

The costs are CPU seconds measured on a shared 2-core machine, fitted to trace-1000-50k (1,000
hosts, 48,790 migrations: annotate + check + summary + write 3.1 s; shaping 2.6 s; pipelining
3.7 s) and trace-5000-100k (5,000 hosts, 90,562 migrations: 16.3 s, of which the summary 11.7 s;
shaping 9.0 s; pipelining 28.7 s), and multiplied by LOAD (a CPU shared, with some margin).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from planner.inventory import Inventory
from solver.params import slowdown

# Wall clock per CPU second assumed for the estimates (a loaded 2-core machine, with margin).
LOAD = 2.5
# CPU seconds: the steps after the search, a VM (annotate, check, write) and a host (the
# summary's per-host figures grow with the hosts); a fixed part (the process's exit and such).
MANDATORY_PER_VM = 50e-6
MANDATORY_PER_HOST = 2.5e-3
MANDATORY_FIXED = 0.5
# CPU seconds per optional pass (in the order they run): a migration of the solved plan, and a
# migration times a host (they weigh each move against the hosts of its wave and the others).
PASS_PER_MIGRATION = {
    "per_az": (30e-6, 2e-9),  # the split, and the checker's replay of the split plan
    "durations": (42e-6, 11.5e-9),
    "pipelining": (15e-6, 60e-9),
}
PASS_NAMES = {
    "per_az": "the split of waves per AZ",
    "durations": "the shaping of waves by their predicted durations",
    "pipelining": "the planning for pipelined execution",
}
# At most this share of the time limit is kept back from the search (the mandatory steps come
# first in it; the optional passes get what is left of it).
MAX_RESERVE_SHARE = 0.5


def mandatory_s(inv: Inventory) -> float:
    """Estimated wall clock of the steps after the search (from the size alone)."""
    cpu = MANDATORY_FIXED + MANDATORY_PER_VM * len(inv.vms) + MANDATORY_PER_HOST * len(inv.hosts)
    return LOAD * cpu


def pass_s(name: str, migrations: int, hosts: int) -> float:
    """Estimated wall clock of an optional pass on a plan of `migrations` on `hosts` hosts."""
    per, per_host = PASS_PER_MIGRATION[name]
    return LOAD * migrations * (per + per_host * hosts)


@dataclass
class Budget:
    """One planning run's time: `reserve` seconds of `time_limit` (counted from `started`, a
    `time.monotonic()` instant) kept back from the search; of them `optional_s` for the optional
    passes, spent by their estimates (deterministic), the rest for the mandatory steps."""

    time_limit: float
    started: float
    mandatory: float
    optional_s: float
    hosts: int = 0
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    wall_clock_hit: bool = False
    wall0: float = field(default_factory=time.monotonic)
    cpu0: float = field(default_factory=time.process_time)

    @classmethod
    def for_run(cls, inv: Inventory, time_limit: float, started: float | None = None) -> Budget:
        must = mandatory_s(inv)
        # every pass on a plan that moves each VM once, with a tenth more for VMs moved twice
        moves, hosts = int(1.1 * len(inv.vms)), len(inv.hosts)
        every = sum(pass_s(p, moves, hosts) for p in PASS_PER_MIGRATION)
        optional = max(0.0, min(every, MAX_RESERVE_SHARE * time_limit - must))
        t0 = time.monotonic() if started is None else started
        return cls(time_limit, t0, must, optional, hosts)

    @property
    def reserve(self) -> float:
        """Seconds kept back from the search."""
        return min(self.mandatory + self.optional_s, MAX_RESERVE_SHARE * self.time_limit)

    def remaining(self) -> float:
        return self.started + self.time_limit - time.monotonic()

    def allows(self, name: str, migrations: int) -> bool:
        """Whether the optional pass `name` runs on a plan of `migrations`: its estimate fits
        what is left of the allowance (deterministic), and the wall clock left (the safety).
        A skipped pass is recorded with why."""
        cost = pass_s(name, migrations, self.hosts)
        what = PASS_NAMES[name]
        if cost > self.optional_s:
            self.skipped.append(name)
            self.notes.append(
                f"{what} was skipped for time: about {cost:.1f} s for {migrations:,} migrations, "
                f"{self.optional_s:.1f} s of the {self.time_limit:g} s limit left for it (raise "
                "--time-limit to have it)"
            )
            return False
        self.optional_s -= cost
        # the outer safety: the estimates scaled by how slow this run really is
        if self.remaining() < (cost + self.mandatory) * slowdown(self.wall0, self.cpu0, LOAD):
            self.skipped.append(name)
            self.wall_clock_hit = True
            self.notes.append(
                f"{what} was skipped for time: the wall clock left {max(0.0, self.remaining()):.1f}"
                f" s of the {self.time_limit:g} s limit (a loaded machine; another run may differ)"
            )
            return False
        return True
