"""Evacuation: every VM on a wave's hosts when the wave starts is migrated or stopped, exactly
once; a migration leaves the VM's current host, which is in the wave (`source`; a cross-cloud
move of a side-by-side plan may leave any host of the old cloud), for a compute host that is
enabled, up, not in the wave and not its current host (`destination`). Physics, not policy: no
proof names it and nothing relaxes it."""

from __future__ import annotations

from collections import Counter

from planner.plan import CROSS_CLOUD, Migration
from planner.rules.base import Family, Numbered, Out, State, Violation, WaveStep, shown, vm_label


def _wave(state: State, step: WaveStep, out: Out) -> None:
    wave = step.wave
    handled = Counter([m.vm for m in wave.migrations] + [s.vm for s in wave.stops])
    for vm, n in sorted(handled.items()):
        if n > 1:
            out.append(
                Violation(
                    "evacuation",
                    f"{vm_label(state.inv, vm)} is migrated or stopped {n} times in one wave",
                    step.index,
                    (vm,),
                    {"times": n},
                )
            )
    for host in dict.fromkeys(wave.hosts):
        left = sorted(v for v in state.on_host.get(host, ()) if v not in handled)
        if left:
            labels = [vm_label(state.inv, v) for v in left[:8]]
            out.append(
                Violation(
                    "evacuation",
                    f"{len(left)} VM(s) on {host} are neither migrated nor stopped: "
                    + shown(labels + left[8:], 8),
                    step.index,
                    (host, *left),
                    {"vms": len(left)},
                )
            )


def _migrations(
    state: State, step: WaveStep, moves: list[tuple[int, Migration]], out: Numbered
) -> None:
    inv, w, host_of, wave_hosts = state.inv, step.index, state.host_of, step.hosts
    for i, m in moves:
        current = host_of[m.vm]
        if m.src != current:
            out.append(
                (
                    i,
                    Violation(
                        "source",
                        f"{vm_label(inv, m.vm)} is on {current}, not on {m.src}",
                        w,
                        (m.vm, current, m.src),
                    ),
                )
            )
        # A cross-cloud move (side by side) is stop, copy and boot, not a Nova migration: it may
        # leave any host of the old cloud (the family `clouds` judges it, `sbs_move`).
        if current not in wave_hosts and m.method != CROSS_CLOUD:
            out.append(
                (
                    i,
                    Violation(
                        "source",
                        f"{vm_label(inv, m.vm)} leaves {current}, which is not in this wave (no "
                        "VM leaves a host that is not in maintenance)",
                        w,
                        (m.vm, current),
                    ),
                )
            )
        dst = inv.host(m.dst)
        if dst.is_compute and dst.available and m.dst not in wave_hosts and m.dst != current:
            continue  # a compute host, enabled and up: the usual case
        why = []
        if not dst.is_compute:
            why.append("a controller")
        if not dst.enabled:
            why.append("disabled")
        if not dst.up:
            why.append("down")
        if m.dst in wave_hosts:
            why.append("in this wave")
        if m.dst == current:
            why.append("its current host")
        out.append(
            (
                i,
                Violation(
                    "destination",
                    f"{vm_label(inv, m.vm)} -> {m.dst}: destination is {', '.join(why)}",
                    w,
                    (m.vm, m.dst),
                ),
            )
        )


FAMILY = Family(
    name="evacuation",
    rules={
        "evacuation": "every VM on a wave host migrates or is stopped, exactly once",
        "source": "a migration starts from the VM's current host, which is in the wave",
        "destination": "a migration goes to a compute host that is enabled, up, not in the wave",
    },
    wave=_wave,
    migrations=_migrations,
)
