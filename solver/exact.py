"""Decide a small cloud exactly: a plan, or a proof that none exists and which rules are to blame.

`decide` builds one CP-SAT model whose solutions are exactly the valid plans (as the checker
judges them, `planner.checker.RULES`), VM by VM and wave by wave, for as many wave slots as there
are hosts to upgrade. That many slots is enough: the checker wants every host to upgrade in
exactly one wave and no wave empty, so a valid plan has at most that many waves; the model uses a
prefix of the slots and leaves the rest empty (an empty slot checks nothing). Hence

- FEASIBLE: the solution is a plan (the caller still runs the checker on it);
- INFEASIBLE: no valid plan exists at all, whatever the order of the hosts: *proven impossible*;
- UNKNOWN (time limit): nothing is claimed.

Every policy rule family (wave sizes, each HA group, the first/last order, headroom of each scope
group and class, each hard server group, AZ pins per AZ, aggregate pins per aggregate set,
VMs that cannot migrate while stops are not allowed) holds only under its own assumption literal.
On INFEASIBLE, `sufficient_assumptions_for_infeasibility` gives a set of families in conflict;
dropping one family at a time and solving again shrinks it to a minimal one (a *core*: relaxing
any one family of it, with every family outside it relaxed too, gives a plan). Each family of
the core is then tried alone: with every other rule kept, does relaxing it give a plan? Capacity,
evacuation and the destinations' state (compute, enabled, up, not in the wave) are physics, not
policy, and hold unconditionally: when no policy family is to blame, the VMs do not fit.

Model (W slots, slot 0 the inventory): y[h, w] host h goes down in slot w (exactly one w);
at[v, w, h] VM v is on host h at the end of slot w, for VMs that may move (on a host to
upgrade, migration live or cold); the others never move (a VM leaves only a host of the wave).
The version rule holds by construction (a VM leaves only a host of the current wave, never an
upgraded one); methods are chosen when the plan is written (live when the VM allows it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from ortools.sat.python import cp_model

from planner import rules
from planner.plan import Migration, Plan, Stop, Wave
from planner.rules.base import Words
from solver.context import Context, build_context, method_for
from solver.params import SolveParams, make_solver, run
from solver.rules import details, exact_hooks

# Largest model decided: VM-host-slot cells for the VMs that may move, plus host-slot cells.
MAX_CELLS = 40_000
# Deterministic time (CP-SAT work units, ~1-2 s each on a shared 2-core machine) for the first
# solve, for each later one (shrinking the core, relaxing one family alone), and for all of them.
FIRST_DTIME = 20.0
LATER_DTIME = 5.0
TOTAL_DTIME = 60.0

Outcome = Literal["plan", "impossible", "unknown", "too_large"]
Expr = cp_model.LinearExpr | int


@dataclass
class Decision:
    outcome: Outcome
    plan: Plan | None = None
    core: tuple[Words, ...] = ()  # the families in conflict (impossible)
    minimal: bool = False  # the core was shown minimal (each smaller set solved FEASIBLE)
    # family key -> relaxing only it (every other rule kept) gives a plan: True, False, or None
    # (not decided in time)
    alone: dict[str, bool | None] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)  # family key -> its numbers
    steps: dict[str, str] = field(default_factory=dict)  # family key -> is one step enough
    cells: int = 0
    solves: int = 0

    def reasons(self) -> list[str]:
        """The proof in an operator's terms (outcome "impossible" only)."""
        if self.outcome != "impossible":
            return []
        if not self.core:
            return [
                "proven impossible (CP-SAT, exact model over every order of the hosts): even "
                "with every policy rule relaxed, the VMs do not fit on the hosts that stay up "
                "while theirs are upgraded; only more capacity helps"
            ]
        rules = [f.rule for f in self.core]
        head = "proven impossible (CP-SAT, exact model, every order of the hosts): "
        if len(rules) == 1:
            head += f"{rules[0]} cannot hold"
        else:
            head += ", ".join(rules[:-1]) + f" and {rules[-1]} cannot all hold"
            head += "" if self.minimal else " (a conflicting set, maybe not minimal)"
        out = [head]
        out += [self.details[f.key] for f in self.core if f.key in self.details]
        for f in self.core:
            got = self.alone.get(f.key)
            if got is True:
                step = f" ({self.steps[f.key]})" if f.key in self.steps else ""
                out.append(f"relaxing {f.rule} alone gives a plan{step}: {f.relax}")
            elif got is False:
                step = f"; {self.steps[f.key]}" if f.key in self.steps else ""
                out.append(f"relaxing {f.rule} alone is not enough: other rules conflict too{step}")
            else:
                out.append(f"to relax {f.rule}: {f.relax} (whether alone is enough: not decided)")
        return out


