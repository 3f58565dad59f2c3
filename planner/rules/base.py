"""What a rule family is made of, and the replay state its checks judge.

A family (one module of `planner.rules`) is the one home of a rule: its checker rule names and
their meanings, its words (what a proof calls it, how to relax it), its checks on the replay
state, its relaxation step and its part of the lower bounds. `Family` below lists the hooks; a
family fills in those it has. The checker (`planner.checker`) drives the hooks in the order of
the registry (`planner.rules.FAMILIES`); `planner.bounds` does the same for the lower bounds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from planner.capacity import CapacityModel, HeadroomRow, headroom
from planner.estimates import Estimates
from planner.inventory import Host, Inventory, ServerGroup
from planner.plan import Migration, Plan, Stop, Wave
from planner.policy import Policy

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Words
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Words:
    """A rule family, or one instance of it (an HA group, a group's headroom of a class), in an
    operator's words: the key proofs name it by, what must hold, and how to relax it."""

    key: str
    rule: str  # what must hold
    relax: str  # what relaxing it means

    def blame(
        self,
        *,
        relaxing_alone: bool | None = None,
        numbers: str | None = None,
        one_step: str | None = None,
    ) -> dict[str, Any]:
        """This family as one entry of `InfeasibleError.blame`."""
        return {
            "key": self.key,
            "rule": self.rule,
            "relax": self.relax,
            "relaxing_alone": relaxing_alone,
            "numbers": numbers,
            "one_step": one_step,
        }


@dataclass(frozen=True)
class Relaxation:
    """The smallest relaxation of a numeric family (one more host a wave, one HA member fewer,
    N+(k-1)): what it is called, and the inventory and policy with it."""

    label: str
    inventory: Inventory
    policy: Policy


# ---------------------------------------------------------------------------------------------
# Violations
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Violation:
    rule: str
    message: str
    wave: int | None = None
    objects: tuple[str, ...] = ()
    numbers: Mapping[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        where = f"wave {self.wave}" if self.wave is not None else "plan"
        if self.rule.startswith("inventory."):
            where = "inventory"
        return f"{where}: [{self.rule}] {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "wave": self.wave,
            "rule": self.rule,
            "message": self.message,
            "objects": list(self.objects),
            "numbers": dict(self.numbers),
        }


def vm_label(inv: Inventory, vm_id: str) -> str:
    """How messages name a VM: its name and the start of its id (ids stay whole in `objects`)."""
    if not inv.has_vm(vm_id):
        return vm_id
    name = inv.vm(vm_id).name
    return f"{name} ({vm_id[:8]})" if name and name != vm_id else vm_id


def shown(names: list[str], limit: int) -> str:
    """The first `limit` names, and how many more there are."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def by_key(items: Iterable[T], key: Callable[[T], str | None]) -> dict[str, list[T]]:
    """`items` grouped by `key` (first seen first), items whose key is None left out: the hosts
    of each AZ or rack, for the per-AZ and per-rack limits."""
    out: dict[str, list[T]] = {}
    for item in items:
        k = key(item)
        if k is not None:
            out.setdefault(k, []).append(item)
    return out


# ---------------------------------------------------------------------------------------------
# The replay state
# ---------------------------------------------------------------------------------------------
BoolArray = np.ndarray[Any, np.dtype[np.bool_]]


class State:
    """Where every VM is, which hosts are upgraded, and the capacity model, between waves.
    `estimates`: the migration model's predictions when the check has them (`check --model`),
    for the families whose rules need them; `warnings`: what the families' hooks report that does
    not make a plan invalid (the checker adds them to its report's warnings)."""

    def __init__(
        self,
        inv: Inventory,
        policy: Policy,
        estimates: Estimates | None = None,
        plan: Plan | None = None,
    ) -> None:
        self.inv = inv
        self.policy = policy
        self.estimates = estimates
        self.warnings: list[Violation] = []
        self.model = CapacityModel(inv)
        self.host_of: dict[str, str] = {v.id: v.host for v in inv.vms}
        self.on_host: dict[str, set[str]] = defaultdict(set)
        for v in inv.vms:
            self.on_host[v.host].add(v.id)
        target = policy.target_version
        self.upgraded: set[str] = (
            {h.name for h in inv.hosts if h.version == target} if target is not None else set()
        )
        self.stopped: set[str] = set()
        # The plan being replayed (the checker's; None elsewhere) and the families' notes kept
        # across waves (e.g. a side-by-side plan's clouds).
        self.plan = plan
        self.memo: dict[str, Any] = {}

    def move(self, vm: str, dst: str) -> None:
        src = self.host_of[vm]
        self.on_host[src].discard(vm)
        self.on_host[dst].add(vm)
        self.host_of[vm] = dst
        self.model.move(self.model.vm_index[vm], self.model.host_index[dst])

    def down_mask(self, hosts: Iterable[str]) -> BoolArray:
        mask = np.zeros(len(self.model.host_names), dtype=bool)
        for h in hosts:
            i = self.model.host_index.get(h)
            if i is not None:
                mask[i] = True
        return mask


# A migration the replay applied: (vm, src, dst, method), the VM was on src and is now on dst.
Move = tuple[str, str, str, str]


class WaveStep:
    """One wave of the replay (`walk`): the state at the wave's start until `apply`, then at its
    end. `moved` is each VM's destination (its first migration in the wave that names a known VM
    and a compute host the inventory knows; the checker reports the others); `memo` keeps a
    family's notes between the phases of one wave."""

    def __init__(self, state: State, wave: Wave) -> None:
        inv = state.inv
        self.state = state
        self.wave = wave
        self.index = wave.index
        self.hosts: set[str] = {h for h in wave.hosts if inv.has_host(h)}
        # One pass: the destinations, and the migrations the families judge (`migrations`).
        moved: dict[str, tuple[str, str]] = {}  # vm -> (dst, method)
        known: list[tuple[int, Migration]] = []
        has_vm, has_host, host = inv.has_vm, inv.has_host, inv.host
        for i, m in enumerate(wave.migrations):
            if has_vm(m.vm) and has_host(m.dst):
                if has_host(m.src):
                    known.append((i, m))
                if m.vm not in moved and host(m.dst).is_compute:
                    moved[m.vm] = (m.dst, m.method)
        self.moved = moved
        self._known = known
        self.moves: list[Move] = []
        self.applied = False
        self.memo: dict[str, Any] = {}
        self._rows: list[HeadroomRow] | None = None

    def groups(self) -> list[str]:
        """The server groups (ids, sorted) with a member in `moved` (computed once)."""
        found: list[str] | None = self.memo.get("groups")
        if found is None:
            inv = self.state.inv
            gids = {inv.vm(v).server_group for v in self.moved}
            found = self.memo["groups"] = sorted(g for g in gids if g is not None)
        return found

    def migrations(self) -> list[tuple[int, Migration]]:
        """The wave's migrations, numbered, that name a known VM and known hosts (the structure
        family reports the others)."""
        return self._known

    def stops(self) -> list[tuple[int, Stop]]:
        """The wave's stops, numbered, that name a known VM and host."""
        inv = self.state.inv
        return [
            (i, s)
            for i, s in enumerate(self.wave.stops)
            if inv.has_vm(s.vm) and inv.has_host(s.host)
        ]

    def apply(self) -> None:
        """Move every VM of `moved` (a VM already there stays and counts no move)."""
        if self.applied:
            return
        self.applied = True
        host_of, move, moves = self.state.host_of, self.state.move, self.moves
        for vm, (dst, method) in self.moved.items():
            src = host_of[vm]
            if src != dst:
                move(vm, dst)
                moves.append((vm, src, dst, method))

    def headroom_rows(self) -> list[HeadroomRow]:
        """`capacity.headroom` at the wave's end, with its hosts down (computed once)."""
        if self._rows is None:
            s = self.state
            self._rows = headroom(s.model, s.policy.headroom, s.down_mask(self.hosts))
        return self._rows


def walk(state: State, plan: Plan) -> Iterator[WaveStep]:
    """The plan's waves in order on `state`: each step is yielded at the wave's start; the caller
    judges it, calls `apply` (or lets the walk do it on resuming) and judges the end. Then the
    wave's stopped VMs and hosts count as stopped and upgraded. The checker's replay and the
    reports' (`planner.report.replay`) are this walk."""
    for wave in plan.waves:
        step = WaveStep(state, wave)
        yield step
        step.apply()
        for s in wave.stops:
            state.stopped.add(s.vm)
        state.upgraded |= step.hosts


# ---------------------------------------------------------------------------------------------
# Lower bounds
# ---------------------------------------------------------------------------------------------
class BoundsContext:
    """What the families' lower bounds are computed from and add to (`planner.bounds`): the
    hosts to upgrade, the labelled bounds on waves so far, the findings that no plan exists
    (`reasons`, each with the rule behind it in `obstacles`), and shared working data."""

    def __init__(self, inv: Inventory, policy: Policy, to_upgrade: tuple[Host, ...]) -> None:
        self.inv = inv
        self.policy = policy
        self.to_upgrade = to_upgrade
        self.upgrade_names = {h.name for h in to_upgrade}
        self.bounds: dict[str, int] = {}
        self.reasons: list[str] = []
        self.obstacles: list[tuple[str, str]] = []
        self.migrations = 0
        self.max_down: int | None = None
        self.memo: dict[str, Any] = {}
        # Each family's waves for a set of hosts alone (`Family.need`), set by the driver.
        self.needs: list[Callable[[BoundsContext, list[Host]], int]] = []
        self._model: CapacityModel | None = None

    def need(self, hosts: list[Host]) -> int:
        """The waves `hosts` alone need, by every family."""
        return max((need(self, hosts) for need in self.needs), default=0)

    def obstacle(self, reason: str, kind: str, what: str) -> None:
        self.reasons.append(reason)
        self.obstacles.append((kind, what))

    @property
    def model(self) -> CapacityModel:
        """The inventory's capacity model (built once, never moved)."""
        if self._model is None:
            self._model = CapacityModel(self.inv)
        return self._model


# ---------------------------------------------------------------------------------------------
# A family's hooks
# ---------------------------------------------------------------------------------------------
Out = list[Violation]
# Violations of a wave's migrations or stops, each with the number of the one it is about: the
# checker reports them migration by migration, whichever family found them.
Numbered = list[tuple[int, Violation]]


@dataclass(frozen=True)
class PlanCheck:
    """What the plan-level checks see: the inventory, the plan, the digest it must carry, the
    estimates when the check has them, and where to put warnings (see `State`)."""

    inv: Inventory
    plan: Plan
    digest: str | None
    estimates: Estimates | None = None
    warnings: list[Violation] = field(default_factory=list)


@dataclass(frozen=True)
class Family:
    """One rule family: its name (the registry's key, also its main checker rule), its checker
    rules with their meanings, and its hooks. Every hook is optional.

    Checker hooks (each appends its violations to `out`, and its warnings, if any, to
    `state.warnings` or `pc.warnings`), in the order the checker calls them:
    - `plan(pc, out)`: the plan as a whole (coverage, order, ...);
    - before any wave: `cloud(state, out)` (what the hosts hold), then `down(state, set(), None,
      out)` (which hosts are down: none yet), then `group(state, g, None, out)` per server group;
    - each wave, at its start: `wave(state, step, out)` and `down(state, step.hosts, step.index,
      out)`; then `migrations(state, step, moves, out)` over the wave's numbered migrations
      (`WaveStep.migrations`) and `stops(state, step, stops, out)` likewise, each violation with
      the number of the migration or stop it is about (the checker reports them in that order);
      then the moves are applied; then `moved(state, step, out)` (hosts that received VMs),
      `group(state, g, step, out)` per server group with a member moved, and `after(state, step,
      out)` (the whole end-of-wave state).

    Other hooks: `bound(bc)` adds the family's lower bounds and findings (`planner.bounds`);
    `combine(bc)` runs after every family's `bound` (bounds made of the others', as the tiers of
    the order); `need(bc, hosts)` is the waves `hosts` alone need by this family (for a tier);
    `hosts_ok(inv, policy, hosts)` says whether a wave of these hosts could keep the family
    (necessary, from the inventory alone; the solver's repairs ask it); `owns(key)` whether a
    proof's key is one of this family's, `one_step(inv, policy, key)` its smallest relaxation;
    `active(inv, policy)` whether the family can bind at all (e.g. its policy key is set)."""

    name: str
    rules: Mapping[str, str]
    plan: Callable[[PlanCheck, Out], None] | None = None
    cloud: Callable[[State, Out], None] | None = None
    down: Callable[[State, set[str], int | None, Out], None] | None = None
    wave: Callable[[State, WaveStep, Out], None] | None = None
    migrations: Callable[[State, WaveStep, list[tuple[int, Migration]], Numbered], None] | None = (
        None
    )
    stops: Callable[[State, WaveStep, list[tuple[int, Stop]], Numbered], None] | None = None
    moved: Callable[[State, WaveStep, Out], None] | None = None
    group: Callable[[State, ServerGroup, WaveStep | None, Out], None] | None = None
    after: Callable[[State, WaveStep, Out], None] | None = None
    bound: Callable[[BoundsContext], None] | None = None
    combine: Callable[[BoundsContext], None] | None = None
    need: Callable[[BoundsContext, list[Host]], int] | None = None
    hosts_ok: Callable[[Inventory, Policy, list[Host]], bool] | None = None
    owns: Callable[[str], bool] = lambda key: False
    one_step: Callable[[Inventory, Policy, str], Relaxation | None] | None = None
    active: Callable[[Inventory, Policy], bool] = lambda inv, policy: True
    # Policy keys a what-if may vary, with how their values read ("int", "int?", "bool", ...).
    policy_keys: Mapping[str, str] = field(default_factory=dict)
