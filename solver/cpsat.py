"""The CP-SAT planner: waves first (`solver.waves`), then destinations wave by wave
(`solver.placement`), with repair when a wave cannot be evacuated as planned.

Repair: the hosts whose VMs found no destination leave their wave, together with any host of the
same wave that policy.first / policy.last orders after them; they join the next wave when every
limit allows it, or else a new wave right after. A wave is retried until it succeeds; a host that
cannot be evacuated even alone, as late as possible, ends the attempt (`NoPlanFound`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import planner
from planner.capacity import IntArray
from planner.plan import Plan, Wave
from solver.aggregate import Aggregates, build_aggregates, evaluate
from solver.context import Context, build_context, order_ok, wave_limits_ok
from solver.params import SolveParams
from solver.placement import Landing, PlacementState, WaveResult, place_wave
from solver.rules import placement_hooks
from solver.waves import Nogood, WavePlan, plan_waves

Progress = Callable[[str, float | None, float | None], None]
# Up to this many VMs to move, CP-SAT re-decides every destination of every wave.
SMALL_CLOUD = 1000
# Repairs before giving up (to the greedy fallback), swaps among them.
MAX_REPAIRS = 60
MAX_SWAPS = 12
# The search stops by counted steps (repairs, nogoods, attempts) and by work: no further repair,
# wave order or attempt once CP-SAT has done this many times the whole deterministic effort. Both
# are the same on any machine under any load, and so is the plan.
SEARCH_EFFORT = 8.0
# The wall clock is only the outer safety: no further wave order or attempt with less than this
# share of the time limit left (the greedy fallback needs its time), no further wave placed or
# repaired with less than PLACE_TIME_SHARE left (the checker's replay needs its seconds).
REPAIR_TIME_SHARE = 0.4
PLACE_TIME_SHARE = 0.05
# Wave orders the placement phase could not realise, forbidden in turn before giving up.
MAX_NOGOODS = 12


class NoPlanFound(Exception):
    """The CP-SAT planner found no plan (not a proof that none exists)."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(reasons))


@dataclass
class CpsatResult:
    plan: Plan
    status: str  # of the wave phase: optimal (waves proven minimal) or feasible
    wave_bound: float | None
    stats: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def cpsat_plan(
    inv: Any,
    policy: Any,
    params: SolveParams,
    *,
    lower_bound: int = 0,
    inventory_sha256: str = "",
    progress: Progress | None = None,
    ctx: Context | None = None,
) -> CpsatResult:
    ctx = ctx or build_context(inv, policy)
    # When wave by wave placement cannot realise the waves planned in aggregate, plan again
    # with room for packing: each host down counts as taking one, then two, average VMs more.
    movable = ~ctx.stuck
    mean = ctx.demand[movable].mean(axis=0) if movable.any() else np.zeros(ctx.C)
    one: IntArray = np.ceil(mean).astype(np.int64)
    pads: list[IntArray | None] = [None, one, 2 * one]
    failure: NoPlanFound | None = None
    best: CpsatResult | None = None
    for attempt, pad in enumerate(pads):
        if attempt and (params.spent(SEARCH_EFFORT) or params.out_of_time(REPAIR_TIME_SHARE)):
            break
        try:
            result = _attempt(
                inv,
                policy,
                params,
                ctx,
                build_aggregates(ctx, pad),
                lower_bound,
                inventory_sha256,
                progress,
            )
        except NoPlanFound as exc:
            failure = exc
            continue
        result.stats["packing_pad"] = attempt
        if best is None or _rank(result) < _rank(best):
            best = result
        if not result.stats["added_waves"]:
            break  # the waves as planned: padding would only cost waves
    if best is not None:
        return best
    assert failure is not None
    raise failure


def _rank(r: CpsatResult) -> tuple[int, int]:
    return len(r.plan.waves), sum(len(w.migrations) for w in r.plan.waves)


