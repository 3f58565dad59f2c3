"""The simulation model: network, Nova's settings, the executor's timings, upgrade durations and
failure rates. Read from a YAML or JSON file (`kind: sim-model`, `format_version: "1.0"`); every
field is optional and defaults to Nova's defaults on a 10 GbE network (docs/simulation.md lists
them all). Problems are reported with the file and their place in it, like every rollwave file.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from planner.formats import Reader, read_document
from planner.inventory import Host
from planner.policy import selector_matches
from sim.migration import MIB, NovaSettings, QemuSettings

KIND = "sim-model"
DistKind = Literal["fixed", "uniform", "triangular", "lognormal"]
DIST_KINDS: tuple[DistKind, ...] = ("fixed", "uniform", "triangular", "lognormal")


@dataclass(frozen=True, slots=True)
class Distribution:
    """A duration in seconds: fixed x; uniform [a, b]; triangular [a, mode, b]; lognormal with
    median a and sigma b (of the underlying normal)."""

    kind: DistKind
    a: float
    b: float = 0.0
    c: float = 0.0

    def sample(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
        if self.kind == "fixed":
            return np.full(n, self.a)
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b, n)
        if self.kind == "triangular":
            if self.a == self.c:
                return np.full(n, self.a)
            return rng.triangular(self.a, self.b, self.c, n)
        return self.a * np.exp(self.b * rng.standard_normal(n))

    @property
    def mean(self) -> float:
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return (self.a + self.b) / 2
        if self.kind == "triangular":
            return (self.a + self.b + self.c) / 3
        return self.a * math.exp(self.b**2 / 2)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "fixed":
            return {"fixed": self.a}
        if self.kind == "uniform":
            return {"uniform": [self.a, self.b]}
        if self.kind == "triangular":
            return {"triangular": [self.a, self.b, self.c]}
        return {"lognormal": {"median": self.a, "sigma": self.b}}


@dataclass(frozen=True)
class SimModel:
    # network
    nic_gbps: float = 10.0  # per host, each direction (full duplex)
    efficiency: float = 0.92  # of line rate a migration stream achieves: 10 GbE ~ 1.15 GB/s
    switchover_gbps: float | None = None  # the paused last copy; None: the migration's NIC share
    nic_by_host: tuple[tuple[str, float], ...] = ()  # (selector, Gbps), first match wins
    # How migrations share a host's NIC: "dynamic" (the rule), NIC / (how many run on it
    # now), rebalanced at every start and end; "static", the fast approximation, NIC / (how many
    # can run on it at once in the wave), fixed before the run (conservative at a drain's tail).
    sharing: Literal["static", "dynamic"] = "dynamic"
    # Nova and QEMU
    nova: NovaSettings = field(default_factory=NovaSettings)
    qemu: QemuSettings = field(default_factory=QemuSettings)
    max_concurrent_live_migrations: int | None = None  # None: the plan's policy; 0: unlimited
    # executor
    max_inbound_migrations: int | None = 2  # per destination host; None: no limit
    orchestration_overhead_s: float = 10.0  # per migration: API, conductor, scheduler, checks
    disable_s: float = 5.0  # disabling a wave's compute services before its migrations
    enable_s: float = 5.0  # enabling a host after its upgrade
    retry_delay_s: float = 30.0  # before a failed migration is tried again
    # A failed upgrade is rolled back (`execute --rollback-command`): the host returns to service
    # at its old version after `upgrade_rollback`; else it stays down (the default).
    rollback: bool = False
    # The canary (`execute --canary N --soak S`): after the wave in which the first N upgraded
    # hosts are back (or the last wave), nothing starts for soak_s; 0 hosts: no canary.
    canary_hosts: int = 0
    soak_s: float = 0.0
    # guests
    default_dirty_rate_mib_s: float = 20.0  # for VMs without dirty_rate_mb_s
    shutdown_s: float = 30.0  # a guest's clean shutdown (cold migration, stop in place)
    boot_s: float = 60.0  # a guest's boot
    # upgrades
    upgrade_compute: Distribution = Distribution("lognormal", 1200.0, 0.25)
    upgrade_controller: Distribution = Distribution("lognormal", 1800.0, 0.25)
    upgrade_by_host: tuple[tuple[str, Distribution], ...] = ()  # (selector, ...), first wins
    upgrade_rollback: Distribution = Distribution("lognormal", 600.0, 0.25)  # a rollback's time
    # failures
    migration_failure_p: float = 0.0  # per attempt
    migration_retries: int = 2
    upgrade_failure_p: float = 0.0  # per host
    canary_failure_p: float = 0.0  # the canary fails its checks: its hosts are rolled back
    crash_p: float = 0.0  # probability that one random host crashes during a run
    crash_window_s: tuple[float, float] | None = None  # None: anywhere within the run
    source: str | None = None

    # -- derived --------------------------------------------------------------------------------
    def nic_bytes_s(self, host: Host) -> float:
        gbps = self.nic_gbps
        for sel, g in self.nic_by_host:
            if selector_matches(sel, host):
                gbps = g
                break
        return gbps * 1e9 / 8 * self.efficiency

    def upgrade_distribution(self, host: Host) -> Distribution:
        for sel, d in self.upgrade_by_host:
            if selector_matches(sel, host):
                return d
        return self.upgrade_controller if host.role == "controller" else self.upgrade_compute

    @property
    def bandwidth_cap(self) -> float:
        """live_migration_bandwidth in bytes/s (inf: unlimited)."""
        n = self.nova.bandwidth_mib_s
        return n * MIB if n > 0 else math.inf

    def dirty_rate(self, mib_s: float | None) -> float:
        return (self.default_dirty_rate_mib_s if mib_s is None else mib_s) * MIB

    def with_changes(self, **kw: Any) -> SimModel:
        return replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        """The effective model, in the file's structure (what a run used)."""
        n, q = self.nova, self.qemu
        return {
            "format_version": "1.0",
            "kind": KIND,
            "network": {
                "nic_gbps": self.nic_gbps,
                "efficiency": self.efficiency,
                "switchover_gbps": self.switchover_gbps,
                "sharing": self.sharing,
                "hosts": [{"match": s, "nic_gbps": g} for s, g in self.nic_by_host],
            },
            "nova": {
                "max_concurrent_live_migrations": self.max_concurrent_live_migrations,
                "live_migration_downtime": n.downtime_ms,
                "live_migration_downtime_steps": n.downtime_steps,
                "live_migration_downtime_delay": n.downtime_delay_s,
                "live_migration_completion_timeout": n.completion_timeout_s,
                "live_migration_timeout_action": n.timeout_action,
                "live_migration_permit_auto_converge": n.permit_auto_converge,
                "live_migration_permit_post_copy": n.permit_post_copy,
                "live_migration_bandwidth": n.bandwidth_mib_s,
            },
            "qemu": {
                "switchover_check": q.check,
                "resume_ms": q.resume_s * 1000,
                "postcopy_switch_ms": q.postcopy_switch_s * 1000,
                "throttle_initial": q.throttle_initial,
                "throttle_increment": q.throttle_increment,
                "throttle_max": q.throttle_max,
                "throttle_trigger_threshold": q.throttle_trigger,
            },
            "executor": {
                "max_inbound_migrations": self.max_inbound_migrations,
                "orchestration_overhead_s": self.orchestration_overhead_s,
                "disable_s": self.disable_s,
                "enable_s": self.enable_s,
                "retry_delay_s": self.retry_delay_s,
                "rollback": self.rollback,
                "canary_hosts": self.canary_hosts,
                "soak_s": self.soak_s,
            },
            "guests": {
                "default_dirty_rate_mb_s": self.default_dirty_rate_mib_s,
                "shutdown_s": self.shutdown_s,
                "boot_s": self.boot_s,
            },
            "upgrade": {
                "compute": self.upgrade_compute.to_dict(),
                "controller": self.upgrade_controller.to_dict(),
                "hosts": [{"match": s, "duration": d.to_dict()} for s, d in self.upgrade_by_host],
                "rollback": self.upgrade_rollback.to_dict(),
            },
            "failures": {
                "migration": {
                    "probability": self.migration_failure_p,
                    "retries": self.migration_retries,
                },
                "upgrade": {"probability": self.upgrade_failure_p},
                "canary": {"probability": self.canary_failure_p},
                "host_crash": {
                    "probability": self.crash_p,
                    "window_s": list(self.crash_window_s) if self.crash_window_s else None,
                },
            },
        }


