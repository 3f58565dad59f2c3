"""Small named fixture clouds, each with a policy and a hand-written valid plan, and a tiny builder.

Build a cloud in a few lines::

    inv = (
        Cloud()
        .host("cmp-1", vcpu=16, ram_mb=65536)
        .host("cmp-2")
        .vm("web-1", "cmp-1", vcpu=2, ram_mb=4096)
        .group("web", "anti-affinity", members=["web-1"])
        .build()
    )

and a plan with `make_plan(policy, wave(1, ["cmp-2"]), wave(2, ["cmp-1"], moves=[mv("web-1",
"cmp-1", "cmp-2")]))`. The named fixtures (`three_plus_spare()`, `ha_trio()`, ...) return a
`Fixture` whose plan the checker accepts without a single violation; tests break one thing at a
time with the editing helpers at the bottom (`edit_migration`, `drop_migration`, `move_host`, ...).

Conventions: every host runs `OLD` unless told otherwise and policies upgrade to `NEW`; hosts are
in AZ `az1`, rack `<az>-r1`; resources are integers in Placement's units (MEMORY_MB in MB, DISK_GB
in GB). `build()` validates cross-references as the file reader does, so a typo in a fixture
fails loudly instead of testing nothing. `NAMED` lists every named fixture (for parametrised
tests); `tests/strategies.py` has hypothesis strategies for random clouds and policies, and
`tests/tiny_planner.py` a small search planner that uses the checker as its oracle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from planner.estimates import Estimates, HostEstimate, VmEstimate
from planner.formats import validate_inventory
from planner.inventory import VM, HAGroup, Host, Inventory, Provider, ServerGroup
from planner.plan import Migration, Plan, Stop, Wave
from planner.policy import Headroom, Policy

OLD = "2025.1"
NEW = "2025.2"

# Host and VM sizes the fixtures use unless told otherwise.
HOST_VCPU, HOST_RAM_MB, HOST_DISK_GB = 16, 65536, 1000
VM_VCPU, VM_RAM_MB, VM_DISK_GB = 4, 8192, 40


class Cloud:
    """A fluent builder of `Inventory`; every method returns the builder."""

    def __init__(self, name: str = "fixture", taken_at: str = "2026-01-01T00:00:00Z") -> None:
        self.name = name
        self.taken_at = taken_at
        self.hosts: list[Host] = []
        self.vms: list[VM] = []
        self.groups: list[ServerGroup] = []
        self.ha_groups: list[HAGroup] = []

    def host(
        self,
        name: str,
        *,
        az: str | None = "az1",
        rack: str | None = None,
        vcpu: int = HOST_VCPU,
        ram_mb: int = HOST_RAM_MB,
        disk_gb: int = HOST_DISK_GB,
        capacity: Mapping[str, int] | None = None,
        reserved: Mapping[str, int] | None = None,
        ratio: Mapping[str, float] | None = None,
        aggregates: Iterable[str] = (),
        version: str = OLD,
        enabled: bool = True,
        up: bool = True,
    ) -> Cloud:
        """A compute host; `capacity` replaces the vcpu/ram_mb/disk_gb shorthand entirely."""
        cap = (
            dict(capacity)
            if capacity is not None
            else {"VCPU": vcpu, "MEMORY_MB": ram_mb, "DISK_GB": disk_gb}
        )
        self.hosts.append(
            Host(
                name=name,
                role="compute",
                az=az,
                rack=rack if rack is not None else (f"{az}-r1" if az else None),
                aggregates=tuple(aggregates),
                version=version,
                enabled=enabled,
                up=up,
                capacity=cap,
                reserved=dict(reserved or {}),
                allocation_ratio=dict(ratio or {}),
                disabled_reason=None if enabled else "fixture: disabled",
            )
        )
        return self

    def hosts_(self, *names: str, **kw: Any) -> Cloud:
        """Several identical compute hosts."""
        for n in names:
            self.host(n, **kw)
        return self

    def controller(
        self, name: str, *, az: str | None = "az1", version: str = OLD, up: bool = True
    ) -> Cloud:
        self.hosts.append(
            Host(
                name=name,
                role="controller",
                az=az,
                rack=f"{az}-r0" if az else None,
                aggregates=(),
                version=version,
                enabled=True,
                up=up,
                capacity={},
            )
        )
        return self

    def vm(
        self,
        vm_id: str,
        host: str,
        *,
        vcpu: int = VM_VCPU,
        ram_mb: int = VM_RAM_MB,
        disk_gb: int = VM_DISK_GB,
        resources: Mapping[str, int] | None = None,
        status: str = "ACTIVE",
        migration: str = "live",
        az: str | None = None,
        aggregates: Iterable[str] = (),
        group: str | None = None,
        name: str | None = None,
        project: str = "project-1",
    ) -> Cloud:
        res = (
            dict(resources)
            if resources is not None
            else {"VCPU": vcpu, "MEMORY_MB": ram_mb, "DISK_GB": disk_gb}
        )
        self.vms.append(
            VM(
                id=vm_id,
                name=name if name is not None else vm_id,
                project=project,
                host=host,
                status=status,
                resources=res,
                az=az,
                allowed_aggregates=tuple(aggregates),
                server_group=group,
                migration=migration,  # type: ignore[arg-type]
            )
        )
        return self

    def group(
        self,
        group_id: str,
        policy: str = "anti-affinity",
        *,
        members: Iterable[str] = (),
        max_per_host: int = 1,
        name: str | None = None,
    ) -> Cloud:
        """A server group; `members` (VM ids already added) join it."""
        self.groups.append(
            ServerGroup(group_id, name if name is not None else group_id, policy, max_per_host)  # type: ignore[arg-type]
        )
        wanted = set(members)
        self.vms = [replace(v, server_group=group_id) if v.id in wanted else v for v in self.vms]
        missing = wanted - {v.id for v in self.vms}
        if missing:
            raise ValueError(f"group {group_id}: no such VMs {sorted(missing)}")
        return self

    def ha(self, name: str, hosts: Sequence[str], min_available: int) -> Cloud:
        self.ha_groups.append(HAGroup(name, tuple(hosts), min_available))
        return self

    def build(self) -> Inventory:
        inv = Inventory(
            cloud=self.name,
            taken_at=self.taken_at,
            hosts=tuple(self.hosts),
            vms=tuple(self.vms),
            server_groups=tuple(self.groups),
            ha_groups=tuple(self.ha_groups),
        )
        problems = validate_inventory(inv)
        if problems:
            raise ValueError("fixture cloud is invalid: " + "; ".join(map(str, problems)))
        return inv


# ---------------------------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------------------------
def policy(
    max_hosts_per_wave: int = 1,
    *,
    failures: int = 1,
    scope: str = "az",
    reserve_percent: float = 0.0,
    target_version: str | None = NEW,
    **kw: Any,
) -> Policy:
    """A policy with the fixtures' defaults: one host a wave, N+1 per AZ, upgrade to NEW."""
    return Policy(
        max_hosts_per_wave=max_hosts_per_wave,
        target_version=target_version,
        headroom=Headroom(failures, scope, reserve_percent),  # type: ignore[arg-type]
        **kw,
    )


