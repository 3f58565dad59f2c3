"""What an operator running a plan at night sees and relies on, without a cloud: the cold-migration
confirm timeout (an option, validated, recorded, kept by --resume), notifications sent in the
background (a hanging webhook or command never holds the run up; order kept; a bounded flush at
the end), VMs named by name and short id (live progress, --status), and an ETA recomputed as the
steps of a wave finish, replaced by the outcome and the time taken at the end.

The state machine runs on the dry run's model of a cloud (as in test_executor_units.py); the
notifications go to a real local HTTP server and real shell commands."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from planner import formats
from planner.app.execute import RECORDED, SimEstimator, SolverReplanner, merge_recorded
from planner.executor.cloud import DryRunCloud, Server
from planner.executor.eta import Eta
from planner.executor.hooks import DryRunHooks, Notifier
from planner.executor.journal import DONE, INTENT, NOTE, Journal, RunState, read_records
from planner.executor.options import safe_options
from planner.executor.run import ExecOptions, Executor, RunResult
from planner.executor.states import Op
from planner.executor.ui import Reporter, status_dict
from planner.inventory import Inventory
from planner.plan import Plan
from sim.model import DEFAULT
from tests.clouds import NAMED, Fixture
from tests.test_cli import clean, rollwave

# -- helpers ----------------------------------------------------------------------------------


class Clock:
    """A clock for the dry run (which does not sleep): each reading is `step` s later."""

    def __init__(self, step: float = 1.0) -> None:
        self.t = 0.0
        self.step = step

    def __call__(self) -> float:
        self.t += self.step
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


class Spy(Reporter):
    """A real Reporter on a console in memory that also keeps what it was asked to show."""

    def __init__(self, quiet: bool = False, heartbeat_s: float = 60.0) -> None:
        self.buf = io.StringIO()
        super().__init__(Console(file=self.buf, width=160), quiet=quiet, heartbeat_s=heartbeat_s)
        self.etas: list[str] = []
        self.flights: list[list[str]] = []
        self.warnings: list[str] = []

    def set_eta(self, eta: str) -> None:
        if eta != self.eta:
            self.etas.append(eta)
        super().set_eta(eta)

    def in_flight(self, items: list[str]) -> None:
        self.flights.append(list(items))
        super().in_flight(items)

    def warn(self, text: str) -> None:
        self.warnings.append(text)
        super().warn(text)


def run_dry(
    fx: Fixture,
    *,
    cloud: DryRunCloud | None = None,
    reporter: Reporter | None = None,
    notify: Notifier | None = None,
    clock: Clock | None = None,
    inv: Inventory | None = None,
    **opts: Any,
) -> RunResult:
    lines: list[str] = []
    cloud = cloud or DryRunCloud(inv or fx.inventory, lines.append, fx.plan.policy.target_version)
    clock = clock or Clock(0.001)
    model = opts.pop("model", None)  # the ETA's, when given
    ex = Executor(
        fx.plan,
        "f" * 64,
        cloud,
        opts=ExecOptions(upgrade_command="upgrade {host}", poll_s=0.01, **opts),
        reporter=reporter or Reporter(Console(file=io.StringIO()), quiet=True),
        hooks=DryRunHooks(cloud.run_hook),
        notify=notify or Notifier(None, None, lines.append),
        replanner=SolverReplanner(),
        estimator=SimEstimator(model) if model is not None else None,
        journal_path=None,
        clock=clock,
        sleep=clock.sleep,
    )
    return ex.run()


def named(inv: Inventory) -> Inventory:
    """Every VM gets a name of its own: vm-1a is web-1a."""
    return replace(inv, vms=tuple(replace(v, name=v.id.replace("vm-", "web-")) for v in inv.vms))


# -- 1. the confirm timeout -------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["0", "-5", "nan", "inf", "soon"])
def test_confirm_timeout_must_be_a_positive_number_of_seconds(tmp_path: Path, bad: str) -> None:
    plan = tmp_path / "plan.json"
    formats.save_plan(NAMED["three_plus_spare"]().plan, plan)
    r = clean(rollwave("execute", plan, "--upgrade-command", "u {host}", "--confirm-timeout", bad))
    assert r.code == 2 and "--confirm-timeout" in r.err, r
    assert not (tmp_path / "plan.journal.jsonl").exists()


class SlowConfirm(DryRunCloud):
    """The dry run's cloud, except that Nova takes `delay` s (on the executor's clock) to finish
    confirming the cold migration of `vm`: it stays VERIFY_RESIZE until then (None: forever)."""

    def __init__(self, fx: Fixture, clock: Clock, delay: float | None, vm: str) -> None:
        self.lines: list[str] = []
        super().__init__(fx.inventory, self.lines.append, fx.plan.policy.target_version)
        self.clock = clock
        self.delay = delay
        self.vm = vm
        self.confirmed: dict[str, float] = {}

    def confirm_resize(self, vm: str) -> None:
        if vm != self.vm:
            return super().confirm_resize(vm)
        self._say(f"POST compute /servers/{vm}/action confirmResize")
        self.confirmed[vm] = self.clock.t
        return None

    def server(self, vm: str) -> Server | None:
        s = self.servers.get(vm)
        t = self.confirmed.get(vm)
        late = t is not None and self.delay is not None and self.clock.t - t >= self.delay
        if s is not None and late and s.status == "VERIFY_RESIZE":
            s.status = "SHUTOFF" if s.before_resize == "SHUTOFF" else "ACTIVE"
        return super().server(vm)


def test_a_resize_confirmed_within_the_timeout_completes() -> None:
    fx = NAMED["mixed_methods"]()
    clock = Clock(1.0)
    cloud = SlowConfirm(fx, clock, delay=20, vm="coldonly")
    res = run_dry(fx, cloud=cloud, clock=clock, confirm_timeout_s=60)
    assert res.status == "completed", res.reason
    assert set(cloud.confirmed) == {"coldonly"}
    assert sum("confirmResize" in ln for ln in cloud.lines) == 2  # confirmed once each


def test_a_resize_not_confirmed_within_the_timeout_fails_without_a_retry() -> None:
    fx = NAMED["mixed_methods"]()
    clock = Clock(1.0)
    cloud = SlowConfirm(fx, clock, delay=None, vm="coldonly")
    res = run_dry(fx, cloud=cloud, clock=clock, confirm_timeout_s=30, retries=2)
    assert res.status == "incomplete"
    st = res.state
    assert "cmp-1" in st.excluded and st.outcomes["cmp-1"].status == "not-upgraded"
    why = st.skipped["coldonly"]
    assert "VERIFY_RESIZE on cmp-2" in why and "--confirm-timeout 30 s" in why, why
    # not retried (Nova would refuse a migration of a VM whose resize is open), not sent again
    assert st.attempts[(2, "coldonly")] == 1
    assert sum('{"migrate"' in ln and "coldonly" in ln for ln in cloud.lines) == 1
    assert st.counts()["migrations_failed"] == 1 and ("coldonly" not in st.moved)
    assert res.final["vms_not_running"] == [
        {"vm": "coldonly", "name": "coldonly", "status": "VERIFY_RESIZE", "host": "cmp-2"}
    ]


def test_the_journal_records_the_confirm_timeout_and_resume_keeps_it() -> None:
    opts = safe_options(ExecOptions(confirm_timeout_s=120.0, max_inbound=None))
    assert opts["confirm_timeout_s"] == 120.0
    assert set(RECORDED) <= set(opts)  # every option --resume restores is recorded
    assert not any(isinstance(v, str) and " " in v for v in opts.values())  # no commands
    st = RunState.replay(
        [
            {"ev": "header", "options": opts},
            {"ev": NOTE, "op": "run", "what": "start"},
            {"ev": NOTE, "op": "run", "what": "resume", "options": {**opts, "max_parallel": 8}},
        ]
    )
    assert st.options["confirm_timeout_s"] == 120.0 and st.options["max_parallel"] == 8
    given = {"confirm_timeout_s": 300.0, "max_parallel": 4, "max_inbound": 2, "retries": 5}
    # not given again: the recorded value; given again: the command line's, reported as changed
    got, changed = merge_recorded(st.options, given, explicit={"retries"})
    assert got == {"confirm_timeout_s": 120.0, "max_parallel": 8, "max_inbound": 0, "retries": 5}
    assert changed == [("retries", 2)]
    got, changed = merge_recorded({}, given, explicit=set())  # an older journal: as given
    assert got == given and changed == []


def test_cli_resume_says_which_options_differ_from_the_run(tmp_path: Path) -> None:
    fx = NAMED["three_plus_spare"]()
    plan = tmp_path / "plan.json"
    formats.save_plan(fx.plan, plan)
    j = Journal(tmp_path / "plan.journal.jsonl")
    head = safe_options(ExecOptions(rollback_command="rb {host}", confirm_timeout_s=90.0))
    j.write({"ev": "header", "format_version": "1.0", "kind": "rollwave-journal", "options": head})
    j.close()
    r = clean(
        rollwave(
            "execute",
            plan,
            "--resume",
            "--upgrade-command",
            "u {host}",
            "--max-parallel",
            "8",
            "--os-cloud",
            "rollwave-no-such-cloud",
        )
    )
    assert "--max-parallel 8 (was --max-parallel 4)" in r.err, r
    assert "confirm" not in r.err  # kept from the journal, nothing to say
    assert "started with --rollback-command" in r.err, r
    assert r.code != 0  # no such cloud: the run itself cannot start


# -- 2. notifications in the background -------------------------------------------------------


class Hook(BaseHTTPRequestHandler):
    """Records each POSTed event as it arrives, then takes `hang` s to answer."""

    got: list[dict[str, Any]]
    hang: float

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.got.append(json.loads(body))
        time.sleep(self.hang)
        try:
            self.send_response(200)
            self.end_headers()
        except OSError:
            pass  # the client gave up

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(hang: float) -> tuple[str, list[dict[str, Any]]]:
        got: list[dict[str, Any]] = []
        handler = type("H", (Hook,), {"got": got, "hang": hang})
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        srv.daemon_threads = True
        srv.block_on_close = False
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/hook", got

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _events(path: Path) -> list[str]:
    return [json.loads(ln)["event"] for ln in path.read_text().splitlines() if ln.strip()]


def test_a_hanging_webhook_does_not_hold_the_run_up(webhook: Any, tmp_path: Path) -> None:
    url, got = webhook(5.0)  # 5 s before each answer
    log = tmp_path / "events"
    spy = Spy(quiet=True)
    notify = Notifier(f"cat >> {log}; echo >> {log}", url, spy.warn)  # the default flush: 5 s
    t0 = time.monotonic()
    res = run_dry(NAMED["three_plus_spare"](), notify=notify, reporter=spy)
    took = time.monotonic() - t0
    assert res.status == "completed"
    sent = _events(log)  # the command is quick: everything, in order, not slowed by the webhook
    assert sent[0] == "run_start" and sent[-1] == "run_end" and len(sent) >= 10
    assert sent.count("wave_start") == sent.count("wave_end") == 4
    # 10 events at 5 s each would take 50 s in line; in the background, the run ends after at
    # most the 5 s flush
    assert took < 20, took
    # what the webhook got, it got in order: the first events
    assert 1 <= len(got) < len(sent) and [g["event"] for g in got] == sent[: len(got)]
    late = [w for w in spy.warnings if "not delivered by the notify webhook" in w]
    assert len(late) == 1 and "run_end" in late[0], spy.warnings


def test_a_slow_webhook_gets_every_event_in_order(webhook: Any, tmp_path: Path) -> None:
    url, got = webhook(0.2)
    spy = Spy(quiet=True)
    notify = Notifier(None, url, spy.warn, flush_s=60)
    res = run_dry(NAMED["three_plus_spare"](), notify=notify, reporter=spy)
    assert res.status == "completed"
    names = [g["event"] for g in got]
    assert names[0] == "run_start" and names[-1] == "run_end" and len(names) >= 10
    waves = [g["wave"] for g in got if g["event"] in ("wave_start", "wave_end")]
    assert waves == [1, 1, 2, 2, 3, 3, 4, 4]
    times = [g["t"] for g in got]
    assert times == sorted(times)  # each stamped when it happened
    assert spy.warnings == []


def test_a_hanging_notify_command_is_given_up_and_stopped_at_the_end(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    spy = Spy(quiet=True)
    notify = Notifier(f"echo $$ >> {pids}; exec sleep 5", None, spy.warn, flush_s=1)
    t0 = time.monotonic()
    res = run_dry(NAMED["three_plus_spare"](), notify=notify, reporter=spy)
    assert res.status == "completed" and time.monotonic() - t0 < 10
    late = [w for w in spy.warnings if "not delivered by the notify command" in w]
    assert len(late) == 1 and "run_end" in late[0], spy.warnings
    assert not any("exited" in w for w in spy.warnings)  # given up: no second warning
    pid = int(pids.read_text().split()[0])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # SIGTERM'd: nothing left running behind the run
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the notify command {pid} still runs after the run ended")


def test_a_full_notification_queue_drops_with_one_warning(tmp_path: Path) -> None:
    warnings: list[str] = []
    n = Notifier("sleep 2", None, warnings.append, queue_size=2, flush_s=0.2)
    for i in range(10):
        n("wave_start", wave=i + 1)
    assert len(warnings) == 1 and "dropping" in warnings[0]
    lost = n.close()["notify command"]
    # (one being sent), two waiting, the rest dropped: each of the ten is reported once
    waves = [int(x.split("wave ")[1].rstrip(")")) for x in lost]
    assert sorted(waves) == list(range(1, 11))
    dropped = next(w for w in warnings if "were dropped" in w)
    n_dropped = int(dropped.split()[0])
    assert n_dropped in (7, 8), warnings
    # the events dropped are the last ones; those not sent in time are the first ones, in order
    assert waves[:n_dropped] == list(range(11 - n_dropped, 11))
    assert waves[n_dropped:] == list(range(1, 11 - n_dropped))


# -- 3. VMs by name and short id --------------------------------------------------------------


class SlowLive(DryRunCloud):
    """The dry run's cloud, except that a live migration is still MIGRATING at its first poll."""

    def __init__(self, inv: Inventory, target: str | None) -> None:
        super().__init__(inv, lambda line: None, target)
        self.moving: set[str] = set()

    def live_migrate(self, vm: str, host: str) -> None:
        super().live_migrate(vm, host)
        self.moving.add(vm)

    def server(self, vm: str) -> Server | None:
        srv = super().server(vm)
        if srv is not None and vm in self.moving:
            self.moving.discard(vm)
            return replace(srv, status="MIGRATING", task_state="migrating")
        return srv


