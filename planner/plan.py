"""The plan: an immutable, serialisable schedule of waves. Written by the solver, read by the
checker, the simulator, the reports and the executor alike.

Semantics (judged by `planner.checker`): waves run in order; in wave i its hosts enter maintenance,
every VM on them migrates (`src` = its current host) or is stopped in place; at the end of the wave
its hosts hold only stopped VMs and run the target version.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from planner.policy import Policy

Method = Literal["live", "cold"]
METHODS: tuple[Method, ...] = ("live", "cold")


@dataclass(frozen=True, slots=True)
class Migration:
    vm: str
    src: str  # "from" in the file
    dst: str  # "to" in the file
    method: Method = "live"


@dataclass(frozen=True, slots=True)
class Stop:
    vm: str
    host: str


@dataclass(frozen=True, slots=True)
class Wave:
    index: int  # 1-based, in execution order
    hosts: tuple[str, ...]
    migrations: tuple[Migration, ...] = ()
    stops: tuple[Stop, ...] = ()


@dataclass(frozen=True)
class Plan:
    inventory_sha256: str
    policy: Policy
    waves: tuple[Wave, ...]
    # Metrics as written by the planner (waves, migrations, lower bounds, ...); informative only:
    # the checker recomputes everything from the waves.
    summary: Mapping[str, Any] = field(default_factory=dict)
    # Who made it and how: {"name": "cp-sat", "version": ..., "seed": ..., "time_s": ...}.
    generator: Mapping[str, Any] = field(default_factory=dict)
    created_at: str | None = None

    def migrations(self) -> Iterator[tuple[int, Migration]]:
        for w in self.waves:
            for m in w.migrations:
                yield w.index, m

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(h for w in self.waves for h in w.hosts)

    def wave_of(self) -> dict[str, int]:
        """Host name -> index of the (first) wave that upgrades it."""
        out: dict[str, int] = {}
        for w in self.waves:
            for h in w.hosts:
                out.setdefault(h, w.index)
        return out
