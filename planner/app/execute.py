"""Executing a plan against a live cloud: the use case behind `rollwave execute`.

- the ports the executor needs, implemented with the engines: `SolverReplanner` (re-planning with
  `solver.solve`, one VM re-routed with `solver.reroute`) and `SimEstimator` (the ETA, with the
  simulator);
- `load_verified_plan`: the plan, its digest, and the checker's verdict on `--inventory`;
- `resume_options`, `merge_recorded`: a resumed run keeps the options its journal recorded;
- `execute`: the cloud (live, or the dry run's model of it), the hooks, the notifications and the
  executor, wired and run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planner.app.sidebyside import refuse_side_by_side
from planner.checker import check_plan
from planner.errors import InputError
from planner.executor.cloud import Cloud, DryRunCloud, LiveCloud
from planner.executor.context import HookRunner
from planner.executor.eta import host_step, vm_step
from planner.executor.hooks import DryRunHooks, Hooks, Notifier
from planner.executor.journal import RunState, read_records
from planner.executor.options import ExecOptions
from planner.executor.ports import Forecast
from planner.executor.run import Executor, RunResult
from planner.executor.ui import Reporter
from planner.formats import load_inventory, load_plan, sha256_file
from planner.inventory import Inventory
from planner.plan import Method, Migration, Plan, Stop
from planner.policy import Policy
from sim.engine import prepare, simulate
from sim.model import DEFAULT, SimModel, load_model
from solver.reroute import reroute

# -- the ports ------------------------------------------------------------------------------------


class SolverReplanner:
    """The executor's re-planner: the solver for the remaining waves, `solver.reroute` for one
    VM."""

    def replan(self, view: Inventory, policy: Policy, *, time_limit_s: float) -> Plan:
        """The CP-SAT solver (the greedy planner its fallback), within `time_limit_s` seconds."""
        from solver.solve import SolveOptions, solve  # OR-Tools: loaded when needed only

        return solve(view, policy, SolveOptions(time_limit=time_limit_s), inventory_sha256="").plan

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
        return reroute(
            view,
            policy,
            vm,
            wave_hosts=wave_hosts,
            others=others,
            stops=stops,
            avoid=avoid,
            only=only,
        )


class SimEstimator:
    """The ETA's model: one deterministic run of the simulator (no random failures)."""

    def __init__(self, model: SimModel = DEFAULT) -> None:
        self.model = model
        self._without_canary: SimModel | None = None

    def forecast(self, view: Inventory, remaining: Plan, *, canary: bool) -> Forecast:
        model = self.model
        if not canary and model.canary_hosts:
            if self._without_canary is None:
                self._without_canary = model.with_changes(canary_hosts=0)
            model = self._without_canary
        prep = prepare(view, remaining, model, check=False)
        res = simulate(prep, seed=0, record=False)
        steps: list[tuple[float, str, float]] = []
        for mi, wi in enumerate(prep.m_wave):
            if wi != 0:
                continue
            a, b = res.mig_start[mi], res.mig_end[mi]
            if not (math.isfinite(a) and math.isfinite(b)):
                continue  # never ran in the model (its host went down first)
            vm = prep.inv.vms[prep.m_vm[mi]].id
            steps.append((b, vm_step(vm), max(b - a, 0.0)))
        for h in prep.waves[0][0]:
            times = res.host_times.get(h)
            if times is None or not math.isfinite(times[2]):
                continue
            m0, up, e = times
            # disable, upgrade command, wait, enable; the drain between is its migrations' work
            took = e - up + model.disable_s if math.isfinite(up) else e - m0
            steps.append((e, host_step(prep.hosts[h]), max(took, 0.0)))
        return Forecast(
            makespan_s=res.makespan_s,
            soak_s=res.soak_s,
            waves=tuple(zip(res.wave_start, res.wave_end, strict=True)),
            steps=tuple(steps),
        )


def eta_model(model: SimModel, opts: ExecOptions) -> SimModel:
    """The ETA models this run: its limits, its canary and soak, whether it rolls back."""
    return model.with_changes(
        max_inbound_migrations=opts.max_inbound,
        canary_hosts=opts.canary,
        soak_s=opts.soak_s if opts.canary else 0.0,
        rollback=bool(opts.rollback_command),
    )


# -- the plan -------------------------------------------------------------------------------------


def load_verified_plan(
    plan_path: str,
    inventory_path: str | None,
    *,
    allow_digest_mismatch: bool = False,
    allow_check_failures: bool = False,
) -> tuple[Plan, str]:
    """The plan and the sha256 of its file. With `inventory_path`: the plan must be made for that
    inventory (its digest) and the checker must accept it there, unless allowed."""
    plan = load_plan(plan_path)
    refuse_side_by_side(plan, "execute")
    sha = sha256_file(plan_path)
    if inventory_path:
        _verify(plan_path, plan, inventory_path, allow_digest_mismatch, allow_check_failures)
    return plan, sha


