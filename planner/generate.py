"""Example clouds, deterministic by seed: `rollwave generate`.

Realistic mixes: several hardware generations, flavor families (many small, few large), hosts
filled by random flavors to a per-host utilisation around a target (a few nearly empty), anti- and
affinity groups, AZ-pinned and aggregate-bound VMs, a few SHUTOFF, `cold` and `none` VMs, three
controllers in an HA group and one disabled host. Same spec and seed, same bytes.

Shapes of production data (options off by default, so older specs give the same bytes): a flavor
mix of many small VMs (`flavor_mix="small"`, tens of VMs a host) or of big ones ("large"),
services as hard anti-affinity groups of 2-10 members holding a share of the VMs
(`service_share`), resource classes beyond VCPU, MEMORY_MB and DISK_GB (`extra_classes`), on
only some hosts if asked, and sizes of each VM's own (`vm_sizes="per-vm"`: traces show
near-continuous sizes, so VMs do not fall into a few flavor classes).
"""

from __future__ import annotations

import math
import random
import re
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


# Production traces: most VMs are small (1-2 vCPU, a few GiB) in many sizes, some not powers of
# two, with a tail of memory-heavy ones.
SMALL_FLAVORS: tuple[Flavor, ...] = (
    Flavor("s1.nano", 1, 512, 5, 8),
    Flavor("s1.a0", 1, 768, 8, 8),
    Flavor("s1.micro", 1, 1024, 10, 15),
    Flavor("s1.a1", 1, 1792, 20, 10),
    Flavor("s1.small", 1, 2048, 20, 12),
    Flavor("s1.a2", 2, 3584, 40, 10),
    Flavor("s1.medium", 2, 4096, 40, 12),
    Flavor("sr1.medium", 2, 8192, 40, 6),
    Flavor("s1.a3", 4, 7168, 80, 6),
    Flavor("s1.large", 4, 8192, 80, 6),
    Flavor("s1.a4", 4, 14336, 80, 3),
    Flavor("s1.xlarge", 8, 16384, 160, 3),
    Flavor("s1.a5", 8, 28672, 160, 1),
    Flavor("sr1.large", 2, 16384, 40, 2),
)

# Big flavors only (databases, analytics): a few VMs fill a host.
LARGE_FLAVORS: tuple[Flavor, ...] = (
    Flavor("l1.xlarge", 8, 32768, 160, 3),
    Flavor("l1.2xlarge", 16, 65536, 320, 4),
    Flavor("l1.4xlarge", 32, 131072, 640, 3),
    Flavor("l1.8xlarge", 64, 262144, 1280, 1),
)

FLAVOR_MIXES: dict[str, tuple[Flavor, ...]] = {
    "standard": FLAVORS,
    "small": SMALL_FLAVORS,
    "large": LARGE_FLAVORS,
}

# "flavors": a VM is its flavor's size; "per-vm": each VM's memory, disk (and at times its
# vCPUs) scaled from its flavor's by its own draw, as traces show (near-continuous sizes).
VM_SIZES = ("flavors", "per-vm")

# Service sizes (hard anti-affinity, one member a host) and how often each occurs.
SERVICE_SIZES = (2, 3, 4, 5, 6, 7, 8, 9, 10)
SERVICE_WEIGHTS = (30, 25, 12, 8, 6, 5, 5, 4, 5)


@dataclass(frozen=True, slots=True)
class ExtraClass:
    """A resource class beyond VCPU, MEMORY_MB and DISK_GB: a compute host offers `per_host`
    (each host with probability `host_share`, drawn per host); a VM on such a host asks for it
    with probability `share`, in proportion to its memory (a VM using 2% of a host's memory asks
    for about 2% of `per_host`, at least 1)."""

    name: str
    per_host: int
    share: float = 0.5
    host_share: float = 1.0