def mv(vm: str, src: str, dst: str, method: str = "live") -> Migration:
    return Migration(vm, src, dst, method)  # type: ignore[arg-type]


def wave(
    index: int,
    hosts: Sequence[str],
    moves: Iterable[Migration | tuple[str, ...]] = (),
    stops: Iterable[Stop | tuple[str, str]] = (),
) -> Wave:
    """A wave; moves may be `mv(...)` or tuples (vm, from, to[, method]), stops (vm, host)."""
    return Wave(
        index,
        tuple(hosts),
        tuple(m if isinstance(m, Migration) else mv(*m) for m in moves),
        tuple(s if isinstance(s, Stop) else Stop(*s) for s in stops),
    )


def make_plan(pol: Policy, *waves: Wave, digest: str = "") -> Plan:
    return Plan(inventory_sha256=digest, policy=pol, waves=tuple(waves))


@dataclass(frozen=True)
class Fixture:
    """A named cloud, its policy and a plan the checker accepts without any violation."""

    name: str
    inventory: Inventory
    policy: Policy
    plan: Plan


# ---------------------------------------------------------------------------------------------
# Named clouds
# ---------------------------------------------------------------------------------------------
def three_plus_spare() -> Fixture:
    """Three hosts with two VMs each and an empty spare, one AZ, N+1, one host a wave.

    The rolling-spare plan: upgrade the spare, empty cmp-1 onto it, cmp-2 onto cmp-1, cmp-3 onto
    cmp-2: every VM moves once, always to an upgraded host.
    """
    c = Cloud("three-plus-spare")
    for i in (1, 2, 3):
        c.host(f"cmp-{i}")
    c.host("cmp-4")
    for i in (1, 2, 3):
        c.vm(f"vm-{i}a", f"cmp-{i}").vm(f"vm-{i}b", f"cmp-{i}")
    pol = policy(1)
    plan = make_plan(
        pol,
        wave(1, ["cmp-4"]),
        wave(2, ["cmp-1"], [mv("vm-1a", "cmp-1", "cmp-4"), mv("vm-1b", "cmp-1", "cmp-4")]),
        wave(3, ["cmp-2"], [mv("vm-2a", "cmp-2", "cmp-1"), mv("vm-2b", "cmp-2", "cmp-1")]),
        wave(4, ["cmp-3"], [mv("vm-3a", "cmp-3", "cmp-2"), mv("vm-3b", "cmp-3", "cmp-2")]),
    )
    return Fixture("three_plus_spare", c.build(), pol, plan)


