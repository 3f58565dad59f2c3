"""How hard and how long CP-SAT may search, reproducibly.

Same input and seed, same plan: every CP-SAT solve is bounded by *deterministic* time (a measure
of work, not of the clock) and runs either on one worker or, with several, in CP-SAT's
deterministic interleaved mode. The wall-clock `time_limit` is only a safety stop; when it cuts a
solve short the result may differ between runs, and `wall_clock_hit` says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ortools.sat.python import cp_model

# Share of the deterministic budget per phase.
SHARES = {"waves": 0.25, "overflow": 0.1, "placement": 0.55, "explain": 0.1}
# Deterministic time per second of the time limit: measured on a shared 2-core machine, a unit
# of CP-SAT deterministic time takes ~2-3 s of wall clock; 0.2 keeps a full run well inside.
DTIME_PER_SECOND = 0.2


@dataclass
class SolveParams:
    seed: int = 0
    workers: int = 1
    time_limit: float = 60.0  # wall-clock seconds for the whole planning run
    effort: float | None = None  # deterministic-time budget; default from time_limit
    started: float = field(default_factory=time.monotonic)
    wall_clock_hit: bool = False
    dtime_used: float = 0.0
    solver_errors: list[str] = field(default_factory=list)  # CP-SAT's own failures, if any
    # Seconds of the time limit kept for what follows the search (annotating, checking, writing
    # the plan): the search's wall clock ends this much before the limit.
    reserve: float = 0.0
    # The share of a CPU the reserve was estimated at (`planner.app.budget.LOAD`): on a machine
    # slower than that, as measured in this run, the reserve grows (the outer safety only).
    reserve_load: float = 1.0
    wall0: float = field(default_factory=time.monotonic)
    cpu0: float = field(default_factory=time.process_time)

    @property
    def total_effort(self) -> float:
        return self.effort if self.effort is not None else DTIME_PER_SECOND * self.time_limit

    @property
    def deadline(self) -> float:
        """The end of the search as a `time.monotonic()` instant: the time limit less the
        reserve."""
        return self.started + self.time_limit - self.reserve * self.slowdown()

    def slowdown(self) -> float:
        """How much slower than estimated this run gets the CPU: wall clock over CPU time so
        far, against `reserve_load` (at least 1)."""
        return slowdown(self.wall0, self.cpu0, self.reserve_load)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def out_of_time(self, keep: float = 0.0) -> bool:
        """The outer safety: less than `keep` of the search's time (the limit less the reserve)
        is left. Marks the run as cut by
        the wall clock (its result may then differ between runs); the budgets in deterministic
        time and counted steps are meant to stop every phase long before."""
        if self.remaining() <= keep * (self.time_limit - self.reserve * self.slowdown()):
            self.wall_clock_hit = True
            return True
        return False

    def spent(self, times_effort: float) -> bool:
        """CP-SAT has done `times_effort` times the whole deterministic budget: a bound on work
        that gives the same answer on any machine, under any load."""
        return self.dtime_used >= times_effort * self.total_effort

    def budget(self, phase: str, share_of_phase: float = 1.0) -> float:
        """Deterministic time for one solve: the phase's share, times the part of it this solve
        represents (e.g. one wave's share of all evacuations)."""
        return max(0.05, self.total_effort * SHARES.get(phase, 0.1) * min(1.0, share_of_phase))


def slowdown(wall0: float, cpu0: float, load: float) -> float:
    """Wall-clock seconds per CPU second since (`wall0`, `cpu0`), over `load`, at least 1; 1
    in the first second (too little to tell)."""
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    if wall < 1.0 or cpu <= 0.0:
        return 1.0
    return max(1.0, wall / cpu / load)


def make_solver(params: SolveParams, dtime: float) -> cp_model.CpSolver:
    s = cp_model.CpSolver()
    p = s.parameters
    p.random_seed = params.seed
    p.num_workers = max(1, params.workers)
    if params.workers > 1:
        p.interleave_search = True  # deterministic for a given number of workers
    p.max_deterministic_time = dtime
    p.max_time_in_seconds = max(0.05, params.remaining())
    p.log_search_progress = False
    return s


def run(
    params: SolveParams,
    solver: cp_model.CpSolver,
    model: cp_model.CpModel,
    callback: cp_model.CpSolverSolutionCallback | None = None,
) -> Any:
    """Solve, recording the work done and whether the wall clock (not the budget) stopped it.
    An internal error of CP-SAT on a model (seen once: `IndexError: absl::btree_map::at` on a
    tiny random cloud) is recorded and answered as MODEL_INVALID, so the caller's fallback runs."""
    try:
        status = solver.solve(model, callback) if callback is not None else solver.solve(model)
    except (IndexError, RuntimeError, ValueError) as exc:
        params.solver_errors.append(f"{type(exc).__name__}: {exc}")
        return cp_model.MODEL_INVALID
    params.dtime_used += solver.deterministic_time
    limit = solver.parameters.max_time_in_seconds
    if status not in (cp_model.OPTIMAL, cp_model.INFEASIBLE) and solver.wall_time >= 0.98 * limit:
        params.wall_clock_hit = True
    return status
