"""`rollwave execute PLAN`: run a plan against a live cloud, safely, resumably, with progress.

`rollwave execute --status JOURNAL` shows where a run stands without touching the cloud.
docs/executor.md explains the procedure, the journal and every option.
"""

from __future__ import annotations

import math
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from planner.cli.common import emit_json, err, format_option, out
from planner.errors import CloudError, ExitCode, UsageError

if TYPE_CHECKING:
    from planner.app.execute import ExecuteRequest, Execution
    from planner.executor.options import ExecOptions


class Seconds(click.FloatRange):
    """A number of seconds: a range, and finite (click's FloatRange lets nan and inf through)."""

    name = "number of seconds"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str | None:
        return "SECONDS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return rv


def default_journal(plan: str) -> Path:
    p = Path(plan)
    return p.with_name(p.stem + ".journal.jsonl")


@click.command("execute")
@click.argument("plan", required=False, type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--os-cloud",
    "cloud",
    envvar="OS_CLOUD",
    help="Cloud name in clouds.yaml (default: $OS_CLOUD, else the OS_* variables).",
)
@click.option(
    "--inventory",
    "inventory_path",
    type=click.Path(dir_okay=False),
    help="The inventory the plan was made from: its digest must match the plan's and the "
    "checker must accept the plan on it.",
)
@click.option(
    "--mapping",
    "mapping_path",
    type=click.Path(dir_okay=False),
    help="Mapping file for the snapshots (controllers, HA groups, versions), as for snapshot.",
)
@click.option("--dry-run", is_flag=True, help="Print every API call it would make; change nothing.")
@click.option(
    "--journal",
    "journal_path",
    type=click.Path(dir_okay=False),
    help="Journal file (default: PLAN's name with .journal.jsonl).",
)
@click.option("--resume", is_flag=True, help="Continue the run the journal records.")
@click.option(
    "--status",
    "status_journal",
    type=click.Path(dir_okay=False),
    help="Show where the run in this journal stands (touches no cloud).",
)
@click.option(
    "--max-parallel",
    type=click.IntRange(1),
    default=4,
    show_default=True,
    help="Migrations in flight at once, overall.",
)
@click.option(
    "--max-inbound",
    type=click.IntRange(0),
    default=2,
    show_default=True,
    help="Migrations in flight at once to one destination host (0: no limit).",
)
@click.option(
    "--upgrade-command",
    metavar="CMD",
    help="Upgrades one host, e.g. 'ansible-playbook upgrade.yml --limit {host}'. "
    "Placeholders: {host} {wave} {plan} {version}.",
)
@click.option(
    "--rollback-command",
    metavar="CMD",
    help="Rolls one host back when its upgrade fails or it does not come back healthy.",
)
@click.option(
    "--health-command",
    metavar="CMD",
    help="Checks one canary host after the soak (exit 0: healthy).",
)
@click.option(
    "--replan/--no-replan",
    default=True,
    show_default=True,
    help="On drift, re-plan the remaining waves from the live state (else stop, exit 5).",
)
@click.option(
    "--on-host-failure",
    type=click.Choice(["stop", "continue"]),
    default="stop",
    show_default=True,
    help="After a host's upgrade fails (rolled back or not): finish the wave and stop, or "
    "go on without it.",
)
@click.option(
    "--canary",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="After the first N upgraded hosts are back: move a few VMs onto them, soak, check.",
)
@click.option(
    "--soak",
    "soak_s",
    type=Seconds(0),
    default=600.0,
    show_default=True,
    help="Seconds the canary soaks.",
)
@click.option(
    "--canary-vms",
    type=click.IntRange(0),
    default=2,
    show_default=True,
    help="VMs moved onto the canary hosts (the next wave's own evacuees first).",
)
@click.option(
    "--retries",
    type=click.IntRange(0),
    default=2,
    show_default=True,
    help="Retries of a failed migration before another destination is asked for.",
)
@click.option(
    "--retargets",
    type=click.IntRange(0),
    default=2,
    show_default=True,
    help="Other destinations asked of the re-planner for a VM whose migrations keep failing "
    "(after --retries on each); then the VM stays and its host is not upgraded.",
)
@click.option(
    "--retry-delay",
    "retry_delay_s",
    type=Seconds(0),
    default=10.0,
    show_default=True,
    help="Seconds before a failed migration is tried again (doubled at each retry).",
)
@click.option(
    "--service-timeout",
    "service_timeout_s",
    type=Seconds(0),
    default=600.0,
    show_default=True,
    help="Seconds a host's compute service has to come back healthy after its upgrade.",
)
@click.option(
    "--confirm-timeout",
    "confirm_timeout_s",
    type=Seconds(0, min_open=True),
    default=300.0,
    show_default=True,
    help="Seconds a cold migration may stay VERIFY_RESIZE after rollwave confirms it (Nova "
    "confirms asynchronously); then it counts as failed, is not retried, and its source host "
    "is not upgraded.",
)
@click.option(
    "--hook-timeout",
    "hook_timeout_s",
    type=Seconds(0),
    default=0.0,
    help="Seconds an upgrade/rollback/health command may run (0: no limit).",
)
@click.option(
    "--migration-timeout",
    "migration_timeout_s",
    type=Seconds(0),
    default=0.0,
    help="Abort a migration after this many seconds (0: Nova's own timeout only).",
)
@click.option(
    "--force-stall",
    "force_stall_s",
    type=Seconds(0, min_open=True),
    default=30.0,
    show_default=True,
    help="A live migration the plan force-completes is forced before its planned time once its "
    "remaining memory has reached no new low for this long; after a force, this long without "
    "progress runs the fallback (abort, then cold if the policy allows).",
)
@click.option(
    "--window-wait/--no-window-wait",
    default=True,
    show_default=True,
    help="With the policy's maintenance windows: when the window is closed before a wave, wait "
    "for the next opening (the waves under way finish first), or stop (exit 5) to be resumed then.",
)
@click.option(
    "--poll-interval",
    "poll_s",
    type=Seconds(0.05),
    default=2.0,
    show_default=True,
    help="Seconds between polls of migrations and services.",
)
@click.option(
    "--replan-time-limit",
    "replan_time_limit_s",
    type=Seconds(1),
    default=30.0,
    show_default=True,
    help="Seconds the solver may take to re-plan the remaining waves after drift.",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False),
    help="Simulation model for the ETA (default: the simulator's defaults).",
)
@click.option(
    "--notify-command",
    metavar="CMD",
    help="Run on run/wave start and end, failures (the event's JSON on stdin); in the "
    "background, in order: it never holds the run up.",
)
@click.option(
    "--notify-webhook", metavar="URL", help="POST the same events as JSON (in the background)."
)
@click.option(
    "--allow-digest-mismatch",
    is_flag=True,
    help="Accept a plan made for another inventory file than --inventory.",
)
@click.option(
    "--allow-check-failures",
    is_flag=True,
    help="Accept a plan the checker rejects on --inventory (the live re-checks still apply).",
)
@click.option(
    "--source-cloud",
    metavar="CLOUD",
    help="Side-by-side plans: the old cloud (a clouds.yaml entry) the VMs leave.",
)
@click.option(
    "--target-cloud",
    metavar="CLOUD",
    help="Side-by-side plans: the new cloud (a clouds.yaml entry, there once --deploy-hook ran).",
)
@click.option(
    "--network-map",
    "network_map",
    type=click.Path(dir_okay=False),
    help="Side-by-side: JSON/YAML object, each old network's name -> the new network's name.",
)
@click.option(
    "--deploy-hook",
    metavar="CMD",
    help="Side-by-side: deploys the new control plane on the freed controllers ({hosts}).",
)
@click.option(
    "--handover-hook",
    metavar="CMD",
    help="Side-by-side: moves one emptied host ({host}) from the old cloud into the new one.",
)
@click.option(
    "--allow-api-loss",
    is_flag=True,
    help="Side-by-side: cross over even when the new cloud does not serve every API version "
    "and microversion the old one does (the api-check gate; said loudly and journaled).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress; warnings and the summary only.")
