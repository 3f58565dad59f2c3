"""Side-by-side plans in time: cross-cloud moves, moves inside the old cloud, the new control
plane's deployment and hosts joining the new cloud, wave by wave (lock-step), per cloud.

A model of its own beside the in-place loop (`sim.loop`): deterministic (the expected
durations, no draws), since a side-by-side plan's time is dominated by copies of known sizes.

- A **cross-cloud move**: stop the guest (`guests.shutdown_s`), snapshot and upload its image
  or disks, download them into the new cloud (`crosscloud.image_overhead_s` plus the VM's disk
  bytes, or its memory's if it has no local disk, at `crosscloud.copy_gbps`), boot it there
  (`guests.boot_s`), verify it (`crosscloud.verify_s`); the guest is down the whole time. At
  most `crosscloud.parallel` run at once (the copy path's share each).
- A **move inside the old cloud**: Nova's live migration (`sim.migration.live_migration`, at the
  NIC's effective rate shared by the source's concurrent migrations) or cold migration, plus
  the orchestration overhead, at most the policy's `max_concurrent_live_migrations` per source.
- At a wave's end, after its moves: the new controllers' wave deploys the new control plane
  (`crosscloud.control_plane_s`), a host joining as a compute takes `crosscloud.join_s`, a
  retired one nothing; the next wave starts when the slowest is done.

With the policy's `project_windows` (planner.project_windows) and a start date: a VM of a
windowed project starts crossing only when its project's window is open, from then on, for its
whole cross-cloud time (the lane waits for it); the others cross at any time. The lanes take the
wave's crossings in the plan's order, each on the lane free first. Results add, per opening of a
project's windows, the crossings in it, and the time crossings waited for their windows. The
lower bound ignores windows.

Lower bound (no plan of these moves under this model finishes sooner): a wave lasts its moves
(its drain), then its hosts' hand-over: the new controllers' wave `control_plane_s`, any other
wave with a host joining as a compute `join_s`. No VM may cross before the control plane is up,
and the crossings take at least their total over `parallel` lanes (and the longest one) summed
over the waves' drains; the compute hosts join at most `max_hosts_per_wave` a wave, so besides
the controllers' wave (which may hold some) at least ceil((computes - M) / M) waves each end
with `join_s`, one after the other.
"""

from __future__ import annotations

import datetime as _dt
import heapq
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from planner import project_windows as pw
from planner.errors import InfeasibleError, UsageError
from planner.inventory import VM, Inventory
from planner.plan import CROSS_CLOUD, Migration, Plan
from planner.windows import Window
from sim.migration import MIB, cold_migration, live_migration
from sim.params import integer, num

if TYPE_CHECKING:
    from sim.model import SimModel

GIB = 1024.0**3


@dataclass(frozen=True, slots=True)
class CrossCloudSettings:
    """The cross-cloud part of the model (the file's section `crosscloud`)."""

    copy_gbps: float = num(
        2.0, "crosscloud.copy_gbps", "side by side: the rate of one cross-cloud copy (image "
        "upload and download)", unit="Gbit/s", above=0.0,
    )  # fmt: skip
    parallel: int = integer(
        4, "crosscloud.parallel", "side by side: cross-cloud moves at once", minimum=1,
    )  # fmt: skip
    image_overhead_s: float = num(
        60.0, "crosscloud.image_overhead_s", "side by side: a cross-cloud move's fixed cost "
        "(snapshot, image records, flavor and network look-ups)", unit="s", minimum=0.0,
    )  # fmt: skip
    verify_s: float = num(
        30.0, "crosscloud.verify_s", "side by side: verifying the copy ACTIVE before the "
        "original is deleted", unit="s", minimum=0.0,
    )  # fmt: skip
    control_plane_s: float = num(
        7200.0, "crosscloud.control_plane_s", "side by side: deploying the new control plane "
        "on the new controllers", unit="s", minimum=0.0,
    )  # fmt: skip
    join_s: float = num(
        1800.0, "crosscloud.join_s", "side by side: a freed host joining the new cloud as a "
        "compute (reinstall, deploy, register)", unit="s", minimum=0.0,
    )  # fmt: skip


