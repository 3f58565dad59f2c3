"""Estimates (planner/estimates.py): plain data with two helpers, drain_s and maintenance_s, whose
invariants hold for any figures; and a JSON form read back equal."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.errors import InputError
from planner.estimates import HOWS, Estimates, HostEstimate, How, VmEstimate

seconds = st.floats(0, 1e5, allow_nan=False, allow_infinity=False)


def vm_estimate(vm: str, live_s: float = 100.0, **kw: Any) -> VmEstimate:
    d: dict[str, Any] = {
        "vm": vm,
        "live_s": live_s,
        "live_downtime_s": 0.3,
        "live_bytes": 4e9,
        "live_outcome": "converged",
        "converges": True,
        "dirty_B_s": 1e7,
        "bandwidth_B_s": 1.15e9,
        "cold_s": 2 * live_s,
        "cold_downtime_s": 2 * live_s,
        "forced_after_s": live_s,
        "forced_s": live_s,
        "forced_downtime_s": 0.3,
        "stop_downtime_s": 1500.0,
    }
    d.update(kw)
    return VmEstimate(**d)


def host_estimate(host: str, **kw: Any) -> HostEstimate:
    d: dict[str, Any] = {
        "host": host,
        "upgrade_s": 1200.0,
        "upgrade_p95_s": 1800.0,
        "disable_s": 5.0,
        "enable_s": 5.0,
    }
    d.update(kw)
    return HostEstimate(**d)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Estimates, list[str], dict[str, How]]:
    n = draw(st.integers(0, 12))
    vms = {}
    how: dict[str, How] = {}
    for i in range(n):
        live, cold, forced = draw(seconds), draw(seconds), draw(seconds)
        vms[f"vm-{i}"] = vm_estimate(f"vm-{i}", live, cold_s=cold, forced_s=forced)
        how[f"vm-{i}"] = draw(st.sampled_from(HOWS))
    est = Estimates(
        vms=vms,
        hosts={"h": host_estimate("h", upgrade_s=draw(seconds), upgrade_p95_s=draw(seconds))},
        overhead_s=draw(st.floats(0, 60)),
        k_out=draw(st.integers(1, 4)),
    )
    return est, list(vms), how


@settings(max_examples=200)
@given(cases())
def test_drain_is_a_list_schedule_of_the_moves_on_k_out_slots(
    case: tuple[Estimates, list[str], dict[str, How]],
) -> None:
    est, vms, how = case
    moves = [est.move_s(v, how[v]) for v in vms]
    d = est.drain_s("h", vms, how)
    total, longest = sum(moves), max(moves, default=0.0)
    eps = 1e-6 * (1 + total)
    assert d >= longest - eps  # no move is split
    assert d >= total / est.k_out - eps  # k_out at a time at most
    assert d <= total / est.k_out + longest + eps  # Graham's bound: no slot idles while one waits
    assert d <= total + eps
    assert est.drain_s("h", list(reversed(vms)), how) == pytest.approx(d)  # order does not matter
    one_at_a_time = Estimates(est.vms, est.hosts, est.overhead_s, k_out=1)
    assert one_at_a_time.drain_s("h", vms, how) == pytest.approx(total)
    assert est.drain_s("h", [], how) == 0.0


@settings(max_examples=100)
@given(cases())
def test_maintenance_is_disable_drain_upgrade_enable(
    case: tuple[Estimates, list[str], dict[str, How]],
) -> None:
    est, vms, how = case
    h = est.hosts["h"]
    drain = est.drain_s("h", vms, how)
    assert est.maintenance_s("h", vms, how=how) == pytest.approx(
        h.disable_s + drain + h.upgrade_s + h.enable_s
    )
    assert est.maintenance_s("h", vms, p95=True, how=how) == pytest.approx(
        h.disable_s + drain + h.upgrade_p95_s + h.enable_s
    )


def test_how_picks_the_figures() -> None:
    v = vm_estimate(
        "a", 100.0, cold_s=300.0, cold_downtime_s=300.0, forced_s=150.0, forced_downtime_s=2.0
    )
    est = Estimates({"a": v}, {}, overhead_s=10.0)
    assert [est.move_s("a", h) for h in HOWS] == [110.0, 160.0, 310.0, 0.0]
    assert [v.downtime_s(h) for h in HOWS] == [0.3, 2.0, 300.0, 1500.0]
    assert v.finishes and not vm_estimate("b", live_outcome="aborted").finishes
    with pytest.raises(KeyError, match="no estimate for VM 'zz' on h"):
        est.drain_s("h", ["zz"])


@settings(max_examples=50)
@given(cases(), st.sampled_from([None, 1, 3]), st.text(max_size=10))
def test_json_round_trip(
    case: tuple[Estimates, list[str], dict[str, How]], inbound: int | None, model: str
) -> None:
    est, _, _ = case
    est = Estimates(est.vms, est.hosts, est.overhead_s, inbound, est.k_out, {"h": 1.15e9}, model)
    text = json.dumps(est.to_dict())
    assert Estimates.from_dict(json.loads(text)) == est


def test_bad_json_is_located() -> None:
    est = Estimates({"a": vm_estimate("a")}, {"h": host_estimate("h")}, 10.0, None, 2, {}, "m")
    d = est.to_dict()
    d["vms"][0]["live_s"] = -1
    d["vms"][0]["live_outcome"] = "exploded"
    d["hosts"][0]["enable_s"] = "soon"
    d["k_out"] = 0
    with pytest.raises(InputError) as e:
        Estimates.from_dict(d, "cache.json")
    assert [str(p) for p in e.value.problems] == [
        "hosts[0].enable_s: must be a number, got a string",
        "vms[0].live_s: must be >= 0, got -1",
        "vms[0].live_outcome: is 'exploded', expected one of: converged, post-copy, paused, "
        "aborted, never",
        "k_out: must be positive, got 0",
    ]


def test_core_outcomes_are_the_simulators() -> None:
    from planner.estimates import LIVE_OUTCOMES
    from planner.plan import OUTCOMES
    from sim.migration import OUTCOMES as SIM

    assert LIVE_OUTCOMES == SIM
    assert (*SIM, "cold") == OUTCOMES


def test_figures_are_finite_and_k_out_positive() -> None:
    with pytest.raises(ValueError, match="k_out"):
        Estimates({}, {}, k_out=0)
    assert math.isfinite(Estimates({}, {}).drain_s("h", []))
