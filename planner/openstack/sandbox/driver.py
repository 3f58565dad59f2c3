"""The sandbox's virt driver: Nova's FakeDriver with per-host capacity, timed live migrations
and injected failures. Loaded by nova-compute inside the sandbox process only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from nova.virt import fake


@dataclass
class HostSpec:
    """What one fake hypervisor reports to Placement. Mutable: `upgrade` changes `version`."""

    capacity: dict[str, int]
    reserved: dict[str, int] = field(default_factory=dict)
    allocation_ratio: dict[str, float] = field(default_factory=dict)
    version: str = "unknown"


@dataclass
class _Migration:
    done: threading.Event = field(default_factory=threading.Event)
    aborted: bool = False


class Control:
    """Knobs the control endpoint turns; read by every driver instance (one per host)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hosts: dict[str, HostSpec] = {}
        self.migration_seconds = 1.0
        self.migration_seconds_per_vm: dict[str, float] = {}
        self.fail_next: set[str] = set()
        self.running: dict[str, _Migration] = {}
        self.completed = 0
        self.failed = 0

    def duration(self, vm: str) -> float:
        with self.lock:
            return self.migration_seconds_per_vm.get(vm, self.migration_seconds)

    def take_failure(self, vm: str) -> bool:
        with self.lock:
            if vm in self.fail_next:
                self.fail_next.discard(vm)
                return True
            return False


CONTROL = Control()

# Placement inventory fields Nova's FakeDriver reports besides total/reserved/ratio.
_UNIT = {"min_unit": 1, "step_size": 1}


class SandboxDriver(fake.FakeDriver):  # type: ignore[misc]
    """One fake hypervisor whose capacity comes from `CONTROL.hosts[host]`."""

    def init_host(self, host: str) -> None:
        super().init_host(host)
        spec = CONTROL.hosts[host]
        # The hypervisor view (os-hypervisors before 2.88) follows the inventory too.
        self.resources.vcpus = spec.capacity.get("VCPU", 0)
        self.resources.memory_mb = spec.capacity.get("MEMORY_MB", 0)
        self.resources.local_gb = spec.capacity.get("DISK_GB", 0)

    def update_provider_tree(
        self, provider_tree: Any, nodename: str, allocations: Any = None
    ) -> None:
        spec = CONTROL.hosts[self._host]
        inventory = {
            rc: {
                "total": total,
                "max_unit": total,
                "reserved": spec.reserved.get(rc, 0),
                "allocation_ratio": spec.allocation_ratio.get(rc, 1.0),
                **_UNIT,
            }
            for rc, total in spec.capacity.items()
            if total > 0
        }
        provider_tree.update_inventory(nodename, inventory)

    def get_available_resource(self, nodename: str) -> dict[str, Any]:
        res: dict[str, Any] = super().get_available_resource(nodename)
        # A known uptime spares os-hypervisors/detail (>= 2.88) one RPC call per host.
        res["stats"] = {"uptime": " 00:00:00 up 1 day"}
        return res

    def live_migration(
        self,
        context: Any,
        instance: Any,
        dest: str,
        post_method: Any,
        recover_method: Any,
        block_migration: bool = False,
        migrate_data: Any = None,
    ) -> None:
        mig = _Migration()
        with CONTROL.lock:
            CONTROL.running[instance.uuid] = mig
        try:
            mig.done.wait(CONTROL.duration(instance.uuid))
        finally:
            with CONTROL.lock:
                CONTROL.running.pop(instance.uuid, None)
        if mig.aborted:
            recover_method(context, instance, dest, migrate_data, migration_status="cancelled")
        elif CONTROL.take_failure(instance.uuid):
            # Like a hypervisor-side failure: the guest keeps running on the source.
            with CONTROL.lock:
                CONTROL.failed += 1
            recover_method(context, instance, dest, migrate_data, migration_status="error")
        else:
            post_method(context, instance, dest, block_migration, migrate_data)
            with CONTROL.lock:
                CONTROL.completed += 1

    def live_migration_force_complete(self, instance: Any) -> None:
        with CONTROL.lock:
            mig = CONTROL.running.get(instance.uuid)
        if mig:
            mig.done.set()

    def live_migration_abort(self, instance: Any) -> None:
        with CONTROL.lock:
            mig = CONTROL.running.get(instance.uuid)
        if mig:
            mig.aborted = True
            mig.done.set()

    def post_live_migration(
        self, context: Any, instance: Any, block_device_info: Any, migrate_data: Any = None
    ) -> None:
        # Runs on the source: forget the guest there (as FakeLiveMigrateDriver does).
        self.destroy(context, instance, network_info=None, block_device_info=block_device_info)
