"""The greedy planner does not give up while it has work left: when every host order leaves
hosts that cannot go down, it repairs the best partial plan around them (undo its last waves,
form them again with the blocking hosts first), bounded by counted work, seeded."""

from __future__ import annotations

import pytest

from planner.checker import check_plan
from planner.errors import InfeasibleError
from planner.generate import default_policy, generate
from planner.inventory import Inventory
from planner.plan import Plan
from planner.policy import Policy
from solver.greedy import greedy_plan
from tests.solver_clouds import _trace


def _cloud(seed: int) -> tuple[Inventory, Policy]:
    """A 30-host trace-shaped cloud at about 85% memory: each VM its own size, most VMs in
    anti-affinity services, SR-IOV VFs on some hardware models."""
    spec = _trace(30, 15, 2, seed, utilisation=0.9)
    return generate(spec), default_policy(spec)


def _moves(plan: Plan) -> list[tuple[tuple[str, ...], tuple[tuple[str, str, str], ...]]]:
    return [(w.hosts, tuple((m.vm, m.src, m.dst) for m in w.migrations)) for w in plan.waves]


def test_the_repair_finds_a_plan_where_every_host_order_got_stuck() -> None:
    inv, pol = _cloud(35)
    with pytest.raises(InfeasibleError, match="no host of the remaining"):
        greedy_plan(inv, pol, repair_work=0)
    plan = greedy_plan(inv, pol)
    report = check_plan(inv, plan, digest="")
    assert report.ok, report.violations[:3]
    assert {h.name for h in inv.compute_hosts if h.enabled} <= {
        h for w in plan.waves for h in w.hosts
    }


def test_the_repair_is_deterministic_by_seed() -> None:
    inv, pol = _cloud(35)
    for seed in (0, 3):
        assert _moves(greedy_plan(inv, pol, seed=seed)) == _moves(greedy_plan(inv, pol, seed=seed))


def test_a_failed_repair_says_how_far_it_got_and_is_not_a_proof() -> None:
    inv, pol = _cloud(13)
    with pytest.raises(InfeasibleError) as err:
        greedy_plan(inv, pol, repair_work=2)
    assert not err.value.proven
    assert "repair(s) around the blocking hosts got as far as" in err.value.reasons[0]
