"""Small named clouds and plans for the simulator's tests (built in code, no files)."""

from __future__ import annotations

from dataclasses import replace

from planner.inventory import VM, HAGroup, Host, Inventory, ServerGroup
from planner.plan import Migration, Plan, Wave
from planner.policy import Headroom, Policy

GIB_MB = 1024


def host(
    name: str,
    *,
    ram_gb: int = 64,
    vcpu: int = 32,
    az: str = "az1",
    role: str = "compute",
    enabled: bool = True,
    up: bool = True,
    version: str = "1",
) -> Host:
    compute = role == "compute"
    return Host(
        name=name,
        role="compute" if compute else "controller",
        az=az,
        rack=None,
        aggregates=(),
        version=version,
        enabled=enabled,
        up=up,
        capacity={"VCPU": vcpu, "MEMORY_MB": ram_gb * GIB_MB} if compute else {},
    )


def vm(
    vid: str,
    on: str,
    *,
    ram_gb: float = 4,
    vcpu: int = 2,
    dirty: float | None = 10.0,
    status: str = "ACTIVE",
    group: str | None = None,
    local_disk: bool | int | None = None,
    migration: str = "live",
) -> VM:
    return VM(
        id=vid,
        name=vid,
        project="p",
        host=on,
        status=status,
        resources={"VCPU": vcpu, "MEMORY_MB": int(ram_gb * GIB_MB)},
        server_group=group,
        migration=migration,  # type: ignore[arg-type]
        dirty_rate_mb_s=dirty,
        local_disk=local_disk,
    )


def policy(k_out: int = 1, failures: int = 0, per_wave: int = 4, scope: str = "az") -> Policy:
    return Policy(
        max_hosts_per_wave=per_wave,
        target_version="2",
        headroom=Headroom(failures=failures, scope=scope),  # type: ignore[arg-type]
        max_concurrent_live_migrations=k_out,
        allow_stop=True,
    )


def plan(pol: Policy, *waves: tuple[list[str], list[tuple[str, str, str]]]) -> Plan:
    """waves: (hosts, [(vm, from, to), ...]); method live unless the VM name starts with 'cold'."""
    out = []
    for i, (hosts, moves) in enumerate(waves, start=1):
        out.append(
            Wave(
                i,
                tuple(hosts),
                tuple(
                    Migration(v, s, d, "cold" if v.startswith("cold") else "live")
                    for v, s, d in moves
                ),
            )
        )
    return Plan(inventory_sha256="0" * 64, policy=pol, waves=tuple(out))


def two_hosts(n_vms: int = 4, ram_gb: float = 4, dirty: float = 10.0) -> Inventory:
    """`pair`: a source with n VMs and an empty destination, one AZ."""
    vms = tuple(vm(f"v{i}", "src", ram_gb=ram_gb, dirty=dirty) for i in range(n_vms))
    return Inventory("pair", "2026-01-01T00:00:00Z", (host("src"), host("dst")), vms)


def pair_plan(inv: Inventory, k_out: int = 1) -> Plan:
    """Wave 1 upgrades src (its VMs go to dst), wave 2 upgrades dst (they come back)."""
    pol = policy(k_out=k_out)
    moves = [(v.id, "src", "dst") for v in inv.vms]
    return plan(pol, (["src"], moves), (["dst"], [(v.id, "dst", "src") for v in inv.vms]))


def three_hosts_ha() -> Inventory:
    """`trio`: three computes in one AZ, two controllers in an HA group needing both."""
    hosts = (
        host("a"),
        host("b"),
        host("c"),
        host("ctl-1", role="controller"),
        host("ctl-2", role="controller"),
    )
    vms = (
        vm("g1", "a", group="grp"),
        vm("g2", "b", group="grp"),
        vm("x1", "a"),
    )
    groups = (ServerGroup("grp", "grp", "anti-affinity"),)
    ha = (HAGroup("control", ("ctl-1", "ctl-2"), 2),)
    return Inventory("trio", "2026-01-01T00:00:00Z", hosts, vms, groups, ha)


def lockstep(p: Plan) -> Plan:
    """p with `execution: lockstep` in its policy: wave after wave, as the simulator ran every
    plan before pipelined execution (tests asserting lock-step numbers pin it)."""
    return replace(p, policy=replace(p.policy, execution="lockstep"))
