"""Another destination for one VM leaving a wave's host, when the planned one failed.

`reroute` ranks the candidate hosts as the greedy planner does (the hosts a VM may go to, already
upgraded hosts first, then room and balance) and asks the checker about each one in turn, on the
wave as it would then be: the VM's move, plus the wave's other moves still to come, plus its stops.
The first candidate the checker accepts is the answer. The executor uses it when Nova keeps
refusing a VM's planned destination, for a VM that appears on a host mid-wave, and to bring a
canary's VMs onto the canary hosts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from planner.checker import check_plan
from planner.inventory import Inventory
from planner.plan import Method, Migration, Plan, Stop, Wave
from planner.policy import Policy
from planner.rules.method import method_for
from solver.greedy import GreedyState


class Reroute(NamedTuple):
    """Where the VM goes instead, and how (a tuple: `host, method = reroute(...)`)."""

    host: str
    method: Method


def reroute(
    inv: Inventory,
    policy: Policy,
    vm_id: str,
    *,
    wave_hosts: tuple[str, ...],
    others: tuple[Migration, ...] = (),
    stops: tuple[Stop, ...] = (),
    avoid: Iterable[str] = (),
    only: Iterable[str] | None = None,
    tries: int = 12,
) -> Reroute | None:
    """A destination for `vm_id`, which leaves its host in a wave of `wave_hosts`.

    `inv` is the cloud as it is now (the VM on its current host), `others` the wave's other
    migrations still to come (counted as done, so that they are not given the same room twice),
    `stops` the wave's stops. `avoid`: hosts not to propose (those that failed already);
    `only`: if given, the only hosts that may be proposed. At most `tries` candidates are put to
    the checker, best first. The method is `method_for`'s (Nova's state rules). None when the VM
    is unknown, cannot move, or no candidate passes.
    """
    if not inv.has_vm(vm_id):
        return None
    vm = inv.vm(vm_id)
    method: Method | None = method_for(vm, inv, policy)
    if method is None:
        return None
    st = GreedyState(inv, policy)
    m = st.model
    for o in others:
        if inv.has_vm(o.vm) and inv.has_host(o.dst) and inv.vm(o.vm).host != o.dst:
            st.move(m.vm_index[o.vm], m.host_index[o.dst])
    in_wave = np.zeros(len(m.host_names), dtype=bool)
    for h in wave_hosts:
        if h in m.host_index:
            in_wave[m.host_index[h]] = True
    j = m.vm_index[vm_id]
    src = m.host_index[vm.host]
    ok = st.eligible(vm, j, in_wave)
    ok[src] = False
    for h in avoid:
        if h in m.host_index:
            ok[m.host_index[h]] = False
    if only is not None:
        keep = np.zeros_like(ok)
        for h in only:
            if h in m.host_index:
                keep[m.host_index[h]] = True
        ok &= keep
    for _ in range(tries):
        d = st.choose(j, ok, src, m.demand[j])
        if d < 0:
            return None
        cand = m.host_names[d]
        trial = Plan(
            inventory_sha256="",
            policy=policy,
            waves=(Wave(1, wave_hosts, (*others, Migration(vm_id, vm.host, cand, method)), stops),),
        )
        # This one-wave plan leaves later waves' hosts out, and the order of waves is not its
        # concern: only the wave's own rules judge the candidate.
        if not any(v.wave == 1 for v in check_plan(inv, trial).violations):
            return Reroute(cand, method)
        ok[d] = False
    return None
