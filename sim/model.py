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
from sim.crosscloud import CrossCloudSettings
from sim.migration import MIB, NovaSettings, QemuSettings
from sim.params import Declared, Param, choice, declared, flag, integer, num, other

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
    """The model. Its parameters are declared here and in the Nova and QEMU settings it holds,
    each once, with its place in the model file, bounds, unit and doc (`sim.params`): they drive
    reading (`model_from_dict`), writing (`to_dict`) and the docs' table (`doc_table`)."""

    # network
    nic_gbps: float = num(
        10.0, "network.nic_gbps", "NIC line rate per host, each direction (full duplex)",
        unit="Gbit/s", above=0.0,
    )  # fmt: skip
    efficiency: float = num(
        0.92, "network.efficiency", "share of line rate a migration stream achieves "
        "(10 GbE: 1.15 GB/s)", above=0.0, maximum=1.0,
    )  # fmt: skip
    switchover_gbps: float | None = num(
        None, "network.switchover_gbps", "bandwidth of the paused last copy; null: the "
        "migration's NIC share", unit="Gbit/s", above=0.0, nullable=True,
    )  # fmt: skip
    # How migrations share a host's NIC: "dynamic" (the rule), NIC / (how many run on it
    # now), rebalanced at every start and end; "static", the fast approximation, NIC / (how many
    # can run on it at once in the wave), fixed before the run (conservative at a drain's tail).
    sharing: Literal["static", "dynamic"] = choice(
        "dynamic", "network.sharing", "`dynamic`: NIC shares among the migrations running now; "
        "`static`: fixed per plan, the fast approximation (see \"Bandwidth\")",
        ("static", "dynamic"),
    )  # fmt: skip
    nic_by_host: tuple[tuple[str, float], ...] = other(
        (), "network.hosts", "nic_rules", "`{match: SELECTOR, nic_gbps: G}`: per-host NICs, "
        "the first match wins",
    )  # fmt: skip
    # Nova and QEMU
    max_concurrent_live_migrations: int | None = integer(
        None, "nova.max_concurrent_live_migrations", "outgoing live migrations per host "
        "(`[DEFAULT] max_concurrent_live_migrations`, Nova's default 1, 0 = unlimited); null: "
        "the plan's policy", minimum=0, nullable=True,
    )  # fmt: skip
    nova: NovaSettings = field(default_factory=NovaSettings)
    qemu: QemuSettings = field(default_factory=QemuSettings)
    # executor
    max_inbound_migrations: int | None = integer(
        2, "executor.max_inbound_migrations", "per destination host; null = no limit",
        minimum=1, nullable=True,
    )  # fmt: skip
    orchestration_overhead_s: float = num(
        10.0, "executor.orchestration_overhead_s", "fixed cost of each migration: API, "
        "conductor, scheduler, checks", unit="s", minimum=0.0,
    )  # fmt: skip
    poll_s: float = num(
        2.0, "executor.poll_s", "how often the executor reads a migration's progress "
        "(`execute --poll-interval`)", unit="s", above=0.0,
    )  # fmt: skip
    force_stall_s: float = num(
        30.0, "executor.force_stall_s", "a migration with `force_complete_after_s` whose "
        "remaining memory reaches no new low for this long, once its disk is copied, is "
        "force-completed then (`execute --force-stall`)", unit="s", above=0.0,
    )  # fmt: skip
    disable_s: float = num(
        5.0, "executor.disable_s", "disabling a wave's compute services before its migrations",
        unit="s", minimum=0.0,
    )  # fmt: skip
    enable_s: float = num(
        5.0, "executor.enable_s", "enabling a host after its upgrade", unit="s", minimum=0.0
    )
    retry_delay_s: float = num(
        30.0, "executor.retry_delay_s", "before a failed migration is tried again", unit="s",
        minimum=0.0,
    )  # fmt: skip
    rollback: bool = flag(
        False, "executor.rollback", "a failed upgrade is rolled back (`execute "
        "--rollback-command`): the host returns to service at its old version after "
        "`upgrade.rollback`; false: it stays down",
    )  # fmt: skip
    canary_hosts: int = integer(
        0, "executor.canary_hosts", "the canary (`execute --canary N --soak S`): after the wave "
        "in which the first N upgraded hosts are back (or the last wave), nothing starts for "
        "`soak_s`; 0: no canary", minimum=0,
    )  # fmt: skip
    soak_s: float = num(
        0.0, "executor.soak_s", "the canary's soak (`execute --soak S`)", unit="s", minimum=0.0
    )
    # guests
    default_dirty_rate_mib_s: float = num(
        20.0, "guests.default_dirty_rate_mb_s", "for VMs without `dirty_rate_mb_s`",
        unit="MiB/s", minimum=0.0,
    )  # fmt: skip
    shutdown_s: float = num(
        30.0, "guests.shutdown_s", "a guest's clean shutdown (cold migration, stop in place)",
        unit="s", minimum=0.0,
    )  # fmt: skip
    boot_s: float = num(60.0, "guests.boot_s", "a guest's boot", unit="s", minimum=0.0)
    # upgrades
    upgrade_compute: Distribution = other(
        Distribution("lognormal", 1200.0, 0.25), "upgrade.compute", "duration",
        "upgrade time of a compute host", unit="s",
    )  # fmt: skip
    upgrade_controller: Distribution = other(
        Distribution("lognormal", 1800.0, 0.25), "upgrade.controller", "duration",
        "upgrade time of a controller", unit="s",
    )  # fmt: skip
    upgrade_by_host: tuple[tuple[str, Distribution], ...] = other(
        (), "upgrade.hosts", "upgrade_rules", "`{match: SELECTOR, duration: DIST}`: the first "
        "match wins, before the roles",
    )  # fmt: skip
    upgrade_rollback: Distribution = other(
        Distribution("lognormal", 600.0, 0.25), "upgrade.rollback", "duration",
        "how long a rollback takes (the rollback command and the service's restart)", unit="s",
    )  # fmt: skip
    # failures
    migration_failure_p: float = num(
        0.0, "failures.migration.probability", "each attempt of a migration fails",
        minimum=0.0, maximum=1.0,
    )  # fmt: skip
    migration_retries: int = integer(
        2, "failures.migration.retries", "how often a failed migration is tried again", minimum=0
    )
    upgrade_failure_p: float = num(
        0.0, "failures.upgrade.probability", "a host fails its upgrade", minimum=0.0, maximum=1.0
    )
    canary_failure_p: float = num(
        0.0, "failures.canary.probability", "the canary fails its checks after the soak: every "
        "canary host is disabled and rolled back (`disable_s` + `upgrade.rollback` + "
        "`enable_s`) before the next wave", minimum=0.0, maximum=1.0,
    )  # fmt: skip
    force_complete: Literal["takes", "refused", "no-effect"] = choice(
        "takes", "failures.force_complete", "how the executor's planned force-completes end: "
        "`takes` (post-copy or the guest paused); `refused` (Nova answers with an error, e.g. its "
        "policy forbids the API): the fallback at once; `no-effect` (accepted, but neither "
        "post-copy nor the pause happens): the fallback once the remaining memory reaches no new "
        "low for `executor.force_stall_s` after the force. The fallback aborts the live "
        "migration, then migrates the VM cold to the same host when the policy's "
        "`non_converging` lists `cold` (and the VM may go cold), else it stays and its host is "
        "not upgraded (docs/executor.md)", ("takes", "refused", "no-effect"),
    )  # fmt: skip
    crash_p: float = num(
        0.0, "failures.host_crash.probability", "one random host crashes during the run",
        minimum=0.0, maximum=1.0,
    )  # fmt: skip
    crash_window_s: tuple[float, float] | None = other(
        None, "failures.host_crash.window_s", "window", "`[start, end]`: when the crash "
        "happens; null: within the run", unit="s",
    )  # fmt: skip
    source: str | None = None  # the file it was read from
    # side by side (sim/crosscloud.py): cross-cloud moves, the new control plane, hosts joining
    crosscloud: CrossCloudSettings = field(default_factory=CrossCloudSettings)

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

    @property
    def injects_failures(self) -> bool:
        """Whether a run can fail anything: a migration, an upgrade, the canary, a host. Without,
        a valid plan breaches nothing by construction (the checker proved its waves)."""
        return (
            self.migration_failure_p > 0
            or self.upgrade_failure_p > 0
            or self.canary_failure_p > 0
            or self.crash_p > 0
        )

    def with_changes(self, **kw: Any) -> SimModel:
        return replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        """The effective model, in the file's structure (what a run used)."""
        out: dict[str, Any] = {"format_version": "1.0", "kind": KIND}
        # The side-by-side section only when set: in-place runs' effective models as before.
        skip = "crosscloud" if self.crosscloud == CrossCloudSettings() else None
        for d in PARAMS:
            if d.path[0] == skip:
                continue
            value: Any = self
            for attr in d.path:
                value = getattr(value, attr)
            node = out
            for sec in d.param.section.split("."):
                node = node.setdefault(sec, {})
            node[d.param.key] = _written(d.param, value)
        return out