@format_option
def execute_cmd(
    plan: str | None,
    cloud: str | None,
    inventory_path: str | None,
    mapping_path: str | None,
    dry_run: bool,
    journal_path: str | None,
    resume: bool,
    status_journal: str | None,
    max_parallel: int,
    max_inbound: int,
    upgrade_command: str | None,
    rollback_command: str | None,
    health_command: str | None,
    replan: bool,
    on_host_failure: str,
    canary: int,
    soak_s: float,
    canary_vms: int,
    retries: int,
    retargets: int,
    retry_delay_s: float,
    service_timeout_s: float,
    confirm_timeout_s: float,
    hook_timeout_s: float,
    migration_timeout_s: float,
    force_stall_s: float,
    window_wait: bool,
    poll_s: float,
    replan_time_limit_s: float,
    model_path: str | None,
    notify_command: str | None,
    notify_webhook: str | None,
    allow_digest_mismatch: bool,
    allow_check_failures: bool,
    source_cloud: str | None,
    target_cloud: str | None,
    network_map: str | None,
    deploy_hook: str | None,
    handover_hook: str | None,
    allow_api_loss: bool,
    quiet: bool,
    fmt: str,
) -> int:
    """Execute PLAN against a live cloud, wave by wave: re-check, disable, migrate, upgrade,
    enable. Every step is journaled; --resume continues a run that was stopped or killed."""
    if status_journal:
        from planner.cli.execute_sbs import is_crosscloud_journal, status_side_by_side

        if is_crosscloud_journal(status_journal):
            return status_side_by_side(status_journal, fmt)
        return _status(status_journal, fmt)
    if source_cloud or target_cloud:
        from planner.cli.execute_sbs import run_side_by_side

        return run_side_by_side(click.get_current_context().params)
    plan = _check_usage(
        plan, dry_run, resume, bool(upgrade_command), notify_webhook, canary, soak_s, poll_s
    )
    from planner.app import execute as app

    plan_obj, sha = app.load_verified_plan(
        plan,
        inventory_path,
        allow_digest_mismatch=allow_digest_mismatch,
        allow_check_failures=allow_check_failures,
    )
    if not inventory_path and not resume:
        err.print(
            "note: no --inventory: the plan's digest is not verified; the first wave's re-check "
            "judges the whole plan against the live cloud"
        )
    journal = Path(journal_path) if journal_path else default_journal(plan)
    commands = (upgrade_command or DRY_UPGRADE, rollback_command, health_command)
    req = app.ExecuteRequest(
        plan_obj,
        sha,
        plan,
        journal,
        _options(journal, resume, *commands),
        cloud=cloud,
        mapping_path=mapping_path,
        model_path=model_path,
        dry_run=dry_run,
        resume=resume,
        notify_command=notify_command,
        notify_webhook=notify_webhook,
    )
    done = _run(req, quiet=quiet or dry_run, fmt=fmt)
    _present(done, plan, journal, dry_run, fmt)
    return done.result.exit_code


