"""The loop's own copies of state and heap operations (kept in sim/loop_state.py so that they run
compiled) agree with the originals, in the Python loop and in the compiled one when it is used."""

from __future__ import annotations

import heapq
import importlib
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.capacity import CapacityModel
from planner.inventory import Inventory
from planner.policy import Headroom
from sim import engine, loop_state
from sim.state import HeadroomState, pack, unpack
from tests.test_sim_state import clouds

LOOPS: list[ModuleType] = [loop_state]
if engine.IMPLEMENTATION.startswith("compiled"):
    LOOPS.append(importlib.import_module("sim._loop_state_c"))


def snapshot(s: HeadroomState) -> tuple[object, ...]:
    return (s.avail, s.room, s.free_p, s.req_p, s.required, s.total, s.caps)


@pytest.mark.parametrize("loop", LOOPS, ids=lambda m: m.__name__)
@settings(max_examples=100)
@given(data=st.data(), cloud=clouds())
def test_set_available_is_the_states_own(
    loop: ModuleType, data: st.DataObject, cloud: tuple[Inventory, Headroom]
) -> None:
    inv, rule = cloud
    model = CapacityModel(inv)
    ours, ref = HeadroomState(model, rule), HeadroomState(model, rule)
    hosts = list(range(len(inv.hosts)))
    for _ in range(data.draw(st.integers(1, 20))):
        h, flag = data.draw(st.sampled_from(hosts)), data.draw(st.booleans())
        if data.draw(st.booleans()):  # some hosts over capacity: their free part is clipped
            demand = [data.draw(st.integers(0, 200)) for _ in model.classes]
            ours.add(h, demand)
            ref.add(h, demand)
        loop.set_available(ours, h, flag)
        ref.set_available(h, flag)
        assert snapshot(ours) == snapshot(ref)


@pytest.mark.parametrize("loop", LOOPS, ids=lambda m: m.__name__)
@given(times=st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.5, 1e9, float("inf")]), max_size=60))
def test_the_event_heap_pops_by_time_then_sequence(loop: ModuleType, times: list[float]) -> None:
    heap: list[object] = []
    ref: list[tuple[float, int, int, int, int]] = []
    popped, expected = [], []
    for seq, t in enumerate(times):
        ev = (t, seq, seq % 11, 3 * seq, seq % 2)
        loop.heap_push(heap, ev)
        heapq.heappush(ref, ev)
        if seq % 3 == 2:  # pops between pushes
            popped.append(loop.heap_pop(heap))
            expected.append(heapq.heappop(ref))
    while heap:
        popped.append(loop.heap_pop(heap))
    expected += sorted(ref)
    assert popped == expected


@pytest.mark.parametrize("loop", LOOPS, ids=lambda m: m.__name__)
@given(values=st.lists(st.integers(-(2**61), 2**61), min_size=1, max_size=5))
def test_unpacked_is_unpack(loop: ModuleType, values: list[int]) -> None:
    x = pack(values)
    assert loop.unpacked(x, len(values)) == unpack(x, len(values)) == values
