"""What the executor asks of planning and of estimation, as small protocols (ports).

The executor imports neither engine: whoever builds an `Executor` hands it a `Replanner` and,
for the ETA, an `Estimator`. `planner.app.execute` implements them with the solver and the
simulator, and the CLI wires them; tests may pass their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from planner.inventory import Inventory
from planner.plan import Method, Migration, Plan, Stop
from planner.policy import Policy


class Replanner(Protocol):
    """Planning from the live state, on the executor's demand."""

    def replan(self, view: Inventory, policy: Policy, *, time_limit_s: float) -> Plan:
        """A plan for every host of `view` still to upgrade (the executor re-checks it).
        Raises `InfeasibleError` with the reasons when there is none."""
        ...

    def reroute(
        self,
        view: Inventory,
        policy: Policy,
        vm: str,
        *,
        wave_hosts: tuple[str, ...],
        others: tuple[Migration, ...],
        stops: tuple[Stop, ...],
        avoid: Iterable[str],
        only: Iterable[str] | None = None,
    ) -> tuple[str, Method] | None:
        """Another (host, method) for one VM leaving a host of the wave `wave_hosts`, judged by
        the checker on the wave with its other moves still to come (`others`) and its `stops`;
        never a host of `avoid`, only hosts of `only` if given. None when no host fits."""
        ...


@dataclass(frozen=True)
class Forecast:
    """A model's run of a remaining plan, in model seconds from its start."""

    makespan_s: float
    soak_s: float  # the canary's soak within it (0: none)
    waves: tuple[tuple[float, float], ...]  # (start, end) per wave; NaN: the wave never ran
    # The first wave's steps: (end, key, work), key `eta.vm_step` or `eta.host_step`, work the
    # model seconds of the step's own work. Steps that never ran in the model are left out.
    steps: tuple[tuple[float, str, float], ...]


class Estimator(Protocol):
    """The ETA's model of the rest of a run (one deterministic run, no random failures)."""

    def forecast(self, view: Inventory, remaining: Plan, *, canary: bool) -> Forecast:
        """How long `remaining` takes from the state `view`; `canary`: the canary is still
        ahead (its soak counts)."""
        ...