def _attempt(
    inv: Any,
    policy: Any,
    params: SolveParams,
    ctx: Context,
    agg: Aggregates,
    lower_bound: int,
    inventory_sha256: str,
    progress: Progress | None,
) -> CpsatResult:
    # Waves the placement phase cannot realise (one broken whatever its VMs do: demand the
    # wave model lets leave a group again sits on the wrong hosts; or one that repairs cannot
    # mend: e.g. anti-affinity, which the wave model does not see, keeps VMs out of their group)
    # are forbidden in the wave model, which plans again: a nogood on the first wave that
    # failed, with the hosts upgraded before it.
    nogoods: list[Nogood] = []
    while True:
        wp = plan_waves(ctx, agg, params, lower_bound, progress, nogoods=nogoods)
        if not wp.waves and ctx.todo.size:
            reasons = wp.notes or ["the wave model found no feasible order of hosts"]
            if nogoods:
                reasons = [*reasons, f"placement could not realise {len(nogoods)} wave order(s)"]
            raise NoPlanFound(reasons)
        try:
            result = _place_all(inv, policy, params, ctx, agg, wp, inventory_sha256, progress)
        except _Broken as exc:
            if (
                len(nogoods) >= MAX_NOGOODS
                or params.spent(SEARCH_EFFORT)
                or params.out_of_time(REPAIR_TIME_SHARE)
            ):
                raise NoPlanFound(
                    [exc.reason, f"gave up after {len(nogoods) + 1} wave order(s)"]
                ) from None
            k = exc.wave
            before = tuple(sorted(h for w in wp.waves[:k] for h in w))
            nogoods.append(Nogood(before, tuple(wp.waves[k])))
            continue
        result.stats["wave_nogoods"] = len(nogoods)
        if nogoods:
            result.notes.append(
                f"the wave order was planned again {len(nogoods)} time(s): the placement phase "
                "could not realise a wave (forbidden in the next order)"
            )
        return result


class _Broken(Exception):
    """Placement found wave `wave` broken whatever its VMs do."""

    def __init__(self, wave: int, reason: str) -> None:
        self.wave, self.reason = wave, reason
        super().__init__(reason)


def _place_all(
    inv: Any,
    policy: Any,
    params: SolveParams,
    ctx: Context,
    agg: Aggregates,
    wp: WavePlan,
    inventory_sha256: str,
    progress: Progress | None,
) -> CpsatResult:
    """Destinations for the waves of `wp`, wave by wave, with repairs."""
    waves = [list(w) for w in wp.waves]
    shift = wp.shift.copy()
    st = PlacementState(ctx)
    done: list[tuple[Wave, WaveResult]] = []  # placed waves, in order, with their moves
    repairs = 0
    # Repairs are bounded: by count, by swaps (each replays waves), and by the wall clock (the
    # greedy fallback still needs its time).
    max_repairs = min(2 * len(ctx.todo) + 10, MAX_REPAIRS)
    swaps = 0
    total_blocks = max(1, int((~ctx.stuck & ctx.is_todo[ctx.vm_host0]).sum()))
    dtime_all = params.budget("placement")
    stats: dict[str, Any] = {"repairs": 0, "repair_reasons": []}
    tried: set[tuple[int, int]] = set()
    slack = _predicted_slack(agg, waves, shift)
    first_fail: int | None = None  # the first wave placement failed on
    i = 0
    while i < len(waves):
        if progress is not None:
            progress("placement", float(i), float(len(waves)))
        if params.out_of_time(PLACE_TIME_SHARE):
            raise NoPlanFound(
                [
                    f"stopped at the time limit placing wave {i + 1} of {len(waves)}, after "
                    f"{repairs} repair(s)"
                ]
            )
        late = _lateness(ctx, waves)
        future = _future_budget(ctx, st, shift, slack, i)
        landing = _landing(ctx, st, waves, shift, i)
        n_evac = sum(len(st.vms_on[h]) for h in waves[i])
        dtime = dtime_all * n_evac / total_blocks
        hooks = placement_hooks(ctx.inv, ctx.policy)
        rules = [r for h in hooks if (r := h.rule(st, waves, i)) is not None]
        res = place_wave(
            st,
            waves[i],
            future,
            late,
            params,
            dtime,
            small_cloud=total_blocks <= SMALL_CLOUD,
            landing=landing,
            rules=rules,
        )
        if res.broken:
            # the wave model's order, as far as it is still the model's, up to this wave
            at = i if first_fail is None else first_fail
            raise _Broken(min(at, len(wp.waves) - 1), f"wave {i + 1}: " + res.reasons[0])
        if res.failed:
            if first_fail is None:
                first_fail = i  # the waves are still the wave model's up to here
            repairs += 1
            if len(stats["repair_reasons"]) < 5:
                stats["repair_reasons"].append(f"wave {i + 1}: " + "; ".join(res.reasons[:2]))
            # a repair is local (the waves placed stay): it may use the time the fallback would
            # get, which on a large cloud could not finish from scratch in it anyway
            spent = params.spent(SEARCH_EFFORT)
            out_of_time = not spent and params.out_of_time(PLACE_TIME_SHARE)
            if repairs > max_repairs or spent or out_of_time:
                reasons = [*res.reasons[:3], f"gave up after {repairs - 1} repair(s)"]
                if out_of_time or spent:
                    raise NoPlanFound(reasons)
                raise _Broken(first_fail, "; ".join(reasons))
            failing = sorted({b.src for b in res.failed})
            swap = None
            if res.no_room and swaps < MAX_SWAPS:
                swap = _find_swap(ctx, agg, st, waves, shift, i, failing, tried)
            if swap is not None:
                swaps += 1
                # An earlier wave, when freshly emptied hosts still offer room, takes the
                # failing host; its emptiest host of the same tier comes here instead.
                j, f, x = swap
                tried.add((f, j))
                while len(done) > j:
                    _undo(ctx, st, *done.pop())
                waves[j] = sorted(set(waves[j]) - {x} | {f})
                waves[i] = sorted(set(waves[i]) - {f} | {x})
                slack = _predicted_slack(agg, waves, shift)
                i = j
                continue
            if len(waves[i]) == len(failing) and i == len(waves) - 1:
                raise _Broken(first_fail, "; ".join(res.reasons))
            waves, shift = _repair(ctx, agg, waves, shift, i, failing)
            slack = _predicted_slack(agg, waves, shift)
            continue
        wave = Wave(
            index=len(done) + 1,
            hosts=tuple(sorted(ctx.host_names[h] for h in waves[i])),
            migrations=tuple(res.migrations),
            stops=tuple(res.stops),
        )
        done.append((wave, res))
        i += 1
    out = [w for w, _ in done]
    stats["added_waves"] = len(out) - len(wp.waves)
    stats["double_moves"] = sum(r.double_moves for _, r in done)
    stats["cross_group_moves"] = sum(r.cross_group for _, r in done)
    statuses = {s for _, r in done for s in r.solver_status.split(",") if s}
    stats["repairs"] = repairs
    stats["placement_status"] = sorted(statuses)
    generator = {
        "name": "rollwave-cpsat",
        "version": planner.__version__,
        "ortools": _ortools_version(),
        "seed": params.seed,
        "workers": params.workers,
        "effort": round(params.total_effort, 3),
        "wave_status": wp.status,
        "repairs": repairs,
    }
    plan = Plan(
        inventory_sha256=inventory_sha256,
        policy=policy,
        waves=tuple(out),
        generator=generator,
    )
    return CpsatResult(plan, wp.status, wp.bound, stats, wp.notes)


