"""The planner's entry point: `solve(inventory, policy, options)` -> a plan, or InfeasibleError.

1. Lower bounds (`planner.bounds`) and pre-checks (`solver.precheck`): a proven obstacle stops
   here with its reasons (exit code 3).
2. The CP-SAT planner (`solver.cpsat`); the greedy planner (`solver.greedy`) when asked for, or
   as the fallback when CP-SAT finds nothing.
3. On a small cloud, the exact model with an objective (`solver.exact_opt`) looks for fewer
   migrations from that plan, and says whether they are proven minimal.
4. When neither finds a plan: on a cloud small enough, `solver.exact` decides it exactly (a plan,
   which is returned when the fallback is on, or a proof naming a minimal set of conflicting rule
   families); otherwise `solver.explain` asks the wave model which rules conflict, and the error
   says it is not proven.

The returned plan has passed `checker.check_plan` (`SolveOutcome.check` is the report): a
CP-SAT plan the checker rejects (a bug) gives way to the greedy planner's, with a note.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from planner.bounds import LowerBounds, lower_bounds
from planner.checker import CheckReport, check_plan
from planner.errors import InfeasibleError
from planner.inventory import Inventory
from planner.plan import Plan
from planner.policy import Policy
from solver.context import build_context
from solver.cpsat import NoPlanFound, cpsat_plan
from solver.exact import decide
from solver.exact_opt import optimise
from solver.explain import explain
from solver.greedy import TimeLimitReached, greedy_plan
from solver.params import SolveParams
from solver.precheck import precheck_proof
from solver.rules import relaxed

PlannerName = Literal["cpsat", "greedy"]
PLANNERS: tuple[PlannerName, ...] = ("cpsat", "greedy")
# When repairs add waves to CP-SAT's plan, or it has more than the lower bound, the greedy's is
# compared, up to this many VMs.
COMPARE_WITH_GREEDY_VMS = 30_000
# (phase, best, bound): "waves"/"overflow" with objective values, "placement" with (wave, waves)
Progress = Callable[[str, float | None, float | None], None]


def default_time_limit(inv: Inventory) -> float:
    """A wall-clock cap that normal runs never reach: 30 s + 25 ms a host, at most 15 min."""
    return float(min(900, 30 + math.ceil(0.025 * len(inv.hosts))))


def default_effort(inv: Inventory, time_limit: float) -> float:
    """Deterministic CP-SAT work for a cloud of this size, within a fifth of the time limit."""
    size = 1.0 + len(inv.hosts) / 500 + len(inv.vms) / 50_000
    return round(min(size, 0.2 * time_limit), 3)


@dataclass(frozen=True)
class SolveOptions:
    planner: PlannerName = "cpsat"
    time_limit: float | None = None  # seconds of wall clock; None: `default_time_limit`
    seed: int = 0
    workers: int = 1
    effort: float | None = None  # deterministic time; None: `default_effort`
    fallback: bool = True  # greedy when CP-SAT finds nothing
    # The `time.monotonic()` instant the time limit counts from (`rollwave plan`: the process's
    # start); None: when `solve` is called.
    started: float | None = None
    # Seconds of the time limit left to the caller after the search (`planner.app.budget`),
    # estimated at `reserve_load` wall-clock seconds a CPU second.
    reserve: float = 0.0
    reserve_load: float = 1.0


@dataclass
class SolveOutcome:
    plan: Plan
    planner: str  # who made the plan: "cpsat" or "greedy"
    lower_bounds: LowerBounds
    status: str  # "optimal": waves proven minimal (for the wave model); else "feasible"
    wave_bound: float | None
    wall_clock_hit: bool
    notes: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    check: CheckReport | None = None  # the checker's report on `plan` (digest as planned)


def solve(
    inv: Inventory,
    policy: Policy,
    options: SolveOptions | None = None,
    *,
    inventory_sha256: str | None = None,
    progress: Progress | None = None,
) -> SolveOutcome:
    opts = options or SolveOptions()
    digest = inventory_sha256 if inventory_sha256 is not None else (inv.digest or "")
    time_limit = opts.time_limit if opts.time_limit is not None else default_time_limit(inv)
    params = SolveParams(
        seed=opts.seed,
        workers=opts.workers,
        time_limit=time_limit,
        effort=opts.effort if opts.effort is not None else default_effort(inv, time_limit),
        reserve=min(max(0.0, opts.reserve), time_limit),
        reserve_load=opts.reserve_load,
    )
    if opts.started is not None:
        params.started = opts.started
    lb = lower_bounds(inv, policy)
    ctx = build_context(inv, policy)
    proof = precheck_proof(ctx, lb)
    if proof:
        raise InfeasibleError(proof.lines(), blame=proof.blame)
    run = _Run(inv, policy, opts, digest, params, lb, ctx)
    try:
        outcome = run.greedy() if opts.planner == "greedy" else run.exact(run.cpsat(progress))
        for family, reason in relaxed(outcome.planner, inv, policy):
            run.notes.append(
                f"the {outcome.planner} planner does not keep {family} ({reason}); the checker "
                "judged its plan"
            )
        return outcome
    finally:
        if params.solver_errors:  # CP-SAT failed internally on a model; the fallback answered
            run.notes.append(
                "CP-SAT failed internally on one of its models ("
                + params.solver_errors[0]
                + "); that step fell back"
            )


@dataclass
class _Run:
    """One `solve` call past the pre-checks: the planners in turn, and the notes they leave
    (the outcome holds the same list)."""

    inv: Inventory
    policy: Policy
    opts: SolveOptions
    digest: str
    params: SolveParams
    lb: LowerBounds
    ctx: Any
    notes: list[str] = field(default_factory=list)

    def outcome(
        self, plan: Plan, planner: str, report: CheckReport, *, fallback: bool = False
    ) -> SolveOutcome:
        """A plan of the greedy or exact model (status "feasible"), seeded as asked."""
        extra = {"fallback": True} if fallback else {}
        plan = replace(plan, generator={**plan.generator, "seed": self.opts.seed, **extra})
        hit = self.params.wall_clock_hit if planner != "greedy" or fallback else False
        return SolveOutcome(plan, planner, self.lb, "feasible", None, hit, self.notes, check=report)

    def exact(self, out: SolveOutcome) -> SolveOutcome:
        """On a small cloud, the exact model's fewest migrations (`solver.exact_opt`)."""
        opt = optimise(
            self.ctx, self.params, out.plan, wave_bound=self.lb.waves, inventory_sha256=self.digest
        )
        if opt is None:
            return out
        if opt.plan is None:
            out.stats["exact"] = opt.to_dict()
            return out
        report = check_plan(self.inv, opt.plan, digest=self.digest)
        if not report.ok:  # a bug, never a plan: keep the planner's
            self.notes.append(f"the exact model's plan breaks a rule ({report.violations[0]})")
            return out
        self.notes.append(
            f"the exact model (small cloud) found fewer migrations: {opt.migrations} against "
            f"{_rank(out.plan)[1]} ({opt.waves} waves against {_rank(out.plan)[0]})"
        )
        plan = replace(opt.plan, generator={**opt.plan.generator, "seed": self.opts.seed})
        stats = {**out.stats, "exact": opt.to_dict()}
        hit = self.params.wall_clock_hit
        # `planner` still names who found a plan; stats["exact"]["improved"] says it was bettered
        return replace(out, plan=plan, check=report, stats=stats, wall_clock_hit=hit)

    def greedy(self) -> SolveOutcome:
        """`--planner greedy`: its plan, or why not (and whether a plan exists, on a small
        cloud)."""
        try:
            plan, report = _checked_greedy(self.inv, self.policy, self.digest, self.params)
        except InfeasibleError as exc:
            raise _restricted_error(
                "the greedy planner",
                exc.reasons,
                self.ctx,
                self.params,
                self.digest,
                "plan with --planner cpsat",
            ) from None
        return self.outcome(plan, "greedy", report)

    def cpsat(self, progress: Progress | None) -> SolveOutcome:
        """CP-SAT's plan; the greedy planner's when CP-SAT finds none (with the fallback on) or
        does worse on a tight cloud; the exact model's when neither finds one."""
        inv = self.inv
        try:
            res = cpsat_plan(
                inv,
                self.policy,
                self.params,
                lower_bound=self.lb.waves,
                inventory_sha256=self.digest,
                progress=progress,
                ctx=self.ctx,
            )
            report = check_plan(inv, res.plan, digest=self.digest)
            if not report.ok:
                # A bug, never to reach the user as a plan: say so and fall back.
                raise NoPlanFound([f"its plan breaks a rule ({report.violations[0]})"])
        except NoPlanFound as exc:
            return self.fallback(list(exc.reasons))
        self.notes += res.notes
        if (
            self.opts.fallback
            and (res.stats.get("added_waves", 0) > 0 or len(res.plan.waves) > self.lb.waves)
            and len(inv.vms) <= COMPARE_WITH_GREEDY_VMS
        ):
            better = self.greedy_if_better(res.plan)
            if better is not None:
                return better
        return SolveOutcome(
            res.plan,
            "cpsat",
            self.lb,
            res.status,
            res.wave_bound,
            self.params.wall_clock_hit,
            self.notes,
            res.stats,
            check=report,
        )

    def fallback(self, first: list[str]) -> SolveOutcome:
        """CP-SAT found no plan (`first`: why): the greedy planner's, else the exact model's."""
        if not self.opts.fallback:
            raise _restricted_error(
                "CP-SAT",
                first,
                self.ctx,
                self.params,
                self.digest,
                "plan with the greedy fallback on",
            ) from None
        self.notes.append("CP-SAT found no plan (" + "; ".join(first[:2]) + "); used the greedy")
        try:
            plan, report = _checked_greedy(self.inv, self.policy, self.digest, self.params)
        except InfeasibleError as exc2:
            found = _not_found(
                "CP-SAT and the greedy planner",
                first + exc2.reasons,
                self.ctx,
                self.params,
                self.digest,
            )
            if isinstance(found, InfeasibleError):
                raise found from None
            self.notes.append(
                "CP-SAT and the greedy planner found no plan; the exact model (small cloud) "
                "found this one"
            )
            return self.outcome(found[0], "exact", found[1])
        return self.outcome(plan, "greedy", report, fallback=True)

    def greedy_if_better(self, cpsat: Plan) -> SolveOutcome | None:
        """Repairs cost waves, or the waves are above the bound (a tight cloud): the greedy may
        do better on this cloud; its plan if it is better (fewer waves, then migrations)."""
        try:
            g_plan, g_report = _checked_greedy(self.inv, self.policy, self.digest, self.params)
        except InfeasibleError:
            return None
        if _rank(g_plan) >= _rank(cpsat):
            return None
        self.notes.append(
            f"the greedy planner's plan ({len(g_plan.waves)} waves, {_rank(g_plan)[1]} "
            f"migrations) beats CP-SAT's ({len(cpsat.waves)} waves, "
            f"{_rank(cpsat)[1]} migrations); kept the greedy's"
        )
        return self.outcome(g_plan, "greedy", g_report, fallback=True)


