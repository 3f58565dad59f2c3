"""The capacity model against hand computations and brute force: Placement's effective capacity,
the vectorised fit test, moves, and the headroom (N+k, reserve %) rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.capacity import NO_AZ, CapacityModel, format_amount, headroom, scope_groups
from planner.checker import check_plan
from planner.inventory import Inventory, effective_capacity
from planner.policy import Headroom
from tests.clouds import Cloud, make_plan, mv, policy, wave
from tests.strategies import clouds


# ---------------------------------------------------------------------------------------------
# Placement's rule
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("total", "reserved", "ratio", "effective"),
    [
        (64, 0, 4.0, 256),
        (10, 2, 1.5, 12),
        (7, 0, 0.5, 3),  # 3.5: a VM of 4 does not fit in Placement either
        (65536, 4096, 1.0, 61440),
        (100, 100, 16.0, 0),
        # Placement compares used + amount <= 100 * 0.29 = 28.999999999999996 in floating point:
        # 28 fits, 29 does not, exactly as the floor says.
        (100, 0, 0.29, 28),
        (48, 0, 1.1, 52),  # 52.800000000000004
    ],
)
def test_effective_capacity_is_placements(
    total: int, reserved: int, ratio: float, effective: int
) -> None:
    assert effective_capacity(total, reserved, ratio) == effective
    capacity = (total - reserved) * ratio  # Placement's own check, in floats
    assert effective <= capacity < effective + 1


def test_model_arrays_follow_the_inventory() -> None:
    inv = (
        Cloud()
        .host("a", capacity={"VCPU": 8, "MEMORY_MB": 16384}, ratio={"VCPU": 2.0})
        .host("b", capacity={"VCPU": 4, "MEMORY_MB": 8192, "CUSTOM_GPU": 2})
        .controller("ctl")
        .vm("v1", "a", resources={"VCPU": 3, "MEMORY_MB": 4096})
        .vm("v2", "b", resources={"VCPU": 1, "MEMORY_MB": 1024, "CUSTOM_GPU": 1})
        .build()
    )
    m = CapacityModel(inv)
    assert m.classes == ("VCPU", "MEMORY_MB", "CUSTOM_GPU")
    assert m.cap.tolist() == [[16, 16384, 0], [4, 8192, 2], [0, 0, 0]]
    assert m.used.tolist() == [[3, 4096, 0], [1, 1024, 1], [0, 0, 0]]
    assert m.free.tolist() == [[13, 12288, 0], [3, 7168, 1], [0, 0, 0]]
    assert m.compute.tolist() == [True, True, False]
    assert m.fits(m.vm_index["v2"]).tolist() == [False, True, False]  # only b has a GPU
    m2 = m.copy()
    m2.move(m.vm_index["v1"], m.host_index["b"])
    assert m2.used.tolist()[1] == [4, 5120, 1]
    assert m.used.tolist()[1] == [1, 1024, 1]  # the copy is independent
    assert m2.over_capacity().tolist() == [[False] * 3, [False] * 3, [False] * 3]
    m2.move(m.vm_index["v1"], m.host_index["b"])  # moving to where it is changes nothing
    assert m2.used.tolist()[1] == [4, 5120, 1]


def test_format_amount_uses_operator_units() -> None:
    assert format_amount("MEMORY_MB", 65536) == "64.0 GiB"
    assert format_amount("DISK_GB", 1000) == "1,000 GB"
    assert format_amount("VCPU", 12) == "12 vCPU"
    assert format_amount("CUSTOM_GPU", 2) == "2 CUSTOM_GPU"


# ---------------------------------------------------------------------------------------------
# fits: vectorised equals brute force
# ---------------------------------------------------------------------------------------------
def brute_fits(inv: Inventory, m: CapacityModel, vm: int) -> list[bool]:
    demand = inv.vms[vm].resources
    out = []
    for i, h in enumerate(inv.hosts):
        used = {rc: 0 for rc in m.classes}
        for j, v in enumerate(inv.vms):
            if int(m.vm_host[j]) == i:
                for rc, n in v.resources.items():
                    used[rc] += n
        out.append(
            h.is_compute
            and all(used[rc] + demand.get(rc, 0) <= h.effective(rc) for rc in m.classes)
        )
    return out


@settings(max_examples=60)
@given(clouds(max_fill=0.95), st.data())
def test_fits_equals_a_brute_force_check(inv: Inventory, data: st.DataObject) -> None:
    if not inv.vms:
        return
    m = CapacityModel(inv)
    computes = [i for i, h in enumerate(inv.hosts) if h.is_compute]
    # Shuffle some VMs around first (over capacity is fine here), then ask about every VM.
    for _ in range(data.draw(st.integers(0, 5))):
        m.move(data.draw(st.integers(0, len(inv.vms) - 1)), data.draw(st.sampled_from(computes)))
    cand = np.array(
        data.draw(st.lists(st.booleans(), min_size=len(inv.hosts), max_size=len(inv.hosts)))
    )
    for j in range(len(inv.vms)):
        want = brute_fits(inv, m, j)
        assert m.fits(j).tolist() == want
        assert m.fits(j, cand).tolist() == [w and bool(c) for w, c in zip(want, cand, strict=True)]
        assert m.fits_demand(m.demand[j]).tolist() == want


# ---------------------------------------------------------------------------------------------
# headroom
# ---------------------------------------------------------------------------------------------
def rows(
    inv: Inventory, rule: Headroom, down: frozenset[str] | set[str] = frozenset()
) -> dict[tuple[str, str], tuple[int, int]]:
    m = CapacityModel(inv)
    mask = np.array([h in down for h in m.host_names])
    return {(r.group, r.rc): (r.free, r.required) for r in headroom(m, rule, mask)}


def test_headroom_by_hand() -> None:
    # az1: a (16 VCPU, 10 used), b (32, 4 used), c (16, 20 used: over capacity, counts as 0 free)
    inv = (
        Cloud()
        .host("a", capacity={"VCPU": 16})
        .host("b", capacity={"VCPU": 32})
        .host("c", capacity={"VCPU": 16})
        .vm("va", "a", resources={"VCPU": 10})
        .vm("vb", "b", resources={"VCPU": 4})
        .vm("vc", "c", resources={"VCPU": 20})
        .build()
    )
    free = 6 + 28 + 0
    assert rows(inv, Headroom(0)) == {("az1", "VCPU"): (free, 0)}
    assert rows(inv, Headroom(1)) == {("az1", "VCPU"): (free, 32)}
    assert rows(inv, Headroom(2)) == {("az1", "VCPU"): (free, 48)}
    assert rows(inv, Headroom(9)) == {("az1", "VCPU"): (free, 64)}  # k > hosts: all of them
    # reserve % of the total effective capacity (64), rounded up: 10% -> 6.4 -> 7
    assert rows(inv, Headroom(0, "az", 10.0)) == {("az1", "VCPU"): (free, 7)}
    # the larger of the two requirements
    assert rows(inv, Headroom(1, "az", 60.0)) == {("az1", "VCPU"): (free, 39)}
    # b down: only a and c count, for free and for the largest host
    assert rows(inv, Headroom(1), {"b"}) == {("az1", "VCPU"): (6, 16)}
    assert rows(inv, Headroom(1, "az", 50.0), {"b"}) == {("az1", "VCPU"): (6, 16)}


def test_headroom_scope_and_unavailable_hosts() -> None:
    inv = (
        Cloud()
        .host("a1", az="az1", capacity={"VCPU": 16})
        .host("a2", az="az1", capacity={"VCPU": 8})
        .host("b1", az="az2", capacity={"VCPU": 32})
        .host("b2", az="az2", capacity={"VCPU": 64}, enabled=False)  # counts for nothing
        .host("b3", az="az2", capacity={"VCPU": 64}, up=False)
        .controller("ctl", az="az2")
        .vm("v", "a1", resources={"VCPU": 4})
        .vm("w", "b2", resources={"VCPU": 4})
        .build()
    )
    assert rows(inv, Headroom(1, "az")) == {("az1", "VCPU"): (20, 16), ("az2", "VCPU"): (32, 32)}
    assert rows(inv, Headroom(1, "cloud")) == {("cloud", "VCPU"): (52, 32)}
    assert rows(inv, Headroom(2, "cloud"), {"b1"}) == {("cloud", "VCPU"): (20, 24)}
    assert rows(inv, Headroom(1, "az"), {"b1"}) == {
        ("az1", "VCPU"): (20, 16),
        ("az2", "VCPU"): (0, 0),  # no available host left in az2: nothing to protect
    }
    names, group = scope_groups(inv, "az")
    assert names == ("az1", "az2")
    assert group.tolist() == [0, 0, 1, 1, 1, -1]


def test_hosts_without_an_az_are_a_scope_group_of_their_own() -> None:
    inv = (
        Cloud()
        .host("a", az="az1", capacity={"VCPU": 16})
        .host("n1", az=None, capacity={"VCPU": 16})
        .host("n2", az=None, capacity={"VCPU": 16})
        .vm("v", "n1", resources={"VCPU": 4})
        .build()
    )
    assert rows(inv, Headroom(1, "az")) == {("az1", "VCPU"): (16, 16), (NO_AZ, "VCPU"): (28, 16)}
    names, group = scope_groups(inv, "az")
    assert (names, group.tolist()) == (("az1", NO_AZ), [0, 1, 1])
    # ... so the checker guards them like any AZ: with either of the two down, N+1 is lost.
    plan = make_plan(
        policy(1), wave(1, ["a"]), wave(2, ["n2"]), wave(3, ["n1"], [mv("v", "n1", "n2")])
    )
    report = check_plan(inv, plan)
    assert [(v.rule, v.wave, v.objects) for v in report.violations] == [
        ("headroom", 2, (NO_AZ, "VCPU")),
        ("headroom", 3, (NO_AZ, "VCPU")),
    ]


def brute_headroom(
    inv: Inventory, rule: Headroom, down: set[str]
) -> dict[tuple[str, str], tuple[int, int]]:
    """The rule as the issue words it, with plain Python."""
    groups: dict[str, list[str]] = {}
    for h in inv.hosts:
        if h.is_compute and h.enabled and h.up and h.name not in down:
            key = "cloud" if rule.scope == "cloud" else (h.az or NO_AZ)
            groups.setdefault(key, []).append(h.name)
    if rule.scope == "cloud":
        groups.setdefault("cloud", [])
    else:
        for az in inv.azs:
            groups.setdefault(az, [])
        if any(h.is_compute and h.az is None for h in inv.hosts):
            groups.setdefault(NO_AZ, [])
    out = {}
    for g, names in groups.items():
        for rc in inv.resource_classes:
            caps = [inv.host(n).effective(rc) for n in names]
            free = sum(max(inv.host(n).effective(rc) - inv.usage(n).get(rc, 0), 0) for n in names)
            k_largest = sum(sorted(caps, reverse=True)[: rule.failures])
            reserve = math.ceil(sum(caps) * rule.reserve_percent / 100 - 1e-9)
            out[(g, rc)] = (free, max(k_largest, reserve))
    return out


@settings(max_examples=80)
@given(
    clouds(max_fill=0.95),
    st.integers(0, 3),
    st.sampled_from(["az", "cloud"]),
    st.sampled_from([0.0, 5.0, 12.5, 33.3, 100.0]),
    st.data(),
)
def test_headroom_equals_a_brute_force_computation(
    inv: Inventory, k: int, scope: str, pct: float, data: st.DataObject
) -> None:
    down = set(data.draw(st.lists(st.sampled_from([h.name for h in inv.hosts]), max_size=3)))
    rule = Headroom(k, scope, pct)  # type: ignore[arg-type]
    assert rows(inv, rule, down) == brute_headroom(inv, rule, down)
