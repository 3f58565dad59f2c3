"""The sandbox process: real Nova + Placement in-process on fake hypervisors, served over HTTP.

Run by `manager.start` as `python -m planner.openstack.sandbox.server SPEC.json`; never imported
by rollwave's client side (Nova's harness patches openstacksdk and other process-wide state).
`Sandbox` seeds the cloud from an inventory and answers the control endpoint; `main` serves it.
Nova's harness and its patches are in `harness`. Pitfalls from the feasibility run are marked
`(pitfall N)`.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from planner.openstack.conventions import LABELS_AGGREGATE, VERSION_KEY, label_key, vm_metadata
from planner.openstack.sandbox import harness

# (pitfall 1) native threads, before anything imports nova.
os.environ["OS_NOVA_DISABLE_EVENTLET_PATCHING"] = "1"

READY_FILE = "state.json"
# API status -> Nova vm_state, for waiting on the database directly.
_VM_STATE = {
    "ACTIVE": "active",
    "SHUTOFF": "stopped",
    "PAUSED": "paused",
    "SUSPENDED": "suspended",
    "ERROR": "error",
}
# Nova's [libvirt] live-migration options the link mode reads (driver.py), by their names in
# the control request; each is read at every migration, so a change applies to the next.
NOVA_LIBVIRT: dict[str, tuple[str, type]] = {
    "permit_post_copy": ("live_migration_permit_post_copy", bool),
    "completion_timeout": ("live_migration_completion_timeout", int),
    "timeout_action": ("live_migration_timeout_action", str),
    "downtime_ms": ("live_migration_downtime", int),
}


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


class Sandbox:
    """Owns the Nova harness; seeds it from an inventory; answers control requests."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.inv: dict[str, Any] = spec["inventory"]
        self.state_dir = Path(spec["state_dir"])
        self.lock = threading.RLock()
        self.computes: dict[str, Any] = {}
        self.down: set[str] = set()
        self.refuse_up: set[str] = set()
        self.vm_ids: dict[str, str] = {}  # inventory id -> Nova server uuid
        self.group_ids: dict[str, str] = {}
        self.flavors: dict[Any, str] = {}
        self.agg_ids: dict[str, int] = {}
        self.timings: dict[str, float] = {}

    def _phase(self, name: str, t0: float) -> None:
        """Record a phase's wall time, and the process's CPU time so far (all threads)."""
        self.timings[name] = time.monotonic() - t0
        self.timings[name + "_cpu_total"] = time.process_time()

    # -- start-up --------------------------------------------------------------------------

    def start(self) -> None:
        t0 = time.monotonic()
        # nova.tests.functional applies Nova's threading mode; it must come before any other
        # nova module (the driver imports nova.virt, which pulls in futurist, then eventlet).
        import nova.tests.functional  # noqa: F401

        from planner.openstack.sandbox import driver

        if self.spec.get("with_image"):
            from planner.openstack.sandbox import glance

            glance.remember_image_service()  # before the harness stubs it

        # Nova loads drivers only from its own namespace: nova.virt.<compute_driver>.
        sys.modules["nova.virt.rollwave_sandbox"] = driver
        self.driver = driver
        driver.CONTROL.migration_seconds = float(self.spec.get("migration_seconds", 1.0))
        link = self.spec.get("migration_link_mib_s")
        driver.CONTROL.link_mib_s = None if link is None else float(link)
        from planner.openstack.sandbox import seed

        self.harness = harness.make_harness(seed.scheduler_filters(self.inv))
        self.nova_config(dict(self.spec.get("nova_libvirt") or {}))
        self._phase("harness", t0)
        self.admin = self.harness.admin_api

    def seed(self) -> None:
        from planner.openstack.sandbox import seed

        t0 = time.monotonic()
        for h in seed.computes(self.inv):
            self.driver.CONTROL.hosts[h["name"]] = self.driver.HostSpec(
                capacity={k: int(v) for k, v in (h.get("capacity") or {}).items()},
                reserved={k: int(v) for k, v in (h.get("reserved") or {}).items()},
                allocation_ratio={
                    k: float(v) for k, v in (h.get("allocation_ratio") or {}).items()
                },
                version=str(h.get("version") or "unknown"),
                **seed.placement_host(h),
            )
        for name in self.driver.CONTROL.hosts:
            self.computes[name] = self.harness._start_compute(name)
        self._phase("computes", t0)

        t0 = time.monotonic()
        aggs = seed.aggregates(self.inv)
        ids = {a.name: self._create_aggregate(a.name, a.az, dict(a.metadata), ()) for a in aggs}
        # Memberships are independent requests; Nova serialises what must be (its DB locks).
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(
                pool.map(
                    lambda ah: self.admin.add_host_to_aggregate(ids[ah[0]], ah[1]),
                    [(a.name, h) for a in aggs for h in a.hosts],
                )
            )
        self._create_aggregate(LABELS_AGGREGATE, None, seed.label_metadata(self.inv), ())
        if seed.scheduler_filters(self.inv):
            self._await_scheduler_aggregates(aggs)
        self._phase("aggregates", t0)

        t0 = time.monotonic()
        self._create_groups()
        self._boot_vms(seed)
        self._ghost_consumers(seed.ghost_usage(self.inv))
        self._phase("vms", t0)

        t0 = time.monotonic()
        for h in seed.computes(self.inv):
            if h.get("enabled", True) is False:
                self._set_enabled(h["name"], False, h.get("disabled_reason"))
            if h.get("up", True) is False:
                self._take_down(h["name"])
        self._phase("services", t0)

    def _await_scheduler_aggregates(self, aggs: list[Any], timeout: float = 60.0) -> None:
        """Make the scheduler know every aggregate's hosts and metadata before a boot that an
        aggregate filter judges (opt-in: only when the seed enables such a filter). They reach
        it as casts, one per API call, and memberships added in parallel may land out of order
        (the last one an older state): once they are in, it reloads them all from the database,
        as it does at start."""
        hm = self.harness.scheduler_service.manager.host_manager
        deadline = time.monotonic() + timeout
        while True:
            time.sleep(0.5)  # the casts in flight land first
            hm._init_aggregates()
            known = {a.name: a for a in list(hm.aggs_by_id.values())}
            if all(
                a.name in known
                and set(a.hosts) <= set(known[a.name].hosts)
                and dict(a.metadata).items() <= dict(known[a.name].metadata).items()
                for a in aggs
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the scheduler did not learn the seeded aggregates in time")

    def _ghost_consumers(self, usage: dict[str, dict[str, int]]) -> None:
        """An allocation in Placement, for a consumer Nova does not know, per host asked
        (`seed.ghost_usage`): the drift a leaked allocation leaves in a real cloud."""
        import uuid

        for host, resources in usage.items():
            rp = self.harness._get_provider_uuid_by_host(host)
            body = {
                "allocations": {rp: {"resources": resources}},
                "project_id": "rollwave-ghost",
                "user_id": "rollwave-ghost",
                "consumer_generation": None,
            }
            r = self.harness.placement.put(f"/allocations/{uuid.uuid4()}", body, version="1.28")
            if r.status != 204:
                raise RuntimeError(f"Placement refused the other usage of {host}: {r.body}")

    def _create_aggregate(
        self, name: str, az: str | None, meta: dict[str, str], hosts: tuple[str, ...] | list[str]
    ) -> int:
        body: dict[str, Any] = {"name": name}
        if az:
            body["availability_zone"] = az
        agg = self.admin.post_aggregate({"aggregate": body})
        self.agg_ids[name] = agg["id"]
        if meta:
            self.admin.post_aggregate_action(agg["id"], {"set_metadata": {"metadata": meta}})
        for host in hosts:
            self.admin.add_host_to_aggregate(agg["id"], host)
        return int(agg["id"])

    def _create_groups(self) -> None:
        members: dict[str, str] = {}
        for vm in self.inv.get("vms", []):
            if vm.get("server_group"):
                members.setdefault(vm["server_group"], vm.get("project") or "rollwave")
        for g in self.inv.get("server_groups", []):
            body: dict[str, Any] = {"name": g.get("name") or g["id"], "policy": g["policy"]}
            mspp = int(g.get("max_server_per_host", 1) or 1)
            if g["policy"] == "anti-affinity" and mspp != 1:
                body["rules"] = {"max_server_per_host": mspp}
            api = self._api_for(members.get(g["id"], "rollwave"))
            self.group_ids[g["id"]] = api.post_server_groups(body)["id"]

    _clients: dict[str, Any]

    def _api_for(self, project: str) -> Any:
        """An admin client acting inside `project`, so servers get that project_id."""
        from nova.tests.functional.api import client

        if not hasattr(self, "_clients"):
            self._clients = {}
        if project not in self._clients:
            api = client.TestOpenStackClient(
                "admin",
                self.admin.base_url,
                project_id=project,
                roles=["reader", "member", "admin"],
            )
            api.microversion = "2.96"
            self._clients[project] = api
        return self._clients[project]

    def _flavor(self, resources: dict[str, int], vm: dict[str, Any] | None = None) -> str:
        from planner.openstack.sandbox import seed

        fl = seed.flavor_for(resources) if vm is None else seed.flavor_for_vm(vm)
        with self.lock:
            if fl in self.flavors:
                return self.flavors[fl]
            made = self.admin.post_flavor(
                {"flavor": {"name": fl.name, "vcpus": fl.vcpus, "ram": fl.ram, "disk": fl.disk}}
            )
            if fl.extra_specs:
                self.admin.post_extra_spec(made["id"], {"extra_specs": dict(fl.extra_specs)})
            self.flavors[fl] = made["id"]
            return str(made["id"])

    def _boot_body(self, vm: dict[str, Any], flavor: str) -> dict[str, Any]:
        from nova.tests import fixtures as nova_fixtures

        body: dict[str, Any] = {
            "name": vm.get("name") or vm["id"],
            "imageRef": nova_fixtures.GlanceFixture.image1["id"],
            "flavorRef": flavor,
            "networks": "none",
            "host": vm["host"],
        }
        if vm.get("az"):
            body["availability_zone"] = vm["az"]
        meta = vm_metadata(vm)
        if meta:
            body["metadata"] = meta
        out: dict[str, Any] = {"server": body}
        if vm.get("server_group"):
            out["os:scheduler_hints"] = {"group": self.group_ids[vm["server_group"]]}
        return out

    def _boot_vms(self, seed: Any) -> None:
        vms = list(self.inv.get("vms", []))
        for vm in vms:  # flavors first, sequentially: fewer races, few distinct ones
            self._flavor(vm.get("resources") or {}, vm)

        def boot(vm: dict[str, Any]) -> tuple[str, str]:
            flavor = self._flavor(vm.get("resources") or {}, vm)
            api = self._api_for(vm.get("project") or "rollwave")
            return vm["id"], api.post_server(self._boot_body(vm, flavor))["id"]

        workers = int(os.environ.get("ROLLWAVE_SANDBOX_BOOT_WORKERS", "6"))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for inv_id, sid in pool.map(boot, vms):
                self.vm_ids[inv_id] = sid
        states = self._wait_servers(set(self.vm_ids.values()), {"ACTIVE", "ERROR"})
        errors = [self.admin.get_server(sid) for sid, st in states.items() if st == "error"]
        if errors:
            by_uuid = {v: k for k, v in self.vm_ids.items()}
            lines = [
                f"vm {by_uuid[s['id']]} on {s.get('OS-EXT-SRV-ATTR:host') or '?'}: "
                f"{(s.get('fault') or {}).get('message', 'boot failed')}"
                for s in errors[:10]
            ]
            raise RuntimeError(
                "Nova refused to boot some VMs as the inventory has them:\n  " + "\n  ".join(lines)
            )
        # Then put each server into its inventory status through the real API.
        action = {
            "SHUTOFF": ("os-stop", "SHUTOFF"),
            "PAUSED": ("pause", "PAUSED"),
            "SUSPENDED": ("suspend", "SUSPENDED"),
            "ERROR": ("os-resetState", "ERROR"),
        }
        todo: dict[str, str] = {}
        for vm in vms:
            st = str(vm.get("status", "ACTIVE")).upper()
            if st in action:
                name, final = action[st]
                body: dict[str, Any] = {
                    name: {"state": "error"} if name == "os-resetState" else None
                }
                self.admin.post_server_action(self.vm_ids[vm["id"]], body)
                todo[self.vm_ids[vm["id"]]] = final
        for final in set(todo.values()):
            self._wait_servers({k for k, v in todo.items() if v == final}, {final})

    def _wait_servers(
        self, ids: set[str], statuses: set[str], timeout: float = 600.0
    ) -> dict[str, str]:
        """Wait until every server in `ids` has one of `statuses`; their Nova vm_states."""
        deadline = time.monotonic() + timeout
        wanted = {_VM_STATE[s] for s in statuses}
        done: dict[str, str] = {}
        pending = set(ids)
        while True:
            # Only the servers still pending, and only their state columns: loading whole
            # instances (metadata, system metadata) each round cost a quarter of the boots' CPU.
            for sid, (vs, ts) in self._instance_states(pending).items():
                if vs in wanted and ts is None:
                    done[sid] = vs
                    pending.discard(sid)
            if not pending:
                return done
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} servers did not reach {sorted(statuses)}")
            time.sleep(0.3)

    def _instance_states(self, ids: set[str]) -> dict[str, tuple[str, str | None]]:
        """(vm_state, task_state) of these servers, read from the cell database."""
        from nova import context
        from nova.db.main import api as db_api
        from nova.db.main import models

        @db_api.pick_context_manager_reader  # type: ignore[untyped-decorator]
        def query(ctx: Any, uuids: list[str]) -> list[tuple[str, str, str | None]]:
            i = models.Instance
            return list(
                ctx.session.query(i.uuid, i.vm_state, i.task_state)
                .filter(i.uuid.in_(uuids), i.deleted == 0)
                .all()
            )

        ctx = context.get_admin_context()
        with context.target_cell(ctx, self.harness.cell_mappings["cell1"]) as cctx:
            rows = query(cctx, sorted(ids))
        return {u: (vs, ts) for u, vs, ts in rows}

    # -- services ----------------------------------------------------------------------------

    def _service_id(self, host: str) -> str:
        svcs = self.admin.get_services(binary="nova-compute", host=host)
        if not svcs:
            raise KeyError(host)
        return str(svcs[0]["id"])

    def _set_enabled(self, host: str, enabled: bool, reason: str | None = None) -> None:
        body: dict[str, Any] = {"status": "enabled" if enabled else "disabled"}
        if not enabled and reason:
            body["disabled_reason"] = reason
        self.admin.put_service(self._service_id(host), body)

    def _take_down(self, host: str) -> None:
        """Stop nova-compute and mark it forced down, as a fenced host looks to the API."""
        with self.lock:
            if host in self.down:
                return
            self.computes[host].stop()
            self.admin.put_service(self._service_id(host), {"forced_down": True})
            self.down.add(host)

    def _bring_up(self, host: str) -> None:
        with self.lock:
            if host in self.refuse_up:
                raise PermissionError(f"host {host} refuses to come back up (injected fault)")
            self._restart(host)
            self.admin.put_service(self._service_id(host), {"forced_down": False})
            self.down.discard(host)

    def _restart(self, host: str) -> None:
        """A new nova-compute on the same fake hypervisor (its guests survive the restart)."""
        old = self.computes[host]
        if host not in self.down:
            old.stop()
        if host in self.down:
            self.computes[host] = self._start_again(host, old)
        else:
            self.computes[host] = self.harness.restart_compute_service(
                old, keep_hypervisor_state=True
            )

    def _start_again(self, host: str, old: Any) -> Any:
        from unittest import mock

        with mock.patch("nova.virt.driver.load_compute_driver") as load:
            load.return_value = old.manager.driver
            return self.harness.start_service("compute", host=host, cell_name="cell1")

    def _upgrade(self, host: str, version: str) -> None:

        with self.lock:
            spec = self.driver.CONTROL.hosts[host]
            if host not in self.down:
                self._take_down(host)
            # The new label is published before the service returns, as a deployment tool
            # would record what it installed.
            self.admin.post_aggregate_action(
                self.agg_ids[LABELS_AGGREGATE],
                {"set_metadata": {"metadata": {label_key(VERSION_KEY, host): version}}},
            )
            spec.version = version
            self._bring_up(host)

    def _upgrade_controller(self, host: str, version: str) -> bool:
        """A controller of the seeded inventory has no nova-compute here: its new version goes
        in mapping.json (what `snapshot --mapping` reads), so one upgrade hook serves every host
        of a plan. False when `host` is no controller."""
        from planner.openstack.sandbox import seed

        with self.lock:
            for h in seed.controllers(self.inv):
                if h["name"] == host:
                    h["version"] = version  # kept when the side files are written again
                    self._write_side_files()
                    return True
        return False

    def _create_vm(self, body: dict[str, Any]) -> dict[str, Any]:
        vm = {
            "id": body.get("id") or f"drift-{uuid.uuid4().hex[:8]}",
            "name": body.get("name"),
            "host": body["host"],
            "project": body.get("project") or "rollwave",
            "resources": {k: int(v) for k, v in (body.get("resources") or {}).items()},
            "az": body.get("az"),
            "server_group": body.get("server_group"),
        }
        if vm["server_group"] and vm["server_group"] not in self.group_ids:
            # Accept a Nova group uuid as well as an inventory group id.
            inv = {v: k for k, v in self.group_ids.items()}
            vm["server_group"] = inv.get(vm["server_group"], vm["server_group"])
        flavor = self._flavor(vm["resources"])
        sid = self._api_for(vm["project"]).post_server(self._boot_body(vm, flavor))["id"]
        self._wait_servers({sid}, {"ACTIVE", "ERROR"}, timeout=120)
        got = self.admin.get_server(sid)
        self.vm_ids[vm["id"]] = sid
        self._write_side_files()
        return {"id": sid, "status": got["status"], "host": got.get("OS-EXT-SRV-ATTR:host")}

    # -- control endpoint ---------------------------------------------------------------------

    def sync_scheduler(self) -> None:
        """Nova's periodic `_sync_scheduler_instance_info` (every 120 s in a real cloud; the
        harness runs no periodic task). Without it the scheduler's list of instances per host
        only grows: a live-migrated VM stays listed on its source (Nova's post-migration update
        merges, it does not remove), and anti-affinity refuses that host to the VM's peers."""
        from nova import context as nova_context

        with self.lock:
            running = [(n, c) for n, c in self.computes.items() if n not in self.down]
        ctx = nova_context.get_admin_context()
        for name, svc in running:
            try:
                svc.manager._sync_scheduler_instance_info(ctx)
            except Exception:  # a compute restarting under us: next time
                logging.getLogger("rollwave.sandbox").debug("sync %s", name, exc_info=True)

    def _vm_uuid(self, ref: str) -> str:
        if ref in self.vm_ids:
            return self.vm_ids[ref]
        if ref in self.vm_ids.values():
            return ref
        import re
        from urllib.parse import quote

        found = self.admin.api_get(
            f"/servers?all_tenants=1&name={quote('^' + re.escape(ref) + '$')}"
        ).body["servers"]
        named = [s["id"] for s in found if s["name"] == ref]
        if len(named) == 1:
            return str(named[0])
        raise KeyError(ref)

    def nova_config(self, body: dict[str, Any]) -> dict[str, Any]:
        """Set Nova's own [libvirt] options (the harness's oslo.config), as an operator would."""
        from nova.conf import CONF

        for key, value in body.items():
            if key not in NOVA_LIBVIRT:
                raise ValueError(f"unknown option {key!r}; known: {', '.join(NOVA_LIBVIRT)}")
            name, kind = NOVA_LIBVIRT[key]
            CONF.set_override(name, kind(value), group="libvirt")
        return {k: getattr(CONF.libvirt, n) for k, (n, _) in NOVA_LIBVIRT.items()}

    def nova_workarounds(self, body: dict[str, Any]) -> dict[str, Any]:
        """Opt-in: Nova's [workarounds] disable_group_policy_check_upcall, which lets a forced
        live migration of a hard affinity group's member through the destination's late group
        check (compute/manager.py:1956-1960); off, as on a default Nova, unless a test sets it."""
        from nova.conf import CONF

        key = "disable_group_policy_check_upcall"
        if set(body) - {key}:
            raise ValueError(f"unknown option(s) {sorted(set(body) - {key})}; known: {key}")
        if key in body:
            CONF.set_override(key, bool(body[key]), group="workarounds")
        return {key: bool(getattr(CONF.workarounds, key))}

    _policy_defaults: dict[str, str]

    def nova_policy(self, body: dict[str, Any]) -> dict[str, Any]:
        """Override one of Nova's policy rules (`check` an oslo.policy check string, e.g. "!"
        to forbid; null: back to the rule Nova started with), as an operator's policy file."""
        from nova import policy

        name = str(body["rule"])
        rules = policy.get_enforcer().rules
        if name not in rules:
            raise KeyError(name)
        if not hasattr(self, "_policy_defaults"):
            self._policy_defaults = {}
        self._policy_defaults.setdefault(name, str(rules[name]))
        check = body.get("check")
        check = self._policy_defaults[name] if check is None else str(check)
        self.harness.policy.set_rules({name: check}, overwrite=False)
        return {"rule": name, "check": check}

    def _behaviour(self, body: dict[str, Any]) -> dict[str, Any]:
        c = self.driver.CONTROL
        vm = self._vm_uuid(body["vm"])
        with c.lock:
            b = c.behaviour.setdefault(vm, self.driver.VmBehaviour())
            if "dirty_rate_mb_s" in body:
                rate = body["dirty_rate_mb_s"]
                if rate is not None and float(rate) < 0:
                    raise ValueError("dirty_rate_mb_s must be >= 0")
                b.dirty_rate_mb_s = None if rate is None else float(rate)
            if "pause_fails" in body:
                b.pause_fails = bool(body["pause_fails"])
            return {"vm": vm, "dirty_rate_mb_s": b.dirty_rate_mb_s, "pause_fails": b.pause_fails}

    def status(self) -> dict[str, Any]:
        c = self.driver.CONTROL
        with c.lock:
            hosts = [
                {
                    "name": n,
                    "version": s.version,
                    "up": n not in self.down,
                    "refuse_up": n in self.refuse_up,
                }
                for n, s in sorted(c.hosts.items())
            ]
            return {
                "hosts": hosts,
                "migration_seconds": c.migration_seconds,
                "migration_seconds_per_vm": dict(c.migration_seconds_per_vm),
                "fail_next_migration": sorted(c.fail_next),
                "migrations_running": sorted(c.running),
                "migrations_completed": c.completed,
                "migrations_failed": c.failed,
                "migration_link_mib_s": c.link_mib_s,
                "local_disks": c.local_disks,
                "forces_copying_disks": c.forced_copying_disks,
                "migrations": [
                    {
                        "vm": vm,
                        "mode": m.mode,
                        "remaining": m.remaining,
                        "seconds": round(time.monotonic() - m.started, 1),
                    }
                    for vm, m in sorted(c.running.items())
                ],
                "migrations_forced": c.forced,
                "pauses_refused": c.pauses_refused,
                "migrations_timed_out": c.timeouts,
                "migrations_cancelled": c.aborted,
                "vms": len(self.vm_ids),
                "timings": self.timings,
            }

    def control(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        c = self.driver.CONTROL
        try:
            if method == "GET" and parts == ["status"]:
                return 200, self.status()
            if method == "POST" and parts == ["migration-duration"]:
                seconds = float(body["seconds"])
                if seconds < 0:
                    return 400, {"error": "seconds must be >= 0"}
                with c.lock:
                    if body.get("vm"):
                        c.migration_seconds_per_vm[self._vm_uuid(body["vm"])] = seconds
                    else:
                        c.migration_seconds = seconds
                return 200, {"ok": True}
            if method == "POST" and parts == ["migration-link"]:
                mib_s = body.get("mib_s")
                if mib_s is not None and not float(mib_s) > 0:
                    return 400, {"error": "mib_s must be > 0 (or null: fixed durations)"}
                with c.lock:
                    c.link_mib_s = None if mib_s is None else float(mib_s)
                return 200, {"ok": True, "mib_s": c.link_mib_s}
            if method == "POST" and parts == ["storage"]:
                # Local instance storage: live migrations with block_migration auto copy disks.
                with c.lock:
                    c.local_disks = bool(body["local"])
                return 200, {"ok": True, "local": c.local_disks}
            if method == "POST" and parts == ["migration-behaviour"]:
                return 200, {"ok": True, **self._behaviour(body)}
            if method == "POST" and parts == ["nova-policy"]:
                return 200, {"ok": True, **self.nova_policy(body)}
            if method == "POST" and parts == ["nova-workarounds"]:
                return 200, {"ok": True, **self.nova_workarounds(body)}
            if method == "POST" and parts == ["nova-config"]:
                return 200, {"ok": True, "libvirt": self.nova_config(body)}
            if method == "POST" and parts == ["fail-next-migration"]:
                vm = self._vm_uuid(body["vm"])
                times = int(body.get("times", 1))
                if times < 0:
                    return 400, {"error": "times must be >= 0"}
                with c.lock:
                    if times:
                        c.fail_next[vm] = times
                    else:
                        c.fail_next.pop(vm, None)
                return 200, {"ok": True, "vm": vm, "times": times}
            if method == "POST" and parts == ["vms"]:
                if body.get("host") not in c.hosts:
                    return 404, {"error": f"unknown compute host {body.get('host')!r}"}
                return 201, self._create_vm(body)
            if method == "POST" and len(parts) == 3 and parts[0] == "hosts":
                host, op = parts[1], parts[2]
                if op in ("add", "remove"):  # run-time computes (a hand-over)
                    from planner.openstack.sandbox import runtime_hosts

                    if op == "add":
                        return 201, runtime_hosts.add(self, host, body)
                    return 200, runtime_hosts.remove(self, host)
                if (
                    op == "upgrade"
                    and host not in c.hosts
                    and self._upgrade_controller(host, str(body["version"]))
                ):
                    return 200, {"ok": True, "host": host, "role": "controller"}
                if host not in c.hosts:
                    return 404, {"error": f"unknown compute host {host!r}"}
                if op == "down":
                    self._take_down(host)
                elif op == "up":
                    if host in self.down:
                        self._bring_up(host)
                elif op == "refuse-up":
                    with self.lock:
                        (
                            self.refuse_up.add
                            if body.get("refuse", True)
                            else self.refuse_up.discard
                        )(host)
                elif op == "upgrade":
                    self._upgrade(host, str(body["version"]))
                else:
                    return 404, {"error": f"unknown host operation {op!r}"}
                return 200, {"ok": True, "host": host, "role": "compute"}
        except PermissionError as exc:
            return 409, {"error": str(exc)}
        except KeyError as exc:
            return 404, {"error": f"unknown {exc.args[0]!r}"}
        except (TypeError, ValueError) as exc:
            return 400, {"error": f"bad request: {exc}"}
        except Exception as exc:  # an unexpected Nova failure: report it, keep serving
            logging.getLogger("rollwave.sandbox").exception("control %s %s", method, path)
            return 500, {"error": f"{type(exc).__name__}: {exc}"}
        return 404, {"error": f"no control operation {method} /{'/'.join(parts)}"}

    # -- files the client side reads --------------------------------------------------------

    def _write_side_files(self) -> None:
        with self.lock:  # one writer at a time: a boot (drift) and an upgrade may overlap
            self._write_side_files_locked()

    def _write_side_files_locked(self) -> None:
        from planner.openstack.sandbox import seed

        ctl = seed.controllers(self.inv)
        mapping = {
            "controllers": [
                {
                    k: h[k]
                    for k in (
                        "name",
                        "az",
                        "rack",
                        "version",
                        "aggregates",
                        "enabled",
                        "up",
                        "disabled_reason",
                    )
                    if k in h
                }
                for h in ctl
            ],
            "ha_groups": list(self.inv.get("ha_groups", [])),
        }
        _write_json(self.state_dir / "mapping.json", mapping)
        _write_json(
            self.state_dir / "ids.json", {"vms": self.vm_ids, "server_groups": self.group_ids}
        )


def main(argv: list[str]) -> int:
    spec_path = Path(argv[0])
    spec = json.loads(spec_path.read_text())
    state_dir = Path(spec["state_dir"])
    work_dir = Path(spec["work_dir"])

    stoppers: list[Any] = []  # Glance (with_image): stopped before the files go

    def cleanup_and_exit(code: int) -> None:
        for stop in stoppers:
            stop()
        # (pitfall 8) every temporary file of the harness lives under work_dir (its TMPDIR).
        # Exit at once: the harness's own teardown is slow and its files are gone anyway.
        shutil.rmtree(work_dir, ignore_errors=True)
        for name in (READY_FILE, "mapping.json", "ids.json", "secrets.json", "spec.json", "pid"):
            (state_dir / name).unlink(missing_ok=True)
        os._exit(code)

    def on_signal(signum: int, frame: Any) -> None:
        cleanup_and_exit(0)

    def install_signals() -> None:
        # Re-installed after Nova starts services: oslo.service may set its own handlers.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, on_signal)

    install_signals()
    parent = spec.get("exit_with_parent")
    if parent:

        def watch_parent() -> None:
            while _alive(int(parent)):
                time.sleep(0.5)
            cleanup_and_exit(0)

        threading.Thread(target=watch_parent, name="rollwave-parent", daemon=True).start()

    t0 = time.monotonic()
    from planner.openstack.sandbox import caps

    try:
        caps.apply(spec.get("api_caps") or {})
    except caps.CapError as exc:
        print(exc, flush=True)
        cleanup_and_exit(caps.BAD_CAP_EXIT)
    try:
        from planner.openstack.sandbox import glance, web

        httpd = web.bind(int(spec.get("port", 0)))
        users = [
            web.User(
                "admin",
                "admin",
                spec["admin_password"],
                "admin",
                "admin",
                ("admin", "member", "reader"),
            ),
            web.User("demo", "demo", spec["demo_password"], "demo", "demo", ("member", "reader")),
        ]
        identity = web.Identity(users)
        launched = glance.launch_if_asked(spec, work_dir, stoppers)
        sb = Sandbox(spec)
        sb.start()
        image_app = glance.ready(sb, identity, launched) if launched else None
        install_signals()
        harness.quiet_logs(state_dir / "sandbox.log")
        sb.seed()
        install_signals()
        sb._write_side_files()
        from placement import deploy

        placement_app = deploy.loadapp(harness.placement_conf(sb.harness))
        front = web.Front(
            identity,
            sb.harness.api_fixture.app(),
            placement_app,
            sb.control,
            spec["control_secret"],
            image=image_app,
        )
        port = httpd.server_address[1]
        front.base_url = f"http://127.0.0.1:{port}"
        web.serve(httpd, front)
        sb.timings["total"] = time.monotonic() - t0
        _write_json(
            state_dir / READY_FILE,
            {
                "pid": os.getpid(),
                "name": spec.get("name"),
                "api_caps": spec.get("api_caps") or {},
                "port": port,
                "url": front.base_url,
                "auth_url": front.base_url + "/identity/v3",
                "work_dir": str(work_dir),
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "hosts": len(sb.driver.CONTROL.hosts),
                "vms": len(sb.vm_ids),
                "controllers": len(
                    [h for h in sb.inv.get("hosts", []) if h.get("role") == "controller"]
                ),
                "startup_seconds": round(sb.timings["total"], 2),
                "image": bool(spec.get("with_image")),
                "timings": sb.timings,
            },
        )
        print(f"rollwave sandbox ready on {front.base_url}", flush=True)
    except Exception as exc:
        print(f"sandbox failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        cleanup_and_exit(1)
    sync_every = float(spec.get("scheduler_sync_seconds", 2.0))
    last_sync = time.monotonic()
    while True:
        # Handlers can be set only from this thread; a restarted nova-compute may have
        # replaced them, so put ours back now and then.
        time.sleep(min(1.0, sync_every) if sync_every > 0 else 1.0)
        install_signals()
        if sync_every > 0 and time.monotonic() - last_sync >= sync_every:
            sb.sync_scheduler()
            last_sync = time.monotonic()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


if __name__ == "__main__":
    main(sys.argv[1:])
