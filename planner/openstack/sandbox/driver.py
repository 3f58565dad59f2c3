"""The sandbox's virt driver: Nova's FakeDriver with per-host capacity, timed live migrations
and injected failures. Loaded by nova-compute inside the sandbox process only.

Live migrations come in two kinds. By default one takes a fixed time (`migration-duration`).
With a link (`Control.link_mib_s`, `sandbox up --migration-link`), a VM whose metadata carries a
dirty rate (`rollwave_dirty_rate_mb_s`, seeded from the inventory) migrates as the textbook
pre-copy model says (the linear rule of `sim.migration`, in real time): each tick the link sends
B x dt and the guest dirties D x dt, so the remaining memory falls at B - D, and never when
D >= B. Its progress is written to the migration record (`memory_total/processed/remaining`,
what `GET /servers/{id}/migrations` shows), as libvirt's monitor does. It ends:
- by itself when the remaining memory fits the allowed downtime (`[libvirt]
  live_migration_downtime`): completed;
- on Nova's force-complete (API, conductor, compute manager, this driver): post-copy where
  `[libvirt] live_migration_permit_post_copy` (status `running (post-copy)`), else the guest is
  paused; either way it stops dirtying and completes. With `pause_fails` set for the VM, the pause
  is refused as libvirt's can be: a warning in the log, nothing changes;
- on abort (API): cancelled, the guest stays on its source;
- at Nova's completion timeout (`live_migration_completion_timeout` x max(2, RAM GiB) seconds):
  `live_migration_timeout_action` abort (cancelled) or force_complete (as above).

Local disks (`Control.local_disks`, control op `storage`; off by default): the hosts share no
instance storage, so a live migration Nova asks with `block_migration: auto` is a block migration,
as libvirt's source check decides. In link mode it first copies the guest's disks (the flavor's
root and ephemeral GiB) at the link rate, writing `disk_total/processed/remaining` (and the
memory not yet sent) to the record as libvirt's monitor does, then pre-copies the memory. A force
during the disk copy is acted on when the memory phase begins; the completion timeout counts the
disks' GiB too (libvirt's data_gb).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from nova.virt import fake

MIB = 1 << 20
GIB = 1 << 30
LOG = logging.getLogger("rollwave.sandbox.driver")


@dataclass
class HostSpec:
    """What one fake hypervisor reports to Placement. Mutable: `upgrade` changes `version`."""

    capacity: dict[str, int]
    reserved: dict[str, int] = field(default_factory=dict)
    allocation_ratio: dict[str, float] = field(default_factory=dict)
    version: str = "unknown"
    # Opt-in (an inventory host's `traits` and `providers`): Placement traits on the compute
    # node, and nested providers (name -> capacity, reserved, allocation_ratio, traits).
    traits: tuple[str, ...] = ()
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class _Migration:
    done: threading.Event = field(default_factory=threading.Event)
    aborted: bool = False
    forced: bool = False  # a force-complete asked, not yet acted on (link mode)
    mode: str = "fixed"  # link mode: disk, pre-copy, post-copy, paused
    remaining: int | None = None
    started: float = field(default_factory=time.monotonic)


@dataclass
class VmBehaviour:
    """A VM's migration in link mode, set through the control endpoint (overrides metadata)."""

    dirty_rate_mb_s: float | None = None
    pause_fails: bool = False


