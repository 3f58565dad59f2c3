"""A side-by-side plan executed across two real sandboxes, end to end (`rollwave execute PLAN
--source-cloud old --target-cloud new`): the old cloud with a real Glance, the new one brought up
by the deployment hook, the old hosts joining it by the hand-over hook (tests/xcloud_hooks.py),
each VM moved by stop, snapshot, image copy, boot, verify, delete. Killed twice mid-move and
resumed; the old cloud's headroom sampled from outside throughout.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from planner import formats
from planner.capacity import CapacityModel, headroom
from planner.formats import load_policy
from planner.openstack import clouds_yaml, mapping, snapshot
from planner.openstack.connect import Api, connect
from planner.openstack.sandbox import manager
from tests.test_cli import rollwave

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

ROLLWAVE = str(Path(sys.executable).with_name("rollwave"))
HOOKS = str(Path(__file__).with_name("xcloud_hooks.py"))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("xcloud")
    saved = dict(os.environ)
    os.environ.update(
        HOME=str(root / "home"),
        XDG_CONFIG_HOME=str(root / "home" / ".config"),
        OS_CLIENT_CONFIG_FILE=str(root / "home" / "clouds.yaml"),
        ROLLWAVE_SANDBOX_DIR=str(root / "nowhere"),
    )
    os.environ.pop("OS_CLOUD", None)
    try:
        yield root
    finally:
        for d in ("old", "new"):
            manager.stop(root / d, remove_cloud_entry=False)
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def old(root: Path) -> manager.Running:
    gen = rollwave(
        "generate", "--hosts", "8", "--vms-per-host", "1", "--seed", "1", "--azs", "1",
        "--disabled", "0", "--controllers", "0", "--utilisation", "0.1",
        "-o", str(root / "gen.json"), "--policy-out", str(root / "policy.json"),
    )  # fmt: skip
    assert gen.code == 0, gen.err
    inv = json.loads((root / "gen.json").read_text())
    sb = manager.start(inv, directory=root / "old", write_clouds_yaml=False, with_image=True)
    clouds_yaml.merge_entry("old", sb.cloud_entry())
    return sb


def _plan(root: Path, sb: manager.Running) -> tuple[Path, dict[str, Any]]:
    snap, plan = root / "snap.json", root / "plan.json"
    r = rollwave(
        "snapshot", "--os-cloud", "old", "--mapping", str(sb.mapping_file), "-o", str(snap)
    )
    assert r.code == 0, r.err
    r = rollwave(
        "plan", str(snap), "--policy", str(root / "policy.json"), "--mode", "side-by-side",
        "-o", str(plan),
    )  # fmt: skip
    assert r.code == 0, r.err
    return plan, json.loads(snap.read_text())


def _execute(
    root: Path, plan: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    snap = root / "snap.json"
    py = sys.executable
    cmd = [
        ROLLWAVE, "execute", str(plan), "--source-cloud", "old", "--target-cloud", "new",
        "--poll-interval", "0.3",
        "--deploy-hook", f"{py} {HOOKS} deploy {root / 'new'} new {snap} {{hosts}}",
        "--handover-hook", f"{py} {HOOKS} handover {root / 'old'} {root / 'new'} {snap} {{host}}",
        *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _journal(plan: Path) -> list[dict[str, Any]]:
    path = plan.with_name(plan.stem + ".journal.jsonl")
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a line cut by a kill
            out.append(json.loads(line))
    return out


def _kill_at(proc: subprocess.Popen[str], plan: Path, event: str, after: int) -> dict[str, Any]:
    """SIGKILL the run once the journal has `after` more `event` records than now."""
    seen = sum(1 for r in _journal(plan) if r.get("event") == event)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        got = [r for r in _journal(plan) if r.get("event") == event]
        if len(got) >= seen + after:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return got[-1]
        time.sleep(0.05)
    raise AssertionError(f"no {event} before the run ended: {proc.communicate()}")


def _servers(cloud: str) -> list[dict[str, Any]]:
    api = Api(connect(cloud))
    return list(api.get("compute", "/servers/detail?all_tenants=1", "2.74")["servers"])


def _facts(s: dict[str, Any]) -> tuple[Any, ...]:
    """What a moved VM keeps: name, project, status, flavor (name and resources)."""
    f = s["flavor"]
    return (
        s["name"],
        s["tenant_id"],
        s["status"],
        f["original_name"],
        f["vcpus"],
        f["ram"],
        f["disk"],
    )


class Sampler:
    """The old cloud's headroom, from outside, every second: a snapshot judged by the core."""

    def __init__(self, sb: manager.Running, policy_path: Path) -> None:
        self.api = Api(connect("old"))
        self.mapping = mapping.load(sb.mapping_file)
        self.policy = load_policy(str(policy_path))
        self.samples = 0
        self.breaches: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = snapshot.collect(self.api, "old", self.mapping)
                inv = formats.inventory_from_dict(data)
            except Exception:  # a host leaving between two calls: not a breach
                self._stop.wait(0.5)
                continue
            self.samples += 1
            for r in headroom(CapacityModel(inv), self.policy.headroom):
                if not r.ok:
                    self.breaches.append(f"{r.group}/{r.rc}: {r.free} < {r.required}")
            self._stop.wait(1.0)