def ha_trio() -> Fixture:
    """Three controllers in an HA group that needs two of them, plus two compute hosts.

    Controllers go first (policy.first = role=controller), one a wave; cmp-2 is empty.
    """
    c = Cloud("ha-trio")
    for i in (1, 2, 3):
        c.controller(f"ctl-{i}")
    c.host("cmp-1").host("cmp-2")
    c.vm("vm-1", "cmp-1")
    c.ha("control-plane", ["ctl-1", "ctl-2", "ctl-3"], 2)
    pol = policy(2, failures=0, first=("role=controller",))
    plan = make_plan(
        pol,
        wave(1, ["ctl-1"]),
        wave(2, ["ctl-2"]),
        wave(3, ["ctl-3"]),
        wave(4, ["cmp-2"]),
        wave(5, ["cmp-1"], [mv("vm-1", "cmp-1", "cmp-2")]),
    )
    return Fixture("ha_trio", c.build(), pol, plan)


def anti_affinity_tight() -> Fixture:
    """A hard anti-affinity group of three on three of four hosts: each member has exactly one
    host to go to, the one its predecessor just left."""
    c = Cloud("anti-affinity-tight")
    c.hosts_("cmp-1", "cmp-2", "cmp-3", "cmp-4")
    for i in (1, 2, 3):
        c.vm(f"web-{i}", f"cmp-{i}")
    c.group("web", "anti-affinity", members=["web-1", "web-2", "web-3"])
    pol = policy(1)
    plan = make_plan(
        pol,
        wave(1, ["cmp-4"]),
        wave(2, ["cmp-1"], [mv("web-1", "cmp-1", "cmp-4")]),
        wave(3, ["cmp-2"], [mv("web-2", "cmp-2", "cmp-1")]),
        wave(4, ["cmp-3"], [mv("web-3", "cmp-3", "cmp-2")]),
    )
    return Fixture("anti_affinity_tight", c.build(), pol, plan)


