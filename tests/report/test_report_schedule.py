"""The estimated schedule: its documented formula, per-host concurrency and wave order."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.report.schedule import EstimateModel, Schedule, estimate_schedule, migration_seconds
from tests.report.support import Case, bundled, tiny_cloud, tiny_plan, tiny_policy, vm

MODEL = EstimateModel(bandwidth_mib_s=1000.0, overhead_s=10.0, upgrade_s=600.0, cold_boot_s=60.0)


def test_live_migration_is_memory_over_bandwidth_plus_overhead() -> None:
    v = vm("x", "a", ram_mb=8192)
    assert migration_seconds(v, "live", MODEL) == (8192 / 1000 + 10, 0.0)


def test_local_disk_adds_its_size_to_a_live_migration() -> None:
    v = vm("x", "a", ram_mb=8192, local_disk=True)  # DISK_GB 20 on local disk
    dur, down = migration_seconds(v, "live", MODEL)
    assert dur == pytest.approx((8192 + 20 * 1024) / 1000 + 10)
    assert down == 0.0


def test_cold_migration_is_down_for_its_whole_duration() -> None:
    v = vm("x", "a", ram_mb=8192, local_disk=10)
    dur, down = migration_seconds(v, "cold", MODEL)
    assert dur == pytest.approx(10 * 1024 / 1000 + 60 + 10)
    assert down == dur


def test_model_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="bandwidth"):
        EstimateModel(bandwidth_mib_s=0)
    with pytest.raises(ValueError, match="upgrade_s"):
        EstimateModel(upgrade_s=-1)


def _max_concurrent(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def _check_invariants(sched: Schedule, k: int) -> None:
    wave = {w.index: w for w in sched.waves}
    # waves back to back, in order
    for a, b in zip(sched.waves, sched.waves[1:], strict=False):
        assert b.start == a.end and b.index > a.index
    by_src: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for m in sched.migrations:
        w = wave[m.wave]
        assert w.start <= m.start <= m.end <= w.end
        by_src[m.src].append((m.start, m.end))
    for spans in by_src.values():
        assert _max_concurrent(spans) <= k
    for h in sched.hosts:
        w = wave[h.wave]
        assert w.start == h.start <= h.drained <= h.end <= w.end
        ends = [e for s, e in by_src.get(h.host, []) if s >= w.start and e <= w.end]
        assert h.drained == max(ends, default=h.start)
    assert sched.makespan_s == (sched.waves[-1].end if sched.waves else 0.0)


def test_one_slot_makes_a_hosts_migrations_serial() -> None:
    sched = estimate_schedule(tiny_cloud(), tiny_plan(), MODEL)
    _check_invariants(sched, 1)
    wave2 = sorted((m.start, m.end) for m in sched.migrations if m.wave == 2)
    assert [s for s, _ in wave2[1:]] == [e for _, e in wave2[:-1]]  # each starts as one ends


def test_two_slots_run_two_at_a_time() -> None:
    plan = tiny_plan(tiny_policy(max_concurrent_live_migrations=2))
    sched = estimate_schedule(tiny_cloud(), plan, MODEL)
    _check_invariants(sched, 2)
    assert _max_concurrent([(m.start, m.end) for m in sched.migrations if m.wave == 2]) == 2
    assert {m.lane for m in sched.migrations} == {0, 1}


def test_stopped_vms_are_down_while_their_host_upgrades() -> None:
    sched = estimate_schedule(tiny_cloud(), tiny_plan(), MODEL)
    (stop,) = sched.stops
    host = next(h for h in sched.hosts if h.host == "a")
    assert (stop.vm, stop.start, stop.end) == ("v3", host.drained, host.end)
    assert stop.downtime_s == MODEL.upgrade_s


def test_the_bundled_example(small: Case) -> None:
    sched = estimate_schedule(small.inventory, small.plan)
    _check_invariants(sched, small.policy.max_concurrent_live_migrations)
    assert len(sched.migrations) == sum(len(w.migrations) for w in small.plan.waves)
    assert {h.host for h in sched.hosts} == set(small.plan.hosts)
    assert sched.makespan_s >= len(small.plan.waves) * EstimateModel().upgrade_s


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(1, 4),
    bw=st.floats(10, 5000),
    overhead=st.floats(0, 60),
    upgrade=st.floats(0, 3600),
)
def test_invariants_hold_for_any_parameters(
    k: int, bw: float, overhead: float, upgrade: float
) -> None:
    case = bundled()
    plan = case.plan
    plan = type(plan)(
        plan.inventory_sha256,
        plan.policy.with_changes(max_concurrent_live_migrations=k),
        plan.waves,
    )
    model = EstimateModel(bandwidth_mib_s=bw, overhead_s=overhead, upgrade_s=upgrade)
    _check_invariants(estimate_schedule(case.inventory, plan, model), k)