DEFAULT = SimModel()

# The keys each section accepts (typos are reported, with a suggestion).
_SECTIONS: dict[str, tuple[str, ...]] = {
    "": (
        "format_version",
        "kind",
        "network",
        "nova",
        "qemu",
        "executor",
        "guests",
        "upgrade",
        "failures",
        "description",
    ),
    "network": ("nic_gbps", "efficiency", "switchover_gbps", "sharing", "hosts"),
    "nova": (
        "max_concurrent_live_migrations",
        "live_migration_downtime",
        "live_migration_downtime_steps",
        "live_migration_downtime_delay",
        "live_migration_completion_timeout",
        "live_migration_timeout_action",
        "live_migration_permit_auto_converge",
        "live_migration_permit_post_copy",
        "live_migration_bandwidth",
    ),
    "qemu": (
        "switchover_check",
        "resume_ms",
        "postcopy_switch_ms",
        "throttle_initial",
        "throttle_increment",
        "throttle_max",
        "throttle_trigger_threshold",
    ),
    "executor": (
        "max_inbound_migrations",
        "orchestration_overhead_s",
        "disable_s",
        "enable_s",
        "retry_delay_s",
        "rollback",
        "canary_hosts",
        "soak_s",
    ),
    "guests": ("default_dirty_rate_mb_s", "shutdown_s", "boot_s"),
    "upgrade": ("compute", "controller", "hosts", "rollback"),
    "failures": ("migration", "upgrade", "host_crash", "canary"),
    "failures.migration": ("probability", "retries"),
    "failures.upgrade": ("probability",),
    "failures.canary": ("probability",),
    "failures.host_crash": ("probability", "window_s"),
}


