"""Helpers for the executor's tests against the real Nova sandbox: a module's sandbox, a fresh
snapshot and plan, resetting the cloud between tests, a headroom sampler, reading the result."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from planner import formats
from planner.capacity import CapacityModel, headroom
from planner.checker import check_plan, plan_summary
from planner.generate import GenerateSpec, default_policy, generate
from planner.inventory import Inventory
from planner.openstack import invio, mapping, snapshot
from planner.openstack.connect import Api, connect
from planner.openstack.sandbox import manager
from planner.plan import Plan
from planner.policy import Policy
from solver.greedy import greedy_plan
from tests.test_cli import Run, rollwave

CLOUD = manager.CLOUD_NAME
ROLLWAVE = str(Path(sys.executable).with_name("rollwave"))
OLD, NEW = "2025.1", "2025.2"
# Quick timings for a sandbox whose migrations take a fraction of a second.
# A retry's back-off (1 s, then 2 s) outlasts the sandbox's scheduler sync (every 2 s).
FAST = ("--poll-interval", "0.2", "--retry-delay", "1", "--service-timeout", "15")


def upgrade_hook(version: str = NEW) -> str:
    """The upgrade: restart the host's nova-compute publishing `version` (controllers, which the
    sandbox has no service for, succeed at once)."""
    upgrade = f"{ROLLWAVE} sandbox ctl upgrade {{host}} --version {version}"
    return f"case {{host}} in ctl-*) exit 0;; esac; {upgrade}"


def rollback_hook(inv: Inventory) -> str:
    """The rollback: the host comes back (a refusal cleared) at the version it ran when the
    plan was made."""
    cases = " ".join(f"{h.name}) V={h.version};;" for h in inv.hosts if h.is_compute)
    ctl = f"{ROLLWAVE} sandbox ctl"
    return (
        f"case {{host}} in {cases} *) exit 0;; esac; "
        f"{ctl} refuse-up {{host}} --allow && {ctl} upgrade {{host}} --version $V"
    )


def spec(hosts: int, vms_per_host: float, utilisation: float, controllers: int) -> GenerateSpec:
    return GenerateSpec(
        hosts=hosts,
        vms_per_host=vms_per_host,
        utilisation=utilisation,
        controllers=controllers,
        disabled_hosts=1 if controllers else 0,
        version=OLD,
        target_version=NEW,
        seed=0,
    )


@dataclass
class Box:
    """A running sandbox, its API and the policy its plans follow."""

    sb: manager.Running
    api: Api
    policy: Policy
    root: Path
    n: int = 0

    def snapshot(self) -> dict[str, Any]:
        data, _ = snapshot.collect(self.api, CLOUD, mapping.load(self.sb.mapping_file))
        return data

    def fresh_plan(
        self, name: str, target: str | None = None, **policy_changes: Any
    ) -> tuple[Path, Path, Inventory, Plan]:
        """Snapshot the sandbox, plan it (checked; to `target`, else the policy's), write both."""
        self.n += 1
        d = self.root / f"{self.n:02d}-{name}"
        d.mkdir()
        inv_path, plan_path = d / "inventory.json", d / "plan.json"
        invio.write(inv_path, self.snapshot())
        inv = formats.load_inventory(inv_path)
        pol = self.policy.with_changes(**policy_changes)
        if target:
            pol = pol.with_changes(target_version=target)
        plan = greedy_plan(inv, pol, inventory_sha256=inv.digest or "")
        report = check_plan(inv, plan)
        assert report.ok, report.violations[:3]
        plan = replace(plan, summary=plan_summary(report.metrics))
        formats.save_plan(plan, plan_path)
        return inv_path, plan_path, inv, plan

    def ctl(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return manager.control(self.sb, method, path, body)

    def reset(self) -> None:
        """Every host up and enabled; no injected fault; quick migrations. Versions stay: each
        test upgrades to a target of its own, so every host is to upgrade again."""
        st = self.ctl("GET", "status")
        for h in st["hosts"]:
            if h["refuse_up"]:
                self.ctl("POST", f"hosts/{h['name']}/refuse-up", {"refuse": False})
            if not h["up"]:
                self.ctl("POST", f"hosts/{h['name']}/up")
        for vm in st["fail_next_migration"]:
            self.ctl("POST", "fail-next-migration", {"vm": vm, "times": 0})
        self.ctl("POST", "migration-duration", {"seconds": 0.3})
        for s in self.api.get("compute", "/os-services?binary=nova-compute", "2.53")["services"]:
            if s["status"] != "enabled":
                self.api.request(
                    "compute",
                    "PUT",
                    f"/os-services/{s['id']}",
                    microversion="2.53",
                    json={"status": "enabled"},
                )


def start_box(root: Path, gen: GenerateSpec, max_hosts_per_wave: int) -> Box:
    inv = generate(gen)
    data = formats.inventory_to_dict(inv)
    # The disabled host of the generated cloud is a hardware ticket: keep it out of these runs.
    for h in data["hosts"]:
        h["enabled"], h["disabled_reason"] = True, None
    sb = manager.start(data, migration_seconds=0.3, exit_with_parent=True)
    pol = default_policy(gen).with_changes(max_hosts_per_wave=max_hosts_per_wave)
    return Box(sb, Api(connect(CLOUD)), pol, root)


def execute(box: Box, inv_path: Path, plan_path: Path, *extra: object) -> Run:
    return rollwave(
        "execute",
        plan_path,
        "--os-cloud",
        CLOUD,
        "--mapping",
        box.sb.mapping_file,
        "--inventory",
        inv_path,
        *FAST,
        *extra,
    )


def journal_of(plan_path: Path) -> Path:
    return plan_path.with_name(plan_path.stem + ".journal.jsonl")


def records(plan_path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in journal_of(plan_path).read_text().splitlines() if x.strip()]


@dataclass
class Sampler:
    """Samples the live cloud's headroom (a snapshot every `every` seconds) during a run, as an
    outside observer: wave hosts are disabled, so they count as down, as the rule wants."""

    box: Box
    policy: Policy
    every: float = 1.0
    samples: int = 0
    breaches: list[str] = field(default_factory=list)
    most_disabled: int = 0  # compute services disabled at once, at most
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                inv = formats.inventory_from_dict(self.box.snapshot())
            except Exception as exc:  # a sample lost is not a breach; say why though
                self.breaches.append(f"sample failed: {exc}")
                continue
            self.samples += 1
            down = sum(1 for h in inv.hosts if h.is_compute and not h.enabled)
            self.most_disabled = max(self.most_disabled, down)
            for r in headroom(CapacityModel(inv), self.policy.headroom):
                if not r.ok:
                    self.breaches.append(
                        f"{inv.taken_at} {r.group}/{r.rc}: {r.free} < {r.required}"
                    )
            self._stop.wait(self.every)


def wait_for(cond: Any, timeout: float = 60.0, every: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(every)
    return False
