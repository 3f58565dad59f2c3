"""Live and cold migration of one VM: pure functions, seconds and bytes as floats.

Two levels:

- `precopy_closed_form` is the textbook pre-copy model (Clark et al. 2005, Akoush et al. 2010):
  rounds V_i = M * lambda^i, stop when V_n <= B * T_down_max, T = (M/B)(1 - lambda^(n+1))/(1 -
  lambda) + T_resume, T_d = (M/B) lambda^n + T_resume, bytes = M (1 - lambda^(n+1))/(1 - lambda).
- `live_migration` is what Nova's libvirt driver and QEMU make of the same guest: Nova's
  downtime-step schedule (`downtime_steps`), the completion timeout (`completion_timeout_s`) and
  its action (abort, or force_complete: post-copy if permitted, else pause the guest),
  auto-converge (QEMU's CPU throttle, used only when post-copy is not permitted, as Nova does),
  local disks copied first (block migration), and QEMU's switch-over rule: by default convergence
  is checked continuously, so the guest is paused as soon as the bytes still to send fall to
  bandwidth x allowed downtime, and that last copy runs at its own (switch-over) bandwidth. With
  `check="per-pass"`, one constant downtime limit, no disk and the switch-over at B it reduces to
  the closed form exactly (a test proves it).

Dirtying is linear (D bytes/s of distinct pages, capped at the guest's memory), as in the
textbook model: the remaining bytes fall at B - D while the guest runs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from sim.params import choice, flag, integer, num

GIB = float(1 << 30)
MIB = float(1 << 20)

TimeoutAction = Literal["abort", "force_complete"]
SwitchoverCheck = Literal["continuous", "per-pass"]
Outcome = Literal["converged", "post-copy", "paused", "aborted", "never"]
OUTCOMES: tuple[Outcome, ...] = ("converged", "post-copy", "paused", "aborted", "never")


@dataclass(frozen=True, slots=True)
class NovaSettings:
    """Nova's `[libvirt]` live-migration options, with Nova's defaults and minimums."""

    downtime_ms: int = integer(
        500, "nova.live_migration_downtime", "the longest pause allowed at the switch-over "
        "(`[libvirt] live_migration_downtime`)", unit="ms", minimum=100,
    )  # fmt: skip
    downtime_steps: int = integer(
        10, "nova.live_migration_downtime_steps", "steps from the first allowed downtime to it "
        "(`[libvirt] live_migration_downtime_steps`)", minimum=3,
    )  # fmt: skip
    downtime_delay_s: int = integer(
        75, "nova.live_migration_downtime_delay", "time per step, per GiB of data "
        "(`[libvirt] live_migration_downtime_delay`)", unit="s per GiB", minimum=3,
    )  # fmt: skip
    completion_timeout_s: int = integer(
        800, "nova.live_migration_completion_timeout", "per GiB of data; 0 = none "
        "(`[libvirt] live_migration_completion_timeout`)", unit="s per GiB", minimum=0,
    )  # fmt: skip
    timeout_action: TimeoutAction = choice(
        "abort", "nova.live_migration_timeout_action", "what the completion timeout does "
        "(`[libvirt] live_migration_timeout_action`)", get_args(TimeoutAction),
    )  # fmt: skip
    permit_auto_converge: bool = flag(
        False, "nova.live_migration_permit_auto_converge",
        "`[libvirt] live_migration_permit_auto_converge`",
    )  # fmt: skip
    permit_post_copy: bool = flag(
        False, "nova.live_migration_permit_post_copy",
        "`[libvirt] live_migration_permit_post_copy`",
    )  # fmt: skip
    bandwidth_mib_s: int = integer(
        0, "nova.live_migration_bandwidth", "cap per migration, 0 = unlimited "
        "(`[libvirt] live_migration_bandwidth`)", unit="MiB/s", minimum=0,
    )  # fmt: skip

    @property
    def auto_converge(self) -> bool:
        """Nova sets QEMU's auto-converge only when post-copy is not permitted."""
        return self.permit_auto_converge and not self.permit_post_copy


