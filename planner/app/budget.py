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

The costs were measured on a shared 2-core machine (trace-1000-50k, 49,000 migrations, load
about 3: annotate + check + summary + write 3.1 s of CPU; shaping 2.6 s; pipelining 3.7 s) and
multiplied by LOAD (half a CPU, and some margin).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from planner.inventory import Inventory
from solver.params import slowdown

# Wall clock per CPU second assumed for the estimates (a loaded 2-core machine, with margin).
LOAD = 2.5
# CPU seconds: the steps after the search, a VM (annotate, check, summary, write) and a host;
# a fixed part (the summary's tables, writing the file, the process's exit).
MANDATORY_PER_VM = 70e-6
MANDATORY_PER_HOST = 1e-3
MANDATORY_FIXED = 0.5
# CPU seconds a migration of the solved plan, per optional pass (in the order they run).
PASS_PER_MIGRATION = {
    "per_az": 30e-6,  # the split, and the checker's replay of the split plan
    "durations": 60e-6,
    "pipelining": 80e-6,
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


def pass_s(name: str, migrations: int) -> float:
    """Estimated wall clock of an optional pass on a plan of `migrations`."""
    return LOAD * PASS_PER_MIGRATION[name] * migrations


@dataclass
class Budget:
    """One planning run's time: `reserve` seconds of `time_limit` (counted from `started`, a
    `time.monotonic()` instant) kept back from the search; of them `optional_s` for the optional
    passes, spent by their estimates (deterministic), the rest for the mandatory steps."""

    time_limit: float
    started: float
    mandatory: float
    optional_s: float
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    wall_clock_hit: bool = False
    wall0: float = field(default_factory=time.monotonic)
    cpu0: float = field(default_factory=time.process_time)

    @classmethod
    def for_run(cls, inv: Inventory, time_limit: float, started: float | None = None) -> Budget:
        must = mandatory_s(inv)
        # every pass on a plan that moves each VM once, with a tenth more for VMs moved twice
        every = sum(pass_s(p, int(1.1 * len(inv.vms))) for p in PASS_PER_MIGRATION)
        optional = max(0.0, min(every, MAX_RESERVE_SHARE * time_limit - must))
        t0 = time.monotonic() if started is None else started
        return cls(time_limit, t0, must, optional)

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
        cost = pass_s(name, migrations)
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