def load_model(path: str | os.PathLike[str] | None) -> SimModel:
    """The model in `path`, or the defaults when path is None."""
    if path is None:
        return DEFAULT
    file = os.fspath(path)
    data, _ = read_document(file, KIND)
    return model_from_dict(data, file)


def model_from_dict(data: Mapping[str, Any], file: str = "<model>") -> SimModel:
    r = Reader(file)
    _unknown(r, data, "")
    d = DEFAULT
    kw: dict[str, Any] = {"source": file}

    net = _section(r, data, "network")
    if net is not None:
        kw["nic_gbps"] = r.num(
            net,
            "nic_gbps",
            "network",
            required=False,
            default=d.nic_gbps,
            minimum=0.0,
            exclusive_min=True,
        )
        kw["efficiency"] = r.num(
            net,
            "efficiency",
            "network",
            required=False,
            default=d.efficiency,
            minimum=0.0,
            maximum=1.0,
            exclusive_min=True,
        )
        kw["switchover_gbps"] = r.num(
            net,
            "switchover_gbps",
            "network",
            required=False,
            default=None,
            minimum=0.0,
            exclusive_min=True,
            nullable=True,
        )
        kw["sharing"] = r.str_(
            net,
            "sharing",
            "network",
            required=False,
            default=d.sharing,
            choices=("static", "dynamic"),
        )
        hosts = []
        for i, x in enumerate(r.items(net, "hosts", "network", required=False)):
            loc = f"network.hosts[{i}]"
            h = r.obj(x, loc)
            if h is None:
                continue
            _unknown(r, h, loc, ("match", "nic_gbps"))
            sel = r.str_(h, "match", loc, default="")
            g = r.num(h, "nic_gbps", loc, default=None, minimum=0.0, exclusive_min=True)
            if sel and g is not None:
                hosts.append((sel, g))
        kw["nic_by_host"] = tuple(hosts)

    nova = _section(r, data, "nova")
    if nova is not None:
        n = d.nova
        kw["max_concurrent_live_migrations"] = r.int_(
            nova,
            "max_concurrent_live_migrations",
            "nova",
            required=False,
            default=None,
            minimum=0,  # 0: unlimited, as in Nova
            nullable=True,
        )
        kw["nova"] = NovaSettings(
            downtime_ms=r.int_(
                nova,
                "live_migration_downtime",
                "nova",
                required=False,
                default=n.downtime_ms,
                minimum=100,
            ),
            downtime_steps=r.int_(
                nova,
                "live_migration_downtime_steps",
                "nova",
                required=False,
                default=n.downtime_steps,
                minimum=3,
            ),
            downtime_delay_s=r.int_(
                nova,
                "live_migration_downtime_delay",
                "nova",
                required=False,
                default=n.downtime_delay_s,
                minimum=3,
            ),
            completion_timeout_s=r.int_(
                nova,
                "live_migration_completion_timeout",
                "nova",
                required=False,
                default=n.completion_timeout_s,
                minimum=0,
            ),
            timeout_action=r.str_(
                nova,
                "live_migration_timeout_action",
                "nova",
                required=False,
                default=n.timeout_action,
                choices=("abort", "force_complete"),
            ),
            permit_auto_converge=r.bool_(
                nova,
                "live_migration_permit_auto_converge",
                "nova",
                required=False,
                default=n.permit_auto_converge,
            ),
            permit_post_copy=r.bool_(
                nova,
                "live_migration_permit_post_copy",
                "nova",
                required=False,
                default=n.permit_post_copy,
            ),
            bandwidth_mib_s=r.int_(
                nova,
                "live_migration_bandwidth",
                "nova",
                required=False,
                default=n.bandwidth_mib_s,
                minimum=0,
            ),
        )

    qemu = _section(r, data, "qemu")
    if qemu is not None:
        q = d.qemu
        resume = r.num(
            qemu, "resume_ms", "qemu", required=False, default=q.resume_s * 1000, minimum=0.0
        )
        pswitch = r.num(
            qemu,
            "postcopy_switch_ms",
            "qemu",
            required=False,
            default=q.postcopy_switch_s * 1000,
            minimum=0.0,
        )
        kw["qemu"] = QemuSettings(
            check=r.str_(
                qemu,
                "switchover_check",
                "qemu",
                required=False,
                default=q.check,
                choices=("continuous", "per-pass"),
            ),
            resume_s=(resume or 0.0) / 1000.0,
            postcopy_switch_s=(pswitch or 0.0) / 1000.0,
            throttle_initial=r.int_(
                qemu,
                "throttle_initial",
                "qemu",
                required=False,
                default=q.throttle_initial,
                minimum=1,
            ),
            throttle_increment=r.int_(
                qemu,
                "throttle_increment",
                "qemu",
                required=False,
                default=q.throttle_increment,
                minimum=1,
            ),
            throttle_max=r.int_(
                qemu, "throttle_max", "qemu", required=False, default=q.throttle_max, minimum=1
            ),
            throttle_trigger=r.int_(
                qemu,
                "throttle_trigger_threshold",
                "qemu",
                required=False,
                default=q.throttle_trigger,
                minimum=1,
            ),
        )
        for key in ("throttle_initial", "throttle_max", "throttle_trigger_threshold"):
            v = qemu.get(key)
            if isinstance(v, int) and not isinstance(v, bool) and v > 100:
                r.bad(f"qemu.{key}", f"is a percentage, at most 100, got {v}")

    ex = _section(r, data, "executor")
    if ex is not None:
        kw["max_inbound_migrations"] = r.int_(
            ex,
            "max_inbound_migrations",
            "executor",
            required=False,
            default=d.max_inbound_migrations,
            minimum=1,
            nullable=True,
        )
        if "max_inbound_migrations" in ex and ex["max_inbound_migrations"] is None:
            kw["max_inbound_migrations"] = None
        for key in ("orchestration_overhead_s", "disable_s", "enable_s", "retry_delay_s", "soak_s"):
            kw[key] = r.num(
                ex, key, "executor", required=False, default=getattr(d, key), minimum=0.0
            )
        kw["rollback"] = r.bool_(ex, "rollback", "executor", required=False, default=d.rollback)
        kw["canary_hosts"] = r.int_(
            ex, "canary_hosts", "executor", required=False, default=d.canary_hosts, minimum=0
        )

    g = _section(r, data, "guests")
    if g is not None:
        kw["default_dirty_rate_mib_s"] = r.num(
            g,
            "default_dirty_rate_mb_s",
            "guests",
            required=False,
            default=d.default_dirty_rate_mib_s,
            minimum=0.0,
        )
        kw["shutdown_s"] = r.num(
            g, "shutdown_s", "guests", required=False, default=d.shutdown_s, minimum=0.0
        )
        kw["boot_s"] = r.num(g, "boot_s", "guests", required=False, default=d.boot_s, minimum=0.0)

    up = _section(r, data, "upgrade")
    if up is not None:
        for role in ("compute", "controller", "rollback"):
            if role in up:
                dist = _distribution(r, up[role], f"upgrade.{role}")
                if dist is not None:
                    kw[f"upgrade_{role}"] = dist
        rules = []
        for i, x in enumerate(r.items(up, "hosts", "upgrade", required=False)):
            loc = f"upgrade.hosts[{i}]"
            h = r.obj(x, loc)
            if h is None:
                continue
            _unknown(r, h, loc, ("match", "duration"))
            sel = r.str_(h, "match", loc, default="")
            if "duration" not in h:
                r.bad(f"{loc}.duration", "missing")
                continue
            dist = _distribution(r, h["duration"], f"{loc}.duration")
            if sel and dist is not None:
                rules.append((sel, dist))
        kw["upgrade_by_host"] = tuple(rules)

    fl = _section(r, data, "failures")
    if fl is not None:
        mig = _section(r, fl, "migration", "failures")
        if mig is not None:
            kw["migration_failure_p"] = _prob(r, mig, "failures.migration")
            kw["migration_retries"] = r.int_(
                mig,
                "retries",
                "failures.migration",
                required=False,
                default=d.migration_retries,
                minimum=0,
            )
        upf = _section(r, fl, "upgrade", "failures")
        if upf is not None:
            kw["upgrade_failure_p"] = _prob(r, upf, "failures.upgrade")
        caf = _section(r, fl, "canary", "failures")
        if caf is not None:
            kw["canary_failure_p"] = _prob(r, caf, "failures.canary")
        cr = _section(r, fl, "host_crash", "failures")
        if cr is not None:
            kw["crash_p"] = _prob(r, cr, "failures.host_crash")
            w = cr.get("window_s")
            if w is not None:
                ok = (
                    isinstance(w, list)
                    and len(w) == 2
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in w)
                    and 0 <= w[0] <= w[1]
                )
                if ok:
                    kw["crash_window_s"] = (float(w[0]), float(w[1]))
                else:
                    r.bad(
                        "failures.host_crash.window_s",
                        f"must be [start, end] in seconds with 0 <= start <= end, got {w!r}",
                    )
    r.done()
    return replace(DEFAULT, **kw)


