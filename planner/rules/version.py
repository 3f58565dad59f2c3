"""Version order: Nova refuses to migrate a VM from a newer compute to an older one, at every
step. A host runs the target version once upgraded (or from the start), else its own.

Release labels are ordered (`planner.releases`: code names and YEAR.N ids); a move from a host
whose release is newer than its destination's is a violation. A label that is no release is
compared for equality only, as before: then only a move from an upgraded host to one that is not
is refused. The check also warns, once, about such labels, and when a compute trails the target
by more than Nova's support envelope (its conductor would refuse to start)."""

from __future__ import annotations

from planner import releases
from planner.inventory import Inventory
from planner.plan import Migration
from planner.policy import Policy
from planner.rules.base import (
    Family,
    Numbered,
    Out,
    PlanCheck,
    State,
    Violation,
    WaveStep,
    Words,
    shown,
    vm_label,
)

WORDS = Words(
    "version",
    "no migration from a newer compute to an older one (Nova refuses it)",
    "upgrade the older hosts first, or let the VMs that cannot move stop in place",
)


def words() -> Words:
    return WORDS


def running(state: State, host: str) -> str | None:
    """The version a host runs now: the target once upgraded (None when the policy names no
    target: some newer release), else its own."""
    if host in state.upgraded:
        return state.policy.target_version
    return state.inv.host(host).version


def refused(src: str | None, dst: str | None, src_upgraded: bool, dst_upgraded: bool) -> bool:
    """Nova refuses a migration from a host running `src` to one running `dst`."""
    a, b = releases.order(src), releases.order(dst)
    if a is not None and b is not None:
        return a > b
    return src_upgraded and not dst_upgraded  # labels that are no release: equality only


def _migrations(
    state: State, step: WaveStep, moves: list[tuple[int, Migration]], out: Numbered
) -> None:
    upgraded, host_of = state.upgraded, state.host_of
    for i, m in moves:
        current = host_of[m.vm]
        a, b = running(state, current), running(state, m.dst)
        if not refused(a, b, current in upgraded, m.dst in upgraded):
            continue
        out.append(
            (
                i,
                Violation(
                    "version",
                    f"{vm_label(state.inv, m.vm)}: {current} runs {a or 'the new release'}, "
                    f"{m.dst} runs {b or 'the new release'} "
                    "(Nova refuses newer -> older)",
                    step.index,
                    (m.vm, current, m.dst),
                ),
            )
        )


def warnings(inv: Inventory, policy: Policy) -> list[str]:
    """Labels that are no release (compared for equality only), and computes that trail the
    target by more than Nova supports between computes and controllers."""
    target = policy.target_version
    labels = {h.version for h in inv.hosts} | ({target} if target is not None else set())
    unknown = sorted(v for v in labels if releases.order(v) is None)
    out = []
    if unknown:
        out.append(
            f"version labels {shown(unknown, 5)} are no OpenStack release rollwave knows "
            "(YEAR.1/YEAR.2 from 2023.1, or a code name): they are compared for equality only, "
            "so only moves from upgraded hosts to hosts not upgraded are refused"
        )
    t = releases.order(target)
    if t is None:
        return out
    oldest = releases.oldest_compute(t)
    behind: dict[str, list[str]] = {}
    for h in inv.hosts:
        o = releases.order(h.version)
        if h.is_compute and o is not None and o < oldest:
            behind.setdefault(h.version, []).append(h.name)
    for v, names in sorted(behind.items()):
        out.append(
            f"{len(names)} computes run {v} ({shown(names, 3)}): Nova at {releases.name(t)} "
            f"supports computes back to {releases.name(oldest)} only (its conductor refuses "
            "to start with older ones); upgrade through an intermediate release, or disable "
            "the check ([workarounds] disable_compute_service_check_for_ffu) at your own risk"
        )
    return out


def binds(inv: Inventory, policy: Policy) -> bool:
    """Some compute to upgrade runs a newer release than some host could run: only then can
    the order refuse a move the planners would make (they never move a VM off an upgraded
    host)."""
    target = policy.target_version
    src = [releases.order(h.version) for h in inv.hosts if h.is_compute and h.version != target]
    dst = [releases.order(h.version) for h in inv.hosts if h.is_compute]
    dst.append(releases.order(target))
    known_src = [x for x in src if x is not None]
    known_dst = [x for x in dst if x is not None]
    return bool(known_src and known_dst and max(known_src) > min(known_dst))


def _plan(pc: PlanCheck, out: Out) -> None:
    pc.warnings.extend(Violation("version", w) for w in warnings(pc.inv, pc.plan.policy))


FAMILY = Family(
    name="version",
    rules={"version": "no migration from a newer compute to an older one"},
    plan=_plan,
    migrations=_migrations,
    owns=lambda key: key == "version",
    active=binds,
)