def _rank(plan: Plan) -> tuple[int, int]:
    """Fewest waves, then fewest migrations."""
    return len(plan.waves), sum(len(w.migrations) for w in plan.waves)


def _checked_greedy(
    inv: Inventory, policy: Policy, digest: str, params: SolveParams
) -> tuple[Plan, CheckReport]:
    """The greedy planner's plan and the checker's report, if the checker accepts it (the greedy
    is a fallback, not a judge: e.g. it does not know hosts that policy.first and policy.last
    both select), within what is left of the time limit."""
    try:
        plan = greedy_plan(
            inv, policy, inventory_sha256=digest, deadline=params.deadline, seed=params.seed
        )
    except TimeLimitReached:
        params.wall_clock_hit = True
        raise
    report = check_plan(inv, plan, digest=digest)
    if not report.ok:
        raise InfeasibleError([f"its plan breaks a rule: {report.violations[0]}"])
    return plan, report


def _restricted_error(
    who: str, reasons: list[str], ctx: Any, params: SolveParams, digest: str, restricted: str
) -> InfeasibleError:
    found = _not_found(who, reasons, ctx, params, digest, restricted)
    assert isinstance(found, InfeasibleError)  # a restricted run never takes the exact plan
    return found


def _not_found(
    who: str,
    reasons: list[str],
    ctx: Any,
    params: SolveParams,
    digest: str,
    restricted: str | None = None,
) -> InfeasibleError | tuple[Plan, CheckReport]:
    """No plan found although no pre-check proves it impossible. On a small cloud the exact
    model decides: a proof (an error naming the conflicting rule families), or a plan (returned
    unless the caller restricted the planners: `restricted` then says how to get it). Otherwise,
    what the wave model finds in conflict and what the planners ran into: not a proof."""
    ran_into = [f"{who}: {r}" for r in dict.fromkeys(reasons)][:4]
    dec = decide(ctx, params, inventory_sha256=digest)
    if dec.outcome == "impossible":
        blame = [
            f.blame(
                relaxing_alone=dec.alone.get(f.key),
                numbers=dec.details.get(f.key),
                one_step=dec.steps.get(f.key),
            )
            for f in dec.core
        ]
        return InfeasibleError(dec.reasons(), proven=True, blame=blame)
    if dec.plan is not None:
        report = check_plan(ctx.inv, dec.plan, digest=digest)
        if report.ok:
            if restricted is None:
                return dec.plan, report
            return InfeasibleError(
                [
                    f"{who} found no plan, but a plan exists (the exact model for small clouds "
                    f"finds one): {restricted}",
                    *ran_into,
                ],
                proven=False,
            )
        # A bug in the exact model: never a plan the checker rejects, never a proof either.
        ran_into.append(f"the exact model's plan breaks a rule: {report.violations[0]}")
    out = explain(ctx, params)
    if not out:
        why = (
            "too large for the exact model"
            if dec.outcome == "too_large"
            else "the exact model was not decided within the time limit"
        )
        out = [f"{who} found no plan; no single rule is to blame (not proven impossible: {why})"]
    if params.wall_clock_hit:
        out.insert(
            0,
            f"no plan found in the time given ({params.time_limit:g} s; the search was cut "
            "short by the wall clock: allow more time, or run on a less loaded machine)",
        )
    return InfeasibleError(out + ran_into, proven=False)
