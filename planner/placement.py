"""What Placement would accept: a VM's traits and allocation units against a destination host.

Placement answers a scheduling request (a flavor's resources and its `trait:X=required|forbidden`
extra specs) only with hosts whose provider tree has the resources, in units it allows, and the
traits asked for. Capacity (free amount per column) is `planner.capacity`'s; this module says
the rest, per (VM, host) and from the inventory alone, so every model can precompute it.

Modelled as Placement does for the unnumbered request group: each class of the VM's demand
comes from one provider of the host (the root, or a nested provider of the same column); the
providers that could serve the VM are the root and the nested providers holding its columns;
required traits must be on one of those, forbidden ones on none.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from planner.inventory import VM, Host, Inventory, Units, base_class

Signature = tuple[tuple[tuple[str, int], ...], tuple[str, ...], tuple[str, ...]]


def has_limits(inv: Inventory) -> bool:
    """True when some host or VM carries traits, units or nested providers (else every host
    Placement has room on accepts every VM, and nothing here needs computing)."""
    return any(h.traits or h.units or h.providers for h in inv.hosts) or any(
        v.required_traits or v.forbidden_traits for v in inv.vms
    )


def signature(inv: Inventory, vm: VM) -> Signature:
    """What the verdict on a VM depends on: hosts accept all VMs of one signature alike."""
    demand = tuple(sorted((k, n) for k, n in inv.demand(vm).items() if n > 0))
    return demand, tuple(sorted(vm.required_traits)), tuple(sorted(vm.forbidden_traits))


def _units_ok(units: Mapping[str, Units], rc: str, n: int) -> bool:
    u = units.get(rc)
    return u is None or u.accepts(n)


def refusal(
    host: Host, demand: Mapping[str, int], required: tuple[str, ...], forbidden: tuple[str, ...]
) -> str | None:
    """Why Placement would refuse a VM of this demand and traits on `host` (None: it would
    not, capacity aside). A column the host lacks is capacity's to report, not this."""
    traits = set(host.traits)
    for key, n in demand.items():
        if n <= 0:
            continue
        rc = base_class(key)
        offers: list[bool] = []
        if key in host.capacity:
            offers.append(_units_ok(host.units, rc, n))
        for p in host.providers:
            if rc in p.capacity and p.key(rc) == key:
                offers.append(_units_ok(p.units, rc, n))
                traits.update(p.traits)
        if offers and not any(offers):
            return f"no provider of {host.name} takes {n} {rc} in one allocation (units)"
    missing = [t for t in required if t not in traits]
    if missing:
        return f"{host.name} lacks the required trait{'s' * (len(missing) > 1)} " + ", ".join(
            missing
        )
    present = [t for t in forbidden if t in traits]
    if present:
        return f"{host.name} has the forbidden trait{'s' * (len(present) > 1)} " + ", ".join(
            present
        )
    return None


def vm_refusal(inv: Inventory, vm: VM, host: Host) -> str | None:
    if not host.is_compute:
        return None
    return refusal(host, inv.demand(vm), vm.required_traits, vm.forbidden_traits)


class Acceptance:
    """Per VM, the hosts Placement would accept (capacity aside), as boolean masks over
    `inv.hosts`; VMs of one signature share one read-only mask."""

    def __init__(self, inv: Inventory) -> None:
        self.inv = inv
        self.active = has_limits(inv)
        self._masks: dict[Signature, npt.NDArray[np.bool_]] = {}
        self._by_vm: dict[str, npt.NDArray[np.bool_] | None] = {}

    def mask(self, vm: VM) -> npt.NDArray[np.bool_] | None:
        """None when Placement accepts this VM on every compute host."""
        if not self.active:
            return None
        if vm.id in self._by_vm:
            return self._by_vm[vm.id]
        sig = signature(self.inv, vm)
        m = self._masks.get(sig)
        if m is None:
            demand, req, forb = dict(sig[0]), sig[1], sig[2]
            m = np.array(
                [not h.is_compute or refusal(h, demand, req, forb) is None for h in self.inv.hosts],
                dtype=bool,
            )
            m.setflags(write=False)
            self._masks[sig] = m
        got = None if bool(m.all()) else m
        self._by_vm[vm.id] = got
        return got


def acceptance(inv: Inventory) -> Acceptance:
    """The inventory's `Acceptance`, made once per inventory (it never changes)."""
    got: Acceptance | None = inv.__dict__.get("_acceptance")
    if got is None:
        got = Acceptance(inv)
        object.__setattr__(inv, "_acceptance", got)
    return got


def describe(inv: Inventory, vm: VM) -> str:
    """The VM's Placement needs in words (proof keys, messages)."""
    parts = [f"trait {t}" for t in sorted(vm.required_traits)]
    parts += [f"no trait {t}" for t in sorted(vm.forbidden_traits)]
    parts += [f"{n} {k}" for k, n in sorted(inv.demand(vm).items()) if "@" in k and n > 0]
    return ", ".join(parts) or "its allocation units"


def accepts(inv: Inventory, vm: VM, host: str) -> bool:
    """Whether Placement would accept `vm` on `host` (capacity aside)."""
    return not acceptance(inv).active or vm_refusal(inv, vm, inv.host(host)) is None