def parse_extra_classes(text: str) -> tuple[ExtraClass, ...]:
    """`NAME:PER_HOST[:SHARE[:HOST_SHARE]],...` (e.g. `CUSTOM_NET_BW:10000:0.6,CUSTOM_X:64`);
    ValueError with what is wrong."""
    out: list[ExtraClass] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        parts = item.split(":")
        if len(parts) not in (2, 3, 4):
            raise ValueError(f"{item!r}: expected NAME:PER_HOST[:SHARE[:HOST_SHARE]]")
        name = parts[0].strip()
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name) or name in ("VCPU", "MEMORY_MB", "DISK_GB"):
            raise ValueError(
                f"{item!r}: the class must be a new upper-case name such as CUSTOM_X, got {name!r}"
            )
        try:
            per_host = int(parts[1])
            share = float(parts[2]) if len(parts) >= 3 else 0.5
            host_share = float(parts[3]) if len(parts) == 4 else 1.0
        except ValueError:
            raise ValueError(
                f"{item!r}: PER_HOST must be an integer, SHARE and HOST_SHARE numbers"
            ) from None
        if per_host < 1 or not 0.0 <= share <= 1.0 or not 0.0 < host_share <= 1.0:
            raise ValueError(
                f"{item!r}: PER_HOST must be at least 1, SHARE within 0..1, HOST_SHARE above 0 "
                "and at most 1"
            )
        if any(x.name == name for x in out):
            raise ValueError(f"{item!r}: {name} is given twice")
        out.append(ExtraClass(name, per_host, share, host_share))
    return tuple(out)


GENERATIONS: tuple[Generation, ...] = (
    Generation("gen1", 0.75, 48, 1920, 0.3),
    Generation("gen2", 1.0, 64, 3840, 0.45),
    Generation("gen3", 1.5, 96, 7680, 0.25),
)


def hardware_models(n: int) -> tuple[Generation, ...]:
    """The hardware a cloud is built of: the three generations (n = 0), or n models from half to
    twice the base memory, with cores and disks to match (production clouds buy hardware over
    years: many sizes, each a pool of its own)."""
    if n <= 0:
        return GENERATIONS
    out = []
    for i in range(n):
        x = i / max(1, n - 1)
        scale = 0.5 * 4**x
        threads = max(16, 8 * round(64 * scale**0.8 / 8))
        disk = 960 * 2 ** round(1 + 2.5 * x)
        weight = 1.0 + 2.0 * (1 - abs(2 * x - 1))  # middle sizes are the most common
        out.append(Generation(f"hw{i + 1:02d}", round(scale, 3), threads, disk, weight))
    return tuple(out)


# Base host memory beyond which, with the new flavor mixes, cores and disks grow with memory.
BIG_HOST_MB = 262144


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
    flavor_mix: str = "standard"  # a key of FLAVOR_MIXES
    service_share: float = 0.0  # share of VMs in hard anti-affinity services of 2-10 members
    extra_classes: tuple[ExtraClass, ...] = ()
    host_models: int = 0  # hardware models (`hardware_models`); 0: the three generations
    vm_sizes: str = "flavors"  # "per-vm": each VM its own size near its flavor's (VM_SIZES)

    @property
    def flavors(self) -> tuple[Flavor, ...]:
        return FLAVOR_MIXES[self.flavor_mix]


def _fill(rng: random.Random, budget_mb: float, flavors: tuple[Flavor, ...]) -> list[Flavor]:
    """Flavors drawn as a scheduler filling one host would see them, up to a memory budget."""
    used = 0
    out: list[Flavor] = []
    while True:
        fitting = [f for f in flavors if used + f.ram_mb <= budget_mb]
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
    flavors = spec.flavors
    models = hardware_models(spec.host_models)
    mean_gen = sum(g.ram_scale * g.weight for g in models) / sum(g.weight for g in models)
    total_w = sum(f.weight for f in flavors)
    base = spec.vms_per_host * sum(f.ram_mb * f.weight for f in flavors) / total_w / util
    for _ in range(2):  # the density depends on the budget: probe at the budget found so far
        rng = random.Random(0x5EED)
        budget = base * mean_gen * util
        per_mb = sum(len(_fill(rng, budget, flavors)) for _ in range(200)) / (200 * budget)
        base = spec.vms_per_host / (per_mb * util * mean_gen)
    step = 16384 if base >= 65536 else 4096  # whole DIMM steps; small hosts for small clouds
    return max(8192, round(base / step) * step)


