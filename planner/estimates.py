"""Estimates: what the migration model predicts for each VM and host, as plain data.

The application layer (`planner/app/`) fills these from the simulation model (`sim.migration`,
`sim.model`) and hands them to the solver, the checker (`check_plan(..., estimates=)`) and
admission control; none of those imports `sim`. Frozen and JSON-able (`to_dict`/`from_dict`),
so that a set of predictions can be cached in a file.

Units: seconds (`_s`), bytes (`bytes`), bytes per second (`_B_s`). Durations of one VM's
migration exclude the fixed cost of each migration (API calls, scheduling, the executor's
polling): that is `Estimates.overhead_s`, added once per migration by the helpers below.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from planner.reader import MISSING, Reader, at

# How a VM leaves its host, as the helpers price it: a plain live migration, a live one
# force-completed at `forced_after_s`, a cold migration, or a stop in place (no migration).
How = Literal["live", "force-complete", "cold", "stop"]
HOWS: tuple[How, ...] = ("live", "force-complete", "cold", "stop")
# Live outcomes (sim.migration.OUTCOMES) after which the VM runs on its destination.
FINISHED = ("converged", "post-copy", "paused")
LIVE_OUTCOMES = ("converged", "post-copy", "paused", "aborted", "never")


@dataclass(frozen=True, slots=True)
class VmEstimate:
    """One VM's migration, predicted under the model's Nova and QEMU settings and bandwidth.

    - `live_s`, `live_downtime_s`, `live_bytes`, `live_outcome`: a plain live migration: its
      duration (to the guest running on the destination; for `aborted`, to Nova giving up, the
      VM still on its source; `never`: the model's horizon), the guest's pause, the bytes sent,
      and how it ends (sim.migration.OUTCOMES: converged, post-copy, paused, aborted, never).
    - `converges`: pre-copy alone can finish (dirty rate below the bandwidth).
    - `dirty_B_s`, `bandwidth_B_s`: the VM's memory dirty rate and its migration's bandwidth
      (the source NIC's share: NIC x efficiency / k_out, capped by Nova's
      live_migration_bandwidth).
    - `cold_s`, `cold_downtime_s`: a cold migration (the guest is down for all of it).
    - `forced_after_s`, `forced_s`, `forced_downtime_s`: a live migration force-completed
      `forced_after_s` after it started (post-copy where permitted, else a pause): its total
      duration and downtime. For a VM that converges before that, the live figures.
    - `stop_downtime_s`: stopped in place instead: down for its host's whole maintenance.
    """

    vm: str
    live_s: float
    live_downtime_s: float
    live_bytes: float
    live_outcome: str
    converges: bool
    dirty_B_s: float
    bandwidth_B_s: float
    cold_s: float
    cold_downtime_s: float
    forced_after_s: float
    forced_s: float
    forced_downtime_s: float
    stop_downtime_s: float

    @property
    def finishes(self) -> bool:
        """A plain live migration ends with the VM on its destination (no remedy needed)."""
        return self.live_outcome in FINISHED

    def duration_s(self, how: How = "live") -> float:
        """The migration's duration by `how` (0 for a stop), without the per-migration
        overhead."""
        if how == "live":
            return self.live_s
        if how == "force-complete":
            return self.forced_s
        if how == "cold":
            return self.cold_s
        return 0.0

    def downtime_s(self, how: How = "live") -> float:
        """The guest's downtime by `how`."""
        if how == "live":
            return self.live_downtime_s
        if how == "force-complete":
            return self.forced_downtime_s
        if how == "cold":
            return self.cold_downtime_s
        return self.stop_downtime_s


@dataclass(frozen=True, slots=True)
class HostEstimate:
    """One host's maintenance steps besides its drain: `upgrade_s` (the median of the model's
    upgrade duration), `upgrade_p95_s` (its 95th percentile), `disable_s` (disabling its compute
    service before its migrations) and `enable_s` (enabling it after the upgrade)."""

    host: str
    upgrade_s: float
    upgrade_p95_s: float
    disable_s: float
    enable_s: float


@dataclass(frozen=True)
class Estimates:
    """Every VM's and host's estimates (keyed by VM id and host name), and the run's figures:
    `overhead_s` (the fixed cost of each migration), `max_inbound` (live migrations at once into
    one destination; None: no limit), `k_out` (live migrations at once out of one source: the
    model's or the policy's max_concurrent_live_migrations), `nic_B_s` (each host's NIC as a
    migration stream achieves it: line rate x efficiency, bytes per second, each direction) and
    `model` (where they came from: the model file, or "defaults")."""

    vms: Mapping[str, VmEstimate]
    hosts: Mapping[str, HostEstimate]
    overhead_s: float = 0.0
    max_inbound: int | None = None
    k_out: int = 1
    nic_B_s: Mapping[str, float] = field(default_factory=dict)
    model: str = ""

    def __post_init__(self) -> None:
        if self.k_out < 1:
            raise ValueError(f"k_out must be at least 1, got {self.k_out}")
        if self.max_inbound is not None and self.max_inbound < 1:
            raise ValueError(f"max_inbound must be at least 1 or None, got {self.max_inbound}")
        # Own copies (plain dicts: they pickle, for the what-if's processes); never mutated.
        object.__setattr__(self, "vms", dict(self.vms))
        object.__setattr__(self, "hosts", dict(self.hosts))
        object.__setattr__(self, "nic_B_s", dict(self.nic_B_s))

    # -- helpers ------------------------------------------------------------------------------
    def move_s(self, vm: str, how: How = "live") -> float:
        """One VM leaving its host by `how`, the per-migration overhead included (a stop: 0)."""
        if how == "stop":
            return 0.0
        return self.overhead_s + self.vms[vm].duration_s(how)

    def drain_s(self, host: str, vms: Iterable[str], how: Mapping[str, How] | None = None) -> float:
        """Seconds to empty `host` of `vms` (VM ids; each by `how[vm]`, default live): their
        migrations `k_out` at a time from this source, each as soon as a slot is free, longest
        first. 0 without VMs. `host` is not needed for the figure; it names the source in
        errors."""
        how = how or {}
        try:
            times = sorted((self.move_s(v, how.get(v, "live")) for v in vms), reverse=True)
        except KeyError as exc:
            raise KeyError(f"no estimate for VM {exc.args[0]!r} on {host}") from None
        times = [t for t in times if t > 0.0]
        if not times:
            return 0.0
        slots = [0.0] * min(self.k_out, len(times))
        for t in times:
            heapq.heapreplace(slots, slots[0] + t)
        return max(slots)

    def maintenance_s(
        self,
        host: str,
        vms: Iterable[str],
        *,
        p95: bool = False,
        how: Mapping[str, How] | None = None,
    ) -> float:
        """Seconds the host is out of service: disable, drain (`drain_s`), upgrade (median, or
        the 95th percentile with `p95`), enable."""
        h = self.hosts[host]
        upgrade = h.upgrade_p95_s if p95 else h.upgrade_s
        return h.disable_s + self.drain_s(host, vms, how) + upgrade + h.enable_s

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able, for a cache of predictions; `from_dict` reads it back equal."""
        return {
            "kind": "estimates",
            "model": self.model,
            "overhead_s": self.overhead_s,
            "max_inbound": self.max_inbound,
            "k_out": self.k_out,
            "nic_B_s": dict(self.nic_B_s),
            "hosts": [_fields(h) for h in self.hosts.values()],
            "vms": [_fields(v) for v in self.vms.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], file: str = "<estimates>") -> Estimates:
        """Read what `to_dict` wrote; every problem located, as one `InputError`."""
        r = Reader(file)
        if data.get("kind") != "estimates":
            r.bad("kind", f"is {data.get('kind')!r}, expected 'estimates'")
        hosts = [
            h
            for i, x in enumerate(r.items(data, "hosts", ""))
            if (h := _read(r, x, f"hosts[{i}]", HostEstimate, "host")) is not None
        ]
        vms = [
            v
            for i, x in enumerate(r.items(data, "vms", ""))
            if (v := _read(r, x, f"vms[{i}]", VmEstimate, "vm")) is not None
        ]
        nic: dict[str, float] = {}
        raw = r.get(data, "nic_B_s", "", False)
        if raw is not None and raw is not MISSING:
            for k, v in (r.obj(raw, "nic_B_s") or {}).items():
                got = r.check_num(v, at("nic_B_s", str(k)), 0.0, None, True, None)
                if got is not None:
                    nic[str(k)] = got
        overhead = r.num(data, "overhead_s", "", minimum=0.0, default=0.0)
        inbound = r.int_(data, "max_inbound", "", required=False, minimum=1, nullable=True)
        k_out = r.int_(data, "k_out", "", minimum=1, default=1)
        model = r.str_(data, "model", "", default="", nonempty=False)
        r.done()
        return cls(
            vms={v.vm: v for v in vms},
            hosts={h.host: h for h in hosts},
            overhead_s=overhead,
            max_inbound=inbound,
            k_out=k_out,
            nic_B_s=nic,
            model=model,
        )


def _fields(x: VmEstimate | HostEstimate) -> dict[str, Any]:
    return {name: getattr(x, name) for name in type(x).__slots__}


def _read(r: Reader, x: Any, loc: str, cls: type[Any], key: str) -> Any:
    d = r.obj(x, loc)
    if d is None:
        return None
    n = len(r.problems)
    values: dict[str, Any] = {}
    for name in cls.__slots__:
        if name == key:
            values[name] = r.str_(d, name, loc, default="")
        elif name == "converges":
            values[name] = r.bool_(d, name, loc, default=False)
        elif name == "live_outcome":
            values[name] = r.str_(d, name, loc, default="", choices=LIVE_OUTCOMES)
        else:
            values[name] = r.num(d, name, loc, minimum=0.0, default=0.0)
    return cls(**values) if len(r.problems) == n else None


__all__ = ["FINISHED", "HOWS", "Estimates", "HostEstimate", "How", "VmEstimate"]