def test_vms_in_flight_are_shown_by_name_and_short_id() -> None:
    fx = NAMED["three_plus_spare"]()
    spy = Spy(heartbeat_s=0)  # a status line at every poll (stderr is not a terminal here)
    cloud = SlowLive(named(fx.inventory), fx.plan.policy.target_version)
    res = run_dry(fx, cloud=cloud, reporter=spy, model=DEFAULT)
    assert res.status == "completed"
    shown = [item for items in spy.flights for item in items]
    assert "web-1a (vm-1a) -> cmp-4" in shown, shown
    beats = [ln for ln in spy.buf.getvalue().splitlines() if ln.startswith("progress:")]
    assert any(
        "overall" in b
        and "wave 2/4" in b
        and "in flight: web-1a (vm-1a) -> cmp-4" in b
        and "ETA" in b
        for b in beats
    ), beats
    assert res.state.vm_names["vm-2b"] == "web-2b"  # the journal's records carry the names


def test_status_names_the_vms_in_flight(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    j = Journal(p)
    j.write({"ev": "header", "format_version": "1.0", "kind": "rollwave-journal"})
    vm = "3f2a9c1e-0000-4000-8000-00000000abcd"
    j.write(
        {
            "ev": INTENT,
            "op": "migrate",
            "step": f"w1/migrate/{vm}/1",
            "wave": 1,
            "vm": vm,
            "name": "db-7",
            "src": "cmp-1",
            "dst": "cmp-9",
        }
    )
    old = "0b1c2d3e-0000-4000-8000-00000000ffff"  # a journal from before names were recorded
    j.write({"ev": INTENT, "op": "migrate", "step": f"w1/migrate/{old}/1", "wave": 1, "vm": old})
    j.write({"ev": INTENT, "op": "upgrade", "step": "w1/upgrade/cmp-2", "wave": 1, "host": "cmp-2"})
    j.close()
    d = status_dict(RunState.replay(read_records(p)), str(p))
    assert [(s["name"], s["label"]) for s in d["open_steps"]] == [
        ("db-7", "db-7 (3f2a9c1e)"),
        (None, old),
        (None, "cmp-2"),
    ]
    r = clean(rollwave("execute", "--status", p))
    assert r.code == 0, r
    assert "in flight when last written: migrate db-7 (3f2a9c1e) cmp-1 -> cmp-9 (wave 1" in r.out
    assert f"migrate {old} (wave 1" in r.out and "upgrade cmp-2 (wave 1" in r.out, r.out


# -- 4. the ETA -------------------------------------------------------------------------------


def _eta_for(fx: Fixture, first: int) -> tuple[Eta, Plan]:
    from planner.executor import view as views

    rem = views.remaining_plan(
        list(fx.plan.waves), first, fx.policy, terminal=set(), done_moves=set(), skipped=set()
    )
    eta = Eta(SimEstimator(DEFAULT))
    assert eta.estimate(fx.inventory, rem, first, now=100.0) is not None
    return eta, rem


def test_eta_follows_the_steps_of_the_wave_under_way() -> None:
    eta, _ = _eta_for(NAMED["three_plus_spare"](), 2)
    assert eta.wave == 2 and len(eta.order) == 3  # two migrations and the host
    total = eta.wave_s + eta.later_s
    start = eta.left(100.0)
    assert start is not None and start[0] == pytest.approx(total)
    # this cloud runs twice as slow as the model: each step ends at twice its model time
    seen = []
    for i, (key, (mark, _)) in enumerate(zip(eta.order, eta.curve[1:], strict=True)):
        now = 100.0 + 2 * mark
        eta.step_done(now, key)
        got = eta.left(now)
        assert got is not None
        real, model, pace = got
        assert pace == pytest.approx(2.0) and model == pytest.approx(
            eta.wave_s - mark + eta.later_s
        )
        assert real == pytest.approx(2 * model)
        seen.append(eta.text(now))
        if i == 0:  # between two steps, the time passing counts down the rest of the wave
            later = eta.left(now + 10)
            assert later is not None and later[0] == pytest.approx(real - 10)
    assert len(set(seen)) == len(seen)  # a new ETA at each step, not only at the wave's end
    eta.wave_done(2, 2 * eta.wave_s)
    assert eta.pace == pytest.approx(2.0, rel=0.05) and eta.wave is None


def test_eta_before_any_step_is_the_model_scaled_by_the_run_pace() -> None:
    eta, _ = _eta_for(NAMED["three_plus_spare"](), 2)
    eta.actual[1], eta.predicted[1] = 300.0, 100.0  # wave 1 took 3x the model
    got = eta.left(100.0)
    assert got is not None and got[0] == pytest.approx(3 * (eta.wave_s + eta.later_s))


def test_the_executor_updates_the_eta_within_a_wave_and_ends_with_the_time_taken() -> None:
    fx = NAMED["three_plus_spare"]()
    spy = Spy()
    res = run_dry(fx, reporter=spy, clock=Clock(0.5), model=DEFAULT)
    assert res.status == "completed"
    # waves 2-4 have three steps each: an ETA after each, besides the one at each wave start
    assert len(spy.etas) >= 10, spy.etas
    final = spy.buf.getvalue().strip().splitlines()
    overall = next(ln for ln in reversed(final) if ln.startswith("overall"))
    assert "done in" in overall and "ETA" not in overall, overall
    assert "10/10" in overall


def test_a_stopped_run_shows_how_long_it_ran_not_an_eta() -> None:
    fx = NAMED["three_plus_spare"]()
    from tests.test_executor_units import _drifted

    spy = Spy()
    live = _drifted(fx)
    res = run_dry(fx, reporter=spy, inv=live, replan=False, model=DEFAULT)
    assert res.status == "stopped"
    overall = next(
        ln for ln in reversed(spy.buf.getvalue().splitlines()) if ln.startswith("overall")
    )
    assert "stopped after" in overall and "ETA" not in overall, overall


def test_done_records_carry_no_name_intents_do() -> None:
    fx = NAMED["three_plus_spare"]()
    recs: list[dict[str, Any]] = []
    lines: list[str] = []
    cloud = DryRunCloud(named(fx.inventory), lines.append, fx.plan.policy.target_version)
    ex = Executor(
        fx.plan,
        "f" * 64,
        cloud,
        opts=ExecOptions(upgrade_command="u {host}", poll_s=0.01),
        reporter=Reporter(Console(file=io.StringIO()), quiet=True),
        hooks=DryRunHooks(cloud.run_hook),
        notify=Notifier(None, None, lines.append),
        replanner=SolverReplanner(),
        journal_path=None,
    )
    apply = ex.state.apply

    def keep(rec: Any) -> None:
        recs.append(dict(rec))
        apply(rec)

    ex.state.apply = keep  # type: ignore[method-assign]
    assert ex.run().status == "completed"
    intents = [r for r in recs if r["op"] == "migrate" and r["ev"] == INTENT]
    assert intents and all(r["name"] == r["vm"].replace("vm-", "web-") for r in intents)
    assert not any("name" in r for r in recs if r["ev"] == DONE)


def test_a_line_with_brackets_from_a_command_or_a_name_is_printed_as_it_is() -> None:
    spy = Spy()
    spy.warn("cmp-1: the upgrade command exited 2; last output: fatal: [cmp-1] [/etc] missing")
    spy.line("  db[/1] (3f2a9c1e): cmp-1 -> cmp-2 (live) ...")
    text = spy.buf.getvalue()
    assert "[cmp-1] [/etc] missing" in text and "db[/1] (3f2a9c1e)" in text


def test_resume_waits_for_an_unconfirmed_resize_at_most_the_confirm_timeout() -> None:
    """A run killed while Nova confirmed a cold migration: the resume confirms it once, waits
    at most --confirm-timeout for it, then judges it as it is (not for hours)."""
    fx = NAMED["mixed_methods"]()
    clock = Clock(1.0)
    cloud = SlowConfirm(fx, clock, delay=None, vm="coldonly")
    cloud.cold_migrate("coldonly", "cmp-2")  # the cut step's call, before the kill
    ex = Executor(
        fx.plan,
        "f" * 64,
        cloud,
        opts=ExecOptions(upgrade_command="u {host}", poll_s=0.01, confirm_timeout_s=40),
        reporter=Reporter(Console(file=io.StringIO()), quiet=True),
        hooks=DryRunHooks(cloud.run_hook),
        notify=Notifier(None, None, print),
        replanner=SolverReplanner(),
        journal_path=None,
        clock=clock,
        sleep=clock.sleep,
    )
    step = "w2/migrate/coldonly/1"
    ex.ctx.log(INTENT, Op.MIGRATE, step=step, wave=2, vm="coldonly", src="cmp-1", dst="cmp-2")
    t0 = clock.t
    ex.drift.reconcile()
    assert step not in ex.state.open_steps and (2, "coldonly") not in ex.state.done_moves
    assert 40 <= clock.t - t0 < 60  # gave up after the timeout, counted from the confirm
    assert sum("confirmResize" in ln for ln in cloud.lines) == 1