def _ortools_version() -> str:
    import ortools

    return str(getattr(ortools, "__version__", "?"))


# ---------------------------------------------------------------------------------------------
# Budgets for later waves
# ---------------------------------------------------------------------------------------------
def _predicted_slack(agg: Aggregates, waves: list[list[int]], shift: IntArray) -> IntArray:
    """(W, G, C) free minus required at the end of each wave, as planned."""
    if not waves:
        return np.zeros((0, agg.G, agg.ctx.C), dtype=np.int64)
    free, req = evaluate(agg, waves, shift)
    slack: IntArray = free - req
    return slack


def _future_budget(
    ctx: Context, st: PlacementState, shift: IntArray, slack: IntArray, i: int
) -> IntArray | None:
    """(G+1, C): how much more net demand each group may take in wave i than planned without
    breaking a later wave's headroom (as planned), given the shifts made so far."""
    if i + 1 >= len(slack) or ctx.G + 1 <= 1:
        return None
    big = np.iinfo(np.int64).max // 4
    out = np.full((ctx.G + 1, ctx.C), big, dtype=np.int64)
    planned = shift[: i + 1].sum(axis=0)  # (G+1, C) cumulative planned shift through wave i
    later = slack[i + 1 :].min(axis=0)  # (G, C)
    out[: ctx.G] = planned[: ctx.G] - st.shift[: ctx.G] + later
    return out


def _landing(
    ctx: Context, st: PlacementState, waves: list[list[int]], shift: IntArray, i: int
) -> Landing | None:
    """Where demand entering a group in wave i must land for the wave plan to hold: the wave
    model may let a group shed, in a later wave, more than the VMs its hosts going down then
    hold (demand that came in earlier leaves again). Real VMs leave only from hosts going down,
    so that demand must sit on those hosts. Returns, per group and class, how much is still
    missing there (planned outflow less the movable demand on them now), and the hosts."""
    if ctx.G <= 1 or i + 1 >= len(waves):
        return None
    need = np.zeros((ctx.G + 1, ctx.C), dtype=np.int64)
    hosts = np.zeros(ctx.H, dtype=bool)
    on_host: IntArray | None = None  # (H, C) demand free to leave its group, per host now
    for w in range(i + 1, len(waves)):
        out = np.maximum(-shift[w], 0)  # (G+1, C) planned net outflow
        if not out[: ctx.G].any():
            continue
        by_group: dict[int, list[int]] = {}
        for h in waves[w]:
            g = int(ctx.group_of[h])
            if 0 <= g < ctx.G and out[g].any():
                by_group.setdefault(g, []).append(h)
        if by_group and on_host is None:
            leave = np.flatnonzero(st.free_to_leave())
            on_host = np.zeros((ctx.H, ctx.C), dtype=np.int64)
            np.add.at(on_host, st.model.vm_host[leave], ctx.demand[leave])
        for g, hs in by_group.items():
            assert on_host is not None
            on = on_host[np.asarray(hs, dtype=np.int64)].sum(axis=0)
            short = np.maximum(out[g] - on, 0)
            if short.any():
                need[g] += short
                hosts[np.asarray(hs, dtype=np.int64)] = True
    if not need.any():
        return None
    return Landing(need, hosts)