@dataclass(frozen=True)
class MoveTime:
    vm: str
    wave: int
    method: str
    start_s: float
    end_s: float
    downtime_s: float
    # A windowed project's crossing: its project, when it started and when the opening it ran in
    # closes (the calendar's own instants), and how long it waited for it.
    project: str | None = None
    opening: tuple[_dt.datetime, _dt.datetime] | None = None
    waited_s: float = 0.0


@dataclass(frozen=True)
class CrossingWindow:
    """An opening of a project's windows used by crossings: from the first one's start (when
    the window was entered) to the opening's close, the VMs that crossed in it."""

    project: str
    start: _dt.datetime
    end: _dt.datetime
    vms: tuple[str, ...]


@dataclass(frozen=True)
class WaveTime:
    index: int
    start_s: float
    drained_s: float  # its last move done
    end_s: float  # its hosts in their roles


@dataclass(frozen=True)
class CrossCloudResult:
    makespan_s: float
    lower_bound_s: float
    waves: tuple[WaveTime, ...]
    moves: tuple[MoveTime, ...]
    control_plane_ready_s: float | None
    old_empty_s: float  # the old cloud's last VM gone
    total_downtime_s: float
    worst_downtime_s: float
    per_cloud: dict[str, dict[str, Any]] = field(default_factory=dict)
    # With project windows: the start date, the openings used (in time order), and the time
    # crossings waited for their windows.
    start: _dt.datetime | None = None
    crossing_windows: tuple[CrossingWindow, ...] = ()
    window_wait_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = {
            "makespan_s": round(self.makespan_s, 3),
            "lower_bound_s": round(self.lower_bound_s, 3),
            "control_plane_ready_s": (
                None if self.control_plane_ready_s is None else round(self.control_plane_ready_s, 3)
            ),
            "old_cloud_empty_s": round(self.old_empty_s, 3),
            "downtime_s": {
                "total": round(self.total_downtime_s, 3),
                "worst": round(self.worst_downtime_s, 3),
            },
            "clouds": self.per_cloud,
            "waves": [
                {
                    "index": w.index,
                    "start_s": round(w.start_s, 3),
                    "drained_s": round(w.drained_s, 3),
                    "end_s": round(w.end_s, 3),
                }
                for w in self.waves
            ],
        }
        if self.crossing_windows:
            d["project_windows"] = self.windows_dict()
        return d

    def windows_dict(self) -> dict[str, Any]:
        waited = [x for x in self.moves if x.waited_s > 0]
        return {
            "start": None if self.start is None else self.start.isoformat(),
            "openings_used": len(self.crossing_windows),
            "crossings_waited": len(waited),
            "wait_s": round(self.window_wait_s, 3),
            "per_window": [
                {
                    "project": c.project,
                    "start": c.start.isoformat(),
                    "end": c.end.isoformat(),
                    "crossings": len(c.vms),
                }
                for c in self.crossing_windows
            ],
        }


def _bytes(vm: VM) -> float:
    """What a cross-cloud move copies: the local disk, or (volume-backed or diskless) the
    memory image at least."""
    disk = float(vm.local_disk_gb) * GIB
    return disk if disk > 0 else float(vm.memory_mb) * MIB


def cross_time(vm: VM, cc: CrossCloudSettings, shutdown_s: float, boot_s: float) -> float:
    """One cross-cloud move, start to verified, all of it downtime."""
    copy = _bytes(vm) / (cc.copy_gbps * 1e9 / 8)
    return shutdown_s + cc.image_overhead_s + copy + boot_s + cc.verify_s


def _lanes(durations: list[float], lanes: int, start: float) -> list[float]:
    """List scheduling in the given order: each job on the lane free first; its end times."""
    heap = [start] * max(lanes, 1)
    ends = []
    for d in durations:
        t = heapq.heappop(heap)
        heapq.heappush(heap, t + d)
        ends.append(t + d)
    return ends