def model_cells(ctx: Context) -> int:
    """Size of the exact model: VM-host-slot and host-slot cells."""
    W = len(ctx.todo)
    hosts = int(ctx.available.sum()) + 1
    movable = sum(1 for j in range(len(ctx.inv.vms)) if _may_move(ctx, j))
    return W * (movable * hosts + len(ctx.todo))


def _may_move(ctx: Context, j: int) -> bool:
    return bool(ctx.is_todo[int(ctx.vm_host0[j])]) and not (ctx.stuck[j] or ctx.movable_none[j])


class ExactModel:
    """The model, its assumption literals (`guards`, key -> literal) and its families.

    The skeleton is here: which slot each host goes down in (`y`), where each VM that may move
    is at each slot's end (`at`, `cand`), and that a VM leaves only a host of the wave. Every
    policy rule is a family's encoding (`solver.rules`, `ExactHooks`), called in the registry's
    order: each VM's pins right after its position variables, then each family's constraints,
    then each server group's."""

    def __init__(self, ctx: Context, slots: int | None = None) -> None:
        self.ctx = ctx
        self.m = cp_model.CpModel()
        self.families: dict[str, Words] = {}
        self.guards: dict[str, cp_model.IntVar] = {}
        self.todo = [int(h) for h in ctx.todo]
        # As many slots as hosts admit every valid plan; fewer admit the plans of that many waves
        # or fewer (`solver.exact_opt`).
        self.W = len(self.todo) if slots is None else max(1, min(slots, len(self.todo)))
        self._build()

    # -- families -----------------------------------------------------------------------------
    def guard(self, f: Words) -> cp_model.IntVar:
        """The assumption literal of a family (made the first time it is asked for)."""
        if f.key not in self.guards:
            self.guards[f.key] = self.m.new_bool_var(f"g[{f.key}]")
            self.families[f.key] = f
        return self.guards[f.key]

    # -- building -----------------------------------------------------------------------------
    def _build(self) -> None:
        m, W = self.m, self.W
        slots = range(1, W + 1)
        self.y = {(h, w): m.new_bool_var(f"y[{h},{w}]") for h in self.todo for w in slots}
        for h in self.todo:
            m.add_exactly_one(self.y[h, w] for w in slots)
        self.active = {w: m.new_bool_var(f"active[{w}]") for w in slots}
        for w in slots:
            hs = [self.y[h, w] for h in self.todo]
            m.add_bool_or(hs).only_enforce_if(self.active[w])
            for lit in hs:
                m.add_implication(lit, self.active[w])
            if w > 1:  # the waves are a prefix of the slots
                m.add_implication(self.active[w], self.active[w - 1])
        hooks = exact_hooks(self.ctx.inv, self.ctx.policy)
        self._positions([h.vm for h in hooks if h.vm is not None])
        for hook in hooks:
            if hook.positions is not None:
                hook.positions(self)
        for hook in hooks:
            if hook.build is not None:
                hook.build(self)
        groups = [h.group for h in hooks if h.group is not None]
        for sg in self.ctx.server_groups:
            for group in groups:
                group(self, sg)

    def _positions(self, per_vm: list[Callable[[ExactModel, int, list[int]], None]]) -> None:
        ctx, m, W = self.ctx, self.m, self.W
        dest = ctx.available  # compute, enabled, up: every destination the checker allows
        self.cand: dict[int, list[int]] = {}
        self.at: dict[tuple[int, int, int], cp_model.IntVar] = {}
        self.fixed_used = np.zeros((ctx.H, ctx.C), dtype=np.int64)
        for j in range(len(ctx.inv.vms)):
            h0 = int(ctx.vm_host0[j])
            if not _may_move(ctx, j):
                self.fixed_used[h0] += ctx.demand[j]
                continue
            cand = sorted(set(np.flatnonzero(dest).tolist()) | {h0})
            self.cand[j] = cand
            for w in range(1, W + 1):
                for h in cand:
                    self.at[j, w, h] = m.new_bool_var(f"at[{j},{w},{h}]")
                m.add_exactly_one(self.at[j, w, h] for h in cand)
                for h in cand:
                    now = self.at[j, w, h]
                    todo = bool(ctx.is_todo[h])
                    before = self.at.get((j, w - 1, h)) if w > 1 else None
                    was_there = h == h0 if w == 1 else None
                    # stays unless its host is in the wave
                    if todo:
                        if was_there is True:
                            m.add_bool_or([self.y[h, w], now])
                        elif before is not None:
                            m.add_bool_or([before.Not(), self.y[h, w], now])
                        # never on a host of the wave at the wave's end
                        m.add_implication(now, self.y[h, w].Not())
                    else:
                        if was_there is True:
                            m.add(now == 1)
                        elif before is not None:
                            m.add_implication(before, now)
                    # arrives only at a destination the checker allows
                    if not dest[h]:
                        if w == 1 and h != h0:
                            m.add(now == 0)
                        elif w > 1:
                            m.add_implication(now, self.at[j, w - 1, h])
            for hook in per_vm:
                hook(self, j, cand)

    def used(self, h: int, c: int, w: int) -> Expr:
        """Usage of host h in class c at the end of slot w."""
        js = [j for j in self.cand if (j, w, h) in self.at and self.ctx.demand[j, c]]
        const = int(self.fixed_used[h, c])
        if not js:
            return const
        return (
            cp_model.LinearExpr.weighted_sum(
                [self.at[j, w, h] for j in js], [int(self.ctx.demand[j, c]) for j in js]
            )
            + const
        )

    def forbid(self, j: int, hosts: list[int], family: Words) -> None:
        """VM j is on none of `hosts` at any slot's end, under the family's assumption."""
        if not hosts:
            return
        g = self.guard(family)
        for w in range(1, self.W + 1):
            for h in hosts:
                self.m.add_implication(g, self.at[j, w, h].Not())

    def hosts_of(self, j: int) -> list[int]:
        """The hosts VM j may be on."""
        return self.cand[j] if j in self.cand else [int(self.ctx.vm_host0[j])]

    def on(self, j: int, w: int, h: int) -> cp_model.IntVar | int:
        """VM j is on host h at the end of slot w: a literal, or a constant."""
        if j in self.cand:
            return self.at.get((j, w, h), 0)
        return 1 if int(self.ctx.vm_host0[j]) == h else 0

    # -- reading a solution -------------------------------------------------------------------
    def plan(self, solver: cp_model.CpSolver, inventory_sha256: str) -> Plan:
        ctx = self.ctx
        names = ctx.host_names
        wave_of = {
            h: next(w for w in range(1, self.W + 1) if solver.value(self.y[h, w]))
            for h in self.todo
        }
        where = {j: int(ctx.vm_host0[j]) for j in self.cand}
        waves: list[Wave] = []
        for w in range(1, self.W + 1):
            hosts = sorted((h for h in self.todo if wave_of[h] == w), key=lambda h: names[h])
            if not hosts:
                continue
            migrations = []
            for j in sorted(self.cand, key=lambda j: ctx.inv.vms[j].id):
                dst = next(h for h in self.cand[j] if solver.value(self.at[j, w, h]))
                if dst != where[j]:
                    vm = ctx.inv.vms[j]
                    method = method_for(vm, ctx.inv, ctx.policy) or "cold"
                    migrations.append(Migration(vm.id, names[where[j]], names[dst], method))
                    where[j] = dst
            in_wave = set(hosts)
            stops = [
                Stop(vm.id, names[int(ctx.vm_host0[j])])
                for j, vm in enumerate(ctx.inv.vms)
                if ctx.stuck[j] and int(ctx.vm_host0[j]) in in_wave
            ]
            waves.append(
                Wave(
                    len(waves) + 1, tuple(names[h] for h in hosts), tuple(migrations), tuple(stops)
                )
            )
        return Plan(
            inventory_sha256=inventory_sha256,
            policy=ctx.policy,
            waves=tuple(waves),
            generator={"name": "rollwave-exact"},
        )


