"""Headroom in each cloud of a side-by-side plan: the policy's N+k (`capacity.headroom`, per
scope group and class) at every wave's end, in the old cloud over its hosts still in it and not
leaving in the wave, while it holds VMs; in the new cloud over the computes that joined before
the wave (the VMs crossing in the wave land on those), once it has computes. The new
controllers count in neither. Silent on in-place plans (the family `headroom` judges those)."""

from __future__ import annotations

from planner.capacity import HeadroomRow, format_amount, headroom
from planner.rules.base import Family, Out, State, Violation, WaveStep
from planner.rules.clouds import membership


def _violations(
    state: State, rows: list[HeadroomRow], rule: str, cloud: str, wave: int, out: Out
) -> None:
    k = state.policy.headroom.failures
    for row in rows:
        if row.ok:
            continue
        out.append(
            Violation(
                rule,
                f"{cloud} cloud, {row.group}: {row.rc} free {format_amount(row.rc, row.free)} "
                f"< {format_amount(row.rc, row.required)} needed for N+{k}"
                + (f" (largest: {', '.join(row.largest_hosts)})" if row.largest_hosts else ""),
                wave,
                (row.group, row.rc),
                {"free": row.free, "required": row.required},
            )
        )


def _after(state: State, step: WaveStep, out: Out) -> None:
    mem = membership(state)
    if mem is None:
        return
    w = step.index
    gone = mem.left_upto(w - 1) | step.hosts
    if any(vms for h, vms in state.on_host.items() if h not in mem.left_upto(w)):
        rows = headroom(state.model, state.policy.headroom, state.down_mask(gone))
        _violations(state, rows, "sbs_headroom_old", "old", w, out)
    computes = mem.new_computes_before(w)
    if computes:
        others = [h for h in state.model.host_names if h not in computes]
        rows = headroom(state.model, state.policy.headroom, state.down_mask(others))
        _violations(state, rows, "sbs_headroom_new", "new", w, out)


FAMILY = Family(
    name="cloud_headroom",
    rules={
        "sbs_headroom_old": "side by side: N+k in the old cloud at every wave's end while it "
        "holds VMs (its hosts not leaving)",
        "sbs_headroom_new": "side by side: N+k in the new cloud at every wave's end once it has "
        "computes (those that joined before the wave)",
    },
    after=_after,
)