def _section(
    r: Reader, data: Mapping[str, Any], key: str, parent: str = ""
) -> dict[str, Any] | None:
    loc = f"{parent}.{key}" if parent else key
    if key not in data or data[key] is None:
        return None
    sec = r.obj(data[key], loc)
    if sec is not None:
        _unknown(r, sec, loc)
    return sec


def _unknown(
    r: Reader, d: Mapping[str, Any], loc: str, allowed: tuple[str, ...] | None = None
) -> None:
    keys = allowed if allowed is not None else _SECTIONS.get(loc, ())
    for k in d:
        if k not in keys:
            near = difflib.get_close_matches(str(k), keys, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f" (known: {', '.join(keys)})"
            where = f"{loc}.{k}" if loc else str(k)
            r.bad(where, f"unknown key{hint}")


def _prob(r: Reader, d: Mapping[str, Any], loc: str) -> float:
    v = r.num(d, "probability", loc, required=False, default=0.0, minimum=0.0, maximum=1.0)
    return float(v) if v is not None else 0.0


def _distribution(r: Reader, x: Any, loc: str) -> Distribution | None:
    """A number (fixed seconds) or one of {fixed: s}, {uniform: [a, b]},
    {triangular: [min, mode, max]}, {lognormal: {median: s, sigma: x}}."""
    n = len(r.problems)
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        v = r.check_num(x, loc, 0.0, None, False, None)
        return Distribution("fixed", v) if v is not None else None
    d = r.obj(x, loc)
    if d is None:
        return None
    if len(d) != 1 or next(iter(d)) not in DIST_KINDS:
        r.bad(
            loc,
            f"must be seconds or one of {{{', '.join(DIST_KINDS)}}} with its parameters, "
            f"got keys {sorted(map(str, d))}",
        )
        return None
    kind, p = next(iter(d.items()))
    if kind == "fixed":
        v = r.check_num(p, f"{loc}.fixed", 0.0, None, False, None)
        return Distribution("fixed", v) if v is not None else None
    if kind in ("uniform", "triangular"):
        want = 2 if kind == "uniform" else 3
        if not isinstance(p, list) or len(p) != want:
            r.bad(f"{loc}.{kind}", f"must be a list of {want} numbers (seconds)")
            return None
        vals = [
            r.check_num(v, f"{loc}.{kind}[{i}]", 0.0, None, False, None) for i, v in enumerate(p)
        ]
        if len(r.problems) > n:
            return None
        if vals != sorted(vals):
            r.bad(f"{loc}.{kind}", f"must be in increasing order, got {p}")
            return None
        return Distribution("uniform" if kind == "uniform" else "triangular", *map(float, vals))
    q = r.obj(p, f"{loc}.lognormal")
    if q is None:
        return None
    _unknown(r, q, f"{loc}.lognormal", ("median", "sigma"))
    med = r.num(q, "median", f"{loc}.lognormal", minimum=0.0, exclusive_min=True)
    sig = r.num(q, "sigma", f"{loc}.lognormal", required=False, default=0.25, minimum=0.0)
    if len(r.problems) > n:
        return None
    return Distribution("lognormal", float(med), float(sig))