@dataclass(frozen=True, slots=True)
class QemuSettings:
    """How QEMU runs the migration (facts: shared/reference/live-migration-model.md)."""

    check: SwitchoverCheck = choice(
        "continuous", "qemu.switchover_check", "when QEMU checks convergence: `per-pass` is the "
        "textbook's", get_args(SwitchoverCheck),
    )  # fmt: skip
    resume_s: float = num(
        0.01, "qemu.resume_ms", "device state and resume on the destination, after the last copy",
        unit="ms", minimum=0.0, scale=1000.0,
    )  # fmt: skip
    postcopy_switch_s: float = num(
        0.05, "qemu.postcopy_switch_ms", "guest pause when switching to post-copy", unit="ms",
        minimum=0.0, scale=1000.0,
    )  # fmt: skip
    throttle_initial: int = integer(
        20, "qemu.throttle_initial", "auto-converge's first CPU throttle (`cpu-throttle-initial`)",
        unit="%", minimum=1, percent=True,
    )  # fmt: skip
    throttle_increment: int = integer(
        10, "qemu.throttle_increment", "its step (`cpu-throttle-increment`)", unit="%", minimum=1
    )
    throttle_max: int = integer(
        99, "qemu.throttle_max", "its most (`max-cpu-throttle`)", unit="%", minimum=1,
        percent=True,
    )  # fmt: skip
    throttle_trigger: int = integer(
        50, "qemu.throttle_trigger_threshold", "throttle when dirtying exceeds this share of the "
        "bytes sent (`throttle-trigger-threshold`)", unit="%", minimum=1, percent=True,
    )  # fmt: skip
    sync_min_s: float = 1.0  # QEMU checks the throttle at most once a second


@dataclass(frozen=True, slots=True)
class LiveResult:
    total_s: float  # from the start of the migration job to the guest running on the destination
    downtime_s: float  # the guest paused (switch-over, forced pause or post-copy switch)
    bytes: float  # sent over the network, disk included
    outcome: Outcome
    passes: int  # memory passes started (the first full copy is pass 0)
    downtime_limit_ms: int  # Nova's allowed downtime when it ended
    throttle_pct: int  # auto-converge CPU throttle when it ended
    converges: bool  # lambda < 1 at the start: pre-copy alone can finish

    @property
    def moved(self) -> bool:
        """The VM ends on the destination (aborted / never: it stays on the source)."""
        return self.outcome in ("converged", "post-copy", "paused")

    @property
    def flagged(self) -> bool:
        """Did not converge by pre-copy within Nova's limits as configured."""
        return self.outcome != "converged" or not self.converges


# ---------------------------------------------------------------------------------------------
# Nova's schedule
# ---------------------------------------------------------------------------------------------
def data_gib(memory_mib: float, disk_gib: float = 0.0) -> float:
    """Nova's `_live_migration_data_gb`: RAM in GiB (at least 2) plus each local disk (at least 2
    each); the step delay and the completion timeout scale with it."""
    ram = max(2.0, memory_mib / 1024.0)
    disk = max(2.0, disk_gib) if disk_gib > 0 else 0.0
    return ram + disk


def downtime_steps(nova: NovaSettings, data_gb: float) -> list[tuple[int, int]]:
    """Nova's `downtime_steps`: (elapsed seconds, allowed downtime ms), steps + 1 entries; a step
    applies once elapsed time is strictly past its mark."""
    return list(_steps(nova, data_gb))


@functools.lru_cache(maxsize=4096)
def _steps(nova: NovaSettings, data_gb: float) -> tuple[tuple[int, int], ...]:
    delay = int(nova.downtime_delay_s * data_gb)
    base = nova.downtime_ms / nova.downtime_steps
    offset = (nova.downtime_ms - base) / nova.downtime_steps
    return tuple((int(delay * i), int(base + offset * i)) for i in range(nova.downtime_steps + 1))