# Every parameter of the model file, in the file's order (sim.params).
PARAMS: tuple[Declared, ...] = tuple(declared(SimModel))
DEFAULT = SimModel()


def _section_keys() -> dict[str, tuple[str, ...]]:
    """The keys each section accepts, in the file's order (typos are reported, with a
    suggestion): its parameters and its subsections."""
    keys: dict[str, list[str]] = {"": []}
    for d in PARAMS:
        parts = d.param.place.split(".")
        for i, key in enumerate(parts):
            known = keys.setdefault(".".join(parts[:i]), [])
            if key not in known:
                known.append(key)
    keys[""] = ["format_version", "kind", *keys[""], "description"]
    return {sec: tuple(k) for sec, k in keys.items()}


_SECTIONS = _section_keys()


def load_model(path: str | os.PathLike[str] | None) -> SimModel:
    """The model in `path`, or the defaults when path is None."""
    if path is None:
        return DEFAULT
    file = os.fspath(path)
    data, _ = read_document(file, KIND)
    return model_from_dict(data, file)


def model_from_dict(data: Mapping[str, Any], file: str = "<model>") -> SimModel:
    """The model in `data` (a model file's content), every problem reported with `file` and its
    place (InputError)."""
    r = Reader(file)
    _unknown(r, data, "")
    sections: dict[str, Mapping[str, Any] | None] = {"": data}
    values: dict[tuple[str, ...], Any] = {}
    for d in PARAMS:
        p = d.param
        sec = _section(r, sections, p.section)
        if sec is not None and p.key in sec:
            value = _read(r, sec, p)
            if value is not _BAD:
                values[d.path] = value
    r.done()
    kw: dict[str, Any] = {"source": file}
    nested: dict[str, dict[str, Any]] = {}
    for path, value in values.items():
        if len(path) == 1:
            kw[path[0]] = value
        else:
            nested.setdefault(path[0], {})[path[1]] = value
    for attr, changes in nested.items():
        kw[attr] = replace(getattr(DEFAULT, attr), **changes)
    return replace(DEFAULT, **kw)


