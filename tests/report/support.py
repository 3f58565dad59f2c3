"""Helpers of the report tests: the bundled example and its greedy plan, tiny hand-made clouds,
and a headless Chromium that reports which images a page decoded."""

from __future__ import annotations

import functools
import html.parser
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from planner.formats import load_inventory, load_policy
from planner.inventory import VM, Host, Inventory
from planner.plan import Migration, Plan, Stop, Wave
from planner.policy import Headroom, Policy
from solver.greedy import greedy_plan

OLD, NEW = "2025.1", "2025.2"


@dataclass(frozen=True)
class Case:
    inventory: Inventory
    policy: Policy
    plan: Plan
    inventory_file: Path | None = None
    plan_file: Path | None = None


def example(name: str) -> Path:
    return Path(str(resources.files("planner") / "examples" / name))


@functools.cache
def bundled() -> Case:
    """The bundled example and its greedy plan (built once)."""
    inv = load_inventory(example("small.json"))
    policy = load_policy(example("small-policy.yaml"))
    return Case(inv, policy, greedy_plan(inv, policy, inventory_sha256=inv.digest or ""))


# ---------------------------------------------------------------------------------------------
# Tiny hand-made clouds
# ---------------------------------------------------------------------------------------------
def host(name: str, az: str = "az1", ram_mb: int = 65536, vcpu: int = 16, **kw: Any) -> Host:
    return Host(
        name=name,
        role=kw.pop("role", "compute"),
        az=az,
        rack=f"{az}-r1",
        aggregates=(),
        version=kw.pop("version", OLD),
        enabled=kw.pop("enabled", True),
        up=kw.pop("up", True),
        capacity={"VCPU": vcpu, "MEMORY_MB": ram_mb, "DISK_GB": 1000},
        **kw,
    )


def vm(vm_id: str, on: str, ram_mb: int = 8192, vcpu: int = 2, **kw: Any) -> VM:
    return VM(
        id=vm_id,
        name=f"name-{vm_id}",
        project="p",
        host=on,
        status=kw.pop("status", "ACTIVE"),
        resources={"VCPU": vcpu, "MEMORY_MB": ram_mb, "DISK_GB": 20},
        **kw,
    )


def tiny_cloud() -> Inventory:
    """Four 64 GiB hosts in two AZs; a and c hold VMs, b and d are nearly empty."""
    return Inventory(
        cloud="tiny",
        taken_at="2026-01-01T00:00:00Z",
        hosts=(host("a"), host("b"), host("c", "az2"), host("d", "az2")),
        vms=(
            vm("v1", "a", 16384),
            vm("v2", "a", 8192),
            vm("v3", "a", 4096, migration="none"),
            vm("v4", "c", 16384),
            vm("v5", "c", 8192, status="SHUTOFF"),
            vm("v6", "b", 4096),
        ),
    )


def tiny_policy(**changes: Any) -> Policy:
    base = Policy(
        max_hosts_per_wave=1,
        target_version=NEW,
        headroom=Headroom(failures=0, scope="az"),
        max_concurrent_live_migrations=1,
        allow_stop=True,
    )
    return base.with_changes(**changes) if changes else base


def tiny_plan(policy: Policy | None = None) -> Plan:
    """A valid plan for `tiny_cloud`: b first (v6 to a), then a (to b; v3 stopped), then c (to
    d), then d (back to c). v6, v4 and v5 move twice, on purpose."""
    return Plan(
        inventory_sha256="",
        policy=policy or tiny_policy(),
        waves=(
            Wave(1, ("b",), (Migration("v6", "b", "a"),)),
            Wave(
                2,
                ("a",),
                (
                    Migration("v1", "a", "b"),
                    Migration("v2", "a", "b"),
                    Migration("v6", "a", "b"),
                ),
                (Stop("v3", "a"),),
            ),
            Wave(3, ("c",), (Migration("v4", "c", "d"), Migration("v5", "c", "d", "cold"))),
            Wave(4, ("d",), (Migration("v4", "d", "c"), Migration("v5", "d", "c", "cold"))),
        ),
    )


# ---------------------------------------------------------------------------------------------
# Headless Chromium
# ---------------------------------------------------------------------------------------------
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Nothing may come from the network: a report that needs it shows broken images here.
    "--host-resolver-rules=MAP * ~NOTFOUND",
)

# Appended to a copy of the report: records each image's decoded size once the page has loaded.
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images).map(i => ({
    alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}));
  document.body.setAttribute('data-probe', JSON.stringify(imgs));
});
</script>"""


def chromium_binary() -> str | None:
    explicit = os.environ.get("ROLLWAVE_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class _BodyProbe(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.probe: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.probe = dict(attrs).get("data-probe")


def load_images(browser: str, report: Path) -> list[dict[str, Any]]:
    """Open a copy of `report` (with the probe) in headless Chromium; the images it decoded."""
    with tempfile.TemporaryDirectory() as d:
        page = Path(d) / "page.html"
        text = report.read_text(encoding="utf-8")
        assert "</body>" in text
        page.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
        profile = Path(d) / "profile"
        run = subprocess.run(
            [
                browser,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--virtual-time-budget=10000",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert run.returncode == 0, run.stderr[-2000:]
    parser = _BodyProbe()
    parser.feed(run.stdout)
    assert parser.probe is not None, "the page never finished loading:\n" + run.stdout[:500]
    images: list[dict[str, Any]] = json.loads(parser.probe)
    return images