def completion_timeout_s(nova: NovaSettings, data_gb: float) -> int:
    """Seconds after which Nova takes the timeout action (0: never)."""
    return int(nova.completion_timeout_s * data_gb)


def _limit_at(steps: Sequence[tuple[int, int]], t: float) -> tuple[int, int]:
    """(index, ms) of the step in force at elapsed t (the first applies from the start)."""
    k = 0
    for i in range(1, len(steps)):
        if t > steps[i][0]:
            k = i
        else:
            break
    return k, steps[k][1]


# ---------------------------------------------------------------------------------------------
# The textbook closed form
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ClosedForm:
    total_s: float
    downtime_s: float
    bytes: float
    rounds: int  # n: the stop-and-copy round's index
    converges: bool


def precopy_closed_form(
    memory: float,
    dirty_rate: float,
    bandwidth: float,
    max_downtime_s: float,
    resume_s: float = 0.0,
    max_rounds: int | None = None,
) -> ClosedForm:
    """The equations of the reference model, exactly. memory in bytes, rates in bytes/s."""
    M, D, B = memory, dirty_rate, bandwidth
    if B <= 0:
        raise ValueError("bandwidth must be positive")
    lam = D / B
    v_thd = B * max_downtime_s
    if v_thd >= M:
        n = 0
    elif lam == 0.0:
        n = 1
    elif lam < 1.0:
        n = max(0, math.ceil(math.log(v_thd / M) / math.log(lam)))
        # The first n with M lambda^n <= V_thd, exactly (the logarithms can be off by an ulp).
        while M * lam**n > v_thd:
            n += 1
        while n > 0 and M * lam ** (n - 1) <= v_thd:
            n -= 1
    else:
        n = max_rounds if max_rounds is not None else -1
        if n < 0:
            return ClosedForm(math.inf, math.inf, math.inf, -1, False)
    if max_rounds is not None:
        n = min(n, max_rounds)
    sent = M * (n + 1) if lam == 1.0 else M * (1 - lam ** (n + 1)) / (1 - lam)
    return ClosedForm(
        total_s=sent / B + resume_s,
        downtime_s=M * lam**n / B + resume_s,
        bytes=sent,
        rounds=n,
        converges=lam < 1.0,
    )


# ---------------------------------------------------------------------------------------------
# Nova + QEMU
# ---------------------------------------------------------------------------------------------
def live_migration(
    memory: float,
    dirty_rate: float,
    bandwidth: float,
    *,
    disk: float = 0.0,
    nova: NovaSettings | None = None,
    qemu: QemuSettings | None = None,
    switchover_bandwidth: float | None = None,
    memory_mib: float | None = None,
    disk_gib: float | None = None,
    max_passes: int = 1_000_000,
    force_after_s: float | None = None,
) -> LiveResult:
    """One live migration as Nova (libvirt driver) runs it. memory, disk in bytes; dirty_rate,
    bandwidth (already capped by live_migration_bandwidth) and switchover_bandwidth (default:
    bandwidth) in bytes/s. Nova sizes its schedule from the flavor's memory and the disk size
    (memory_mib / disk_gib; default: from the bytes).

    `force_after_s`: the operator (the executor) calls Nova's force-complete that long after the
    start, if the migration is still running then: the same as Nova's own timeout action
    `force_complete` firing at that time (post-copy if permitted, else the guest paused)."""
    nova = nova or NovaSettings()
    qemu = qemu or QemuSettings()
    M, D, B = float(memory), float(dirty_rate), float(bandwidth)
    if B <= 0:
        raise ValueError("bandwidth must be positive")
    B_sw = float(switchover_bandwidth) if switchover_bandwidth else B
    gb = data_gib(
        memory_mib if memory_mib is not None else M / MIB,
        disk_gib if disk_gib is not None else disk / GIB,
    )
    steps = _steps(nova, gb)
    timeout = float(completion_timeout_s(nova, gb))
    if force_after_s is not None:
        if not force_after_s > 0:
            raise ValueError("force_after_s must be positive")
        if timeout <= 0 or force_after_s < timeout:
            timeout = float(force_after_s)
            nova = dataclasses.replace(nova, timeout_action="force_complete")
    converges = D < B
    continuous = qemu.check == "continuous"

    # Fast path: no throttle to apply, the switch-over happens under the first limit (after the
    # disk, if any, is copied): remaining bytes fall linearly, one equation.
    if (
        continuous
        and converges
        and not (nova.auto_converge and qemu.throttle_trigger * B < D * 100)
    ):
        t0 = disk / B if disk > 0 else 0.0
        limit = steps[0][1]
        thr = B * limit / 1000.0
        tau = max(0.0, M - thr) / (B - D)
        end = t0 + tau
        horizon = steps[1][0] if len(steps) > 1 else math.inf
        if end <= horizon and (timeout <= 0 or end <= timeout):
            rest = min(M, thr)
            down = rest / B_sw + qemu.resume_s
            lam = D / B
            passes, cum, v = 1, M / B, M
            while cum < tau and passes < 10_000:
                v *= lam
                cum += v / B
                passes += 1
            return LiveResult(
                end + down,
                down,
                disk + B * tau + rest,
                "converged",
                passes,
                limit,
                0,
                converges,
            )
    return _live_general(M, D, B, B_sw, disk, nova, qemu, steps, timeout, converges, max_passes)