# What a dry run without --upgrade-command prints as the command.
DRY_UPGRADE = "<--upgrade-command> {host}"


def _check_usage(
    plan: str | None,
    dry_run: bool,
    resume: bool,
    upgrade_command: bool,
    notify_webhook: str | None,
    canary: int,
    soak_s: float,
    poll_s: float,
) -> str:
    """Options that do not go together: one clear message each. The plan's path."""
    if plan is None:
        raise UsageError("give the PLAN to execute (or --status JOURNAL)")
    if dry_run and resume:
        raise UsageError("--dry-run and --resume do not go together")
    if not upgrade_command and not dry_run:
        raise UsageError(
            "give --upgrade-command CMD (e.g. 'ansible-playbook upgrade.yml --limit {host}'): "
            "it is what upgrades each host"
        )
    if notify_webhook and urlsplit(notify_webhook).scheme not in ("http", "https"):
        # checked now, not at each event; the URL itself is not repeated (it may hold a token)
        raise UsageError("--notify-webhook must be an http:// or https:// URL")
    if canary and not dry_run and soak_s > 0 and poll_s <= 0:
        raise UsageError("--poll-interval must be positive")
    return plan


def _options(
    journal: Path, resume: bool, upgrade: str, rollback: str | None, health: str | None
) -> ExecOptions:
    """The executor's options from the command line; on --resume, an option not given again is
    the journal's (`app.execute.resume_options`)."""
    from planner.app.execute import RECORDED, RECORDED_WHEN_SET
    from planner.executor.options import ExecOptions

    ctx = click.get_current_context()
    # the options the journal records
    tun = {name: ctx.params[name] for name in (*RECORDED, *RECORDED_WHEN_SET)}
    if resume:
        tun = _resume_options(
            journal, tun, {"rollback_command": rollback, "health_command": health}
        )
    return ExecOptions(
        upgrade_command=upgrade,
        rollback_command=rollback,
        health_command=health,
        **{**tun, "max_inbound": tun["max_inbound"] or None},
    )


def _run(req: ExecuteRequest, *, quiet: bool, fmt: str) -> Execution:
    """`app.execute.execute`, with progress on stderr and the dry run's calls on stdout (or in
    the JSON); when the cloud fails, how to resume."""
    from planner.app.execute import execute
    from planner.executor.ui import Reporter

    # with --format json the calls go in the JSON (stdout holds nothing else)
    def print_call(line: str) -> None:
        if fmt != "json":
            out.print(line, markup=False, highlight=False)

    try:
        return execute(
            req, reporter=Reporter(err, quiet=quiet), print_call=print_call, note=err.print
        )
    except CloudError:
        if not req.dry_run:
            plan, journal = shlex.quote(req.plan_file), shlex.quote(str(req.journal))
            err.print(
                f"the journal {req.journal} has every step so far; when the cloud answers again: "
                f"rollwave execute {plan} --resume --journal {journal} (with the same options)"
            )
        raise


