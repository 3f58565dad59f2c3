"""Executor runs whose journals are kept as files (tests/data/journals), to prove that journals
written by an earlier rollwave still read and resume, and that this one writes the same records.

Each scenario runs the executor on the dry run's model of a cloud run as a live one (it writes
its journal and sleeps on a clock that only sleeping moves, so every record is reproducible),
with faults injected: Nova refusing a VM's migration, an upgrade or a health command failing, a
kill in the middle of a step. This module uses only what every version of the executor has (the
cloud, the hooks, the journal); how an `Executor` is built is the caller's (`Build`).

The files under tests/data/journals were written by `write_fixtures` with the executor of commit
c35e689 (one 1,830-line module, before its split into rooms): `<name>.journal.jsonl` a run's
journal, `<name>.calls.txt` the calls it made to the cloud; for a run killed midway, its cloud at
the kill (`.cloud.json`) and the journal once resumed (`.resumed.journal.jsonl`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planner import formats
from planner.errors import CloudError
from planner.executor.cloud import DryRunCloud
from planner.executor.hooks import DryRunHooks, Running
from planner.executor.journal import read_records
from planner.inventory import Inventory
from planner.plan import Plan
from tests.clouds import NAMED

DATA = Path(__file__).parent / "data" / "journals"
SHA = "e" * 64


class Clock:
    """Time moves only when the executor sleeps: records do not depend on how often it reads."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += max(s, 0.01)


class Killed(BaseException):
    """The process dies here (as under SIGKILL): nothing after it is written."""


class FaultyCloud(DryRunCloud):
    """The dry run's model, run as a live cloud, with Nova refusing some migrations
    (`refuse`: VM -> how many times) and the process killed at the `kill_at`-th call."""

    dry = False

    def __init__(
        self,
        start: Inventory,
        target: str | None,
        *,
        refuse: dict[str, int] | None = None,
        kill_at: int | None = None,
    ) -> None:
        super().__init__(start, self._count, target)
        self.refuse = dict(refuse or {})
        self.kill_at = kill_at

    def _count(self, line: str) -> None:
        if self.kill_at is not None and len(self.calls) >= self.kill_at:
            self.kill_at = None
            raise Killed(line)

    def live_migrate(self, vm: str, host: str) -> None:
        if self.refuse.get(vm, 0) > 0:
            self.refuse[vm] -= 1
            self._say(f"POST compute /servers/{vm}/action (refused)")
            raise CloudError(f"no valid host for {vm}", call="live-migrate", status=400)
        super().live_migrate(vm, host)


@dataclass
class _Failed:
    command: str
    rc: int
    log: Path | None = None
    started: float = 0.0

    def poll(self) -> int | None:
        return self.rc

    def kill(self) -> None:
        return None


class FaultyHooks(DryRunHooks):
    """The dry run's hooks, but the commands of `fail` ((kind, host) pairs) exit 2."""

    def __init__(self, cloud: DryRunCloud, fail: set[tuple[str, str]]) -> None:
        super().__init__(cloud.run_hook)
        self.fail = fail

    def start(
        self, kind: str, host: str, command: str, *, wave: int, plan: str, version: str | None
    ) -> Running:
        if (kind, host) in self.fail:
            return _Failed(command, 2)
        return super().start(kind, host, command, wave=wave, plan=plan, version=version)


@dataclass(frozen=True)
class Scenario:
    name: str
    fixture: str
    options: dict[str, Any]  # ExecOptions' fields
    model: dict[str, Any] | None = None  # the ETA's model: changes to the simulator's defaults
    refuse: dict[str, int] = field(default_factory=dict)
    fail: frozenset[tuple[str, str]] = frozenset()
    kill_at: int | None = None  # cloud call at which the first run dies


SCENARIOS = (
    # canary with a failing health command: the canary host is rolled back; ETA notes
    Scenario(
        "canary",
        "three_plus_spare",
        {
            "canary": 1,
            "soak_s": 30.0,
            "health_command": "health {host}",
            "rollback_command": "rb {host}",
            "on_host_failure": "continue",
        },
        model={"canary_hosts": 1, "soak_s": 30.0, "rollback": True},
        fail=frozenset({("health", "cmp-4")}),
    ),
    # refusals (a retry, another destination, then a re-plan), cold moves, a stop in place, an
    # upgrade that fails and is rolled back
    Scenario(
        "faults",
        "mixed_methods",
        {"retries": 1, "rollback_command": "rb {host}", "on_host_failure": "continue"},
        refuse={"live": 2},
        fail=frozenset({("upgrade", "cmp-3")}),
    ),
    # killed in wave 2 (execution order): as it asks Nova to move vm-2b (the call is not sent),
    # as it polls vm-2b (Nova has moved it), as the upgrade command starts; each resumed
    Scenario("cut-before-call", "three_plus_spare", {}, model={}, kill_at=33),
    Scenario("cut-after-call", "three_plus_spare", {}, model={}, kill_at=34),
    Scenario("cut-in-upgrade", "three_plus_spare", {}, model={}, kill_at=36),
)

# Build(plan, sha, cloud, hooks, journal, options, model changes or None, resume, clock)
Build = Callable[..., Any]


def fixture(s: Scenario) -> tuple[Plan, Inventory]:
    fx = NAMED[s.fixture]()
    return fx.plan, fx.inventory


def run(
    build: Build,
    s: Scenario,
    journal: Path,
    *,
    start: Inventory | None = None,
    resume: bool = False,
) -> tuple[Any, FaultyCloud]:
    """One run (or resume) of the scenario: (its result, or None when killed; the cloud)."""
    plan, inv = fixture(s)
    target = plan.policy.target_version
    cloud = FaultyCloud(
        start or inv, target, refuse=s.refuse, kill_at=None if resume else s.kill_at
    )
    hooks = FaultyHooks(cloud, set(s.fail))
    clock = Clock()
    ex = build(plan, SHA, cloud, hooks, journal, dict(s.options), s.model, resume, clock)
    try:
        return ex.run(), cloud
    except Killed:
        return None, cloud


def comparable(path: Path) -> list[list[tuple[str, Any]]]:
    """A journal's records, their fields in the order written, without what differs from run to
    run (time, process id)."""
    return [[(k, v) for k, v in r.items() if k not in ("t", "pid")] for r in read_records(path)]


def write_fixtures(build: Build, root: Path = DATA) -> None:
    """Write every scenario's journal (and, for a cut run, the cloud at the cut and the resumed
    journal) under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for s in SCENARIOS:
        j = root / f"{s.name}.journal.jsonl"
        j.unlink(missing_ok=True)
        res, cloud = run(build, s, j)
        if s.kill_at is None:
            assert res is not None
            (root / f"{s.name}.calls.txt").write_text("\n".join(cloud.calls) + "\n")
            continue
        assert res is None, "the cut scenario must be killed"
        cloud.kill_at = None
        state = formats.inventory_to_dict(cloud.snapshot())
        (root / f"{s.name}.cloud.json").write_text(json.dumps(state, indent=1) + "\n")
        resumed = root / f"{s.name}.resumed.journal.jsonl"
        shutil.copy(j, resumed)
        res, cloud = run(build, s, resumed, start=formats.inventory_from_dict(state), resume=True)
        assert res is not None and res.status == "completed", res
        (root / f"{s.name}.calls.txt").write_text("\n".join(cloud.calls) + "\n")