def _live_general(
    M: float,
    D: float,
    B: float,
    B_sw: float,
    disk: float,
    nova: NovaSettings,
    qemu: QemuSettings,
    steps: Sequence[tuple[int, int]],
    timeout: float,
    converges: bool,
    max_passes: int,
) -> LiveResult:
    continuous = qemu.check == "continuous"
    throttle_on = nova.auto_converge
    t = 0.0
    sent = 0.0
    # Block migration: the disk is mirrored first, while the guest runs (Nova's timer runs).
    if disk > 0:
        t_disk = disk / B
        if timeout > 0 and t_disk > timeout:
            return _timeout(M, 0.0, 0.0, B, timeout, B * timeout, nova, qemu, steps, 0, 0, B_sw)
        t += t_disk
        sent += disk
    V = M  # bytes dirty at the start of this pass
    p = 0  # throttle %
    high = 0  # QEMU's dirty_rate_high_cnt
    period_t = 0.0  # since the last throttle check
    period_dirty = 0.0
    period_sent = 0.0
    passes = 0
    step_times = [float(s[0]) for s in steps]
    while passes < max_passes:
        passes += 1
        d_eff = D * (100 - p) / 100.0
        T = V / B
        # Sub-intervals of this pass split at Nova's step marks and the timeout.
        marks = [x for x in step_times if t < x < t + T]
        if timeout > 0 and t < timeout < t + T:
            marks.append(timeout)
        marks.sort()
        a = 0.0
        for b in [*(m - t for m in marks), T]:
            _k, limit = _limit_at(steps, t + a)
            thr = B * limit / 1000.0
            r_a = min(M, V - (B - d_eff) * a)
            if continuous or a == 0.0:
                if r_a <= thr:
                    return _switch(
                        t + a, sent + B * a, r_a, B_sw, qemu, limit, p, passes, converges
                    )
                if continuous and d_eff < B:
                    tau = (V - thr) / (B - d_eff)
                    if a <= tau <= b:
                        r = thr
                        return _switch(
                            t + tau, sent + B * tau, r, B_sw, qemu, limit, p, passes, converges
                        )
            if timeout > 0 and abs((t + b) - timeout) < 1e-9 and b < T:
                r_to = min(M, V - (B - d_eff) * b)
                return _timeout(
                    M, d_eff, r_to, B, timeout, sent + B * b, nova, qemu, steps, passes, p, B_sw
                )
            a = b
        # The pass completed.
        t += T
        sent += V
        dirtied = min(M, d_eff * T)
        if timeout > 0 and abs(t - timeout) < 1e-9:
            return _timeout(M, d_eff, dirtied, B, timeout, sent, nova, qemu, steps, passes, p, B_sw)
        if throttle_on:
            period_t += T
            period_dirty += dirtied
            period_sent += V
            if period_t >= qemu.sync_min_s:
                if period_dirty * 100 > qemu.throttle_trigger * period_sent:
                    high += 1
                    if high >= 2:
                        high = 0
                        p = qemu.throttle_initial if p == 0 else p + qemu.throttle_increment
                        p = min(p, qemu.throttle_max)
                period_t = period_dirty = period_sent = 0.0
        # Steady state of a guest that never converges: skip whole passes to the next mark.
        if dirtied >= M and V >= M and (not throttle_on or p >= qemu.throttle_max):
            nxt = [x for x in step_times if x > t]
            if timeout > 0 and timeout > t:
                nxt.append(timeout)
            if not nxt:
                return LiveResult(math.inf, 0.0, math.inf, "never", passes, steps[-1][1], p, False)
            target = min(nxt)
            skip = int((target - t) / T) - 1
            if skip > 0:
                t += skip * T
                sent += skip * M
                passes += skip
        V = dirtied
    return LiveResult(math.inf, 0.0, math.inf, "never", passes, steps[-1][1], p, converges)