_BAD = object()  # a value with a problem (reported): the model is not made


def _section(
    r: Reader, sections: dict[str, Mapping[str, Any] | None], loc: str
) -> Mapping[str, Any] | None:
    """Section `loc` of the file (its unknown keys reported once), None when absent or null."""
    if loc in sections:
        return sections[loc]
    parent, _, key = loc.rpartition(".")
    up = _section(r, sections, parent)
    sec = None
    if up is not None and up.get(key) is not None:
        sec = r.obj(up[key], loc)
        if sec is not None:
            _unknown(r, sec, loc)
    sections[loc] = sec
    return sec


def _read(r: Reader, sec: Mapping[str, Any], p: Param) -> Any:
    """The value of parameter p, present in its section, as the model holds it."""
    n = len(r.problems)
    loc, key, here = p.section, p.key, p.place
    if p.kind == "num":
        v = r.num(
            sec, key, loc, default=None, minimum=p.minimum, maximum=p.maximum,
            exclusive_min=p.exclusive_min, nullable=p.nullable,
        )  # fmt: skip
        if v is not None and p.scale != 1.0:
            v /= p.scale
    elif p.kind == "integer":
        lo = None if p.minimum is None else int(p.minimum)
        v = r.int_(sec, key, loc, default=None, minimum=lo, nullable=p.nullable)
        raw = sec[key]
        if p.percent and isinstance(raw, int) and not isinstance(raw, bool) and raw > 100:
            r.bad(here, f"is a percentage, at most 100, got {raw}")
    elif p.kind == "choice":
        v = r.str_(sec, key, loc, choices=p.choices)
    elif p.kind == "flag":
        v = r.bool_(sec, key, loc, default=False)
    elif p.kind == "duration":
        v = _distribution(r, sec[key], here)
    elif p.kind == "window":
        v = _window(r, sec[key], here)
    else:
        v = _rules(r, sec, p)
    return _BAD if len(r.problems) > n else v


