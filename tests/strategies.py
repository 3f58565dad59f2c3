"""Hypothesis strategies: random small clouds and policies, for property-based tests.

`clouds()` draws 2-7 compute hosts (one or two AZs, racks of two, mixed sizes, reserved memory,
allocation ratios, aggregates, some hosts already upgraded, disabled or down), VMs filled to a
moderate utilisation (SHUTOFF, cold-only and unmovable ones among them, some pinned to their AZ
or bound to an aggregate), hard and soft server groups that the inventory obeys, and sometimes
three controllers in an HA group. `policies(inv)` draws a policy for such a cloud. Everything is
small so that shrinking gives readable counter-examples.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from planner.inventory import VM, GroupPolicy, HAGroup, Host, Inventory, ServerGroup
from planner.policy import Headroom, Policy
from tests.clouds import NEW, OLD

# (VCPU, MEMORY_MB, DISK_GB): three hardware generations.
HOST_SIZES = ((16, 32768, 500), (32, 65536, 1000), (48, 131072, 2000))
# (VCPU, MEMORY_MB, DISK_GB): many small flavors, a few large.
FLAVORS = ((1, 1024, 10), (1, 2048, 20), (2, 4096, 40), (4, 8192, 80), (8, 16384, 160))


@st.composite
def clouds(
    draw: st.DrawFn,
    min_hosts: int = 2,
    max_hosts: int = 7,
    max_vms_per_host: int = 4,
    max_fill: float = 0.6,
    azs: int | None = None,
    controllers: bool | None = None,
    groups: bool | None = None,
    unavailable: bool | None = None,
) -> Inventory:
    """A random small cloud; `azs`, `controllers` (an HA trio), `groups` (a hard anti-affinity
    group and a hard affinity pair) and `unavailable` (a disabled host) force a feature in or
    out; None draws it."""
    n_az = azs if azs is not None else draw(st.integers(1, 2))
    n = draw(st.integers(min_hosts, max_hosts))
    hosts: list[Host] = []
    no_az = draw(st.integers(0, 9)) == 0  # now and then the last host is in no AZ
    for i in range(n):
        az: str | None = None if no_az and i == n - 1 else f"az{i % n_az + 1}"
        vcpu, ram, disk = draw(st.sampled_from(HOST_SIZES))
        hosts.append(
            Host(
                name=f"cmp-{i}",
                role="compute",
                az=az,
                rack=f"{az or 'none'}-r{i // (2 * n_az)}",
                aggregates=tuple(draw(st.lists(st.sampled_from(("ssd", "gpu")), unique=True))),
                version=draw(st.sampled_from((OLD, OLD, OLD, OLD, NEW))),
                enabled=(unavailable is not True or i != n - 1)
                and (unavailable is False or draw(st.sampled_from((True,) * 9 + (False,)))),
                up=unavailable is False or draw(st.sampled_from((True,) * 19 + (False,))),
                capacity={"VCPU": vcpu, "MEMORY_MB": ram, "DISK_GB": disk},
                reserved={"MEMORY_MB": draw(st.sampled_from((0, 2048)))},
                allocation_ratio={
                    "VCPU": draw(st.sampled_from((1.0, 2.0, 4.0))),
                    "MEMORY_MB": draw(st.sampled_from((1.0, 1.0, 1.5))),
                },
            )
        )
    vms: list[VM] = []
    for h in hosts:
        if not h.up:
            continue  # a host that is down holds nothing we could migrate
        cap = {rc: h.effective(rc) for rc in h.capacity}
        used = dict.fromkeys(cap, 0)
        fill = draw(st.sampled_from((0.0, 0.2, 0.4, max_fill)))
        for _ in range(draw(st.integers(0, max_vms_per_host))):
            vcpu, ram, disk = draw(st.sampled_from(FLAVORS))
            need = {"VCPU": vcpu, "MEMORY_MB": ram, "DISK_GB": disk}
            if any(used[rc] + need[rc] > fill * cap[rc] for rc in need):
                break
            for rc in need:
                used[rc] += need[rc]
            vms.append(
                VM(
                    id=f"vm-{len(vms)}",
                    name=f"vm-{len(vms)}",
                    project="p",
                    host=h.name,
                    status=draw(st.sampled_from(("ACTIVE",) * 9 + ("SHUTOFF",))),
                    resources=need,
                    az=h.az if draw(st.integers(0, 4)) == 0 else None,
                    allowed_aggregates=(
                        (h.aggregates[0],) if h.aggregates and draw(st.integers(0, 5)) == 0 else ()
                    ),
                    migration=draw(st.sampled_from(("live",) * 8 + ("cold", "none"))),
                )
            )
    sgroups: list[ServerGroup] = []
    member: dict[str, str] = {}
    movable = [v for v in vms if v.migration != "none"]
    # A hard anti-affinity group: members on distinct hosts, as the inventory must obey it.
    if groups if groups is not None else draw(st.booleans()):
        spread: dict[str, VM] = {}
        for v in movable:
            spread.setdefault(v.host, v)
        chosen = list(spread.values())[: draw(st.integers(2, 3))]
        if len(chosen) >= 2:
            policy: GroupPolicy = (
                "anti-affinity"
                if groups
                else draw(st.sampled_from(("anti-affinity", "anti-affinity", "soft-anti-affinity")))
            )
            sgroups.append(ServerGroup("g-anti", "anti", policy, 1))
            member.update({v.id: "g-anti" for v in chosen})
    # A hard affinity pair: two VMs that share a host.
    if groups if groups is not None else draw(st.booleans()):
        by_host: dict[str, list[VM]] = {}
        for v in movable:
            if v.id not in member:
                by_host.setdefault(v.host, []).append(v)
        pair = next((vs[:2] for vs in by_host.values() if len(vs) >= 2), [])
        if pair:
            aff: GroupPolicy = (
                "affinity"
                if groups
                else draw(st.sampled_from(("affinity", "affinity", "soft-affinity")))
            )
            sgroups.append(ServerGroup("g-aff", "aff", aff, 1))
            member.update({v.id: "g-aff" for v in pair})
    vms = [_with_group(v, member.get(v.id)) for v in vms]
    ha: list[HAGroup] = []
    if controllers if controllers is not None else draw(st.booleans()):
        for i in (1, 2, 3):
            hosts.append(
                Host(
                    name=f"ctl-{i}",
                    role="controller",
                    az=f"az{(i - 1) % n_az + 1}",
                    rack=None,
                    aggregates=(),
                    version=OLD,
                    enabled=True,
                    up=True,
                    capacity={},
                )
            )
        ha.append(HAGroup("control-plane", ("ctl-1", "ctl-2", "ctl-3"), 2))
    return Inventory(
        cloud="random",
        taken_at="2026-01-01T00:00:00Z",
        hosts=tuple(hosts),
        vms=tuple(vms),
        server_groups=tuple(sgroups),
        ha_groups=tuple(ha),
    )


def _with_group(v: VM, gid: str | None) -> VM:
    if gid is None:
        return v
    from dataclasses import replace

    return replace(v, server_group=gid)


@st.composite
def policies(draw: st.DrawFn, inv: Inventory, min_wave: int = 1) -> Policy:
    """A policy for `inv`; `min_wave` is the least max_hosts_per_wave to draw."""
    kw: dict[str, Any] = {}
    if draw(st.integers(0, 3)) == 0:
        kw["max_hosts_per_wave_per_az"] = 1
    if draw(st.integers(0, 3)) == 0:
        kw["max_hosts_per_wave_per_rack"] = 1
    if any(h.role == "controller" for h in inv.hosts) and draw(st.booleans()):
        kw["first"] = ("role=controller",)
    if draw(st.integers(0, 4)) == 0:
        kw["last"] = ("cmp-0",)
    return Policy(
        max_hosts_per_wave=draw(st.integers(min_wave, max(min_wave, 3))),
        target_version=draw(st.sampled_from((NEW,) * 9 + (None,))),
        headroom=Headroom(
            failures=draw(st.integers(0, 1)),
            scope=draw(st.sampled_from(("az", "cloud"))),
            reserve_percent=draw(st.sampled_from((0.0, 0.0, 10.0))),
        ),
        max_concurrent_live_migrations=draw(st.integers(1, 2)),
        allow_stop=draw(st.sampled_from((True, True, True, False))),
        **kw,
    )


@st.composite
def clouds_and_policies(
    draw: st.DrawFn, /, min_wave: int = 1, **kw: Any
) -> tuple[Inventory, Policy]:
    inv = draw(clouds(**kw))
    return inv, draw(policies(inv, min_wave))
