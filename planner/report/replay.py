"""Replay a plan wave by wave with the core (`checker.State`, `capacity.headroom`) and keep what the
report plots: headroom per scope group and class, utilisation per host, moves per VM, stops.

Steps are: the inventory before any wave (nobody down), the end of each wave (its hosts down: the
checker's docstring explains why the end-of-wave state bounds every state within the wave), and
the state after the last wave (nobody down). No rule is re-implemented here: the numbers are the
ones `checker.check_plan` judges.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from planner.capacity import HeadroomRow, headroom, scope_groups
from planner.checker import State
from planner.inventory import Inventory
from planner.plan import Plan

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

    def moved_more_than_once(self) -> dict[str, tuple[Move, ...]]:
        return {vm: ms for vm, ms in self.moves.items() if len(ms) > 1}


def replay(inv: Inventory, plan: Plan) -> Replay:
    """Replay `plan` on `inv`. Entries the checker would reject as unknown (a VM or host not in the
    inventory, a controller as destination) are skipped, as the checker's own replay does, so an
    invalid plan still gets a report that shows where it breaks."""
    policy = plan.policy
    state = State(inv, policy)
    model = state.model
    groups, host_group = scope_groups(inv, policy.headroom.scope)
    steps = [_step(state, "before", None, set())]
    moves: dict[str, list[Move]] = defaultdict(list)
    stops: list[Stopped] = []
    for wave in plan.waves:
        wave_hosts = {h for h in wave.hosts if inv.has_host(h)}
        moved: dict[str, tuple[str, str]] = {}
        for m in wave.migrations:
            if inv.has_vm(m.vm) and inv.has_host(m.dst) and inv.host(m.dst).is_compute:
                moved.setdefault(m.vm, (m.dst, m.method))
        for vm, (dst, method) in moved.items():
            src = state.host_of[vm]
            if src != dst:
                state.move(vm, dst)
                moves[vm].append(Move(wave.index, src, dst, method))
        for s in wave.stops:
            if inv.has_vm(s.vm):
                stops.append(Stopped(wave.index, s.vm, state.host_of[s.vm]))
        steps.append(_step(state, f"wave {wave.index}", wave.index, wave_hosts))
    steps.append(_step(state, "after", None, set()))
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


def _step(state: State, label: str, wave: int | None, down_hosts: set[str]) -> Step:
    down = state.down_mask(down_hosts)
    rows = headroom(state.model, state.policy.headroom, down)
    return Step(label, wave, down, tuple(rows), state.model.utilisation())
