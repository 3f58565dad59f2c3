"""The core changes the planner brought: one definition of the headroom requirement, scope groups
computed once per capacity model, the first/last tier bound on waves; and the wave phase's
aggregate view of headroom agreeing with the core's."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.bounds import lower_bounds
from planner.capacity import CapacityModel, headroom, required_headroom, scope_groups
from planner.generate import GenerateSpec, default_policy, generate
from planner.policy import Headroom
from solver.aggregate import build_aggregates, evaluate, required
from solver.context import build_context
from tests import solver_clouds as sc


@given(
    caps=st.lists(st.integers(0, 10_000), min_size=0, max_size=12),
    k=st.integers(0, 3),
    pct=st.sampled_from([0.0, 5.0, 12.5, 33.3]),
)
def test_required_headroom_is_the_k_largest_and_the_reserve(
    caps: list[int], k: int, pct: float
) -> None:
    need_k, need_r = required_headroom(np.array(caps, dtype=np.int64), Headroom(k, "az", pct))
    assert need_k == sum(sorted(caps, reverse=True)[:k])
    assert need_r == int(np.ceil(sum(caps) * pct / 100 - 1e-9))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 1000), k=st.integers(0, 2), pct=st.sampled_from([0.0, 10.0]))
def test_wave_phase_requirement_matches_the_core(seed: int, k: int, pct: float) -> None:
    spec = GenerateSpec(hosts=10, vms_per_host=4, seed=seed)
    inv = generate(spec)
    policy = default_policy(spec).with_changes(
        **{"headroom.failures": k, "headroom.reserve_percent": pct}
    )
    ctx = build_context(inv, policy)
    agg = build_aggregates(ctx)
    rng = np.random.default_rng(seed)
    down = rng.random(ctx.H) < 0.3
    rows = headroom(CapacityModel(inv), policy.headroom, down)
    gi = {n: i for i, n in enumerate(ctx.group_names)}
    for r in rows:
        assert required(agg, gi[r.group], ctx.classes.index(r.rc), down) == r.required


def test_aggregate_free_matches_the_core_when_vms_stay_in_their_group() -> None:
    """Take the 4 hosts of three_plus_spare down one by one, moving VMs by hand within the AZ:
    the wave phase's free and required equal `capacity.headroom`'s at every step."""
    cloud = sc.three_plus_spare()
    ctx = build_context(cloud.inventory, cloud.policy)
    agg = build_aggregates(ctx)
    order = ["cmp-spare", "cmp-a", "cmp-b", "cmp-c"]
    waves = [[ctx.model.host_index[h]] for h in order]
    free, req = evaluate(agg, waves)
    model = CapacityModel(cloud.inventory)
    for w, h in enumerate(order):
        src = model.host_index[h]
        dst = model.host_index[order[w - 1]] if w else None
        for j in np.flatnonzero(model.vm_host == src):
            model.move(int(j), dst if dst is not None else model.host_index["cmp-spare"])
        down = np.zeros(len(model.host_names), dtype=bool)
        down[src] = True
        rows = {r.rc: r for r in headroom(model, cloud.policy.headroom, down)}
        for c, rc in enumerate(ctx.classes):
            assert free[w, 0, c] == rows[rc].free
            assert req[w, 0, c] == rows[rc].required


def test_scope_groups_are_computed_once_per_model_and_agree() -> None:
    inv = generate(GenerateSpec(hosts=8, azs=2, seed=1))
    model = CapacityModel(inv)
    a = model.scope_groups("az")
    assert a is model.scope_groups("az")
    names, group = scope_groups(inv, "az")
    assert a[0] == names and (a[1] == group).all()
    assert model.copy().scope_groups("az") is a


def test_controllers_first_add_their_waves_to_the_bound() -> None:
    """Three controllers, one a wave (HA), before 100 computes at 5 a wave: the third wave
    holds the last controller and 4 computes, then 96 / 5 -> 20 more: 23, not 21."""
    spec = GenerateSpec(hosts=100, seed=0)
    lb = lower_bounds(generate(spec), default_policy(spec))
    assert lb.wave_bounds["max_hosts_per_wave"] == 21
    assert lb.wave_bounds["order (first/last)"] == 23
    assert lb.waves == 23


def test_an_internal_cp_sat_error_is_answered_as_model_invalid() -> None:
    """CP-SAT once raised `IndexError: absl::btree_map::at` on a tiny random cloud's model: `run`
    records it and answers MODEL_INVALID, so the planner's fallback runs instead of a crash."""
    from ortools.sat.python import cp_model

    from solver.params import SolveParams, run

    class Failing(cp_model.CpSolver):
        def solve(self, model: object, callback: object = None) -> cp_model.CpSolverStatus:
            raise IndexError("absl::btree_map::at")

    m = cp_model.CpModel()
    m.new_int_var(0, 1, "x")
    params = SolveParams()
    assert run(params, Failing(), m) == cp_model.MODEL_INVALID
    assert params.solver_errors == ["IndexError: absl::btree_map::at"]
    assert run(params, cp_model.CpSolver(), m) == cp_model.OPTIMAL  # a real solve is untouched
    assert len(params.solver_errors) == 1
