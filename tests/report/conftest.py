"""Fixtures of the report tests: the bundled example with its greedy plan, a generated 2,000-host
cloud with its plan (built once per session), and headless Chromium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from planner.formats import load_inventory, save_inventory, save_plan
from planner.generate import GenerateSpec, default_policy, generate
from solver.greedy import greedy_plan
from tests.report.support import Case, bundled, chromium_binary, example


@pytest.fixture
def small() -> Case:
    """The bundled example (12 compute hosts, 3 controllers) and its greedy plan."""
    return bundled()


@pytest.fixture
def small_files(tmp_path: Path, small: Case) -> Case:
    """The bundled example as files: the inventory's own bytes, the plan written next to it."""
    inv_file = tmp_path / "inventory.json"
    shutil.copyfile(example("small.json"), inv_file)
    plan_file = tmp_path / "plan.json"
    save_plan(small.plan, plan_file)
    return Case(small.inventory, small.policy, small.plan, inv_file, plan_file)


@pytest.fixture(scope="session")
def big(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """A generated 2,000-host cloud and its greedy plan, as files (built once: ~15 s)."""
    spec = GenerateSpec(hosts=2000, vms_per_host=8, seed=11)
    inv = generate(spec)
    d = tmp_path_factory.mktemp("big")
    inv_file = d / "inventory.json"
    digest = save_inventory(inv, inv_file)
    inv = load_inventory(inv_file)
    assert inv.digest == digest
    policy = default_policy(spec)
    plan = greedy_plan(inv, policy, inventory_sha256=digest)
    plan_file = d / "plan.json"
    save_plan(plan, plan_file)
    return Case(inv, policy, plan, inv_file, plan_file)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser, installed by `./dev test` (Debian's chromium). Missing it fails the test
    unless ROLLWAVE_SKIP_BROWSER=1 says, on purpose, to skip it."""
    path = chromium_binary()
    if path is None:
        if os.environ.get("ROLLWAVE_SKIP_BROWSER") == "1":
            pytest.skip("ROLLWAVE_SKIP_BROWSER=1: headless Chromium test skipped on request")
        pytest.fail(
            "headless Chromium not found (chromium, chromium-browser or google-chrome): "
            "./dev test installs Debian's chromium; or set ROLLWAVE_CHROMIUM=/path/to/browser"
        )
    return path