def simulate_side_by_side(
    inv: Inventory, plan: Plan, model: SimModel, start: _dt.datetime | None = None
) -> CrossCloudResult:
    """The plan in time under `model` (its `crosscloud` section, its guests' shutdown and boot,
    its live and cold migration for the moves inside the old cloud), from `start` (an aware
    datetime; needed when the policy's project windows apply to a VM that crosses: UsageError
    without it; InfeasibleError when no opening of a project's windows is long enough)."""
    cc = model.crosscloud
    windows = _windowed(inv, plan, start)
    shutdown_s, boot_s = model.shutdown_s, model.boot_s
    t = 0.0
    waves: list[WaveTime] = []
    moves: list[MoveTime] = []
    cp_ready: float | None = None
    old_empty = 0.0
    per_host = max(plan.policy.max_concurrent_live_migrations, 1)
    for w in plan.waves:
        crossing = [m for m in w.migrations if m.method == CROSS_CLOUD]
        inner = [m for m in w.migrations if m.method != CROSS_CLOUD]
        drained = t
        cd = [cross_time(inv.vm(m.vm), cc, shutdown_s, boot_s) for m in crossing]
        if windows:
            crossed = _windowed_lanes(inv, crossing, cd, cc.parallel, t, windows, start)
        else:
            crossed = [MoveTime(m.vm, w.index, m.method, e - d, e, d) for m, d, e in zip(
                crossing, cd, _lanes(cd, cc.parallel, t), strict=True)]  # fmt: skip
        for x in crossed:
            moves.append(replace(x, wave=w.index))
            drained = max(drained, x.end_s)
            old_empty = max(old_empty, x.end_s)
        by_src: dict[str, list[Migration]] = {}
        for m in inner:
            by_src.setdefault(m.src, []).append(m)
        for src_moves in by_src.values():
            lanes = min(per_host, len(src_moves))
            timed = [inside_move(model, inv.vm(m.vm), m, lanes) for m in src_moves]
            ends = _lanes([x[0] for x in timed], lanes, t)
            for m, (d, down), end in zip(src_moves, timed, ends, strict=True):
                moves.append(MoveTime(m.vm, w.index, m.method, end - d, end, down))
                drained = max(drained, end)
        end = drained
        for role in w.roles.values():
            if role == "new-controller":
                end = max(end, drained + cc.control_plane_s)
            elif role == "new-compute":
                end = max(end, drained + cc.join_s)
        if cp_ready is None and "new-controller" in w.roles.values():
            cp_ready = drained + cc.control_plane_s
        waves.append(WaveTime(w.index, t, drained, end))
        t = end
    cross = [x for x in moves if x.method == CROSS_CLOUD]
    computes = sum(1 for h in inv.hosts if h.is_compute)
    size = max(plan.policy.max_hosts_per_wave, 1)
    joins = math.ceil(max(computes - size, 0) / size)
    lb = _lower_bound(cross, cc, bool(inv.vms), joins)
    downs = [x.downtime_s for x in moves]
    per_cloud: dict[str, dict[str, Any]] = {
        "old": {
            "vms_at_start": len(inv.vms),
            "empty_s": round(old_empty, 3),
            "moves_inside": len(moves) - len(cross),
            "hosts_left": sum(len(w.hosts) for w in plan.waves),
        },
        "new": {
            "control_plane_ready_s": None if cp_ready is None else round(cp_ready, 3),
            "vms_arrived": len(cross),
            "last_arrival_s": round(max((x.end_s for x in cross), default=0.0), 3),
            "computes": sum(1 for w in plan.waves for r in w.roles.values() if r == "new-compute"),
        },
    }
    return CrossCloudResult(
        makespan_s=t,
        lower_bound_s=lb,
        waves=tuple(waves),
        moves=tuple(moves),
        control_plane_ready_s=cp_ready,
        old_empty_s=old_empty,
        total_downtime_s=sum(downs),
        worst_downtime_s=max(downs, default=0.0),
        per_cloud=per_cloud,
        start=start,
        crossing_windows=_openings_used(cross, start) if windows else (),
        window_wait_s=sum(x.waited_s for x in cross),
    )


def _windowed(
    inv: Inventory, plan: Plan, start: _dt.datetime | None
) -> dict[str, tuple[Window, ...]]:
    """Project -> its windows, for the projects of the VMs that cross; a start date needed."""
    if not plan.policy.project_windows:
        return {}
    named = dict(plan.policy.project_windows)
    used = {
        p
        for _, m in plan.migrations()
        if m.method == CROSS_CLOUD and inv.has_vm(m.vm) and (p := inv.vm(m.vm).project) in named
    }
    if used and start is None:
        raise UsageError(
            "the plan's policy has project_windows for "
            + ", ".join(sorted(used))
            + ": the simulation needs a start date (simulate --start DATE, or a plan "
            "scheduled by plan --start)"
        )
    return {p: named[p] for p in used}