def generate(spec: GenerateSpec) -> Inventory:
    if spec.hosts < 1:
        raise ValueError("a cloud needs at least one compute host")
    if spec.flavor_mix not in FLAVOR_MIXES:
        raise ValueError(
            f"unknown flavor mix {spec.flavor_mix!r}; known: {', '.join(FLAVOR_MIXES)}"
        )
    if spec.vm_sizes not in VM_SIZES:
        raise ValueError(f"unknown VM sizes {spec.vm_sizes!r}; known: {', '.join(VM_SIZES)}")
    rng = random.Random(spec.seed)
    # The new shapes draw from their own streams, so that the default shape keeps its bytes.
    xrng = random.Random(spec.seed * 7919 + 1)
    srng = random.Random(spec.seed * 7919 + 2)  # per-VM sizes and which hosts offer a class
    width = max(3, len(str(spec.hosts)))
    azs = [f"az{i + 1}" for i in range(max(1, spec.azs))]
    base_ram = _host_memory_base(spec)
    reserved_mb = 4096

    hosts: list[Host] = []
    models = hardware_models(spec.host_models)
    gens = rng.choices(models, weights=[g.weight for g in models], k=spec.hosts)
    # A class on only some hosts comes with hardware models (a NIC or accelerator model): drawn
    # per model, so aggregate-bound VMs that ask for it find it on their model's other hosts.
    offers = {
        (x.name, g.name): x.host_share >= 1.0 or srng.random() < x.host_share
        for x in spec.extra_classes
        for g in models
    }
    per_az = math.ceil(spec.hosts / len(azs))
    for i in range(spec.hosts):
        az_i = min(i // per_az, len(azs) - 1)
        in_az = i - az_i * per_az
        gen = gens[i]
        step = 16384 if base_ram >= 65536 else 4096
        ram = max(8192, round(base_ram * gen.ram_scale / step) * step)
        aggregates = [gen.name]
        if gen.name != models[0].name and rng.random() < 0.5:
            aggregates.append("ssd")
        threads, disk = gen.threads, gen.disk_gb
        if spec.flavor_mix != "standard" and base_ram > BIG_HOST_MB:
            # dense hosts (hundreds of small VMs) have cores and disks to match their memory
            grow = base_ram / BIG_HOST_MB
            threads, disk = round(threads * grow), round(disk * grow)
        capacity = {"VCPU": threads, "MEMORY_MB": ram, "DISK_GB": disk}
        reserved = {"VCPU": 0, "MEMORY_MB": reserved_mb, "DISK_GB": 0}
        ratio = {"VCPU": 4.0, "MEMORY_MB": 1.0, "DISK_GB": 1.0}
        for x in spec.extra_classes:
            if not offers[(x.name, gen.name)]:
                continue  # this host's model does not offer the class
            capacity[x.name], reserved[x.name], ratio[x.name] = x.per_host, 0, 1.0
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
                capacity=capacity,
                reserved=reserved,
                allocation_ratio=ratio,
            )
        )

    # Fill each host with random flavors up to its own utilisation target.
    projects = [f"project-{p + 1:03d}" for p in range(max(3, spec.hosts // 2))]
    flavors = spec.flavors
    fl_weights = [f.weight for f in flavors]
    vms: list[VM] = []
    n_vm = 0
    disabled = set(rng.sample(range(spec.hosts), min(spec.disabled_hosts, spec.hosts)))
    # Pin or bind a VM only where at least two other enabled hosts qualify: generated clouds
    # are meant to be plannable, so a constraint never leaves a VM without a destination.
    enabled = [h for i, h in enumerate(hosts) if i not in disabled]
    az_ok = {a: sum(1 for h in enabled if h.az == a) >= 3 for a in azs}
    # ... and, for a VM asking for a class only some hosts offer, three hosts of its AZ offering it
    az_cls_ok = {
        (a, x.name): sum(1 for h in enabled if h.az == a and x.name in h.capacity) >= 3
        for a in azs
        for x in spec.extra_classes
    }
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
                for f, w in zip(flavors, fl_weights, strict=True)
                if used["MEMORY_MB"] + f.ram_mb <= target * cap["MEMORY_MB"]
                and used["VCPU"] + f.vcpus <= cap["VCPU"]
                and used["DISK_GB"] + f.disk_gb <= cap["DISK_GB"]
            ]
            if not fitting:
                break
            f = rng.choices([f for f, _ in fitting], weights=[w for _, w in fitting])[0]
            if spec.vm_sizes == "per-vm":
                f = _own_size(srng, f)
            need = {"VCPU": f.vcpus, "MEMORY_MB": f.ram_mb, "DISK_GB": f.disk_gb}
            if spec.extra_classes:
                offered = tuple(x for x in spec.extra_classes if x.name in cap)
                need.update(_extra_demand(xrng, offered, f, base_ram))
            if (spec.extra_classes or spec.vm_sizes == "per-vm") and any(
                used.get(rc, 0) + n > cap.get(rc, 0) for rc, n in need.items()
            ):
                break  # a class is full (or the VM's own size overshoots): no more here
            for rc in need:
                used[rc] = used.get(rc, 0) + need[rc]
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
                    az=h.az
                    if rng.random() < 0.1
                    and az_ok[h.az or ""]
                    and all(az_cls_ok.get((h.az or "", rc), True) for rc in need)
                    else None,
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
    if spec.service_share > 0:
        vms, services = _services(xrng, spec.service_share, vms, hosts, disabled)
        groups += services
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


def _own_size(rng: random.Random, f: Flavor) -> Flavor:
    """A VM's own size near its flavor's: memory x0.6-1.4 in 64 MiB steps, disk x0.5-1.5 in
    GiB, and one VM in five a vCPU more or less (at least one)."""
    ram = max(256, round(f.ram_mb * rng.uniform(0.6, 1.4) / 64) * 64)
    disk = max(1, round(f.disk_gb * rng.uniform(0.5, 1.5)))
    vcpus = f.vcpus
    if rng.random() < 0.2:
        vcpus = max(1, vcpus + rng.choice((-1, 1)))
    return replace(f, vcpus=vcpus, ram_mb=ram, disk_gb=disk)


def _extra_demand(
    rng: random.Random, extra: tuple[ExtraClass, ...], f: Flavor, base_ram: int
) -> dict[str, int]:
    """What a VM of flavor f asks of the extra classes: in proportion to its memory."""
    out = {}
    for x in extra:
        if rng.random() < x.share:
            out[x.name] = max(1, round(x.per_host * f.ram_mb / base_ram))
    return out


def _services(
    rng: random.Random, share: float, vms: list[VM], hosts: list[Host], disabled: set[int]
) -> tuple[list[VM], list[ServerGroup]]:
    """Services: hard anti-affinity groups of 2-10 members (one a host) holding about `share`
    of the VMs, their members already on distinct hosts, half of them within one AZ. A service
    has at most as many members as its hosts less two (with one down, the member must move to a
    host without one), so the cloud stays plannable."""
    by_host: dict[str, list[int]] = {}
    for j, v in enumerate(vms):
        if v.server_group is None:
            by_host.setdefault(v.host, []).append(j)
    for js in by_host.values():
        rng.shuffle(js)
    enabled = [h for i, h in enumerate(hosts) if i not in disabled]
    names_by_az: dict[str | None, list[str]] = {}
    for h in enabled:
        names_by_az.setdefault(h.az, []).append(h.name)
    everywhere = [h.name for h in enabled]
    target = round(share * len(vms))
    member: dict[int, str] = {}
    groups: list[ServerGroup] = []
    misses = 0
    while len(member) < target and misses < 50:
        size = rng.choices(SERVICE_SIZES, weights=SERVICE_WEIGHTS)[0]
        pool = everywhere
        if rng.random() < 0.5 and len(names_by_az) > 1:
            pool = names_by_az[rng.choice(sorted(names_by_az, key=lambda a: a or ""))]
        size = min(size, len(pool) - 2, target - len(member))
        with_vms = [n for n in pool if by_host.get(n)]
        if size < 2 or len(with_vms) < size:
            misses += 1
            continue
        chosen = [by_host[n].pop() for n in rng.sample(with_vms, size)]
        gid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        groups.append(ServerGroup(gid, f"svc-{len(groups) + 1:05d}", "anti-affinity", 1))
        for j in chosen:
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
