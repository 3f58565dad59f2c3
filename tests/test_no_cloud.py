"""`snapshot` and `execute` with no cloud configured at all (no clouds.yaml, no OS_CLOUD, no OS_*
variables): a message saying what to configure, exit 2, nothing written (issue 18)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from planner.formats import save_inventory, save_plan
from tests.clouds import three_plus_spare
from tests.test_cli import clean, rollwave


@pytest.fixture
def no_cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """HOME, XDG dirs and the working directory in an empty directory, every OS_* unset."""
    home = tmp_path / "home"
    home.mkdir()
    for k in [k for k in os.environ if k.startswith("OS_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("HOME", str(home))
    for x in ("XDG_CONFIG_HOME", "XDG_CONFIG_DIRS", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(x, str(home))
    monkeypatch.chdir(home)
    yield tmp_path


def _says_what_to_configure(err: str) -> None:
    assert "no cloud is configured" in err
    for what in ("--os-cloud", "OS_CLOUD", "clouds.yaml", "OS_AUTH_URL"):
        assert what in err, err


def test_snapshot_with_no_cloud_says_what_to_configure(no_cloud: Path) -> None:
    out = no_cloud / "inv.json"
    run = clean(rollwave("snapshot", "-q", "-o", out))
    assert run.code == 2, run
    _says_what_to_configure(run.err)
    assert not out.exists()


def test_execute_with_no_cloud_says_what_to_configure(no_cloud: Path) -> None:
    fx = three_plus_spare()
    inv = no_cloud / "inv.json"
    digest = save_inventory(fx.inventory, inv)
    plan = no_cloud / "plan.json"
    save_plan(fx.plan.__class__(digest, fx.plan.policy, fx.plan.waves), plan)
    before = sorted(p.name for p in no_cloud.iterdir())
    run = clean(rollwave("execute", plan, "--inventory", inv, "--upgrade-command", "true"))
    assert run.code == 2, run
    _says_what_to_configure(run.err)
    assert sorted(p.name for p in no_cloud.iterdir()) == before  # no journal started


def test_half_a_configuration_names_what_is_missing(
    no_cloud: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OS_USERNAME", "admin")
    run = clean(rollwave("snapshot", "-q", "-o", no_cloud / "inv.json"))
    assert run.code == 2, run
    assert "the OS_* variables lack credentials" in run.err and "auth_url" in run.err, run
