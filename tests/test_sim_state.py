"""The simulator's incremental headroom state agrees with capacity.CapacityModel + headroom."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.capacity import CapacityModel, headroom
from planner.inventory import VM, Host, Inventory
from planner.policy import Headroom
from sim.state import HeadroomState


@st.composite
def clouds(draw: st.DrawFn) -> tuple[Inventory, Headroom]:
    n = draw(st.integers(2, 7))
    hosts = []
    for i in range(n):
        hosts.append(
            Host(
                name=f"h{i}",
                role="compute",
                az=draw(st.sampled_from(["az1", "az2", None])),
                rack=None,
                aggregates=(),
                version="1",
                enabled=draw(st.booleans()) or i == 0,
                up=True,
                capacity={
                    "VCPU": draw(st.integers(1, 64)),
                    "MEMORY_MB": draw(st.integers(1, 64)) * 1024,
                },
                allocation_ratio={"VCPU": draw(st.sampled_from([1.0, 4.0, 16.0]))},
            )
        )
    hosts.append(Host("ctl", "controller", "az1", None, (), "1", True, True, {}))
    vms = []
    for j in range(draw(st.integers(0, 12))):
        vms.append(
            VM(
                id=f"v{j}",
                name=f"v{j}",
                project="p",
                host=f"h{draw(st.integers(0, n - 1))}",
                status="ACTIVE",
                resources={
                    "VCPU": draw(st.integers(1, 16)),
                    "MEMORY_MB": draw(st.integers(1, 16)) * 1024,
                },
            )
        )
    rule = Headroom(
        failures=draw(st.integers(0, 3)),
        scope=draw(st.sampled_from(["az", "cloud"])),
        reserve_percent=draw(st.sampled_from([0.0, 5.0, 12.5, 33.3])),
    )
    return Inventory("random", "2026-01-01T00:00:00Z", tuple(hosts), tuple(vms)), rule


def assert_agrees(inv: Inventory, rule: Headroom, state: HeadroomState) -> None:
    ref = CapacityModel(inv)
    ref.used = np.array(state.used, dtype=np.int64).reshape(ref.cap.shape)
    ref.free = ref.cap - ref.used
    down = ref.available & ~np.array(state.avail, dtype=bool)
    rows = headroom(ref, rule, down)
    gi = {g: i for i, g in enumerate(state.groups)}
    assert len(rows) == len(state.groups) * len(state.classes)
    for r in rows:
        g, c = gi[r.group], state.classes.index(r.rc)
        assert state.free[g][c] == r.free, (r, state.free[g])
        assert state.required[g][c] == r.required, (r, state.required[g])
    for g, name in enumerate(state.groups):
        assert state.group_ok(g) == all(r.ok for r in rows if r.group == name)
    over = ref.over_capacity()
    for h in range(len(inv.hosts)):
        assert state.over(h) == [int(c) for c in np.flatnonzero(over[h])]


@settings(max_examples=200)
@given(data=st.data(), cloud=clouds())
def test_incremental_headroom_equals_the_core(
    data: st.DataObject, cloud: tuple[Inventory, Headroom]
) -> None:
    inv, rule = cloud
    model = CapacityModel(inv)
    state = HeadroomState(model, rule)
    assert_agrees(inv, rule, state)
    computes = [i for i, h in enumerate(inv.hosts) if h.is_compute]
    demands = model.demand.tolist() or [[1] * len(model.classes)]
    added: list[tuple[int, list[int]]] = []
    for _ in range(data.draw(st.integers(1, 25))):
        op = data.draw(st.sampled_from(["add", "remove", "down", "up"]))
        h = data.draw(st.sampled_from(computes))
        if op == "add":  # an in-flight VM arriving (it may overfill the host)
            d = data.draw(st.sampled_from(demands))
            fits = state.add(h, d)
            added.append((h, d))
            assert fits == (not state.over(h))
        elif op == "remove" and added:
            hh, d = added.pop(data.draw(st.integers(0, len(added) - 1)))
            state.remove(hh, d)
        elif op == "down":
            state.set_available(h, False)
        elif op == "up" and inv.hosts[h].available:
            state.set_available(h, True)
        assert_agrees(inv, rule, state)


def test_agreement_check_can_fail() -> None:
    """The comparison above catches a wrong sum."""
    h = Host("h", "compute", "az1", None, (), "1", True, True, {"VCPU": 8})
    inv = Inventory("one", "t", (h,), ())
    rule = Headroom(failures=0)
    state = HeadroomState(CapacityModel(inv), rule)
    state.free_p[0] += 1  # one more unit of the first class
    try:
        assert_agrees(inv, rule, state)
    except AssertionError:
        return
    raise AssertionError("a corrupted state went unnoticed")
