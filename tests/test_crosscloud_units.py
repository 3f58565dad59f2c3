"""Side-by-side execution's input checks and journal, without a cloud (the runs themselves:
tests/test_crosscloud_sandbox.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from planner.errors import InputError
from planner.executor.crosscloud import (
    JOURNAL_KIND,
    Journal,
    configured_same,
    read_network_map,
    unmapped,
)
from tests.test_cli import clean, files, rollwave  # noqa: F401 - files is a fixture

HEADER = {"plan_sha256": "abc", "source": "old", "target": "new"}


def _server(*nets: str) -> dict[str, object]:
    """The part of a Nova server body the check reads: its networks by name."""
    return {"addresses": {n: [{"addr": "10.0.0.5", "version": 4}] for n in nets}}


def test_every_network_of_a_crossing_vm_must_be_mapped() -> None:
    servers = {"vm-1": _server("private", "storage"), "vm-2": _server("storage"), "vm-3": _server()}
    assert unmapped(servers, {"private": "int-net"}) == {"storage": ["vm-1", "vm-2"]}
    assert unmapped(servers, {"private": "int-net", "storage": "san"}) == {}


def test_network_map_file(tmp_path: Path) -> None:
    good = tmp_path / "map.yaml"
    good.write_text("private: int-net\nstorage: san\n")
    assert read_network_map(str(good)) == {"private": "int-net", "storage": "san"}
    for text in ("- private\n", "private: 3\n", "private: ''\n", "a: [b\n"):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(InputError, match=str(bad)):
            read_network_map(str(bad))
    # read as every input is (a regular file only: a FIFO would block, a device never end)
    with pytest.raises(InputError, match=r"missing\.yaml: no such file"):
        read_network_map(str(tmp_path / "missing.yaml"))
    fifo = tmp_path / "map.fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="regular file"):
        read_network_map(str(fifo))


def test_journal_resumes_only_its_own_run(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with pytest.raises(InputError, match="no journal to resume"):
        Journal(path, HEADER, resume=True)
    j = Journal(path, HEADER, resume=False)
    j.finish("wave:1")
    j.log("xc-stopped", vm="v")
    with open(path, "a") as f:
        f.write('{"event": "done", "st')  # cut by a kill
    with pytest.raises(InputError, match="--resume it"):
        Journal(path, HEADER, resume=False)
    with pytest.raises(InputError, match="another plan"):
        Journal(path, {**HEADER, "target": "other"}, resume=True)
    again = Journal(path, HEADER, resume=True)
    assert again.done == {"wave:1"}
    head = json.loads(path.read_text().splitlines()[0])
    assert head["kind"] == JOURNAL_KIND and head["source"] == "old"


def test_two_names_for_one_cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def entry(url: str) -> dict[str, object]:
        return {"auth": {"auth_url": url, "username": "u", "password": "p", "project_name": "p"}}

    clouds = {"a": entry("http://k1/v3"), "b": entry("http://k1/v3/"), "c": entry("http://k2/v3")}
    f = tmp_path / "clouds.yaml"
    f.write_text(yaml.safe_dump({"clouds": clouds}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(f))
    assert configured_same("a", "a") and configured_same("a", "b")
    assert not configured_same("a", "c")
    assert not configured_same("a", "not-yet-deployed")


def test_cli_refuses_what_does_not_fit(
    files: dict[str, Path],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(files["dir"] / "no-clouds.yaml"))
    plan = str(files["plan"])
    r = clean(rollwave("execute", plan, "--source-cloud", "a"))
    assert r.code == 2 and "give both --source-cloud and --target-cloud" in r.err
    r = clean(rollwave("execute", plan, "--source-cloud", "a", "--target-cloud", "a"))
    assert r.code == 2 and "same cloud" in r.err
    r = clean(
        rollwave(
            "execute", plan, "--source-cloud", "a", "--target-cloud", "b",
            "--upgrade-command", "true",
        )
    )  # fmt: skip
    assert r.code == 2 and "--upgrade-command: not for a side-by-side run" in r.err
    r = clean(rollwave("execute", plan, "--source-cloud", "a", "--target-cloud", "b"))
    assert r.code == 2 and "not a side-by-side plan" in r.err
    assert not list(files["dir"].glob("*.journal.jsonl"))


def test_status_of_a_side_by_side_journal(tmp_path: Path) -> None:
    path = tmp_path / "plan.journal.jsonl"
    j = Journal(path, HEADER, resume=False)
    j.finish("deploy")
    j.finish("role:cmp-1")
    j.finish("wave:1")
    j.log("xc-moved", vm="v1", to="cmp-1", copy="c1", wave=2)
    r = clean(rollwave("execute", "--status", str(path)))
    assert r.code == 0
    assert "status: not finished (--resume continues it); waves done: 1; VMs crossed: 1" in r.out
    j.log("run-done")
    r = clean(rollwave("execute", "--status", str(path), "--format", "json"))
    data = json.loads(r.out)
    assert data["finished"] and data["hosts_handed_over"] == ["cmp-1"] and data["deployed"]
