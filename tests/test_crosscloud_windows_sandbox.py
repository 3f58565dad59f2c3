"""Per-project windows in a side-by-side execution across two real sandboxes: a project whose
window is closed stays in the old cloud (`--no-window-wait`: exit 5, the others crossed), and the
run resumed once its window has opened crosses it. The clouds as tests/test_crosscloud_sandbox.py
brings them up (its fixtures, a fresh pair for this module)."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from pathlib import Path

import pytest

from planner.openstack.sandbox import manager
from tests.test_cli import rollwave
from tests.test_crosscloud_sandbox import (  # noqa: F401 - root and old are fixtures
    _execute,
    _journal,
    _servers,
    old,
    root,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


def test_a_closed_project_window_holds_its_vms_until_it_opens(
    root: Path,  # noqa: F811
    old: manager.Running,  # noqa: F811
) -> None:
    snap, plan = root / "snap.json", root / "plan.json"
    r = rollwave(
        "snapshot", "--os-cloud", "old", "--mapping", str(old.mapping_file), "-o", str(snap)
    )
    assert r.code == 0, r.err
    vms = json.loads(snap.read_text())["vms"]
    # The project with the fewest VMs (at least one): its window opens in a few minutes.
    counts = Counter(v["project"] for v in vms)
    project = min(counts, key=lambda p: (counts[p], p))
    assert 0 < counts[project] < len(vms)
    now = dt.datetime.now(dt.UTC)
    opens = (now + dt.timedelta(minutes=3)).replace(second=0, microsecond=0)
    closes = opens + dt.timedelta(hours=2)
    assert opens.date() == closes.date()  # not across midnight (the test's simplicity)
    policy = json.loads((root / "policy.json").read_text())
    policy["project_windows"] = {
        project: [
            {"days": "mon-sun", "start": f"{opens:%H:%M}", "end": f"{closes:%H:%M}", "tz": "UTC"}
        ]
    }
    pol = root / "policy-windows.json"
    pol.write_text(json.dumps(policy))
    r = rollwave(
        "plan", str(snap), "--policy", str(pol), "--mode", "side-by-side",
        "--start", now.isoformat(), "-o", str(plan),
    )  # fmt: skip
    assert r.code == 0, r.err
    held = sorted(v["name"] for v in vms if v["project"] == project)

    p = _execute(root, plan, "--no-window-wait")
    _, err = p.communicate(timeout=600)
    assert p.returncode == 5, err
    assert f"{opens:%Y-%m-%dT%H:%M}:00Z" in err and "--resume --journal" in err, err
    assert "Traceback" not in err
    # Its VMs untouched in the old cloud (not even stopped), every other VM crossed.
    left = _servers("old")
    assert sorted(s["name"] for s in left) == held
    assert all("rollwave_source_status" not in (s.get("metadata") or {}) for s in left)
    assert sorted(s["name"] for s in _servers("new")) == sorted(
        v["name"] for v in vms if v["project"] != project
    )
    waits = [r for r in _journal(plan) if r.get("event") == "window-wait"]
    assert {w["project"] for w in waits} == {project} and len(waits) == len(held)
    status = rollwave("execute", "--status", str(plan.with_name("plan.journal.jsonl")))
    assert status.code == 0 and f"waiting for their project's window: {len(held)}" in status.out

    # Resumed once the window is open: the rest crosses, the run ends.
    while dt.datetime.now(dt.UTC) < opens:
        time.sleep(2)
    p = _execute(root, plan, "--resume", "--no-window-wait")
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert _servers("old") == []
    assert sorted(s["name"] for s in _servers("new")) == sorted(v["name"] for v in vms)
    events = [r.get("event") for r in _journal(plan)]
    assert events.count("window-open") == len(held) and events[-1] == "run-done"
