"""Small named clouds for the planner's tests, each with the answer it must give.

Sizes are in GiB and vCPU for readability; every host offers VCPU, MEMORY_MB and DISK_GB with
allocation ratio 1 and nothing reserved, so effective capacity is the number written here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from planner.generate import ExtraClass, GenerateSpec, default_policy, generate
from planner.inventory import VM, HAGroup, Host, Inventory, MigrationKind, ServerGroup
from planner.policy import Headroom, Policy

OLD, NEW = "2025.1", "2025.2"


def host(
    name: str,
    *,
    mem: int = 64,
    vcpu: int = 64,
    disk: int = 2000,
    az: str | None = "az1",
    rack: str | None = None,
    aggregates: Iterable[str] = (),
    version: str = OLD,
    enabled: bool = True,
    up: bool = True,
    role: str = "compute",
) -> Host:
    compute = role == "compute"
    return Host(
        name=name,
        role=role,  # type: ignore[arg-type]
        az=az,
        rack=rack,
        aggregates=tuple(aggregates),
        version=version,
        enabled=enabled,
        up=up,
        capacity={"VCPU": vcpu, "MEMORY_MB": mem * 1024, "DISK_GB": disk} if compute else {},
    )


def vm(
    vid: str,
    on: str,
    *,
    mem: int = 8,
    vcpu: int = 2,
    disk: int = 20,
    az: str | None = None,
    group: str | None = None,
    migration: MigrationKind = "live",
    status: str = "ACTIVE",
    aggregates: Iterable[str] = (),
) -> VM:
    return VM(
        id=vid,
        name=vid,
        project="p",
        host=on,
        status=status,
        resources={"VCPU": vcpu, "MEMORY_MB": mem * 1024, "DISK_GB": disk},
        az=az,
        allowed_aggregates=tuple(aggregates),
        server_group=group,
        migration=migration,
    )


def fill(on: str, n: int, *, mem: int = 8, prefix: str | None = None, **kw: Any) -> list[VM]:
    """n VMs of `mem` GiB on host `on`."""
    p = prefix or on
    return [vm(f"{p}-vm{i}", on, mem=mem, **kw) for i in range(n)]


def policy(**kw: Any) -> Policy:
    head = Headroom(
        failures=kw.pop("failures", 1),
        scope=kw.pop("scope", "az"),
        reserve_percent=kw.pop("reserve_percent", 0.0),
    )
    kw.setdefault("max_hosts_per_wave", 1)
    kw.setdefault("target_version", NEW)
    return Policy(headroom=head, **kw)


@dataclass(frozen=True)
class Cloud:
    name: str
    inventory: Inventory
    policy: Policy
    # The known answer, as the tests check it (keys documented per cloud).
    expect: dict[str, Any] = field(default_factory=dict)


def _inv(name: str, hosts: list[Host], vms: list[VM], **kw: Any) -> Inventory:
    return Inventory(
        cloud=name, taken_at="2026-01-01T00:00:00Z", hosts=tuple(hosts), vms=tuple(vms), **kw
    )


def three_plus_spare() -> Cloud:
    """Three hosts half full and an empty spare, one host down at a time (N+1 allows no more):
    the spare goes first and every VM moves exactly once, into the host upgraded just before
    its own: 4 waves, 12 migrations."""
    hosts = [host(n) for n in ("cmp-a", "cmp-b", "cmp-c", "cmp-spare")]
    vms = fill("cmp-a", 4) + fill("cmp-b", 4) + fill("cmp-c", 4)
    return Cloud(
        "three_plus_spare",
        _inv("three-plus-spare", hosts, vms),
        policy(max_hosts_per_wave=2),
        {"waves": 4, "migrations": 12, "first_wave": ("cmp-spare",), "moved_twice": 0},
    )


def anti_affinity_too_wide() -> Cloud:
    """An anti-affinity group of 4 on the only 4 hosts: with any of them down, 3 remain for 4
    members. No plan exists; the reason names the group and the numbers."""
    hosts = [host(f"cmp-{i}") for i in range(1, 5)]
    vms = [vm(f"db-{i}", f"cmp-{i}", group="g-db") for i in range(1, 5)]
    return Cloud(
        "anti_affinity_too_wide",
        _inv(
            "anti-affinity-too-wide",
            hosts,
            vms,
            server_groups=(ServerGroup("g-db", "db", "anti-affinity"),),
        ),
        policy(failures=0),
        {"infeasible": ["server group db", "4 members", "only 4 host(s)", "3 remain"]},
    )


def anti_affinity_fits() -> Cloud:
    """The same group with a fifth host: a plan exists and the group never shares a host."""
    base = anti_affinity_too_wide()
    inv = base.inventory
    return Cloud(
        "anti_affinity_fits",
        _inv(
            "anti-affinity-fits",
            [*inv.hosts, host("cmp-5")],
            list(inv.vms),
            server_groups=inv.server_groups,
        ),
        base.policy,
        {"waves": 5},
    )


def ha_trio() -> Cloud:
    """Three controllers with min_available 2 and two computes, up to 3 hosts a wave: each
    controller in a wave of its own."""
    hosts = [host(f"ctl-{i}", role="controller") for i in range(1, 4)]
    hosts += [host("cmp-1"), host("cmp-2"), host("cmp-3")]
    vms = fill("cmp-1", 2) + fill("cmp-2", 2)
    return Cloud(
        "ha_trio",
        _inv(
            "ha-trio",
            hosts,
            vms,
            ha_groups=(HAGroup("control-plane", ("ctl-1", "ctl-2", "ctl-3"), 2),),
        ),
        policy(max_hosts_per_wave=3, failures=0),
        {"distinct_waves": ("ctl-1", "ctl-2", "ctl-3")},
    )


def controllers_first() -> Cloud:
    """ha_trio with policy.first = role=controller: every controller no later than any
    compute host (they may share the boundary wave). The controllers take three waves, the
    third has room for two of the three computes: 4 waves, the lower bound."""
    base = ha_trio()
    return Cloud(
        "controllers_first",
        base.inventory,
        base.policy.with_changes(first=("role=controller",)),
        {"first": ("ctl-1", "ctl-2", "ctl-3"), "waves": 4},
    )


def affinity_pair() -> Cloud:
    """A hard affinity pair on cmp-1 with room for both only together on cmp-2 or cmp-3:
    they move in the same wave to the same host."""
    hosts = [host("cmp-1"), host("cmp-2"), host("cmp-3")]
    vms = [vm("web-1", "cmp-1", group="g-web"), vm("web-2", "cmp-1", group="g-web")]
    vms += fill("cmp-2", 2) + fill("cmp-3", 2)
    return Cloud(
        "affinity_pair",
        _inv("affinity-pair", hosts, vms, server_groups=(ServerGroup("g-web", "web", "affinity"),)),
        policy(failures=0, affinity_moves="forced"),  # Nova moves a member only with its group
        {"together": ("web-1", "web-2")},
    )


def cold_and_stop() -> Cloud:
    """A VM that only cold-migrates, a SHUTOFF VM (cold) and one that cannot migrate, with
    stops allowed: live for the rest, cold for those two, the third stopped in place."""
    hosts = [host("cmp-1"), host("cmp-2"), host("cmp-3")]
    vms = [
        vm("live-1", "cmp-1"),
        vm("cold-1", "cmp-1", migration="cold"),
        vm("off-1", "cmp-1", status="SHUTOFF"),
        vm("pinned-1", "cmp-1", migration="none"),
    ]
    return Cloud(
        "cold_and_stop",
        _inv("cold-and-stop", hosts, vms),
        policy(failures=0, allow_stop=True),
        {"method": {"live-1": "live", "cold-1": "cold", "off-1": "cold"}, "stopped": ("pinned-1",)},
    )


def cannot_migrate() -> Cloud:
    """cold_and_stop without allow_stop: no plan; the reason names the VM."""
    base = cold_and_stop()
    return Cloud(
        "cannot_migrate",
        base.inventory,
        base.policy.with_changes(allow_stop=False),
        {"infeasible": ["pinned-1", "cannot migrate"]},
    )


def headroom_impossible() -> Cloud:
    """Three 64 GiB hosts with 24 GiB used each and N+1: with any host down, 56 GiB free is
    less than the 64 GiB the largest remaining host needs."""
    hosts = [host(f"cmp-{i}") for i in range(1, 4)]
    vms = [v for i in range(1, 4) for v in fill(f"cmp-{i}", 3)]
    return Cloud(
        "headroom_impossible",
        _inv("headroom-impossible", hosts, vms),
        policy(),
        {"infeasible": ["az1", "MEMORY_MB free 56.0 GiB < 64.0 GiB needed for N+1"]},
    )


def pinned_and_bound() -> Cloud:
    """Two AZs; a VM pinned to az1 and one bound to aggregate ssd (only cmp-2 and cmp-4 are
    ssd): they stay in their AZ and aggregate."""
    hosts = [
        host("cmp-1", az="az1"),
        host("cmp-2", az="az1", aggregates=("ssd",)),
        host("cmp-3", az="az2"),
        host("cmp-4", az="az2", aggregates=("ssd",)),
    ]
    vms = [
        vm("az-1", "cmp-1", az="az1"),
        vm("ssd-1", "cmp-2", aggregates=("ssd",)),
        vm("free-1", "cmp-3"),
    ]
    return Cloud(
        "pinned_and_bound",
        _inv("pinned-and-bound", hosts, vms),
        policy(failures=0, scope="cloud"),
        {"stays": {"az-1": {"cmp-1", "cmp-2"}, "ssd-1": {"cmp-2", "cmp-4"}}},
    )


def disabled_and_upgraded() -> Cloud:
    """A disabled host with VMs and a host already at the target version: the disabled host
    is never a destination (its VMs leave in its own wave); the upgraded host is in no wave
    and takes the first evacuees, so they move once."""
    hosts = [
        host("cmp-1"),
        host("cmp-2", enabled=False),
        host("cmp-3"),
        host("cmp-new", version=NEW),
    ]
    vms = fill("cmp-1", 3) + fill("cmp-2", 2) + fill("cmp-3", 3)
    return Cloud(
        "disabled_and_upgraded",
        _inv("disabled-and-upgraded", hosts, vms),
        policy(),
        {"not_in_waves": ("cmp-new",), "never_destination": ("cmp-2",), "moved_twice": 0},
    )


def first_and_last() -> Cloud:
    """policy.first = cmp-3, policy.last = cmp-1 on four hosts, one a wave."""
    hosts = [host(f"cmp-{i}") for i in range(1, 5)]
    vms = fill("cmp-1", 2) + fill("cmp-2", 2) + fill("cmp-3", 2)
    return Cloud(
        "first_and_last",
        _inv("first-and-last", hosts, vms),
        policy(failures=0, first=("cmp-3",), last=("cmp-1",)),
        {"first_wave": ("cmp-3",), "last_wave": ("cmp-1",)},
    )


def disabled_host_before_last() -> Cloud:
    """A disabled host whose VMs, once moved, leave room for no host of its AZ to go down:
    every other host must be upgraded before it, which policy.last = cmp-a forbids. The
    pre-checks pass (each rule alone can hold); CP-SAT names the conflict."""
    hosts = [host("cmp-a"), host("cmp-b"), host("cmp-c"), host("cmp-d", enabled=False)]
    vms = fill("cmp-a", 2) + fill("cmp-b", 2) + fill("cmp-c", 2) + fill("cmp-d", 5)
    return Cloud(
        "disabled_host_before_last",
        _inv("disabled-host-before-last", hosts, vms),
        policy(last=("cmp-a",)),
        {"infeasible": ["last (cmp-a)", "headroom of az1 for MEMORY_MB", "cmp-d"]},
    )


def disabled_host_last() -> Cloud:
    """The same cloud without policy.last: the disabled host goes alone, last."""
    base = disabled_host_before_last()
    return Cloud(
        "disabled_host_last",
        base.inventory,
        base.policy.with_changes(last=()),
        {"last_wave": ("cmp-d",)},
    )


def through_az(anti: bool = False) -> Cloud:
    """Two AZs of two hosts, N+1 per AZ, one host a wave: with a host of an AZ down the other
    must be empty. a1 is empty, a2 holds x; b1 (8 GiB) is empty, b2 (16 GiB) holds y and z.
    Only a2 or b2 can go first. The plan: a2 down, x to az2 onto b2 (not b1, which must be
    empty when b2 goes down); a1; b2 down, x, y, z to az1; b1: x enters az2 and leaves it again
    with b2, moving twice. With `anti` (x and y in a hard anti-affinity group, one a host) x
    cannot go onto b2 and no plan exists at all (every order dead-ends: the tiny search
    planner tries them all)."""
    hosts = [
        host("a1", mem=8, az="az1"),
        host("a2", mem=8, az="az1"),
        host("b1", mem=8, az="az2"),
        host("b2", mem=16, az="az2"),
    ]
    group = "anti" if anti else None
    vms = [
        vm("x", "a2", mem=2, group=group),
        vm("y", "b2", mem=2, group=group),
        vm("z", "b2", mem=2),
    ]
    groups = (ServerGroup("anti", "anti", "anti-affinity", 1),) if anti else ()
    return Cloud(
        "through_az_anti" if anti else "through_az",
        _inv("through-az", hosts, vms, server_groups=groups),
        policy(),
        {"waves": 4, "first_wave": ("a2",), "moved_twice": ("x",)} if not anti else {},
    )


FEASIBLE = (
    three_plus_spare,
    anti_affinity_fits,
    ha_trio,
    controllers_first,
    affinity_pair,
    cold_and_stop,
    pinned_and_bound,
    disabled_and_upgraded,
    first_and_last,
    disabled_host_last,
)
INFEASIBLE = (
    anti_affinity_too_wide,
    cannot_migrate,
    headroom_impossible,
    disabled_host_before_last,
)


# ---------------------------------------------------------------------------------------------
# Tight clouds (generated): headroom, not max_hosts_per_wave, sets the number of waves
# ---------------------------------------------------------------------------------------------
def _gens_40(seed: int) -> tuple[GenerateSpec, dict[str, Any]]:
    """40 hosts of three hardware generations (gen3 1.5x gen2, gen1 0.75x) in one AZ at 75%
    memory, N+1 with a 20% reserve: a big host goes down only beside a small one."""
    spec = GenerateSpec(
        hosts=40,
        azs=1,
        utilisation=0.75,
        vms_per_host=12,
        seed=seed,
        upgraded_hosts=seed % 3,
        controllers=3 if seed % 2 else 0,
    )
    return spec, {"headroom": Headroom(1, "az", 20.0)}


def _quarter(hosts: int) -> tuple[GenerateSpec, dict[str, Any]]:
    """A quarter of the hosts a wave at 80% memory (two AZs, N+1 per AZ, controllers first)."""
    spec = GenerateSpec(hosts=hosts, vms_per_host=20, utilisation=0.8, seed=0)
    return spec, {"max_hosts_per_wave": hosts // 4}


TIGHT_SPECS = {
    "gens-40-s11": lambda: _gens_40(11),
    "gens-40-s12": lambda: _gens_40(12),
    "quarter-200": lambda: _quarter(200),
    "quarter-500": lambda: _quarter(500),
    "quarter-1000": lambda: _quarter(1000),
}
# Waves the planner achieves on each (seed 0): regression thresholds, and the lower bound then.
TIGHT_WAVES = {
    "gens-40-s11": (28, 28),
    "gens-40-s12": (30, 30),
    "quarter-200": (9, 8),
    "quarter-500": (8, 7),
    "quarter-1000": (8, 7),
}


def tight_cloud(name: str) -> Cloud:
    spec, changes = TIGHT_SPECS[name]()
    waves, bound = TIGHT_WAVES[name]
    pol = dataclasses.replace(default_policy(spec), **changes)
    return Cloud(name, generate(spec), pol, {"waves": waves, "bound": bound})


# ---------------------------------------------------------------------------------------------
# Small very tight clouds (generated): two AZs, N+1 per AZ, hosts to spare in neither
# ---------------------------------------------------------------------------------------------
def small_two_az(seed: int) -> Cloud:
    """4-6 hosts in two AZs at 25-40% memory, N+1 per AZ, one host a wave (two when seed % 5
    is 0), nothing stopped: with a host of an AZ down the others must take all its VMs and
    still keep the largest free, so VMs often pass through the other AZ and back."""
    spec = GenerateSpec(
        hosts=4 + seed % 3,
        vms_per_host=2.0 + seed % 2,
        azs=2,
        utilisation=0.25 + 0.05 * (seed % 4),
        controllers=0,
        seed=seed,
    )
    spec = dataclasses.replace(spec, disabled_hosts=0)
    pol = default_policy(spec).with_changes(
        max_hosts_per_wave=1 + (seed % 5 == 0), allow_stop=False, **{"headroom.failures": 1}
    )
    return Cloud(f"small-two-az-{seed}", generate(spec), pol)


# Seeds of `small_two_az` where a plan exists (the greedy or the tiny search planner finds one)
# and CP-SAT once found none: anti-affinity keeps evacuees out of their AZ (46), a group must shed
# exactly all its VMs (180), look-alike hosts differ in their AZ-pinned VMs (251).
SMALL_TWO_AZ_SEEDS = (46, 180, 251)


# ---------------------------------------------------------------------------------------------
# Real-shaped clouds (generated): many small VMs, services as anti-affinity groups of 2-10
# members, resource classes beyond VCPU, MEMORY_MB and DISK_GB, several AZs and racks
# ---------------------------------------------------------------------------------------------
# A network bandwidth class most VMs use, and PCI slots a few use (in proportion to memory).
REAL_EXTRA = (ExtraClass("CUSTOM_NET_BW", 25_000, 0.6), ExtraClass("CUSTOM_PCI_SLOT", 16, 0.05))


def _real(hosts: int, vms_per_host: float, azs: int, seed: int, **kw: Any) -> GenerateSpec:
    base: dict[str, Any] = {
        "utilisation": 0.7,
        "hosts_per_rack": 20,
        "flavor_mix": "small",
        "service_share": 0.3,
        "extra_classes": REAL_EXTRA,
        "host_models": 12,
    }
    base.update(kw)
    return GenerateSpec(hosts=hosts, vms_per_host=vms_per_host, azs=azs, seed=seed, **base)


# Closer to the traces: each VM its own size, services holding 80% of the VMs, SR-IOV VFs
# on half the hardware models, 81-85% of memory used.
TRACE_EXTRA = (
    ExtraClass("CUSTOM_NET_BW", 25_000, 0.6),
    ExtraClass("CUSTOM_SRIOV_VF", 64, 0.1, 0.5),
)


def _trace(hosts: int, vms_per_host: float, azs: int, seed: int, **kw: Any) -> GenerateSpec:
    base: dict[str, Any] = {
        "utilisation": 0.85,
        "service_share": 0.8,
        "vm_sizes": "per-vm",
        "extra_classes": TRACE_EXTRA,
    }
    base.update(kw)
    return _real(hosts, vms_per_host, azs, seed, **base)


# name -> (spec, policy changes, time limit): default_policy (N+1 per AZ, hosts / 20 a wave, at
# least 2, controllers first) unless changed; the `rollwave generate` options in docs/solver.md.
REAL_SHAPES: dict[str, tuple[GenerateSpec, dict[str, Any], float]] = {
    "real-4": (_real(4, 10, 1, 41, utilisation=0.3), {}, 60.0),
    **{
        f"real-10-big-s{seed}": (
            _real(10, 4, 2, seed, utilisation=0.5, flavor_mix="large", service_share=0.2),
            {},
            60.0,
        )
        for seed in (3, 4, 9)
    },
    "real-100-1k": (_real(100, 10, 2, 3), {}, 300.0),
    "real-100-5k": (_real(100, 50, 3, 2), {}, 300.0),
    "real-100-20k": (_real(100, 220, 2, 4), {}, 300.0),
    "real-1000-50k": (_real(1000, 50, 3, 1), {}, 300.0),
    "real-1000-50k-tight": (_real(1000, 55, 3, 7, utilisation=0.9), {}, 300.0),
    "real-5000-100k": (_real(5000, 20, 3, 1), {}, 300.0),
    "trace-100-1k": (_trace(100, 10, 2, 3), {}, 300.0),
    "trace-100-5k": (_trace(100, 50, 3, 2), {}, 300.0),
    "trace-100-5k-tight": (_trace(100, 50, 3, 4, utilisation=0.9), {}, 300.0),
    "trace-1000-50k": (_trace(1000, 50, 3, 1), {}, 300.0),
    "trace-5000-100k": (_trace(5000, 20, 3, 1), {}, 300.0),
}


def real_cloud(name: str) -> Cloud:
    spec, changes, _limit = REAL_SHAPES[name]
    pol = dataclasses.replace(default_policy(spec), **changes)
    return Cloud(name, generate(spec), pol)