def affinity_pair() -> Fixture:
    """Two VMs of a hard affinity group on cmp-1 and two empty hosts: the pair moves together,
    by forced live migrations (the policy's opt-in: Nova refuses a scheduled move of one)."""
    c = Cloud("affinity-pair")
    c.hosts_("cmp-1", "cmp-2", "cmp-3")
    c.vm("db-1", "cmp-1").vm("db-2", "cmp-1")
    c.group("db", "affinity", members=["db-1", "db-2"])
    pol = policy(1, affinity_moves="forced")
    f = "live-forced"
    plan = make_plan(
        pol,
        wave(1, ["cmp-2"]),
        wave(2, ["cmp-1"], [mv("db-1", "cmp-1", "cmp-2", f), mv("db-2", "cmp-1", "cmp-2", f)]),
        wave(3, ["cmp-3"]),
    )
    return Fixture("affinity_pair", c.build(), pol, plan)


def pinned_and_bound() -> Fixture:
    """Two AZs; a VM pinned to az1 and one bound to the `ssd` aggregate, both on cmp-1.

    cmp-2 (az1, ssd) is their only valid destination; cmp-3 is in az2 and not ssd. Headroom is
    N+1 over the whole cloud.
    """
    c = Cloud("pinned-and-bound")
    c.host("cmp-1", aggregates=["ssd"]).host("cmp-2", aggregates=["ssd"])
    c.host("cmp-3", az="az2", aggregates=["hdd"])
    c.vm("pinned", "cmp-1", az="az1").vm("bound", "cmp-1", aggregates=["ssd"])
    pol = policy(1, scope="cloud")
    plan = make_plan(
        pol,
        wave(1, ["cmp-2"]),
        wave(2, ["cmp-1"], [mv("pinned", "cmp-1", "cmp-2"), mv("bound", "cmp-1", "cmp-2")]),
        wave(3, ["cmp-3"]),
    )
    return Fixture("pinned_and_bound", c.build(), pol, plan)


def mixed_methods() -> Fixture:
    """One host with a live VM, a SHUTOFF VM, a cold-only VM and a VM that cannot move at all
    (migration none, stopped in place: the policy allows it); cmp-2 is an empty spare."""
    c = Cloud("mixed-methods")
    c.hosts_("cmp-1", "cmp-2", "cmp-3")
    c.vm("live", "cmp-1").vm("off", "cmp-1", status="SHUTOFF")
    c.vm("coldonly", "cmp-1", migration="cold").vm("pinned-pci", "cmp-1", migration="none")
    pol = policy(1, failures=0, allow_stop=True)
    plan = make_plan(
        pol,
        wave(1, ["cmp-2"]),
        wave(
            2,
            ["cmp-1"],
            [
                mv("live", "cmp-1", "cmp-2", "live"),
                mv("off", "cmp-1", "cmp-2", "cold"),
                mv("coldonly", "cmp-1", "cmp-2", "cold"),
            ],
            [("pinned-pci", "cmp-1")],
        ),
        wave(3, ["cmp-3"]),
    )
    return Fixture("mixed_methods", c.build(), pol, plan)


def unavailable_hosts() -> Fixture:
    """cmp-2 is disabled and cmp-3 is down (both empty, both still to upgrade), cmp-4 already runs
    the target version and is in no wave; cmp-1's VMs go to the upgraded cmp-4."""
    c = Cloud("unavailable-hosts")
    c.host("cmp-1").host("cmp-2", enabled=False).host("cmp-3", up=False)
    c.host("cmp-4", version=NEW).host("cmp-5")
    c.vm("vm-1", "cmp-1").vm("vm-2", "cmp-1")
    pol = policy(1, failures=0)
    plan = make_plan(
        pol,
        wave(1, ["cmp-1"], [mv("vm-1", "cmp-1", "cmp-4"), mv("vm-2", "cmp-1", "cmp-4")]),
        wave(2, ["cmp-2"]),
        wave(3, ["cmp-3"]),
        wave(4, ["cmp-5"]),
    )
    return Fixture("unavailable_hosts", c.build(), pol, plan)