def _written(p: Param, value: Any) -> Any:
    """Parameter p's value as the model file has it."""
    if p.kind == "num" and p.scale != 1.0:
        return value * p.scale
    if p.kind == "duration":
        return value.to_dict()
    if p.kind == "nic_rules":
        return [{"match": s, "nic_gbps": g} for s, g in value]
    if p.kind == "upgrade_rules":
        return [{"match": s, "duration": d.to_dict()} for s, d in value]
    if p.kind == "window":
        return list(value) if value else None
    return value


def _rules(r: Reader, sec: Mapping[str, Any], p: Param) -> tuple[tuple[str, Any], ...]:
    """`{match: SELECTOR, nic_gbps: G}` or `{match: SELECTOR, duration: DIST}` rules."""
    what = "nic_gbps" if p.kind == "nic_rules" else "duration"
    rules: list[tuple[str, Any]] = []
    for i, x in enumerate(r.items(sec, p.key, p.section, required=False)):
        loc = f"{p.place}[{i}]"
        h = r.obj(x, loc)
        if h is None:
            continue
        _unknown(r, h, loc, ("match", what))
        sel = r.str_(h, "match", loc, default="")
        if what == "nic_gbps":
            v = r.num(h, what, loc, default=None, minimum=0.0, exclusive_min=True)
        elif what not in h:
            r.bad(f"{loc}.{what}", "missing")
            continue
        else:
            v = _distribution(r, h[what], f"{loc}.{what}")
        if sel and v is not None:
            rules.append((sel, v))
    return tuple(rules)


def _window(r: Reader, w: Any, loc: str) -> tuple[float, float] | None:
    if w is None:
        return None
    ok = (
        isinstance(w, list)
        and len(w) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in w)
        and 0 <= w[0] <= w[1]
    )
    if not ok:
        r.bad(loc, f"must be [start, end] in seconds with 0 <= start <= end, got {w!r}")
        return None
    return (float(w[0]), float(w[1]))


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


def doc_table() -> str:
    """The model file's keys as docs/simulation.md lists them (a test checks that it does):
    place, default, unit, what is allowed and the doc, in the file's order."""
    rows = ["| key | default | unit | allowed | meaning |", "|---|---|---|---|---|"]
    for d in PARAMS:
        p = d.param
        default = _doc_value(_written(p, d.default))
        rows.append(f"| `{p.place}` | {default} | {p.unit} | {_allowed(p)} | {p.doc} |")
    return "\n".join(rows) + "\n"


def _doc_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "[]" if not v else str(v)
    if isinstance(v, dict):  # a distribution
        kind, args = next(iter(v.items()))
        if isinstance(args, dict):
            return f"{kind} " + ", ".join(f"{k} {_doc_value(a)}" for k, a in args.items())
        if isinstance(args, list):
            return f"{kind} " + " / ".join(_doc_value(a) for a in args)
        return _doc_value(args)
    return str(v)


def _allowed(p: Param) -> str:
    if p.choices:
        out = ", ".join(f"`{c}`" for c in p.choices)
    elif p.kind == "flag":
        out = "true, false"
    elif p.kind == "duration":
        out = "DIST"
    elif p.kind in ("nic_rules", "upgrade_rules"):
        out = "list"
    elif p.kind == "window":
        out = "[start, end]"
    else:
        lo = p.minimum if p.minimum is None else p.minimum * p.scale
        if lo is not None and p.maximum is not None:
            out = (
                f"{lo:g} to {p.maximum:g}" if not p.exclusive_min else f"> {lo:g}, <= {p.maximum:g}"
            )
        elif lo is not None:
            out = f"{'>' if p.exclusive_min else '>='} {lo:g}"
        else:
            out = "any"
        if p.kind == "integer":
            out += ", integer"
    return out + (", null" if p.nullable or p.kind == "window" else "")


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
