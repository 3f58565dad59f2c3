"""`solver.reroute`: another destination for one VM leaving a wave's host, the greedy planner's
preference judged by the checker (the executor's re-planner uses it mid-wave and for the canary).
"""

from __future__ import annotations

from dataclasses import replace

from planner.executor import view as views
from planner.plan import Migration, Stop
from solver.reroute import Reroute, reroute
from tests.clouds import NAMED, Cloud, policy


def test_find_destination_prefers_upgraded_hosts_and_honours_avoid() -> None:
    fx = NAMED["three_plus_spare"]()
    inv = fx.inventory
    # cmp-4 is upgraded: the first choice for a VM leaving cmp-1
    prog = views.Progress(frozenset({"cmp-4"}), frozenset(), frozenset())
    view, pol = views.planning_view(inv, fx.policy, prog)
    other = (Migration("vm-1b", "cmp-1", "cmp-4"),)
    got = reroute(view, pol, "vm-1a", wave_hosts=("cmp-1",), others=other, avoid={"cmp-4"})
    assert got is not None and got[0] in ("cmp-2", "cmp-3")
    best = reroute(view, pol, "vm-1a", wave_hosts=("cmp-1",), others=other, avoid=set())
    assert best == ("cmp-4", "live")


def test_find_destination_none_when_the_checker_rejects_every_host() -> None:
    c = Cloud("tight").host("a", ram_mb=16384).host("b", ram_mb=16384).host("c", ram_mb=8192)
    c.vm("v1", "a", ram_mb=12288).vm("v2", "b", ram_mb=6144)
    inv = c.build()
    pol = policy(1, failures=0)
    assert reroute(inv, pol, "v1", wave_hosts=("a",), avoid=set()) is None
    assert reroute(inv, pol, "v2", wave_hosts=("b",), avoid=set()) == ("c", "live")


def two_spares(room_mb: int = 8192) -> Cloud:
    """`a` holds two VMs of 8 GB, `b` and `c` are empty with `room_mb` each."""
    c = Cloud("spares").host("a", ram_mb=32768).host("b", ram_mb=room_mb)
    return c.host("c", ram_mb=room_mb).vm("v1", "a", ram_mb=8192).vm("v2", "a", ram_mb=8192)


def test_the_waves_other_moves_take_their_room() -> None:
    """A host's whole evacuation is the wave: v2's move is counted, so v1 goes elsewhere."""
    inv = two_spares().build()
    pol = policy(1, failures=0)
    for taken, free in (("b", "c"), ("c", "b")):
        moves = (Migration("v2", "a", taken),)
        got = reroute(inv, pol, "v1", wave_hosts=("a",), others=moves)
        assert got == Reroute(free, "live")
        assert reroute(inv, pol, "v1", wave_hosts=("a",), others=moves, avoid={free}) is None
    # without v2's move the wave leaves v2 behind: the checker rejects every candidate
    assert reroute(inv, pol, "v1", wave_hosts=("a",)) is None


def test_only_limits_the_hosts_proposed() -> None:
    inv = two_spares().build()
    pol = policy(1, failures=0)
    moves = (Migration("v2", "a", "b"),)
    assert reroute(inv, pol, "v1", wave_hosts=("a",), others=moves, only={"c"}) == ("c", "live")
    assert reroute(inv, pol, "v1", wave_hosts=("a",), others=moves, only={"b"}) is None  # full
    assert reroute(inv, pol, "v1", wave_hosts=("a",), others=moves, only={"a"}) is None  # own


def test_the_method_follows_the_vm_and_a_vm_that_cannot_move_has_none() -> None:
    c = two_spares(room_mb=9216).vm("v3", "a", ram_mb=1024, status="SHUTOFF")
    inv = c.vm("v4", "a", ram_mb=1024, migration="none").build()
    pol = policy(1, failures=0, allow_stop=True)
    moves = (Migration("v1", "a", "b"), Migration("v2", "a", "c"))
    stops = (Stop("v4", "a"),)
    got = reroute(inv, pol, "v3", wave_hosts=("a",), others=moves, stops=stops)
    assert got is not None and got.method == "cold"
    assert reroute(inv, pol, "v4", wave_hosts=("a",), others=moves) is None
    assert reroute(inv, pol, "nope", wave_hosts=("a",), others=moves) is None
    cold = replace(
        inv, vms=tuple(replace(v, migration="cold") if v.id == "v3" else v for v in inv.vms)
    )
    active = replace(
        cold, vms=tuple(replace(v, status="ACTIVE") if v.id == "v3" else v for v in cold.vms)
    )
    got = reroute(active, pol, "v3", wave_hosts=("a",), others=moves, stops=stops)
    assert got is not None and got.method == "cold"  # ACTIVE, but it may only move cold
    live = replace(
        inv, vms=tuple(replace(v, status="ACTIVE") if v.id == "v3" else v for v in inv.vms)
    )
    got = reroute(live, pol, "v3", wave_hosts=("a",), others=moves, stops=stops)
    assert got is not None and got.method == "live"
