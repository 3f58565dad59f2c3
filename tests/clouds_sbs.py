"""A named fixture cloud for side-by-side plans, and a plan the checker accepts.

`six_and_two`: six compute hosts (16 vCPU, 64 GiB) in az1, two old controllers in an HA group
(min_available 1), VMs of 2 vCPU and 4 GiB: a, b on cmp-3; c, d on cmp-4; e on cmp-5; f on
cmp-6 (e and f in a hard anti-affinity group, f pinned to az1). N+1 per AZ, three hosts a wave.

The plan: wave 1 frees cmp-1 and cmp-2 (the new controllers) and cmp-3 (a, b inside the old
cloud to cmp-4); wave 2 frees cmp-4 (its four VMs inside the old cloud to cmp-5: the new cloud's
one compute cannot keep N+1 with a VM); wave 3 empties cmp-5 and cmp-6 across into cmp-3 and
cmp-4, and retires ctl-1 (the old cloud is empty); wave 4 retires ctl-2.
"""

from __future__ import annotations

from dataclasses import replace

from planner.plan import Plan, Wave
from planner.policy import Policy
from tests.clouds import Cloud, Fixture, mv, policy


def sbs_policy() -> Policy:
    return policy(3)


def six_and_two() -> Fixture:
    c = Cloud("six-and-two").hosts_(*(f"cmp-{i}" for i in range(1, 7)))
    c.controller("ctl-1").controller("ctl-2").ha("ctl", ["ctl-1", "ctl-2"], 1)
    for vm, host in (("a", "cmp-3"), ("b", "cmp-3"), ("c", "cmp-4"), ("d", "cmp-4")):
        c.vm(vm, host, vcpu=2, ram_mb=4096)
    c.vm("e", "cmp-5", vcpu=2, ram_mb=4096).vm("f", "cmp-6", vcpu=2, ram_mb=4096, az="az1")
    c.group("ef", members=["e", "f"])
    inv = c.build()
    pol = sbs_policy()
    x = "cross-cloud"
    waves = (
        Wave(
            1,
            ("cmp-1", "cmp-2", "cmp-3"),
            (mv("a", "cmp-3", "cmp-4"), mv("b", "cmp-3", "cmp-4")),
            roles={"cmp-1": "new-controller", "cmp-2": "new-controller", "cmp-3": "new-compute"},
        ),
        Wave(
            2,
            ("cmp-4",),
            tuple(mv(v, "cmp-4", "cmp-5") for v in "abcd"),
            roles={"cmp-4": "new-compute"},
        ),
        Wave(
            3,
            ("cmp-5", "cmp-6", "ctl-1"),
            (
                mv("a", "cmp-5", "cmp-3", x),
                mv("b", "cmp-5", "cmp-4", x),
                mv("c", "cmp-5", "cmp-3", x),
                mv("d", "cmp-5", "cmp-4", x),
                mv("e", "cmp-5", "cmp-3", x),
                mv("f", "cmp-6", "cmp-4", x),
            ),
            roles={"cmp-5": "new-compute", "cmp-6": "new-compute", "ctl-1": "retired"},
        ),
        Wave(4, ("ctl-2",), roles={"ctl-2": "retired"}),
    )
    plan = Plan("", pol, waves, mode="side-by-side", az_map={"az1": "nova"})
    return Fixture("six_and_two", inv, pol, plan)


def edit_wave(plan: Plan, index: int, **changes: object) -> Plan:
    """`plan` with wave `index` changed."""
    return replace(
        plan,
        waves=tuple(replace(w, **changes) if w.index == index else w for w in plan.waves),  # type: ignore[arg-type]
    )