class Control:
    """Knobs the control endpoint turns; read by every driver instance (one per host)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hosts: dict[str, HostSpec] = {}
        self.migration_seconds = 1.0
        self.migration_seconds_per_vm: dict[str, float] = {}
        self.fail_next: dict[str, int] = {}  # VM -> how many of its next migrations fail
        self.running: dict[str, _Migration] = {}
        self.completed = 0
        self.failed = 0
        # Link mode: the link's MiB/s (None: every migration takes its fixed duration).
        self.link_mib_s: float | None = None
        self.tick_s = 0.25
        self.behaviour: dict[str, VmBehaviour] = {}
        self.forced = 0  # force-completes acted on (post-copy or pause)
        self.pauses_refused = 0
        self.timeouts = 0
        self.aborted = 0
        # Hosts without shared instance storage: `block_migration: auto` means a block migration.
        self.local_disks = False
        self.forced_copying_disks = 0  # force-completes that came during a disk copy
        # With a real Glance (`with_image`): a snapshot uploads the guest's bytes.
        self.image_upload = False

    def duration(self, vm: str) -> float:
        with self.lock:
            return self.migration_seconds_per_vm.get(vm, self.migration_seconds)

    def take_failure(self, vm: str) -> bool:
        with self.lock:
            left = self.fail_next.get(vm, 0)
            if left <= 0:
                return False
            if left == 1:
                del self.fail_next[vm]
            else:
                self.fail_next[vm] = left - 1
            return True


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

    def snapshot(self, context: Any, instance: Any, image_id: str, update_task_state: Any) -> None:
        """With a real Glance, upload the guest disk's bytes through Nova's image API, as
        libvirt's snapshot does (Nova's FakeDriver uploads nothing, so the image stays queued)."""
        if not CONTROL.image_upload:
            super().snapshot(context, instance, image_id, update_task_state)
            return
        import io

        from nova.compute import task_states
        from nova.image import glance as nova_glance

        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        update_task_state(
            task_state=task_states.IMAGE_UPLOADING,
            expected_state=task_states.IMAGE_PENDING_UPLOAD,
        )
        data = f"rollwave sandbox disk of {instance.uuid}\n".encode() * 2048
        meta = {"disk_format": "raw", "container_format": "bare"}
        nova_glance.API().update(context, image_id, meta, io.BytesIO(data), purge_props=False)

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
        _placement_tree(provider_tree, nodename, spec)

    def check_can_live_migrate_source(
        self, context: Any, instance: Any, dest_check_data: Any, block_device_info: Any = None
    ) -> Any:
        # libvirt decides `auto` here: a block migration when the storage is not shared.
        with CONTROL.lock:
            local = CONTROL.local_disks
        if local and "block_migration" not in dest_check_data:
            dest_check_data.block_migration = True
            dest_check_data.is_shared_block_storage = False
            dest_check_data.is_shared_instance_path = False
        return dest_check_data

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
        dirty = _dirty_rate(instance)
        if dirty is not None and instance.vm_state == "paused":
            dirty = 0.0  # a paused guest dirties nothing
        record = getattr(migrate_data, "migration", None)
        if migrate_data is not None and "block_migration" in migrate_data:
            block_migration = bool(migrate_data.block_migration)
        with CONTROL.lock:
            link = CONTROL.link_mib_s
            physics = link is not None and dirty is not None and record is not None
            if physics:
                mig.mode = "pre-copy"  # before it is visible: a force may come at once
            CONTROL.running[instance.uuid] = mig
        try:
            if physics:
                assert link is not None and dirty is not None
                disk = _disk_bytes(instance) if block_migration else 0
                _precopy(instance, mig, record, link * MIB, dirty * MIB, disk)
            else:
                mig.done.wait(CONTROL.duration(instance.uuid))
        finally:
            with CONTROL.lock:
                CONTROL.running.pop(instance.uuid, None)
        if mig.aborted:
            with CONTROL.lock:
                CONTROL.aborted += 1
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
        if mig is None:
            return
        if mig.mode == "fixed":
            mig.done.set()
        else:
            if mig.mode == "disk":
                with CONTROL.lock:
                    CONTROL.forced_copying_disks += 1
            mig.forced = True
            mig.done.set()  # wakes the loop; it acts on `forced`

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


def _dirty_rate(instance: Any) -> float | None:
    """The VM's dirty rate in MiB/s: the control endpoint's, else its seeded metadata's."""
    with CONTROL.lock:
        b = CONTROL.behaviour.get(instance.uuid)
    if b is not None and b.dirty_rate_mb_s is not None:
        return b.dirty_rate_mb_s
    raw = (instance.metadata or {}).get("rollwave_dirty_rate_mb_s")
    try:
        return None if raw is None else float(raw)
    except ValueError:
        return None


def _disk_bytes(instance: Any) -> int:
    """What a block migration copies: the flavor's root and ephemeral disks."""
    fl = instance.flavor
    return (int(fl.root_gb or 0) + int(fl.ephemeral_gb or 0)) * GIB


