"""Replay a plan wave by wave with the checker's own walk (`rules.base.walk`, `capacity.headroom`)
and keep what the report plots: headroom per scope group and class, utilisation per host, moves
per VM, stops.

Steps are: the inventory before any wave (nobody down), the end of each wave (its hosts down: the
checker's docstring explains why the end-of-wave state bounds every state within the wave), and
the state after the last wave (nobody down). No rule is re-implemented here: the numbers are the
ones `checker.check_plan` judges, on the states it judges them on.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from planner.capacity import HeadroomRow, headroom, scope_groups
from planner.inventory import Inventory
from planner.plan import Plan
from planner.policy import Headroom
from planner.rules.base import State, walk

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class Step:
    """One state of the replay: `wave` is None before the first wave and after the last."""

    label: str
    wave: int | None
    down: BoolArray  # hosts in maintenance in this state
    headroom: tuple[HeadroomRow, ...]
    utilisation: FloatArray  # (hosts, classes), used / effective capacity
    # How many of its largest hosts every scope group could lose in this state and still hold
    # their VMs (the N+k rule with k varied, reserve % left out); None when not computed.
    absorbable: int | None = None

    def min_ratio(self) -> float | None:
        """The tightest free / required over groups and classes (None: nothing is required)."""
        ratios = [r.free / r.required for r in self.headroom if r.required > 0]
        return min(ratios) if ratios else None


@dataclass(frozen=True, slots=True)
class Move:
    wave: int
    src: str
    dst: str
    method: str


@dataclass(frozen=True, slots=True)
class Stopped:
    wave: int
    vm: str
    host: str


@dataclass(frozen=True, eq=False)
class Replay:
    inventory: Inventory
    plan: Plan
    classes: tuple[str, ...]
    host_names: tuple[str, ...]
    compute: BoolArray
    cap: npt.NDArray[np.int64]
    groups: tuple[str, ...]  # scope groups: the AZs, or "cloud"
    host_group: npt.NDArray[np.int64]  # index into groups per host, -1 for none
    steps: tuple[Step, ...]  # before, one per wave, after
    moves: dict[str, tuple[Move, ...]] = field(default_factory=dict)  # vm -> its moves
    stops: tuple[Stopped, ...] = ()

    @property
    def before(self) -> Step:
        return self.steps[0]

    @property
    def after(self) -> Step:
        return self.steps[-1]

    @property
    def wave_steps(self) -> tuple[Step, ...]:
        return self.steps[1:-1]

    def worst_wave(self) -> Step | None:
        """The wave with the tightest headroom (free / required); without any requirement, the
        wave with the fullest available host. None for a plan without waves."""
        waves = self.wave_steps
        if not waves:
            return None
        ratios = [s.min_ratio() for s in waves]
        if any(r is not None for r in ratios):
            i = min(
                (i for i, r in enumerate(ratios) if r is not None),
                key=lambda i: (ratios[i], i),
            )
            return waves[i]

        def fullest(s: Step) -> float:
            up = self.compute & ~s.down
            return float(s.utilisation[up].max(initial=0.0))

        return max(waves, key=lambda s: (fullest(s), -(s.wave or 0)))

    def min_absorbable(self) -> tuple[int, str] | None:
        """The fewest host failures absorbable at the end of any wave, and which wave."""
        found = [(s.absorbable, s.label) for s in self.wave_steps if s.absorbable is not None]
        return min(found, key=lambda x: x[0]) if found else None

    def moved_more_than_once(self) -> dict[str, tuple[Move, ...]]:
        return {vm: ms for vm, ms in self.moves.items() if len(ms) > 1}


def absorbable_failures(state: State, down: BoolArray) -> int:
    """The largest k for which `capacity.headroom` with N+k (the policy's scope, no reserve)
    holds in every scope group and class: the host failures the cloud absorbs right now."""
    scope = state.policy.headroom.scope

    def holds(k: int) -> bool:
        rule = Headroom(failures=k, scope=scope, reserve_percent=0.0)
        return all(r.ok for r in headroom(state.model, rule, down))

    avail = state.model.available & ~down
    lo, hi = 0, int(avail.sum())
    if not holds(0):
        return 0
    while lo < hi:  # N+k is monotone in k: the k largest only grow with k
        mid = (lo + hi + 1) // 2
        if holds(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def replay(inv: Inventory, plan: Plan, *, absorbable: bool = True) -> Replay:
    """Replay `plan` on `inv`. Entries the checker would reject as unknown (a VM or host not in the
    inventory, a controller as destination) are skipped, as the checker's own replay does, so an
    invalid plan still gets a report that shows where it breaks."""
    policy = plan.policy
    state = State(inv, policy)
    model = state.model
    groups, host_group = scope_groups(inv, policy.headroom.scope)
    steps = [_step(state, "before", None, set(), absorbable)]
    moves: dict[str, list[Move]] = defaultdict(list)
    stops: list[Stopped] = []
    for step in walk(state, plan):
        step.apply()
        for vm, src, dst, method in step.moves:
            moves[vm].append(Move(step.index, src, dst, method))
        for s in step.wave.stops:
            if inv.has_vm(s.vm):
                stops.append(Stopped(step.index, s.vm, state.host_of[s.vm]))
        steps.append(_step(state, f"wave {step.index}", step.index, step.hosts, absorbable))
    steps.append(_step(state, "after", None, set(), absorbable))
    return Replay(
        inventory=inv,
        plan=plan,
        classes=model.classes,
        host_names=model.host_names,
        compute=model.compute.copy(),
        cap=model.cap.copy(),
        groups=groups,
        host_group=host_group,
        steps=tuple(steps),
        moves={vm: tuple(ms) for vm, ms in moves.items()},
        stops=tuple(stops),
    )


def _step(
    state: State, label: str, wave: int | None, down_hosts: set[str], absorbable: bool
) -> Step:
    down = state.down_mask(down_hosts)
    rows = headroom(state.model, state.policy.headroom, down)
    k = absorbable_failures(state, down) if absorbable else None
    return Step(label, wave, down, tuple(rows), state.model.utilisation(), k)