def _present(done: Execution, plan: str, journal: Path, dry_run: bool, fmt: str) -> None:
    from planner.executor.ui import status_dict, summary_table

    result = done.result
    if fmt == "json":
        data = status_dict(result.state, str(journal))
        data.update(status=result.status, reason=result.reason, final=result.final)
        if dry_run:
            data.update(dry_run=True, journal=None, calls=done.calls)
        emit_json(data)
    else:
        if not dry_run:
            out.print(summary_table(result.state))
        _print_end(result, plan, journal, dry_run)


def _resume_options(
    journal: Path, given: dict[str, Any], commands: dict[str, str | None]
) -> dict[str, Any]:
    """The options of a resumed run (`app.execute.resume_options`), and what differs said."""
    from click.core import ParameterSource

    from planner.app.execute import resume_options

    ctx = click.get_current_context()
    defaults = (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
    explicit = {n for n in given if ctx.get_parameter_source(n) not in defaults}
    got = resume_options(journal, given, explicit, commands)
    params = {p.name: p for p in ctx.command.params}
    if got.changed:
        err.print(
            "note: resuming with other options than the run had: "
            + ", ".join(
                f"{_opt(params[n], given[n])} (was {_opt(params[n], v)})" for n, v in got.changed
            )
        )
    for name in got.commands_not_given:
        err.print(
            f"[yellow]warning:[/] the run was started with {_opt(params[name], True)}; "
            "it is not given now (commands are not recorded: give it again)"
        )
    return got.values


def _opt(param: click.Parameter, value: Any) -> str:
    """How the command line spells an option with its value."""
    opts = param.opts if isinstance(param, click.Option) else [str(param.name)]
    if isinstance(param, click.Option) and param.secondary_opts:  # --replan/--no-replan
        return opts[0] if value else param.secondary_opts[0]
    if isinstance(value, bool):
        return opts[0]
    return f"{opts[0]} {value:g}" if isinstance(value, float) else f"{opts[0]} {value}"


def _print_end(result: Any, plan: str, journal: Path, dry: bool) -> None:
    from planner.executor.ui import hms

    st = result.state
    f = result.final
    for h, o in sorted(st.outcomes.items()):
        if o.status != "upgraded":
            left = "; left disabled by rollwave" if o.left_disabled else ""
            out.print(f"[yellow]not upgraded[/]: {h} ({o.reason}){left}")
    if st.forced:
        out.print(f"force-completed: {len(st.forced)} live migration(s)")
    for fb in st.fallbacks:
        then = f"cold to {fb['dst']}" if fb.get("to") == "cold" else "left on its host"
        out.print(
            f"[yellow]force fallback[/]: {st.vm_label(str(fb['vm']))}: {fb['reason']}; {then}"
        )
    for e in st.vms_in_error:
        where = f"on {e['host']}" if e.get("host") else "on no host"
        out.print(
            f"[yellow]VM in ERROR[/] (seen in wave {e.get('wave')}): {e.get('name')} "
            f"({e['vm']}) {where}" + (f": {e['fault']}" if e.get("fault") else ""),
        )
    for v in f.get("vms_not_running", []):
        out.print(
            f"[yellow]VM not running[/]: {v['name']} ({v['vm']}) {v['status']} on {v['host']}"
        )
    for p in f.get("capacity_problems", []):
        out.print(f"[red]capacity[/]: {p}")
    if st.headroom_breaches:
        out.print(f"[red]headroom was short {len(st.headroom_breaches)} time(s)[/] during the run")
    if dry:
        eta = result.final.get("model_eta_s")
        if eta is not None:
            out.print(f"the simulator's model puts this run at {hms(eta)} (--model to refine)")
        out.print(f"dry run: {result.status}; nothing was changed")
        return
    cmd = f"rollwave execute {shlex.quote(plan)} --resume --journal {shlex.quote(str(journal))}"
    if result.status == "completed":
        out.print(f"[green]done[/]: every host upgraded; journal {journal}")
    elif result.status == "incomplete":
        out.print(f"[yellow]finished[/] with {result.reason}; journal {journal}")
    else:
        disabled = sorted(st.disabled_by_us)
        if disabled:
            out.print(f"hosts disabled by rollwave: {', '.join(disabled)}")
        out.print(f"[yellow]{result.status}[/]: {result.reason}")
        out.print(f"to continue: {cmd} (with the same options)")


def _print_admission(adm: dict[str, Any] | None, most: int = 10) -> None:
    """A pipelined run's hosts in maintenance and those waiting, with why (the first `most`)."""
    if adm is None:
        return
    inside = [f"{r['host']} (wave {r['wave']})" for r in adm["in_maintenance"]]
    out.print(
        f"pipelined: {len(inside)} host(s) in maintenance"
        + (f": {', '.join(inside)}" if inside else "")
        + f"; {adm['admitted']} admitted so far; {len(adm['waiting'])} waiting",
        markup=False,
    )
    for r in adm["waiting"][:most]:
        out.print(
            f"  waiting: {r['host']} (wave {r['wave']}): {r['rule']}: {r['reason']} "
            f"(since {r['since']})",
            markup=False,
        )
    if len(adm["waiting"]) > most:
        out.print(f"  ... and {len(adm['waiting']) - most} more waiting (--format json: all)")


def _status(journal: str, fmt: str) -> int:
    from planner.executor.journal import RunState, read_records
    from planner.executor.ui import hms, status_dict, summary_table

    st = RunState.replay(read_records(journal))
    data = status_dict(st, journal)
    if fmt == "json":
        emit_json(data)
        return int(ExitCode.OK)
    out.print(
        f"journal {journal}: plan {str(data['plan_sha256'])[:12]} on cloud {data['cloud']}, "
        f"started {data['started_at']}, last record {data['last_record_at']}"
    )
    reason = data["reason"]
    if reason and reason.startswith(data["status"]):
        out.print(f"status: {reason}")  # "interrupted (Ctrl-C)", not said twice
    else:
        out.print(f"status: {data['status']}" + (f" ({reason})" if reason else ""))
    out.print(
        f"waves: {data['waves_done']} of {data['waves']} done"
        + (
            f"; current: wave {data['current_wave']} ({', '.join(data['current_hosts'])})"
            if data["current_wave"]
            else ""
        )
    )
    eta = data["eta"]
    if eta is not None:
        soak = eta["soak_left_s"]
        out.print(
            f"ETA {hms(eta['left_s'])}"
            + (f", the canary soaking: {hms(soak)} left" if soak is not None else "")
            + f" (estimated {hms(eta['left_s_then'])} at {eta['as_of']}, counted down since)"
        )
    for s in data["open_steps"]:
        what = s["label"]
        if s["op"] == "migrate" and s.get("src") and s.get("dst"):
            what += f" {s['src']} -> {s['dst']}"
        elif s.get("vm") and s.get("host"):
            what += f" on {s['host']}"
        since = f", since {s['t']}" if s.get("t") else ""
        out.print(
            f"  in flight when last written: {s['op']} {what} (wave {s.get('wave')}{since})",
            markup=False,
        )
    _print_admission(data["admission"])
    win = data["window"]
    if win is not None:
        if win["what"] == "wait":
            out.print(
                f"window: wave {win['wave']} waits for the maintenance window opening at "
                f"{win['opens']} (noted {win['t']})"
            )
        else:
            out.print(f"window: wave {win['wave']} started in a window closing at {win['closes']}")
    for f in data["forced"]:
        why = "as planned" if f["why"] == "planned" else "early: not converging"
        out.print(f"  force-completed: {f['label']} (wave {f['wave']}, {why})", markup=False)
    for f in data["fallbacks"]:
        then = f"cold to {f['dst']}" if f["to"] == "cold" else "left on its host"
        out.print(
            f"  force fallback: {f['label']} (wave {f['wave']}): {f['reason']}; {then}",
            markup=False,
        )
    for e in data["vms_in_error"]:
        where = f"on {e['host']}" if e["host"] else "on no host"
        out.print(
            f"  VM in ERROR (seen in wave {e['wave']}): {e['name']} ({e['vm']}) {where}",
            markup=False,
        )
    for h, o in data["hosts_not_upgraded"].items():
        out.print(f"  not upgraded: {h}: {o['reason']}")
    if data["disabled_by_rollwave"]:
        out.print(f"  disabled by rollwave: {', '.join(data['disabled_by_rollwave'])}")
    if data["stopped_by_rollwave"]:
        stopped = [f"{st.vm_label(vm)} on {h}" for vm, h in data["stopped_by_rollwave"].items()]
        out.print(f"  stopped by rollwave: {', '.join(stopped)}", markup=False)
    out.print(summary_table(st))
    sys.stdout.flush()
    return int(ExitCode.OK)