def _switch(
    t: float,
    sent: float,
    rest: float,
    B_sw: float,
    qemu: QemuSettings,
    limit: int,
    throttle: int,
    passes: int,
    converges: bool,
    outcome: Outcome = "converged",
    paused_since: float | None = None,
) -> LiveResult:
    copy = rest / B_sw + qemu.resume_s
    down = copy if paused_since is None else (t - paused_since) + copy
    return LiveResult(t + copy, down, sent + rest, outcome, passes, limit, throttle, converges)


def _timeout(
    M: float,
    d_eff: float,
    remaining: float,
    B: float,
    timeout: float,
    sent: float,
    nova: NovaSettings,
    qemu: QemuSettings,
    steps: Sequence[tuple[int, int]],
    passes: int,
    throttle: int,
    B_sw: float,
) -> LiveResult:
    """Nova's timeout action at elapsed `timeout` with `remaining` bytes still dirty."""
    _, limit = _limit_at(steps, timeout)
    converges = d_eff < B
    if nova.timeout_action == "abort":
        return LiveResult(timeout, 0.0, sent, "aborted", passes, limit, throttle, converges)
    if nova.permit_post_copy:
        # The guest runs on the destination and pulls the rest; a short pause to switch.
        total = timeout + qemu.postcopy_switch_s + remaining / B
        return LiveResult(
            total,
            qemu.postcopy_switch_s,
            sent + remaining,
            "post-copy",
            passes,
            limit,
            throttle,
            converges,
        )
    # Paused: nothing is dirtied any more; QEMU finishes the pass and switches over.
    thr = B * limit / 1000.0
    t_live = max(0.0, remaining - thr) / B
    rest = min(remaining, thr)
    return _switch(
        timeout + t_live,
        sent + B * t_live,
        rest,
        B_sw,
        qemu,
        limit,
        throttle,
        passes,
        converges,
        "paused",
        timeout,
    )


# ---------------------------------------------------------------------------------------------
# Cold migration
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ColdResult:
    total_s: float
    downtime_s: float
    bytes: float


def cold_migration(
    disk: float, bandwidth: float, *, running: bool, shutdown_s: float, boot_s: float
) -> ColdResult:
    """Shut off (if running), copy the local disk (0 on shared storage), boot (if it was
    running). A running VM is down for the whole of it; a stopped one stays stopped."""
    copy = disk / bandwidth if disk > 0 else 0.0
    if running:
        total = shutdown_s + copy + boot_s
        return ColdResult(total, total, disk)
    return ColdResult(copy, 0.0, disk)