def _lateness(ctx: Context, waves: list[list[int]]) -> IntArray:
    """Per host, how late (0..1) its wave is: overflow should go to hosts upgraded late."""
    late = np.zeros(ctx.H, dtype=np.float64)
    n = max(1, len(waves))
    for w, hs in enumerate(waves):
        late[np.asarray(hs, dtype=np.int64)] = w / n
    return late  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# Repair
# ---------------------------------------------------------------------------------------------
def _headroom_holds(agg: Aggregates, waves: list[list[int]], shift: IntArray, k: int) -> bool:
    """Headroom, in aggregate, still holds at the end of wave k of `waves` (as planned)."""
    free, req = evaluate(agg, waves[: k + 1], shift[: k + 1])
    return bool((free[k] >= req[k]).all())


def _repair(
    ctx: Context,
    agg: Aggregates,
    waves: list[list[int]],
    shift: IntArray,
    i: int,
    failing: list[int],
) -> tuple[list[list[int]], IntArray]:
    """Move `failing` (and hosts ordered after them) out of wave i into wave i+1 if every limit
    and headroom allow, else into a new wave after i."""
    worst = min(int(ctx.tier[h]) for h in failing)
    moved = sorted(set(failing) | {h for h in waves[i] if int(ctx.tier[h]) > worst})
    keep = [h for h in waves[i] if h not in set(moved)]
    new_waves = [list(w) for w in waves]
    new_shift = shift.copy()
    merged = False
    if i + 1 < len(waves):
        candidate = sorted(waves[i + 1] + moved)
        trial = [*new_waves[: i + 1], candidate, *new_waves[i + 2 :]]
        trial[i] = keep
        trial = [w for w in trial if w]
        trial_shift = np.delete(new_shift, i, axis=0) if not keep else new_shift
        at = i if not keep else i + 1
        if (
            wave_limits_ok(ctx, candidate)
            and order_ok(ctx, trial)
            and _headroom_holds(agg, trial, trial_shift, at)
        ):
            new_waves, new_shift = trial, trial_shift
            merged = True
    if not merged:
        new_waves[i] = keep
        new_waves.insert(i + 1, moved)
        new_shift = np.insert(new_shift, i + 1, 0, axis=0)
        if not keep:
            new_waves.pop(i)
            new_shift = np.delete(new_shift, i, axis=0)
    return new_waves, new_shift


def _undo(ctx: Context, st: PlacementState, wave: Wave, res: WaveResult) -> None:
    """Take back a placed wave: its VMs return to their hosts, which are not upgraded yet."""
    vi, hi = ctx.model.vm_index, ctx.model.host_index
    for m in reversed(res.migrations):
        st.move(vi[m.vm], hi[m.src])
    for h in wave.hosts:
        st.upgraded[hi[h]] = bool(ctx.upgraded0[hi[h]])


def _find_swap(
    ctx: Context,
    agg: Aggregates,
    st: PlacementState,
    waves: list[list[int]],
    shift: IntArray,
    i: int,
    failing: list[int],
    tried: set[tuple[int, int]],
    depth: int = 6,
) -> tuple[int, int, int] | None:
    """(j, f, x): a failing host f to exchange with host x of an earlier wave j (at most
    `depth` back): x of the same tier, the emptiest such, with every limit and the order kept."""
    for f in failing:
        for j in range(i - 1, max(-1, i - 1 - depth), -1):
            if (f, j) in tried:
                continue
            options = [
                x
                for x in waves[j]
                if ctx.tier[x] == ctx.tier[f] and x not in failing and ctx.compute[x]
            ]
            options.sort(key=lambda x: (len(st.vms_on[x]), ctx.host_names[x]))
            for x in options[:8]:
                a = sorted(set(waves[j]) - {x} | {f})
                b = sorted(set(waves[i]) - {f} | {x})
                trial = [*waves[:j], a, *waves[j + 1 : i], b, *waves[i + 1 :]]
                if (
                    wave_limits_ok(ctx, a)
                    and wave_limits_ok(ctx, b)
                    and order_ok(ctx, trial)
                    and _headroom_holds(agg, trial, shift, j)
                    and _headroom_holds(agg, trial, shift, i)
                ):
                    return j, f, x
    return None
