"""Executing a side-by-side plan against two clouds: the use case behind
`rollwave execute PLAN --source-cloud A --target-cloud B` (planner/executor/crosscloud.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from planner.app.execute import _verify
from planner.executor.crosscloud import CrossCloudRun, CrossOptions, Journal
from planner.executor.hooks import Hooks
from planner.formats import load_plan, sha256_file
from planner.openstack.connect import connect


def execute_side_by_side(
    plan_path: str,
    opts: CrossOptions,
    journal_path: Path,
    *,
    resume: bool,
    inventory_path: str | None = None,
    allow_digest_mismatch: bool = False,
    allow_check_failures: bool = False,
    echo: Callable[[str], None] = print,
    warn: Callable[[str], None] | None = None,
) -> None:
    """Validate everything first (bad input: exit 2, nothing moved), then run the waves."""
    plan = load_plan(plan_path)
    sha = sha256_file(plan_path)
    if inventory_path:
        _verify(plan_path, plan, inventory_path, allow_digest_mismatch, allow_check_failures)
    header = {
        "plan_sha256": sha,
        "source": opts.source_cloud,
        "target": opts.target_cloud,
        # The mapping applied (the sandbox has no networks to apply it to: see executor.md).
        "network_map": dict(opts.networks),
    }
    hooks = Hooks(journal_path.with_name(journal_path.name + ".hooks"))
    # The journal is opened (and created) only once the input is valid.
    probe = CrossCloudRun(plan, plan_path, opts, _NoJournal(), connect, hooks, echo, warn)
    if resume:
        probe.journal = Journal(journal_path, header, resume=True)
    probe.validate()
    if not resume:
        probe.journal = Journal(journal_path, header, resume=False)
    probe.run()


class _NoJournal(Journal):
    """Nothing done, nothing written: the validation of a fresh run."""

    def __init__(self) -> None:
        self.done: set[str] = set()

    def log(self, event: str, **fields: object) -> None:
        return None