def two_azs_two_racks() -> Fixture:
    """Two AZs of two racks of two hosts, all empty but one VM each on the first rack; waves of up
    to four hosts, at most two per AZ and one per rack."""
    c = Cloud("two-azs-two-racks")
    for az in ("az1", "az2"):
        for r in (1, 2):
            for h in (1, 2):
                c.host(f"{az}-r{r}-h{h}", az=az, rack=f"{az}-r{r}")
    pol = policy(4, failures=1, max_hosts_per_wave_per_az=2, max_hosts_per_wave_per_rack=1)
    plan = make_plan(
        pol,
        wave(1, ["az1-r1-h1", "az1-r2-h1", "az2-r1-h1", "az2-r2-h1"]),
        wave(2, ["az1-r1-h2", "az1-r2-h2", "az2-r1-h2", "az2-r2-h2"]),
    )
    return Fixture("two_azs_two_racks", c.build(), pol, plan)


NAMED: dict[str, Callable[[], Fixture]] = {
    f.__name__: f
    for f in (
        three_plus_spare,
        ha_trio,
        anti_affinity_tight,
        affinity_pair,
        pinned_and_bound,
        mixed_methods,
        unavailable_hosts,
        two_azs_two_racks,
    )
}


# ---------------------------------------------------------------------------------------------
# Editing a plan (each returns a new plan; the original is untouched)
# ---------------------------------------------------------------------------------------------
def _map_waves(plan: Plan, f: Callable[[Wave], Wave | None]) -> Plan:
    waves = tuple(w2 for w in plan.waves if (w2 := f(w)) is not None)
    return replace(plan, waves=waves)


def edit_migration(plan: Plan, vm: str, **changes: Any) -> Plan:
    """Change the migration of `vm` (keys: src, dst, method)."""
    found = False

    def f(w: Wave) -> Wave:
        nonlocal found
        ms = []
        for m in w.migrations:
            if m.vm == vm:
                found = True
                m = replace(m, **changes)
            ms.append(m)
        return replace(w, migrations=tuple(ms))

    out = _map_waves(plan, f)
    if not found:
        raise KeyError(f"no migration of {vm}")
    return out


def drop_migration(plan: Plan, vm: str) -> Plan:
    return _map_waves(
        plan, lambda w: replace(w, migrations=tuple(m for m in w.migrations if m.vm != vm))
    )


def add_migration(plan: Plan, index: int, m: Migration) -> Plan:
    return _map_waves(
        plan, lambda w: replace(w, migrations=(*w.migrations, m)) if w.index == index else w
    )


def add_stop(plan: Plan, index: int, vm: str, host: str) -> Plan:
    return _map_waves(
        plan, lambda w: replace(w, stops=(*w.stops, Stop(vm, host))) if w.index == index else w
    )


def migration_to_stop(plan: Plan, vm: str) -> Plan:
    """Replace the migration of `vm` by a stop on its source host."""

    def f(w: Wave) -> Wave:
        m = next((m for m in w.migrations if m.vm == vm), None)
        if m is None:
            return w
        return replace(
            w,
            migrations=tuple(x for x in w.migrations if x.vm != vm),
            stops=(*w.stops, Stop(vm, m.src)),
        )

    return _map_waves(plan, f)


def move_host(plan: Plan, host: str, index: int) -> Plan:
    """Move a host to wave `index` (its migrations and stops stay where they were)."""

    def f(w: Wave) -> Wave:
        hosts = tuple(h for h in w.hosts if h != host)
        if w.index == index:
            hosts = (*hosts, host)
        return replace(w, hosts=hosts)

    return _map_waves(plan, f)


def remove_host(plan: Plan, host: str) -> Plan:
    """Take a host out of every wave, with the migrations and stops of its VMs; waves left empty
    are dropped and the rest renumbered."""

    def f(w: Wave) -> Wave | None:
        if host not in w.hosts:
            return w
        hosts = tuple(h for h in w.hosts if h != host)
        if not hosts:
            return None
        return replace(
            w,
            hosts=hosts,
            migrations=tuple(m for m in w.migrations if m.src != host),
            stops=tuple(s for s in w.stops if s.host != host),
        )

    return renumber(_map_waves(plan, f))


def renumber(plan: Plan) -> Plan:
    return replace(
        plan, waves=tuple(replace(w, index=i) for i, w in enumerate(plan.waves, start=1))
    )