def test_bad_input_moves_nothing(root: Path, old: manager.Running) -> None:
    plan, _ = _plan(root, old)
    before = sorted((s["id"], s["status"]) for s in _servers("old"))
    netmap = root / "netmap.yaml"
    netmap.write_text("- private\n")
    p = _execute(root, plan, "--network-map", str(netmap))
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2, err
    assert f"{netmap}: the network map must map each old network's name" in err
    p2 = subprocess.run(
        [ROLLWAVE, "execute", str(plan), "--source-cloud", "old", "--target-cloud", "old"],
        capture_output=True,
        text=True,
    )
    assert p2.returncode == 2 and "is the same cloud as --source-cloud old" in p2.stderr
    assert "Traceback" not in err + p2.stderr
    assert not _journal(plan)
    assert sorted((s["id"], s["status"]) for s in _servers("old")) == before
    assert manager.find(root / "new") is None  # no deployment either


def test_every_vm_crosses_over_through_kills_and_resumes(root: Path, old: manager.Running) -> None:
    plan, inv = _plan(root, old)
    want = sorted(_facts(s) for s in _servers("old"))
    assert len(want) == len(inv["vms"]) >= 5 and {w[2] for w in want} == {"ACTIVE", "SHUTOFF"}
    crossing = [
        m for w in json.loads(plan.read_text())["waves"] for m in w["migrations"]
        if m["method"] == "cross-cloud"
    ]  # fmt: skip
    assert len(crossing) == len(want)
    t0 = time.monotonic()
    with Sampler(old, root / "policy.json") as sampler:
        # The new cloud's compute API stops at 2.96 (the old one's: 2.104): the API gate stops
        # the run before the first VM crosses (exit 7), after the deployment and the moves and
        # hand-overs before it.
        p = _execute(root, plan, env={"XCLOUD_NEW_COMPUTE_MAX": "2.96"})
        _, err = p.communicate(timeout=600)
        assert p.returncode == 7, err
        assert "compute" in err and "2.97" in err
        assert not any(r.get("event", "").startswith("xc-") for r in _journal(plan))
        assert _servers("new") == [] and len(_servers("old")) == len(want)
        # Overridden: killed after a snapshot was copied (before the boot), then after a copy
        # was booted (before it was verified and the original deleted); resumed each time.
        loss = "--allow-api-loss"
        first = _kill_at(_execute(root, plan, "--resume", loss), plan, "xc-image-copied", 1)
        second = _kill_at(_execute(root, plan, "--resume", loss), plan, "xc-booted", 1)
        p = _execute(root, plan, "--resume")  # the override is journaled: not asked again
        _, err = p.communicate(timeout=600)
    wall = time.monotonic() - t0
    assert p.returncode == 0, err
    new = _servers("new")
    got = sorted(_facts(s) for s in new)
    assert got == want, (got, want)
    assert _servers("old") == []
    # Each VM exactly once, where the plan put it, naming its original.
    by_source = {s["metadata"]["rollwave_source_id"]: s for s in new}
    assert {m["vm"]: m["to"] for m in crossing} == {
        k: s["OS-EXT-SRV-ATTR:host"] for k, s in by_source.items()
    }
    assert first["vm"] in by_source and second["vm"] in by_source
    # The images of the moves are gone from both clouds.
    for cloud in ("old", "new"):
        images = Api(connect(cloud)).get("image", "/images")["images"]
        assert [i["name"] for i in images] == ["rollwave-base"]
    assert sampler.samples >= 5 and sampler.breaches == []
    events = [r.get("event") for r in _journal(plan)]
    assert events.count("resumed") == 3 and events[-1] == "run-done"
    gate = [r for r in _journal(plan) if r.get("event") == "api-check"]
    assert [(g["compatible"], g["overridden"]) for g in gate] == [(False, True)]
    print(f"\nside-by-side sandbox execution: {len(want)} VMs, wall {wall:.1f} s, "
          f"{sampler.samples} headroom samples")  # fmt: skip
