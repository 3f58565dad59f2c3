"""How a rule family is encoded in each of the solver's models, or why it need not be.

For every family of `planner.rules` and every model (`MODELS`), `solver.rules.ENCODINGS` holds
one of:
- the model's hooks (`GreedyHooks`, `WaveHooks`, `PlacementHooks`, `ExactHooks`): functions the
  model calls at fixed points while it builds a wave, a constraint model or a placement;
- `Builtin(reason)`: the model's own algorithm keeps the family (by construction, or it is what
  the algorithm is made of), and the reason says where;
- `Relaxed(reason)`: the model does not keep it; the checker re-judges every plan
  (`solver.solve` says so in its notes when the plan came from such a model).
`tests/test_solver_rules.py` fails when a family has a check and some model none of these.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from planner.inventory import VM, Host, Inventory
from planner.policy import Policy
from planner.rules.base import Words

if TYPE_CHECKING:
    from ortools.sat.python import cp_model

    from planner.bounds import LowerBounds
    from planner.capacity import BoolArray
    from solver.context import Context, ServerGroupInfo
    from solver.exact import ExactModel
    from solver.greedy import GreedyState, GreedyWave
    from solver.placement import Block, PlacementState
    from solver.waves import WaveModel

MODELS = ("greedy", "waves", "placement", "exact")


@dataclass(frozen=True)
class Builtin:
    """The model keeps the family without a hook: `reason` says how."""

    reason: str


@dataclass(frozen=True)
class Relaxed:
    """The model does not keep the family; the checker re-judges its plans. `reason` says why."""

    reason: str


# ---------------------------------------------------------------------------------------------
# Filling a wave host by host (the greedy planner, the wave model's first-fit heuristic)
# ---------------------------------------------------------------------------------------------
class Filling:
    """A wave being filled host by host: what the fill hooks see. `memo` keeps each family's
    count for this wave; `migrations(h)` is how many VMs host h sends away if it joins."""

    def __init__(self, inv: Inventory, policy: Policy) -> None:
        self.inv = inv
        self.policy = policy
        self.memo: dict[str, Any] = {}

    def host(self, h: int) -> Host:
        return self.inv.hosts[h]

    def migrations(self, h: int) -> int:
        raise NotImplementedError


@dataclass(frozen=True)
class FillHooks:
    """A family's part in filling a wave: `start(f)` before the first host; `closed(f, tier)`:
    the wave takes no more hosts (the filling stops); `refuses(f, h, tier)`: why host h may not
    join ("" for no message), or None; `joined(f, h)` once it has; `refused(f, h, tier)` once any
    family refused it."""

    start: Callable[[Filling], None] | None = None
    closed: Callable[[Filling, int], bool] | None = None
    refuses: Callable[[Filling, int, int], str | None] | None = None
    joined: Callable[[Filling, int], None] | None = None
    refused: Callable[[Filling, int, int], None] | None = None


@dataclass(frozen=True)
class GreedyHooks:
    """The greedy planner (`solver.greedy`): `fill` while it forms a wave; `refuses` a host
    before evacuating it (greedy only), `after(g, h)` once its VMs have moved (a reason to take
    it back, or None); `eligible(st, vm, j, in_wave, ok)` narrows the hosts VM j may go to
    (`ok` None: every host so far; it returns a new mask, or `ok` itself, see `narrow`)."""

    fill: FillHooks = field(default_factory=FillHooks)
    refuses: Callable[[GreedyWave, int, int], str | None] | None = None
    after: Callable[[GreedyWave, int], str | None] | None = None
    eligible: (
        Callable[[GreedyState, VM, int, BoolArray, BoolArray | None], BoolArray | None] | None
    ) = None


def narrow(ok: BoolArray | None, mask: BoolArray) -> BoolArray:
    """The hosts of both `ok` (None: every host) and `mask`, as a new array."""
    out: BoolArray = mask.copy() if ok is None else ok & mask
    return out


@dataclass(frozen=True)
class WaveHooks:
    """The wave model (`solver.waves`): `fill` in its first-fit heuristic; `type_key(ctx)` a
    function of a host saying what hosts of one type must share; `wave(wm, w, size, used)` per
    wave while the model's waves are made (`size`: hosts down in wave w, `used`: its literal or
    None); `build(wm)` the family's constraints, in the registry's order."""

    fill: FillHooks = field(default_factory=FillHooks)
    type_key: Callable[[Context], Callable[[int], Hashable]] | None = None
    wave: Callable[[WaveModel, int, Any, Any], None] | None = None
    build: Callable[[WaveModel], None] | None = None


class WaveRule:
    """A family's part in placing one wave's VMs (`solver.placement`): why the wave cannot be
    placed whatever its VMs do (`broken`), which candidate hosts a block may take (`allows`,
    vectorised), what placing it takes (`take`, sign -1 to undo) and its CP-SAT constraints
    over the blocks' destination literals (`constrain`)."""

    def broken(self) -> str | None:
        return None

    def allows(self, b: Block, hosts: Any) -> Any:
        return None

    def take(self, b: Block, h: int, sign: int) -> None:
        return None

    def constrain(
        self, m: cp_model.CpModel, blocks: list[Block], cand: list[list[int]], y: list[list[Any]]
    ) -> None:
        return None


@dataclass(frozen=True)
class PlacementHooks:
    """The placement phase (`solver.placement`): `rule(st, waves, i)` the family's `WaveRule`
    for wave i of `waves` (every wave's hosts, as planned now), or None."""

    rule: Callable[[PlacementState, list[list[int]], int], WaveRule | None]


@dataclass(frozen=True)
class ExactHooks:
    """The exact model (`solver.exact`): `vm(em, j, cand)` per VM that may move, right after its
    position variables; `positions(em)` once they all exist; `build(em)` the family's
    constraints; `group(em, sg)` per server group."""

    vm: Callable[[ExactModel, int, list[int]], None] | None = None
    positions: Callable[[ExactModel], None] | None = None
    build: Callable[[ExactModel], None] | None = None
    group: Callable[[ExactModel, ServerGroupInfo], None] | None = None


Encoding = GreedyHooks | WaveHooks | PlacementHooks | ExactHooks | Builtin | Relaxed


@dataclass(frozen=True)
class Encodings:
    """One family's encodings, keyed by `planner.rules` name; `details(ctx, key)` the numbers
    behind a proof that names the family by `key` (None: none), for any model's explanation;
    `obstacle(ctx, lb, what)` the families a lower bound's finding of this family
    (`LowerBounds.obstacles`) rests on, with the one steps its numbers show are not enough."""

    family: str
    greedy: GreedyHooks | Builtin | Relaxed
    waves: WaveHooks | Builtin | Relaxed
    placement: PlacementHooks | Builtin | Relaxed
    exact: ExactHooks | Builtin | Relaxed
    details: Callable[[Context, str], str | None] | None = None
    obstacle: Callable[[Context, LowerBounds, str], tuple[list[Words], dict[str, str]]] | None = (
        None
    )

    def of(self, model: str) -> Encoding:
        value: Encoding = getattr(self, model)
        return value
