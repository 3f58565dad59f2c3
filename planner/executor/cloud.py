"""The calls the executor makes, against a live cloud (`LiveCloud`) or the dry run's model of
one (`DryRunCloud`, which prints each call it would make and changes nothing).

Polling uses single servers, one host's service and one VM's migrations; the full snapshot
(Nova's most expensive call, its detailed server list) is taken only at wave boundaries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import quote

from planner import formats
from planner.errors import CloudError
from planner.inventory import Inventory
from planner.openstack import snapshot as snap
from planner.openstack.connect import Api, pick_microversion
from planner.openstack.mapping import Mapping

# Migration statuses Nova uses while a migration is under way.
IN_PROGRESS = (
    "queued",
    "preparing",
    "running",
    "accepted",
    "pre-migrating",
    "migrating",
    "post-migrating",
)
FINAL = ("completed", "error", "failed", "cancelled", "done", "confirmed", "finished")


@dataclass(frozen=True)
class Service:
    host: str
    id: str
    enabled: bool
    up: bool
    disabled_reason: str | None


@dataclass(frozen=True)
class Server:
    id: str
    name: str
    status: str
    host: str | None
    task_state: str | None
    fault: str | None = None

    @property
    def settled(self) -> bool:
        """No task under way (a migration, a stop, ...)."""
        return not self.task_state and self.status not in ("MIGRATING", "RESIZE", "BUILD")


@dataclass(frozen=True)
class MigrationRecord:
    id: int
    status: str
    source: str | None
    dest: str | None
    kind: str | None


@dataclass(frozen=True)
class LiveProgress:
    """One live migration in progress, as `GET /servers/{id}/migrations` shows it (2.23+):
    memory and disk in bytes (None until the hypervisor's first report; the disk's stays None,
    or 0, unless it is a block migration, whose disks are copied before the memory). Nova lists
    only queued, preparing, running and post-migrating ones: a migration switched to post-copy
    is gone from this list (its status, `running (post-copy)`, is in `/os-migrations`)."""

    id: int
    status: str
    memory_total: int | None
    memory_processed: int | None
    memory_remaining: int | None
    disk_total: int | None = None
    disk_processed: int | None = None
    disk_remaining: int | None = None

    @property
    def copying_disks(self) -> bool:
        """A block migration still copying its disks: the memory is not being sent yet."""
        return bool(self.disk_remaining)


class Cloud(Protocol):
    name: str
    dry: bool

    def snapshot(self) -> Inventory: ...
    def service(self, host: str) -> Service | None: ...
    def set_service(self, host: str, enabled: bool, reason: str | None = None) -> None: ...
    def server(self, vm: str) -> Server | None: ...
    def servers_on(self, host: str) -> list[str]: ...
    def live_migrate(self, vm: str, host: str) -> None: ...
    def cold_migrate(self, vm: str, host: str) -> None: ...
    def confirm_resize(self, vm: str) -> None: ...
    def migrations(self, vm: str) -> list[MigrationRecord]: ...
    def abort_migration(self, vm: str, migration_id: int) -> None: ...
    def live_progress(self, vm: str) -> list[LiveProgress]: ...
    def force_complete(self, vm: str, migration_id: int) -> None: ...
    def stop_server(self, vm: str) -> None: ...
    def start_server(self, vm: str) -> None: ...
    def host_version(self, host: str) -> str | None: ...
    # Nova's other moves (planner.executor.moves_nova): evacuate off a down host, shelve and
    # unshelve to a host, a forced live migration.
    def evacuate(self, vm: str, host: str) -> None: ...
    def shelve(self, vm: str) -> None: ...
    def shelve_offload(self, vm: str) -> None: ...
    def unshelve(self, vm: str, host: str) -> None: ...
    def live_migrate_forced(self, vm: str, host: str) -> None: ...
    def servers_in_error(self) -> list[Server]: ...


def _int(x: Any) -> int | None:
    return None if x is None else int(x)


def _transient(exc: CloudError) -> bool:
    return exc.status is None or exc.status >= 500 or exc.status == 429


class LiveCloud:
    """A real cloud through openstacksdk's adapters (`planner.openstack.connect.Api`)."""

    dry = False

    def __init__(
        self,
        api: Api,
        name: str,
        mapping: Mapping | None = None,
        *,
        retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api = api
        self.name = name
        self.mapping = mapping or Mapping()
        self.retries = retries
        self._sleep = sleep
        self._cmax: tuple[int, int] | None = None
        self._service_ids: dict[str, str] = {}

    # -- plumbing -----------------------------------------------------------------------------
    def _mv(self, wanted: tuple[int, int]) -> str | None:
        if self._cmax is None:
            self._cmax = self.api.max_microversion("compute")
        return pick_microversion(self._cmax, wanted)

    def _call(
        self,
        method: str,
        path: str,
        wanted: tuple[int, int] = (2, 96),
        body: Any = None,
    ) -> Any:
        """One call; reads are retried on transient failures (no answer, 5xx, 429): a blip in a
        night-long run must not stop it. Writes are not retried blindly: the caller reconciles."""
        attempt = 0
        while True:
            try:
                return self.api.request(
                    "compute", method, path, microversion=self._mv(wanted), json=body
                )
            except CloudError as exc:
                attempt += 1
                if method != "GET" or not _transient(exc) or attempt > self.retries:
                    raise
                self._sleep(min(2.0**attempt, 10.0))

    # -- reads --------------------------------------------------------------------------------
    def snapshot(self) -> Inventory:
        data, _ = snap.collect(self.api, self.name, self.mapping)
        return formats.inventory_from_dict(data, f"snapshot of cloud {self.name}")

    def service(self, host: str) -> Service | None:
        body = self._call("GET", f"/os-services?binary=nova-compute&host={quote(host)}", (2, 53))
        for s in body.get("services", []):
            if s.get("host") == host and s.get("binary") == "nova-compute":
                sid = str(s["id"])
                self._service_ids[host] = sid
                return Service(
                    host=host,
                    id=sid,
                    enabled=s.get("status") == "enabled",
                    up=s.get("state") == "up" and not s.get("forced_down", False),
                    disabled_reason=s.get("disabled_reason"),
                )
        return None

    def server(self, vm: str) -> Server | None:
        try:
            body = self._call("GET", f"/servers/{quote(vm)}")
        except CloudError as exc:
            if exc.status == 404:
                return None
            raise
        s = body["server"]
        fault = (s.get("fault") or {}).get("message")
        return Server(
            id=s["id"],
            name=s.get("name", ""),
            status=str(s.get("status", "UNKNOWN")),
            host=s.get("OS-EXT-SRV-ATTR:host"),
            task_state=s.get("OS-EXT-STS:task_state"),
            fault=fault,
        )

    def servers_on(self, host: str) -> list[str]:
        ids: list[str] = []
        for page in self.api.paginate(
            "compute",
            f"/servers?all_tenants=True&host={quote(host)}",
            "servers",
            microversion=self._mv((2, 96)),
        ):
            ids.extend(str(s["id"]) for s in page)
        return ids

    def migrations(self, vm: str) -> list[MigrationRecord]:
        body = self._call("GET", f"/os-migrations?instance_uuid={quote(vm)}", (2, 59))
        out = [
            MigrationRecord(
                id=int(m["id"]),
                status=str(m.get("status", "")),
                source=m.get("source_compute"),
                dest=m.get("dest_compute"),
                kind=m.get("migration_type"),
            )
            for m in body.get("migrations", [])
        ]
        return sorted(out, key=lambda m: m.id)

    def live_progress(self, vm: str) -> list[LiveProgress]:
        # openstacksdk's ServerMigration (it negotiates 2.23 up to 2.80); reads retried as
        # `_call`'s are.
        def read(conn: Any) -> list[Any]:
            return list(conn.compute.server_migrations(vm))

        attempt = 0
        while True:
            try:
                got = self.api.sdk(f"GET compute /servers/{vm}/migrations", read)
                break
            except CloudError as exc:
                attempt += 1
                if not _transient(exc) or attempt > self.retries:
                    raise
                self._sleep(min(2.0**attempt, 10.0))
        out = [
            LiveProgress(
                id=int(m.id),
                status=str(m.status or ""),
                memory_total=_int(m.memory_total_bytes),
                memory_processed=_int(m.memory_processed_bytes),
                memory_remaining=_int(m.memory_remaining_bytes),
                disk_total=_int(m.disk_total_bytes),
                disk_processed=_int(m.disk_processed_bytes),
                disk_remaining=_int(m.disk_remaining_bytes),
            )
            for m in got
        ]
        return sorted(out, key=lambda m: m.id)

    def servers_in_error(self) -> list[Server]:
        """Every project's servers in ERROR (with no host when scheduling failed)."""
        out: list[Server] = []
        for page in self.api.paginate(
            "compute",
            "/servers/detail?all_tenants=True&status=ERROR",
            "servers",
            microversion=self._mv((2, 96)),
        ):
            for s in page:
                out.append(
                    Server(
                        id=s["id"],
                        name=s.get("name", ""),
                        status=str(s.get("status", "ERROR")),
                        host=s.get("OS-EXT-SRV-ATTR:host"),
                        task_state=s.get("OS-EXT-STS:task_state"),
                        fault=(s.get("fault") or {}).get("message"),
                    )
                )
        return out

    def host_version(self, host: str) -> str | None:
        aggs = self._call("GET", "/os-aggregates").get("aggregates", [])
        return snap.observed_version(host, aggs, self.mapping)

    # -- writes -------------------------------------------------------------------------------
    def set_service(self, host: str, enabled: bool, reason: str | None = None) -> None:
        sid = self._service_ids.get(host)
        if sid is None:
            svc = self.service(host)
            if svc is None:
                raise CloudError(f"no nova-compute service on host {host}", call="set service")
            sid = svc.id
        body: dict[str, Any] = {"status": "enabled" if enabled else "disabled"}
        if not enabled and reason:
            body["disabled_reason"] = reason
        if self._mv((2, 53)) is None or (self._cmax or (0, 0)) < (2, 53):
            # Before 2.53 services are addressed by host and binary.
            action = "enable" if enabled else ("disable-log-reason" if reason else "disable")
            old: dict[str, Any] = {"host": host, "binary": "nova-compute"}
            if not enabled and reason:
                old["disabled_reason"] = reason
            self._call("PUT", f"/os-services/{action}", (2, 1), old)
            return
        self._call("PUT", f"/os-services/{sid}", (2, 53), body)

    def live_migrate(self, vm: str, host: str) -> None:
        # 2.30: a named host without force (the scheduler still validates it) and, before 2.34,
        # Nova's pre-checks answer synchronously: a refusal is a 400 now, not an error later.
        mv = self._mv((2, 30))
        auto = mv is not None and tuple(int(x) for x in mv.split(".")) >= (2, 25)
        args: dict[str, Any] = {"host": host, "block_migration": "auto" if auto else False}
        if not auto:
            args["disk_over_commit"] = False
        self._call("POST", f"/servers/{quote(vm)}/action", (2, 30), {"os-migrateLive": args})

    def cold_migrate(self, vm: str, host: str) -> None:
        self._call("POST", f"/servers/{quote(vm)}/action", (2, 56), {"migrate": {"host": host}})

    def confirm_resize(self, vm: str) -> None:
        self._call("POST", f"/servers/{quote(vm)}/action", (2, 56), {"confirmResize": None})

    def abort_migration(self, vm: str, migration_id: int) -> None:
        self._call("DELETE", f"/servers/{quote(vm)}/migrations/{migration_id}", (2, 24))

    def force_complete(self, vm: str, migration_id: int) -> None:
        """Nova's force-complete of a running live migration (2.22+), through openstacksdk: a
        cast to the source compute, whose driver switches to post-copy where permitted, else
        pauses the guest. Not retried (the caller reads what became of it)."""
        self.api.sdk(
            f"POST compute /servers/{vm}/migrations/{migration_id}/action (force_complete)",
            lambda conn: conn.compute.force_complete_server_migration(str(migration_id), vm),
        )

    def stop_server(self, vm: str) -> None:
        self._call("POST", f"/servers/{quote(vm)}/action", (2, 1), {"os-stop": None})

    def start_server(self, vm: str) -> None:
        self._call("POST", f"/servers/{quote(vm)}/action", (2, 1), {"os-start": None})

    def evacuate(self, vm: str, host: str) -> None:
        # 2.68: no `force`, and the VM keeps its state (from 2.95 it would end SHUTOFF).
        self._call("POST", f"/servers/{quote(vm)}/action", (2, 68), {"evacuate": {"host": host}})

    def shelve(self, vm: str) -> None:
        self._call("POST", f"/servers/{quote(vm)}/action", (2, 1), {"shelve": None})

    def shelve_offload(self, vm: str) -> None:
        self._call("POST", f"/servers/{quote(vm)}/action", (2, 1), {"shelveOffload": None})

    def unshelve(self, vm: str, host: str) -> None:
        # 2.91: unshelve a SHELVED_OFFLOADED VM to a named host (the scheduler validates it).
        self._call("POST", f"/servers/{quote(vm)}/action", (2, 91), {"unshelve": {"host": host}})

    def live_migrate_forced(self, vm: str, host: str) -> None:
        # `force` exists only from 2.30 to 2.67: the scheduler is bypassed.
        args = {"host": host, "block_migration": "auto", "force": True}
        self._call("POST", f"/servers/{quote(vm)}/action", (2, 30), {"os-migrateLive": args})


# ---------------------------------------------------------------------------------------------
# The dry run
# ---------------------------------------------------------------------------------------------
@dataclass
class _DryServer:
    host: str
    status: str
    name: str
    before_resize: str | None = None


class DryRunCloud:
    """The cloud as the executor expects it to evolve: starts from one real snapshot, then every
    write is printed (never sent) and applied to this model, so that later steps see their
    predecessors' effects and print the calls they would make."""

    dry = True

    def __init__(self, start: Inventory, emit: Callable[[str], None], target: str | None) -> None:
        self.name = start.cloud
        self.emit = emit
        self.target = target
        self._inv = start
        self.services: dict[str, dict[str, Any]] = {
            h.name: {"enabled": h.enabled, "up": h.up, "reason": h.disabled_reason}
            for h in start.hosts
            if h.is_compute
        }
        self.versions: dict[str, str] = {h.name: h.version for h in start.hosts}
        self.servers: dict[str, _DryServer] = {
            v.id: _DryServer(v.host, v.status, v.name) for v in start.vms
        }
        self._mid = 0
        self.calls: list[str] = []

    def _say(self, line: str) -> None:
        self.calls.append(line)
        self.emit(line)

    def snapshot(self) -> Inventory:
        self._say(
            "GET  compute /os-services, /os-hypervisors/detail, /os-aggregates, "
            "/os-server-groups, /servers/detail; placement /resource_providers/*/inventories "
            "(snapshot)"
        )
        hosts = tuple(
            replace(
                h,
                enabled=self.services[h.name]["enabled"] if h.name in self.services else h.enabled,
                up=self.services[h.name]["up"] if h.name in self.services else h.up,
                disabled_reason=self.services[h.name]["reason"]
                if h.name in self.services
                else h.disabled_reason,
                version=self.versions.get(h.name, h.version),
            )
            for h in self._inv.hosts
        )
        vms = tuple(
            replace(v, host=self.servers[v.id].host, status=self.servers[v.id].status)
            for v in self._inv.vms
        )
        return Inventory(
            cloud=self._inv.cloud,
            taken_at=self._inv.taken_at,
            hosts=hosts,
            vms=vms,
            server_groups=self._inv.server_groups,
            ha_groups=self._inv.ha_groups,
        )

    def service(self, host: str) -> Service | None:
        s = self.services.get(host)
        if s is None:
            return None
        self._say(f"GET  compute /os-services?binary=nova-compute&host={host}")
        return Service(host, host, bool(s["enabled"]), bool(s["up"]), s["reason"])

    def set_service(self, host: str, enabled: bool, reason: str | None = None) -> None:
        body: dict[str, Any] = {"status": "enabled" if enabled else "disabled"}
        if reason and not enabled:
            body["disabled_reason"] = reason
        self._say(f"PUT  compute /os-services/<{host}> {json.dumps(body)}")
        self.services[host].update(enabled=enabled, reason=None if enabled else reason)

    def server(self, vm: str) -> Server | None:
        s = self.servers.get(vm)
        self._say(f"GET  compute /servers/{vm}")
        if s is None:
            return None
        return Server(vm, s.name, s.status, s.host, None)

    def servers_on(self, host: str) -> list[str]:
        self._say(f"GET  compute /servers?all_tenants=True&host={host}")
        return [vm for vm, s in self.servers.items() if s.host == host]

    def live_migrate(self, vm: str, host: str) -> None:
        body = {"os-migrateLive": {"host": host, "block_migration": "auto"}}
        self._say(f"POST compute /servers/{vm}/action {json.dumps(body)}")
        self.servers[vm].host = host

    def cold_migrate(self, vm: str, host: str) -> None:
        self._say(f"POST compute /servers/{vm}/action {json.dumps({'migrate': {'host': host}})}")
        s = self.servers[vm]
        s.host = host
        s.before_resize, s.status = s.status, "VERIFY_RESIZE"

    def confirm_resize(self, vm: str) -> None:
        self._say(f"POST compute /servers/{vm}/action {json.dumps({'confirmResize': None})}")
        s = self.servers[vm]
        s.status = "SHUTOFF" if s.before_resize == "SHUTOFF" else "ACTIVE"

    def migrations(self, vm: str) -> list[MigrationRecord]:
        self._say(f"GET  compute /os-migrations?instance_uuid={vm}")
        return []

    def abort_migration(self, vm: str, migration_id: int) -> None:
        self._say(f"DELETE compute /servers/{vm}/migrations/{migration_id}")

    def live_progress(self, vm: str) -> list[LiveProgress]:
        self._say(f"GET  compute /servers/{vm}/migrations")
        return []

    def force_complete(self, vm: str, migration_id: int) -> None:
        mid = migration_id or "<migration>"
        body = json.dumps({"force_complete": None})
        self._say(f"POST compute /servers/{vm}/migrations/{mid}/action {body}")

    def stop_server(self, vm: str) -> None:
        self._say(f"POST compute /servers/{vm}/action {json.dumps({'os-stop': None})}")
        self.servers[vm].status = "SHUTOFF"

    def start_server(self, vm: str) -> None:
        self._say(f"POST compute /servers/{vm}/action {json.dumps({'os-start': None})}")
        self.servers[vm].status = "ACTIVE"

    def _action(self, vm: str, body: dict[str, Any]) -> None:
        self._say(f"POST compute /servers/{vm}/action {json.dumps(body)}")

    def evacuate(self, vm: str, host: str) -> None:
        self._action(vm, {"evacuate": {"host": host}})
        s = self.servers[vm]
        s.host, s.status = host, "SHUTOFF" if s.status == "SHUTOFF" else "ACTIVE"

    def shelve(self, vm: str) -> None:
        self._action(vm, {"shelve": None})
        self.servers[vm].status = "SHELVED_OFFLOADED"

    def shelve_offload(self, vm: str) -> None:
        self._action(vm, {"shelveOffload": None})
        self.servers[vm].status = "SHELVED_OFFLOADED"

    def unshelve(self, vm: str, host: str) -> None:
        self._action(vm, {"unshelve": {"host": host}})
        s = self.servers[vm]
        s.host, s.status = host, "ACTIVE"

    def live_migrate_forced(self, vm: str, host: str) -> None:
        args = {"host": host, "block_migration": "auto", "force": True}
        self._action(vm, {"os-migrateLive": args})
        self.servers[vm].host = host

    def servers_in_error(self) -> list[Server]:
        # Not printed: the model has no VM in ERROR outside its snapshot, and the dry run's
        # calls stay those it always listed (the live run reads `/servers/detail?status=ERROR`).
        return []

    def host_version(self, host: str) -> str | None:
        self._say("GET  compute /os-aggregates")
        return self.versions.get(host)

    def run_hook(self, kind: str, host: str, command: str) -> None:
        """A hook the dry run does not run; an upgrade is assumed to succeed."""
        self._say(f"RUN  {kind} hook: {command}")
        if kind == "upgrade" and self.target is not None:
            self.versions[host] = self.target
        if kind == "rollback" and self._inv.has_host(host):
            self.versions[host] = self._inv.host(host).version
        if kind in ("upgrade", "rollback") and host in self.services:
            self.services[host]["up"] = True  # assumed to come back healthy