def _windowed_lanes(
    inv: Inventory,
    crossing: list[Migration],
    durations: list[float],
    lanes: int,
    t: float,
    windows: dict[str, tuple[Window, ...]],
    start: _dt.datetime | None,
) -> list[MoveTime]:
    """List scheduling as `_lanes`, a windowed project's crossing on its lane at the first
    instant its project's windows are open for all of it (the wave index is the caller's)."""
    assert start is not None
    heap = [t] * max(lanes, 1)
    out = []
    for m, d in zip(crossing, durations, strict=True):
        free = heapq.heappop(heap)
        project = inv.vm(m.vm).project
        ws = windows.get(project)
        if ws is None:
            heapq.heappush(heap, free + d)
            out.append(MoveTime(m.vm, 0, m.method, free, free + d, d))
            continue
        at = start + _dt.timedelta(seconds=free)
        got = pw.fit(ws, at, _dt.timedelta(seconds=d))
        if got is None:
            raise InfeasibleError(
                [
                    f"VM {m.vm} of project {project} needs {pw.hm(_dt.timedelta(seconds=d))} "
                    "to cross (stop, copy, boot, verify); no opening of the project's windows is "
                    f"that long (the longest: {pw.hm(pw.longest(ws, at))})"
                ]
            )
        begin = free + (got[0] - at).total_seconds()
        heapq.heappush(heap, begin + d)
        out.append(MoveTime(m.vm, 0, m.method, begin, begin + d, d, project, got, begin - free))
    return out


def _whole_second(t: _dt.datetime) -> _dt.datetime:
    """Up to the next whole second (still inside the opening: a crossing lasts longer)."""
    return t if not t.microsecond else t.replace(microsecond=0) + _dt.timedelta(seconds=1)


def _openings_used(cross: list[MoveTime], start: _dt.datetime | None) -> tuple[CrossingWindow, ...]:
    """The openings the windowed crossings ran in, in time order, with their VMs."""
    assert start is not None
    found: dict[tuple[str, _dt.datetime], list[MoveTime]] = {}
    for x in cross:
        if x.project is not None and x.opening is not None:
            found.setdefault((x.project, x.opening[1]), []).append(x)
    tz = start.tzinfo
    out = [
        CrossingWindow(
            project,
            _whole_second(min(x.opening[0] for x in xs if x.opening is not None)).astimezone(tz),
            end.astimezone(tz),
            tuple(x.vm for x in xs),
        )
        for (project, end), xs in found.items()
    ]
    return tuple(sorted(out, key=lambda c: (c.start, c.project)))


def _lower_bound(cross: list[MoveTime], cc: CrossCloudSettings, any_vms: bool, joins: int) -> float:
    if not any_vms:
        return 0.0
    work = [x.end_s - x.start_s for x in cross]
    crossing = max(sum(work) / cc.parallel, max(work, default=0.0))
    return cc.control_plane_s + crossing + joins * cc.join_s


def inside_move(model: SimModel, vm: VM, m: Migration, concurrent: int) -> tuple[float, float]:
    """A move inside the old cloud: (its time with the orchestration overhead, its downtime),
    by the in-place model's physics (`sim.migration`), at the NIC's effective rate shared by the
    source's `concurrent` migrations (capped by Nova's live_migration_bandwidth)."""
    share = model.nic_gbps * model.efficiency * 1e9 / 8 / max(concurrent, 1)
    disk = float(vm.local_disk_gb) * GIB
    if m.method == "live":
        r = live_migration(
            float(vm.memory_mb) * MIB,
            model.dirty_rate(vm.dirty_rate_mb_s),
            min(model.bandwidth_cap, share),
            disk=disk,
            nova=model.nova,
            qemu=model.qemu,
            memory_mib=float(vm.memory_mb),
            disk_gib=float(vm.local_disk_gb),
        )
        return r.total_s + model.orchestration_overhead_s, r.downtime_s
    c = cold_migration(
        disk,
        share,
        running=vm.status == "ACTIVE",
        shutdown_s=model.shutdown_s,
        boot_s=model.boot_s,
    )
    return c.total_s + model.orchestration_overhead_s, c.downtime_s
