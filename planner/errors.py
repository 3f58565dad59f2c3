"""One error tree for all of rollwave, each branch mapped to a distinct exit code.

The CLI catches `RollwaveError` at the top and prints `render()`; nothing below it prints
tracebacks for expected failures. Library callers catch the branch they care about.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    VIOLATIONS = 1  # `check` found rule violations: a result, not a crash
    BAD_INPUT = 2  # unreadable or invalid input file, or a usage error (click uses 2 too)
    INFEASIBLE = 3  # no plan: proven impossible, or none found (the message says which)
    CLOUD = 4  # the cloud is unreachable, refused authentication or an API call
    EXECUTION = 5  # an execution stopped: drift, a failed step, an unsafe state
    SANDBOX = 6  # the local Nova sandbox could not start or is not running
    INCOMPATIBLE = 7  # api-check: the new cloud does not serve the old cloud's API range
    INTERNAL = 70  # a bug in rollwave (EX_SOFTWARE)
    INTERRUPTED = 130  # Ctrl-C


class RollwaveError(Exception):
    """Base of every error rollwave raises on purpose."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def render(self) -> str:
        return f"error: {self}"


@dataclass(frozen=True)
class Problem:
    """One problem in an input file: where it is (e.g. `hosts[3].capacity.VCPU`) and what."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class InputError(RollwaveError):
    """An input file is unreadable or invalid. Carries every problem found, not only the first."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, file: str, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.file = file
        self.problems = list(problems)
        super().__init__(self.render())

    def render(self, limit: int = 50) -> str:
        lines = [f"error: {self.file}: {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"error: {self.file}: ... and {len(self.problems) - limit} more problems")
        return "\n".join(lines)


class UsageError(RollwaveError):
    """Command-line options that do not fit together (beyond what click checks)."""

    exit_code = ExitCode.BAD_INPUT


class InfeasibleError(RollwaveError):
    """No plan satisfies the policy. `reasons` are in an operator's terms, most specific first.

    `proven`: the reasons are a proof (a pre-check, or CP-SAT's INFEASIBLE on the exact model);
    False when the planners merely found none (a time limit, a model too large to decide).
    `blame`: the rule families a proof names, each a dict (key, rule, relax, relaxing_alone)."""

    exit_code = ExitCode.INFEASIBLE

    def __init__(
        self,
        reasons: list[str],
        *,
        proven: bool = True,
        blame: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.reasons = list(reasons) or ["no plan satisfies the policy (no reason found)"]
        self.proven = proven
        self.blame = [dict(b) for b in blame]
        super().__init__("; ".join(self.reasons))

    def render(self) -> str:
        head = "no plan exists:" if self.proven else "no plan found (not proven impossible):"
        return head + "\n" + "\n".join(f"  - {r}" for r in self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": "impossible" if self.proven else "not_found",
            "proven": self.proven,
            "reasons": list(self.reasons),
            "blame": [dict(b) for b in self.blame],
        }


class CloudError(RollwaveError):
    """The cloud could not be reached or refused a call. Never carries credentials."""

    exit_code = ExitCode.CLOUD

    def __init__(self, message: str, *, call: str | None = None, status: int | None = None) -> None:
        self.call = call
        self.status = status
        detail = message
        if call:
            detail = f"{call}: {detail}"
        if status is not None:
            detail = f"{detail} (HTTP {status})"
        super().__init__(detail)


class ClusterError(CloudError):
    """The Dask cluster of `--cluster` could not be reached, started or kept: the scheduler is
    unreachable or has no workers, the workers cannot run rollwave, or the cluster lost the work.
    A kind of CloudError (exit 4): remote machines the work depends on failed it."""


class ExecutionError(RollwaveError):
    """An execution stopped before the plan was complete; the journal says where."""

    exit_code = ExitCode.EXECUTION


class SandboxError(RollwaveError):
    """The local Nova sandbox could not be started, reached or stopped."""

    exit_code = ExitCode.SANDBOX


class ApiIncompatibleError(RollwaveError):
    """The new cloud of a side-by-side upgrade does not serve every API version and microversion
    the old one does (`rollwave api-check`). `report`: the check's JSON form, for callers that
    print or journal it."""

    exit_code = ExitCode.INCOMPATIBLE

    def __init__(self, summary: str, report: Mapping[str, Any]) -> None:
        self.report = dict(report)
        super().__init__(summary)

    def render(self) -> str:
        return f"error: API check failed: {self}"
