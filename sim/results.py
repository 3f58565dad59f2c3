"""What a simulated run gives: per migration, host and wave, the failures and the breaches
(`sim.engine` re-exports these; `sim.loop` fills them)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.calendar import CalendarOutcome


@dataclass
class Breach:
    t: float
    kind: str  # capacity, anti_affinity, ha_group, headroom
    message: str
    objects: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "t_s": round(self.t, 3),
            "kind": self.kind,
            "message": self.message,
            "objects": list(self.objects),
        }


@dataclass
class Failure:
    t: float
    kind: str  # migration, upgrade, crash, timeout
    host: str
    vm: str | None
    detail: str
    group: int  # scope group of the host (-1: none)
    fits: bool = True  # its VMs fit in the group's free capacity at that moment
    absorbed: bool = True  # filled in at the end: fits and headroom held from then on

    def to_dict(self) -> dict[str, Any]:
        return {
            "t_s": round(self.t, 3),
            "kind": self.kind,
            "host": self.host,
            "vm": self.vm,
            "detail": self.detail,
            "absorbed": self.absorbed,
        }


@dataclass
class SimResult:
    seed: int
    makespan_s: float
    completed: bool
    stalled: bool
    stall: dict[str, Any] | None
    events: int  # effective heap events + migration starts
    heap_events: int  # effective heap events only
    wave_start: list[float]
    wave_end: list[float]
    mig_start: list[float]
    mig_end: list[float]
    mig_state: list[int]  # final outcome code per migration; -1: never started
    mig_attempts: list[int]
    mig_bytes: list[float]
    mig_down: list[float]
    mig_bw: list[float]  # bytes/s: its mean NIC share over its transfer
    host_status: dict[int, str]
    host_times: dict[int, tuple[float, float, float]]  # maintenance start, upgrade start, end
    stop_down: dict[int, float]  # VM -> downtime of a stop in place
    failures: list[Failure]
    breaches: list[Breach]
    breach_counts: Counter[str]
    headroom_samples: list[tuple[float, int, int, int, int]]  # t, group, class, free, required
    min_slack: list[list[int]]  # per scope group and class: the least free - required seen
    lower_bound_s: float  # any plan (lower-bounds.md)
    plan_lower_bound_s: float  # this plan's waves, one after another
    vms_lost: int
    timeline: list[tuple[Any, ...]] | None
    rollback_s: float = 0.0  # time spent rolling hosts back (sum over hosts)
    soak_s: float = 0.0  # time the canary soaked (nothing else ran)
    canary_hosts: tuple[str, ...] = ()
    canary_failed: bool = False
    execution: str = "lockstep"  # or "pipelined": hosts admitted one by one
    refusals: Counter[str] = field(default_factory=Counter)  # admission's, by rule
    calendar: CalendarOutcome | None = None  # with windows: the run in the calendar

    @property
    def breached(self) -> bool:
        return bool(self.breach_counts)

    @property
    def headroom_breached(self) -> bool:
        return self.breach_counts.get("headroom", 0) > 0

    @property
    def total_downtime_s(self) -> float:
        return sum(self.mig_down) + sum(self.stop_down.values())
