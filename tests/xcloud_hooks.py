"""The side-by-side execution's hooks for two sandboxes (tests/test_crosscloud_sandbox.py):

    python tests/xcloud_hooks.py deploy STATE_DIR CLOUD INVENTORY HOST...
        the new control plane: a sandbox with a real Glance, no computes yet, whose clouds.yaml
        entry is CLOUD (HOST...: the freed hosts that become its controllers); its compute API
        capped at $XCLOUD_NEW_COMPUTE_MAX when set;
    python tests/xcloud_hooks.py handover OLD_STATE_DIR NEW_STATE_DIR INVENTORY HOST
        HOST leaves the old cloud (its nova-compute stopped, its service deleted) and joins the
        new one as a compute with the capacity INVENTORY gives it.

What a deployment tool and an operator's hand-over playbook do to real clouds, done to sandboxes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from planner.openstack import clouds_yaml
from planner.openstack.sandbox import manager


def _host(inventory: str, name: str) -> dict[str, object]:
    inv = json.loads(Path(inventory).read_text())
    return next(h for h in inv["hosts"] if h["name"] == name)


def deploy(state_dir: str, cloud: str, inventory: str, hosts: list[str]) -> None:
    inv = {
        "format_version": "1.0",
        "kind": "inventory",
        "cloud": cloud,
        "taken_at": "2026-01-01T00:00:00Z",
        "hosts": [
            {**_host(inventory, h), "role": "controller", "version": "2026.1"} for h in hosts
        ],
        "vms": [],
    }
    d = Path(state_dir)
    # A new cloud whose compute API serves less than the old one's (the API gate's case).
    cap = os.environ.get("XCLOUD_NEW_COMPUTE_MAX")
    caps = {"compute_max": cap} if cap else None
    if manager.find(d) is None:
        sb = manager.start(
            inv, directory=d, write_clouds_yaml=False, with_image=True, api_caps=caps
        )
    else:
        sb = manager.require(d)
    clouds_yaml.merge_entry(cloud, sb.cloud_entry())


def handover(old_dir: str, new_dir: str, inventory: str, host: str) -> None:
    old, new = manager.require(Path(old_dir)), manager.require(Path(new_dir))
    status = manager.control(old, "GET", "status")
    if host in {h["name"] for h in status["hosts"]}:
        manager.control(old, "POST", f"hosts/{host}/remove")
    h = _host(inventory, host)
    if host not in {x["name"] for x in manager.control(new, "GET", "status")["hosts"]}:
        body = {k: h.get(k) for k in ("capacity", "reserved", "allocation_ratio")}
        manager.control(new, "POST", f"hosts/{host}/add", {**body, "version": "2026.1"})


if __name__ == "__main__":
    what, *args = sys.argv[1:]
    if what == "deploy":
        deploy(args[0], args[1], args[2], args[3:])
    else:
        handover(*args)