def decide(
    ctx: Context,
    params: SolveParams,
    *,
    inventory_sha256: str = "",
    max_cells: int = MAX_CELLS,
    first_dtime: float = FIRST_DTIME,
    later_dtime: float = LATER_DTIME,
    total_dtime: float = TOTAL_DTIME,
) -> Decision:
    """A plan, a proof that none exists (with a minimal set of rule families to blame), or
    "unknown" when CP-SAT runs out of time; "too_large" without solving above `max_cells`."""
    cells = model_cells(ctx)
    if not ctx.todo.size:  # nothing to upgrade: the empty plan
        return Decision("plan", Plan(inventory_sha256, ctx.policy, ()), cells=cells)
    if cells > max_cells:
        return Decision("too_large", cells=cells)
    em = ExactModel(ctx)
    keys = sorted(em.guards)
    dec = Decision("unknown", cells=cells)

    spent = 0.0

    def solve(
        assumed: list[str], dtime: float, model: ExactModel = em
    ) -> tuple[Any, cp_model.CpSolver]:
        nonlocal spent
        dtime = min(dtime, total_dtime - spent)
        if dtime <= 0.01 or params.remaining() <= 0.05:
            return cp_model.UNKNOWN, cp_model.CpSolver()
        model.m.clear_assumptions()
        model.m.add_assumptions([model.guards[k] for k in assumed])
        s = make_solver(params, dtime)
        s.parameters.num_workers = 1  # a core needs a single worker
        s.parameters.interleave_search = False
        dec.solves += 1
        status = run(params, s, model.m)
        spent += s.deterministic_time
        return status, s

    status, s = solve(keys, first_dtime)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        dec.outcome = "plan"
        dec.plan = em.plan(s, inventory_sha256)
        return dec
    if status != cp_model.INFEASIBLE:
        return dec
    index = {em.guards[k].index: k for k in keys}
    core = sorted({index[i] for i in s.sufficient_assumptions_for_infeasibility() if i in index})
    # Deletion: a family whose removal keeps the rest infeasible is not needed.
    minimal = True
    for key in list(core):
        if key not in core:
            continue
        trial = [k for k in core if k != key]
        st, s2 = solve(trial, later_dtime)
        if st == cp_model.INFEASIBLE:
            smaller = {
                index[i] for i in s2.sufficient_assumptions_for_infeasibility() if i in index
            }
            core = sorted(smaller & set(trial)) if smaller else trial
        elif st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            minimal = False
    dec.outcome = "impossible"
    dec.core = tuple(em.families[k] for k in core)
    for key in core:
        text = details(ctx, key)
        if text is not None:
            dec.details[key] = text
    dec.minimal = minimal
    for key in core:
        st, _ = solve([k for k in keys if k != key], later_dtime)
        dec.alone[key] = (
            True
            if st in (cp_model.OPTIMAL, cp_model.FEASIBLE)
            else False
            if st == cp_model.INFEASIBLE
            else None
        )
    # One step instead of dropping the family (one more host a wave, one HA member fewer, N+k-1):
    # is it enough, every other rule kept?
    # (headroom.failures is one setting for every group and class: tried even when relaxing one
    # group's headroom alone is not enough, and once.)
    tried: dict[str, str] = {}
    for key in core:
        step = (
            rules.one_step(ctx.inv, ctx.policy, key)
            if dec.alone.get(key) or key.startswith("headroom:")
            else None
        )
        if step is None:
            continue
        label = step.label
        if label not in tried:
            em2 = ExactModel(build_context(step.inventory, step.policy))
            st, _ = solve(sorted(em2.guards), later_dtime, em2)
            if st in (cp_model.OPTIMAL, cp_model.FEASIBLE):
                tried[label] = f"{label} is enough"
            elif st == cp_model.INFEASIBLE:
                tried[label] = f"{label} is not enough"
            else:
                continue
        dec.steps[key] = tried[label]
    return dec
