"""The side-by-side simulation (`sim.crosscloud`): a cross-cloud move's time and downtime, the
lanes, the control plane and joins, per cloud, its lower bound, and the model's section."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from planner.errors import InputError
from planner.plan import Migration, Plan, Wave
from sim.crosscloud import (
    CrossCloudResult,
    CrossCloudSettings,
    cross_time,
    simulate_side_by_side,
)
from sim.model import DEFAULT, model_from_dict
from tests.clouds import Cloud, policy
from tests.clouds_sbs import six_and_two


def test_a_cross_cloud_move_is_stop_copy_boot_verify_all_down() -> None:
    inv = Cloud().host("h1").vm("v", "h1", disk_gb=40).build()
    vm = replace(inv.vm("v"), local_disk=True)
    cc = CrossCloudSettings(copy_gbps=1.0, image_overhead_s=60.0, verify_s=30.0)
    copy = 40 * 1024**3 / (1e9 / 8)
    assert cross_time(vm, cc, 10.0, 20.0) == pytest.approx(10 + 60 + copy + 20 + 30)
    # no local disk: the memory image (8 GiB) is what crosses
    mem = 8192 * 1024**2 / (1e9 / 8)
    assert cross_time(inv.vm("v"), cc, 0.0, 0.0) == pytest.approx(60 + mem + 30)


def _fixture_run(**cc: Any) -> CrossCloudResult:
    fx = six_and_two()
    model = replace(DEFAULT, crosscloud=CrossCloudSettings(**cc))
    return simulate_side_by_side(fx.inventory, fx.plan, model)


def test_the_fixture_plan_in_time() -> None:
    res = _fixture_run(control_plane_s=1000.0, join_s=100.0, parallel=2)
    w1, w2, w3, w4 = res.waves
    # wave 1: two moves inside the old cloud, then the control plane (the slowest role)
    assert w1.end_s == pytest.approx(w1.drained_s + 1000.0)
    assert res.control_plane_ready_s == pytest.approx(w1.drained_s + 1000.0)
    # wave 2 starts when wave 1 is done; its host joins as a compute
    assert w2.start_s == w1.end_s and w2.end_s == pytest.approx(w2.drained_s + 100.0)
    # wave 3: six crossings on two lanes, three after each other
    cross = [m for m in res.moves if m.method == "cross-cloud"]
    assert len(cross) == 6 and all(
        m.wave == 3 and m.downtime_s == pytest.approx(m.end_s - m.start_s) for m in cross
    )
    assert max(m.end_s for m in cross) == pytest.approx(w3.start_s + 3 * cross[0].downtime_s)
    # wave 4 retires ctl-2: nothing to wait for
    assert w4.end_s == w4.start_s == res.makespan_s
    assert res.per_cloud["new"]["vms_arrived"] == 6
    assert res.old_empty_s == pytest.approx(max(m.end_s for m in cross))
    assert res.makespan_s >= res.lower_bound_s > 1000.0


def test_more_lanes_never_take_longer() -> None:
    one = _fixture_run(parallel=1)
    four = _fixture_run(parallel=4)
    assert four.makespan_s < one.makespan_s
    assert four.total_downtime_s == pytest.approx(one.total_downtime_s)


def test_a_plan_without_vms_has_a_zero_bound() -> None:
    inv = Cloud().hosts_("h1", "h2").build()
    plan = Plan(
        "",
        policy(2),
        (Wave(1, ("h1", "h2"), roles={"h1": "new-controller", "h2": "new-controller"}),),
        mode="side-by-side",
    )
    r = simulate_side_by_side(inv, plan, DEFAULT)
    assert r.lower_bound_s == 0.0 and r.makespan_s == DEFAULT.crosscloud.control_plane_s


def test_inside_moves_use_the_live_migration_model() -> None:
    fx = six_and_two()
    plan = fx.plan
    r = simulate_side_by_side(fx.inventory, plan, DEFAULT)
    live = [m for m in r.moves if m.method == "live"]
    assert len(live) == 6
    assert all(0 < m.downtime_s < 1.0 < m.end_s - m.start_s for m in live)
    assert isinstance(plan.waves[0].migrations[0], Migration)


def test_the_model_files_crosscloud_section() -> None:
    m = model_from_dict(
        {
            "format_version": "1.0",
            "kind": "sim-model",
            "crosscloud": {"copy_gbps": 5, "parallel": 8},
        }
    )
    assert m.crosscloud.copy_gbps == 5.0 and m.crosscloud.parallel == 8
    assert m.to_dict()["crosscloud"]["parallel"] == 8
    assert "crosscloud" not in DEFAULT.to_dict()  # in-place runs' effective models as before
    with pytest.raises(InputError) as info:
        model_from_dict(
            {"format_version": "1.0", "kind": "sim-model", "crosscloud": {"parallel": 0}}, "m.yaml"
        )
    assert [p.location for p in info.value.problems] == ["crosscloud.parallel"]


def test_the_bound_counts_the_joins_that_follow_each_other() -> None:
    # Six compute hosts, three a wave: besides the controllers' wave at least one more wave
    # ends with a join; six equal crossings on two lanes take three of them.
    res = _fixture_run(control_plane_s=1000.0, join_s=100.0, parallel=2)
    d = next(m.downtime_s for m in res.moves if m.method == "cross-cloud")
    assert res.lower_bound_s == pytest.approx(1000.0 + 3 * d + 100.0)
    assert res.makespan_s >= res.lower_bound_s