def _verify(
    plan_path: str, plan: Plan, inventory_path: str, allow_digest: bool, allow_check: bool
) -> None:
    inv = load_inventory(inventory_path)
    digest_ok = plan.inventory_sha256 == inv.digest
    if not digest_ok and not allow_digest:
        raise InputError(
            plan_path,
            f"the plan was made for inventory sha256 {plan.inventory_sha256[:12] or '(none)'}..., "
            f"{inventory_path} is {(inv.digest or '')[:12]}...: refusing to execute it "
            "(--allow-digest-mismatch to go on anyway)",
        )
    report = check_plan(inv, plan, digest=plan.inventory_sha256 if not digest_ok else None)
    bad = [v for v in report.violations if v.rule != "digest"]
    if bad and not allow_check:
        lines = "\n".join(f"  {v}" for v in bad[:10])
        raise InputError(
            plan_path,
            f"the checker rejects the plan on {inventory_path} ({len(bad)} violation(s)); "
            f"refusing to execute it (--allow-check-failures to go on anyway):\n{lines}",
        )


# -- options on resume ----------------------------------------------------------------------------

# The options a journal records (its header, then each resume's run note), by parameter name.
RECORDED = (
    "max_parallel",
    "max_inbound",
    "replan",
    "on_host_failure",
    "canary",
    "soak_s",
    "canary_vms",
    "retries",
    "retry_delay_s",
    "poll_s",
    "service_timeout_s",
    "confirm_timeout_s",
    "hook_timeout_s",
    "migration_timeout_s",
    "replan_time_limit_s",
)
# Options the journal records only when not at their default (`options.safe_options`): their
# absence means the default, which is what --resume then takes unless given again.
RECORDED_WHEN_SET = ("force_stall_s", "window_wait", "retargets")


def merge_recorded(
    recorded: dict[str, Any], given: dict[str, Any], explicit: set[str]
) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """The options for a resumed run: those given on the command line (`explicit`), else those
    the journal recorded, else the defaults in `given`. Also: the options given with another
    value than the recorded one, with that value."""
    out = dict(given)
    changed: list[tuple[str, Any]] = []
    for name in (*RECORDED, *RECORDED_WHEN_SET):
        if name not in recorded or name not in given:
            continue  # a journal from an older rollwave: the command line's value
        value = recorded[name]
        if name == "max_inbound":
            value = value or 0  # the journal's None (no limit) is the option's 0
        if name not in explicit:
            out[name] = value
        elif value != given[name]:
            changed.append((name, value))
    return out, changed


@dataclass(frozen=True)
class ResumedOptions:
    values: dict[str, Any]  # the options for the resumed run
    changed: list[tuple[str, Any]]  # given again with another value: (name, the recorded one)
    commands_not_given: list[str]  # commands the run was started with, not given again


def resume_options(
    journal: Path, given: dict[str, Any], explicit: set[str], commands: dict[str, str | None]
) -> ResumedOptions:
    """On --resume, an option not given again on the command line keeps the value the run
    recorded (a run restarted at night keeps its timeouts and limits); one given again wins.
    Commands are not recorded (they may hold secrets): those the run had and `commands` lacks
    are named."""
    if not journal.exists():
        raise InputError(str(journal), "no such journal: nothing to resume")
    recorded = RunState.replay(read_records(journal)).options
    values, changed = merge_recorded(recorded, given, explicit)
    missing = [name for name, cmd in commands.items() if recorded.get(name) and not cmd]
    return ResumedOptions(values, changed, missing)


# -- the run --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecuteRequest:
    plan: Plan
    plan_sha: str
    plan_file: str
    journal: Path
    options: ExecOptions
    cloud: str | None = None  # clouds.yaml entry (None: the OS_* variables)
    mapping_path: str | None = None
    model_path: str | None = None  # the ETA's simulation model (None: the defaults)
    dry_run: bool = False
    resume: bool = False
    notify_command: str | None = None
    notify_webhook: str | None = None


@dataclass
class Execution:
    result: RunResult
    calls: list[str] = field(default_factory=list)  # the dry run's calls, as printed


def execute(
    req: ExecuteRequest,
    *,
    reporter: Reporter,
    print_call: Callable[[str], None],
    note: Callable[[str], None],
) -> Execution:
    """Connect, build the executor with the solver and the simulator behind its ports, run it.
    A dry run reads the cloud once and hands every other call to `print_call`; `note` says so.
    Raises CloudError when the cloud fails (the journal has every step so far)."""
    from planner.openstack import connect, mapping

    model = eta_model(load_model(req.model_path) if req.model_path else DEFAULT, req.options)
    m = mapping.load(req.mapping_path) if req.mapping_path else mapping.Mapping()
    api = connect.Api(connect.connect(req.cloud))
    cloud: Cloud = LiveCloud(api, req.cloud or "default", m)
    hooks: HookRunner
    if req.dry_run:
        note("dry run: reading the cloud once (read-only); every other call is printed")
        dry = DryRunCloud(cloud.snapshot(), print_call, req.plan.policy.target_version)
        cloud, hooks = dry, DryRunHooks(dry.run_hook)
    else:
        hooks = Hooks(req.journal.with_name(req.journal.stem + ".logs"))
    notifier = Notifier(req.notify_command, req.notify_webhook, reporter.warn, dry=req.dry_run)
    ex = Executor(
        req.plan,
        req.plan_sha,
        cloud,
        opts=req.options,
        reporter=reporter,
        hooks=hooks,
        notify=notifier,
        replanner=SolverReplanner(),
        estimator=SimEstimator(model),
        journal_path=None if req.dry_run else req.journal,
        plan_file=req.plan_file,
        resume=req.resume,
    )
    result = ex.run()
    return Execution(result, list(cloud.calls) if isinstance(cloud, DryRunCloud) else [])
