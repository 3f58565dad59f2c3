"""Example clouds, deterministic by seed: `rollwave generate`.

Realistic mixes: several hardware generations, flavor families (many small, few large), hosts
filled by random flavors to a per-host utilisation around a target (a few nearly empty), anti- and
affinity groups, AZ-pinned and aggregate-bound VMs, a few SHUTOFF, `cold` and `none` VMs, three
controllers in an HA group and one disabled host. Same spec and seed, same bytes.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, replace

from planner.inventory import VM, GroupPolicy, HAGroup, Host, Inventory, MigrationKind, ServerGroup
from planner.policy import Headroom, Policy


@dataclass(frozen=True, slots=True)
class Flavor:
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    weight: float


# Many small, few large, as in public clouds' flavor usage.
FLAVORS: tuple[Flavor, ...] = (
    Flavor("m1.tiny", 1, 1024, 10, 10),
    Flavor("m1.small", 1, 2048, 20, 25),
    Flavor("m1.medium", 2, 4096, 40, 25),
    Flavor("m1.large", 4, 8192, 80, 18),
    Flavor("m1.xlarge", 8, 16384, 160, 8),
    Flavor("r1.large", 4, 32768, 80, 5),
    Flavor("r1.xlarge", 8, 65536, 160, 3),
    Flavor("c1.2xlarge", 16, 32768, 160, 3),
    Flavor("m1.4xlarge", 32, 131072, 320, 1),
)


@dataclass(frozen=True, slots=True)
class Generation:
    name: str
    ram_scale: float  # of the base host memory
    threads: int
    disk_gb: int
    weight: float


GENERATIONS: tuple[Generation, ...] = (
    Generation("gen1", 0.75, 48, 1920, 0.3),
    Generation("gen2", 1.0, 64, 3840, 0.45),
    Generation("gen3", 1.5, 96, 7680, 0.25),
)


@dataclass(frozen=True, slots=True)
class GenerateSpec:
    hosts: int = 12  # compute hosts
    vms_per_host: float = 10.0  # average, reached through the host sizes
    azs: int = 2
    hosts_per_rack: int = 16
    utilisation: float = 0.7  # of MEMORY_MB, the binding class, on average
    controllers: int = 3
    disabled_hosts: int = 1
    upgraded_hosts: int = 0  # hosts already running the target version
    version: str = "2025.1"
    target_version: str = "2025.2"
    seed: int = 0
    cloud: str | None = None


def _fill(rng: random.Random, budget_mb: float) -> list[Flavor]:
    """Flavors drawn as a scheduler filling one host would see them, up to a memory budget."""
    used = 0
    out: list[Flavor] = []
    while True:
        fitting = [f for f in FLAVORS if used + f.ram_mb <= budget_mb]
        if not fitting:
            return out
        f = rng.choices(fitting, weights=[f.weight for f in fitting])[0]
        used += f.ram_mb
        out.append(f)


def _host_memory_base(spec: GenerateSpec) -> int:
    """Base host memory (MB) so that hosts filled to the utilisation hold vms_per_host VMs on
    average. The fill favours small flavors near the top, so the VMs a GiB holds is measured on
    simulated fills (a fixed private seed: the result depends on the spec only)."""
    util = max(spec.utilisation, 0.05)
    mean_gen = sum(g.ram_scale * g.weight for g in GENERATIONS) / sum(g.weight for g in GENERATIONS)
    total_w = sum(f.weight for f in FLAVORS)
    base = spec.vms_per_host * sum(f.ram_mb * f.weight for f in FLAVORS) / total_w / util
    for _ in range(2):  # the density depends on the budget: probe at the budget found so far
        rng = random.Random(0x5EED)
        budget = base * mean_gen * util
        per_mb = sum(len(_fill(rng, budget)) for _ in range(200)) / (200 * budget)
        base = spec.vms_per_host / (per_mb * util * mean_gen)
    step = 16384 if base >= 65536 else 4096  # whole DIMM steps; small hosts for small clouds
    return max(8192, round(base / step) * step)


def generate(spec: GenerateSpec) -> Inventory:
    if spec.hosts < 1:
        raise ValueError("a cloud needs at least one compute host")
    rng = random.Random(spec.seed)
    width = max(3, len(str(spec.hosts)))
    azs = [f"az{i + 1}" for i in range(max(1, spec.azs))]
    base_ram = _host_memory_base(spec)
    reserved_mb = 4096

    hosts: list[Host] = []
    gens = rng.choices(GENERATIONS, weights=[g.weight for g in GENERATIONS], k=spec.hosts)
    per_az = math.ceil(spec.hosts / len(azs))
    for i in range(spec.hosts):
        az_i = min(i // per_az, len(azs) - 1)
        in_az = i - az_i * per_az
        gen = gens[i]
        step = 16384 if base_ram >= 65536 else 4096
        ram = max(8192, round(base_ram * gen.ram_scale / step) * step)
        aggregates = [gen.name]
        if gen.name != "gen1" and rng.random() < 0.5:
            aggregates.append("ssd")
        hosts.append(
            Host(
                name=f"cmp-{i + 1:0{width}d}",
                role="compute",
                az=azs[az_i],
                rack=f"{azs[az_i]}-r{in_az // spec.hosts_per_rack + 1:02d}",
                aggregates=tuple(aggregates),
                version=spec.version,
                enabled=True,
                up=True,
                capacity={"VCPU": gen.threads, "MEMORY_MB": ram, "DISK_GB": gen.disk_gb},
                reserved={"VCPU": 0, "MEMORY_MB": reserved_mb, "DISK_GB": 0},
                allocation_ratio={"VCPU": 4.0, "MEMORY_MB": 1.0, "DISK_GB": 1.0},
            )
        )

    # Fill each host with random flavors up to its own utilisation target.
    projects = [f"project-{p + 1:03d}" for p in range(max(3, spec.hosts // 2))]
    fl_weights = [f.weight for f in FLAVORS]
    vms: list[VM] = []
    n_vm = 0
    disabled = set(rng.sample(range(spec.hosts), min(spec.disabled_hosts, spec.hosts)))
    # Pin or bind a VM only where at least two other enabled hosts qualify: generated clouds
    # are meant to be plannable, so a constraint never leaves a VM without a destination.
    enabled = [h for i, h in enumerate(hosts) if i not in disabled]
    az_ok = {a: sum(1 for h in enabled if h.az == a) >= 3 for a in azs}
    agg_ok = {
        (h.az, h.aggregates[0]): sum(
            1 for o in enabled if o.az == h.az and h.aggregates[0] in o.aggregates
        )
        >= 3
        for h in hosts
    }
    # Nearly empty hosts (about 6%, plus the disabled ones) pull the average down: aim the others
    # higher so that the whole cloud averages the requested utilisation.
    p_low = min(0.9, 0.06 + len(disabled) / spec.hosts)
    normal = min(0.92, (spec.utilisation - 0.1 * p_low) / (1 - p_low))
    for i, h in enumerate(hosts):
        if rng.random() < 0.06 or i in disabled:
            target = rng.uniform(0.0, 0.2)  # nearly empty hosts exist in every cloud
        else:
            target = min(0.95, max(0.05, rng.gauss(normal, 0.1)))
        cap = {rc: h.effective(rc) for rc in h.capacity}
        used = {rc: 0 for rc in cap}
        while True:
            # Draw among the flavors that still fit under the host's target, as a scheduler
            # filling a host would; stop when none does.
            fitting = [
                (f, w)
                for f, w in zip(FLAVORS, fl_weights, strict=True)
                if used["MEMORY_MB"] + f.ram_mb <= target * cap["MEMORY_MB"]
                and used["VCPU"] + f.vcpus <= cap["VCPU"]
                and used["DISK_GB"] + f.disk_gb <= cap["DISK_GB"]
            ]
            if not fitting:
                break
            f = rng.choices([f for f, _ in fitting], weights=[w for _, w in fitting])[0]
            need = {"VCPU": f.vcpus, "MEMORY_MB": f.ram_mb, "DISK_GB": f.disk_gb}
            for rc in need:
                used[rc] += need[rc]
            n_vm += 1
            project = rng.choice(projects)
            r = rng.random()
            migration: MigrationKind = "cold" if r < 0.02 else "none" if r < 0.03 else "live"
            status = "SHUTOFF" if rng.random() < 0.03 else "ACTIVE"
            dirty = round(rng.lognormvariate(math.log(20.0), 1.1), 1)
            if rng.random() < 0.01:
                dirty = round(rng.uniform(1200.0, 3000.0), 1)  # never converges on 10 GbE
            vms.append(
                VM(
                    id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    name=f"{project.split('-')[1]}-{f.name.replace('.', '-')}-{n_vm:05d}",
                    project=project,
                    host=h.name,
                    status=status,
                    resources=need,
                    az=h.az if rng.random() < 0.1 and az_ok[h.az or ""] else None,
                    allowed_aggregates=(h.aggregates[0],)
                    if rng.random() < 0.05 and agg_ok[(h.az, h.aggregates[0])]
                    else (),
                    server_group=None,
                    migration=migration,
                    dirty_rate_mb_s=dirty,
                    local_disk=rng.random() < 0.3,
                )
            )

    vms, groups = _server_groups(rng, vms, hosts)
    hosts = _mark_hosts(rng, spec, hosts, disabled)
    controllers, ha = _controllers(spec, azs)
    return Inventory(
        cloud=spec.cloud or f"example-{spec.hosts}-s{spec.seed}",
        taken_at="2026-01-01T00:00:00Z",  # fixed: same seed, same bytes
        hosts=tuple(hosts + controllers),
        vms=tuple(vms),
        server_groups=tuple(groups),
        ha_groups=tuple(ha),
    )


def _server_groups(
    rng: random.Random, vms: list[VM], hosts: list[Host]
) -> tuple[list[VM], list[ServerGroup]]:
    """Turn some VMs into group members, placed so that the inventory obeys every hard group."""
    by_host: dict[str, list[int]] = {}
    for j, v in enumerate(vms):
        by_host.setdefault(v.host, []).append(j)
    az_of = {h.name: h.az for h in hosts}
    free = [j for j, v in enumerate(vms) if v.migration != "none"]
    rng.shuffle(free)
    taken: set[int] = set()
    groups: list[ServerGroup] = []
    member: dict[int, str] = {}
    n_groups = max(1, len(vms) // 40)

    def pick_spread(size: int, per_host: int, same_az: bool) -> list[int]:
        chosen: list[int] = []
        count: dict[str, int] = {}
        az = None
        for j in free:
            if j in taken:
                continue
            h = vms[j].host
            if same_az and az is not None and az_of[h] != az:
                continue
            if count.get(h, 0) >= per_host:
                continue
            chosen.append(j)
            count[h] = count.get(h, 0) + 1
            az = az_of[h]
            if len(chosen) == size:
                break
        return chosen

    for g in range(n_groups):
        kind = rng.random()
        gid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if kind < 0.6:
            size = rng.choice((2, 3, 3, 4, 5))
            per_host = 2 if rng.random() < 0.15 else 1
            chosen = pick_spread(size, per_host, same_az=rng.random() < 0.5)
            groups.append(ServerGroup(gid, f"anti-{g + 1:03d}", "anti-affinity", per_host))
        elif kind < 0.8:
            chosen = pick_spread(rng.choice((2, 3)), 1, same_az=False)
            groups.append(ServerGroup(gid, f"soft-anti-{g + 1:03d}", "soft-anti-affinity", 1))
        else:
            # Affinity: two VMs that already share a host.
            chosen = []
            for _host, js in sorted(by_host.items()):
                avail = [j for j in js if j not in taken and vms[j].migration != "none"]
                if len(avail) >= 2 and rng.random() < 0.2:
                    chosen = avail[:2]
                    break
            aff: GroupPolicy = "affinity" if rng.random() < 0.7 else "soft-affinity"
            groups.append(ServerGroup(gid, f"aff-{g + 1:03d}", aff, 1))
        if len(chosen) < 2:
            groups.pop()
            continue
        for j in chosen:
            taken.add(j)
            member[j] = gid
    out = [replace(v, server_group=member[j]) if j in member else v for j, v in enumerate(vms)]
    return out, groups


def _mark_hosts(
    rng: random.Random, spec: GenerateSpec, hosts: list[Host], disabled: set[int]
) -> list[Host]:
    upgraded = set(rng.sample(range(len(hosts)), min(spec.upgraded_hosts, len(hosts))))
    out = []
    for i, h in enumerate(hosts):
        if i in disabled:
            h = replace(h, enabled=False, disabled_reason="hardware ticket: failing DIMM")
        if i in upgraded:
            h = replace(h, version=spec.target_version)
        out.append(h)
    return out


def _controllers(spec: GenerateSpec, azs: list[str]) -> tuple[list[Host], list[HAGroup]]:
    if spec.controllers <= 0:
        return [], []
    ctl = [
        Host(
            name=f"ctl-{i + 1}",
            role="controller",
            az=azs[i % len(azs)],
            rack=f"{azs[i % len(azs)]}-r00",
            aggregates=(),
            version=spec.version,
            enabled=True,
            up=True,
            capacity={},
        )
        for i in range(spec.controllers)
    ]
    quorum = spec.controllers // 2 + 1
    return ctl, [HAGroup("control-plane", tuple(h.name for h in ctl), quorum)]


def default_policy(spec: GenerateSpec) -> Policy:
    """A sensible policy for a generated cloud: N+1 per AZ, a few hosts a wave, controllers
    first."""
    return Policy(
        max_hosts_per_wave=max(2, spec.hosts // 20),
        target_version=spec.target_version,
        max_hosts_per_wave_per_rack=None,
        headroom=Headroom(failures=1, scope="az", reserve_percent=0.0),
        max_concurrent_live_migrations=2,
        allow_stop=True,
        first=("role=controller",),
    )