def _precopy(
    instance: Any, mig: _Migration, record: Any, link: float, dirty: float, disk: int = 0
) -> None:
    """Link mode (see the module's doc): returns when the migration completes or is aborted
    (`mig.aborted`), having written its progress to the migration record at every tick. `disk`:
    the bytes a block migration copies first (0: none)."""
    from nova.conf import CONF

    total = int(instance.flavor.memory_mb) * MIB
    opts = CONF.libvirt
    per_gib = float(opts.live_migration_completion_timeout)
    timeout = per_gib * (max(2.0, total / GIB) + disk / GIB)  # 0: none
    processed, remaining = 0.0, float(total)
    mig.remaining = total
    if disk:
        mig.mode = "disk"
        _save(record, total, 0, total, (disk, 0, disk))
        if not _disk_phase(mig, record, link, total, disk, timeout):
            return
    else:
        _save(record, total, 0, total)
    last = time.monotonic()
    while True:
        mig.done.wait(CONTROL.tick_s)
        mig.done.clear()
        now = time.monotonic()
        dt, last = now - last, now
        if mig.aborted:
            return
        if mig.mode == "pre-copy" and timeout and now - mig.started > timeout:
            if opts.live_migration_timeout_action != "force_complete":
                with CONTROL.lock:
                    CONTROL.timeouts += 1
                mig.aborted = True
                return
            mig.forced = True
        if mig.forced:
            mig.forced = False
            if mig.mode == "pre-copy":
                _force(instance, mig, record, bool(opts.live_migration_permit_post_copy))
        d = dirty if mig.mode == "pre-copy" else 0.0
        processed += link * dt
        remaining = min(float(total), max(0.0, remaining - link * dt + d * dt))
        mig.remaining = int(remaining)
        _save(record, total, int(processed), int(remaining), (disk, disk, 0) if disk else None)
        if remaining <= link * opts.live_migration_downtime / 1000.0:
            return


def _force(instance: Any, mig: _Migration, record: Any, post_copy: bool) -> None:
    """Nova's force-complete as libvirt acts on it: post-copy where permitted, else a pause."""
    with CONTROL.lock:
        b = CONTROL.behaviour.get(instance.uuid)
    if post_copy:
        mig.mode = "post-copy"
        record.status = "running (post-copy)"
        record.save()
    elif b is not None and b.pause_fails:
        LOG.warning("Failed to pause instance %s during live-migration", instance.uuid)
        with CONTROL.lock:
            CONTROL.pauses_refused += 1
        return
    else:
        mig.mode = "paused"
    with CONTROL.lock:
        CONTROL.forced += 1


def _disk_phase(
    mig: _Migration, record: Any, link: float, total: int, disk: int, timeout: float
) -> bool:
    """A block migration's disk copy at the link rate; the memory waits, all of it remaining.
    False when aborted (by the API or the completion timeout) meanwhile. A force that comes now
    stays asked (`mig.forced`): the memory phase acts on it."""
    from nova.conf import CONF

    done, last = 0.0, time.monotonic()
    while done < disk:
        mig.done.wait(CONTROL.tick_s)
        mig.done.clear()
        now = time.monotonic()
        dt, last = now - last, now
        if mig.aborted:
            return False
        if timeout and now - mig.started > timeout:
            if CONF.libvirt.live_migration_timeout_action != "force_complete":
                with CONTROL.lock:
                    CONTROL.timeouts += 1
                mig.aborted = True
                return False
            mig.forced = True
        done = min(float(disk), done + link * dt)
        _save(record, total, 0, total, (disk, int(done), disk - int(done)))
    mig.mode = "pre-copy"
    return True


def _save(
    record: Any,
    total: int,
    processed: int,
    remaining: int,
    disk: tuple[int, int, int] | None = None,
) -> None:
    """The progress as libvirt's `save_stats` writes it; `disk` (total, processed, remaining)
    for a block migration."""
    record.memory_total = total
    record.memory_processed = processed
    record.memory_remaining = remaining
    if disk is not None:
        record.disk_total, record.disk_processed, record.disk_remaining = disk
    record.save()


def _placement_tree(provider_tree: Any, nodename: str, spec: HostSpec) -> None:
    """The host's traits and nested providers, as a vGPU driver reports a physical GPU
    (`new_child`, its own inventory and traits; the pattern of fake.py's nested drivers).
    Nothing when the inventory has neither."""
    if spec.traits:
        provider_tree.add_traits(nodename, *spec.traits)
    for name, p in spec.providers.items():
        if not provider_tree.exists(name):
            provider_tree.new_child(name, nodename)
        cap = {str(k): int(v) for k, v in (p.get("capacity") or {}).items()}
        provider_tree.update_inventory(
            name,
            {
                rc: {
                    "total": total,
                    "max_unit": total,
                    "reserved": int((p.get("reserved") or {}).get(rc, 0)),
                    "allocation_ratio": float((p.get("allocation_ratio") or {}).get(rc, 1.0)),
                    **_UNIT,
                }
                for rc, total in cap.items()
            },
        )
        if p.get("traits"):
            provider_tree.add_traits(name, *p["traits"])