def with_policy(plan: Plan, **changes: Any) -> Plan:
    """The plan under a changed policy, e.g. `with_policy(p, **{"headroom.failures": 2})`."""
    return replace(plan, policy=plan.policy.with_changes(**changes))


def edit_host(inv: Inventory, name: str, **changes: Any) -> Inventory:
    hosts = tuple(replace(h, **changes) if h.name == name else h for h in inv.hosts)
    return replace(inv, hosts=hosts)


def edit_vm(inv: Inventory, vm_id: str, **changes: Any) -> Inventory:
    vms = tuple(replace(v, **changes) if v.id == vm_id else v for v in inv.vms)
    return replace(inv, vms=vms)


GPU = "CUSTOM_NVIDIA_11"


def gpu_cloud() -> Inventory:
    """Placement's view (not a named fixture: it has no hand plan). cmp-1 has a pGPU of type
    NVIDIA_11 (4 VGPU) holding vgpu-1's VGPU; cmp-2 has one of another type; cmp-3 has one of
    the same type; cmp-4 none. ssd-1 needs CUSTOM_SSD, which only cmp-1 and cmp-4 have."""
    c = Cloud("gpus")
    c.hosts_("cmp-1", "cmp-2", "cmp-3", "cmp-4")
    c.vm("vgpu-1", "cmp-1", resources={"VCPU": 2, "MEMORY_MB": 4096, "DISK_GB": 20, "VGPU": 1})
    c.vm("ssd-1", "cmp-1")
    inv = c.build()

    def gpu(host: str, trait: str) -> tuple[Provider, ...]:
        return (Provider(f"{host}_pgpu0", {"VGPU": 4}, traits=(trait,)),)

    inv = edit_host(inv, "cmp-1", providers=gpu("cmp-1", GPU), traits=("CUSTOM_SSD",))
    inv = edit_host(inv, "cmp-2", providers=gpu("cmp-2", "CUSTOM_NVIDIA_12"))
    inv = edit_host(inv, "cmp-3", providers=gpu("cmp-3", GPU))
    inv = edit_host(inv, "cmp-4", traits=("CUSTOM_SSD",))
    inv = edit_vm(
        inv,
        "vgpu-1",
        allocations={
            "cmp-1": {"VCPU": 2, "MEMORY_MB": 4096, "DISK_GB": 20},
            "cmp-1_pgpu0": {"VGPU": 1},
        },
    )
    return edit_vm(inv, "ssd-1", required_traits=("CUSTOM_SSD",))


# ---------------------------------------------------------------------------------------------
# Estimates by hand (plain data: the migration model's predictions for a fixture cloud)
# ---------------------------------------------------------------------------------------------
def estimates(inv: Inventory, vms: Mapping[str, Mapping[str, Any]] | None = None) -> Estimates:
    """Every VM converging in a 60 s live migration (0.3 s paused), cold in 120 s, forced after
    600 s; every host's upgrade 20 min (P95 30 min); `vms` changes some VMs' figures, e.g.
    `{"live": {"live_outcome": "aborted", "converges": False, "live_s": 6400.0}}`."""
    out = {}
    for v in inv.vms:
        d: dict[str, Any] = {
            "vm": v.id,
            "live_s": 60.0,
            "live_downtime_s": 0.3,
            "live_bytes": 4.5e9,
            "live_outcome": "converged",
            "converges": True,
            "dirty_B_s": 2e7,
            "bandwidth_B_s": 1.15e9,
            "cold_s": 120.0,
            "cold_downtime_s": 120.0,
            "forced_after_s": 600.0,
            "forced_s": 60.0,
            "forced_downtime_s": 0.3,
            "stop_downtime_s": 1210.0,
        }
        d.update((vms or {}).get(v.id, {}))
        out[v.id] = VmEstimate(**d)
    hosts = {h.name: HostEstimate(h.name, 1200.0, 1800.0, 5.0, 5.0) for h in inv.hosts}
    return Estimates(out, hosts, overhead_s=10.0, k_out=1, model="tests")
