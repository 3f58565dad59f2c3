"""What the operator sees: progress bars per wave and overall (stderr), one status line per VM
and host step, warnings, and the final summary table (stdout)."""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

from rich import box
from rich.console import Console
from rich.errors import MarkupError
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from planner.executor.journal import (
    HOST_FAILED,
    HOST_NOT_UPGRADED,
    HOST_UPGRADED,
    RunState,
    journal_in_use,
    parse_iso,
)


def hms(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "-"
    s = round(max(seconds, 0.0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Reporter:
    """Progress on `console` (stderr). `quiet`: warnings and errors only."""

    def __init__(self, console: Console, *, quiet: bool = False, heartbeat_s: float = 60.0) -> None:
        self.console = console
        self.quiet = quiet
        self.progress: Progress | None = None
        self._overall: TaskID | None = None
        self._wave: TaskID | None = None
        self.eta: str = ""
        self._flight = ""
        self._label = ""  # the current bar's
        self._work = ""  # how much of the wave's work is done, "37%"
        # Without a terminal (stderr to a log file) the bars are drawn only at the end: a
        # status line this often says where the run is instead.
        self.heartbeat_s = heartbeat_s
        self._last_beat = time.monotonic()

    # -- bars ---------------------------------------------------------------------------------
    def start(self, total_steps: int, done_steps: int) -> None:
        if self.quiet:
            return
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[note]}"),
            console=self.console,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.progress.start()
        self._overall = self.progress.add_task(
            "overall", total=max(total_steps, 1), completed=done_steps, note=""
        )

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def set_total(self, total_steps: int, done_steps: int) -> None:
        if self.progress is not None and self._overall is not None:
            self.progress.update(self._overall, total=max(total_steps, 1), completed=done_steps)

    def wave_start(self, label: str, steps: int, done: int, eta: str = "") -> None:
        """A new bar for a wave (or the canary, a rollback) under the overall one."""
        if eta:
            self.eta = eta
        if self.progress is not None:
            if self._wave is not None:
                self.progress.remove_task(self._wave)
            self._wave = self.progress.add_task(label, total=max(steps, 1), completed=done, note="")
            if self._overall is not None and eta:
                self.progress.update(self._overall, note=eta)
        self._flight = ""
        self._label, self._work = label, ""

    def set_work(self, fraction: float | None) -> None:
        """How much of the wave's work (in the model's terms: a big VM weighs more than a small
        one) is behind it; the bar's step count alone would say a wave with its small VMs moved
        is nearly done."""
        work = "" if fraction is None else f"{math.floor(100 * min(max(fraction, 0.0), 1.0))}%"
        if work == self._work:
            return
        self._work = work
        if self.progress is not None and self._wave is not None:
            label = f"{self._label} ({work} of its work)" if work else self._label
            self.progress.update(self._wave, description=label)

    def set_eta(self, eta: str) -> None:
        """The overall bar's ETA, recomputed as the run goes."""
        if eta == self.eta:
            return
        self.eta = eta
        if self.progress is not None and self._overall is not None:
            self.progress.update(self._overall, note=eta)

    def in_flight(self, items: list[str]) -> None:
        """What is under way now, on the current bar: VMs by name and short id, hosts."""
        text = ", ".join(items[:3]) + (f" +{len(items) - 3} more" if len(items) > 3 else "")
        self._note(f"in flight: {text}" if text else "")

    def soaking(self, left_s: float | None) -> None:
        """The canary soaks: the current bar says so and how long is left (None: over)."""
        self._note("" if left_s is None else f"soaking: {hms(left_s)} left")

    def _note(self, text: str) -> None:
        """What the current bar is doing now, also in the status line without a terminal."""
        if text != self._flight:
            self._flight = text
            if self.progress is not None and self._wave is not None:
                self.progress.update(self._wave, note=escape(text))
        self._heartbeat()

    def _heartbeat(self) -> None:
        if self.progress is None or self.console.is_terminal:
            return
        now = time.monotonic()
        if now - self._last_beat < self.heartbeat_s:
            return
        self._last_beat = now
        parts = []
        for task in self.progress.tasks:
            if task.id == self._overall:
                parts.append(f"{task.description} {task.completed:.0f}/{task.total:.0f}")
            elif task.id == self._wave:
                work = f" ({self._work} of its work)" if self._work else ""
                parts.append(f"{self._label} {task.completed:.0f}/{task.total:.0f}{work}")
        parts += [x for x in (self._flight, self.eta) if x]
        self._print(escape("progress: " + "; ".join(parts)))

    def finish(self, text: str, *, complete: bool) -> None:
        """The end of the run: the overall bar says so (not a stale ETA); a completed run's
        bars are full."""
        if self.progress is None:
            return
        for task in self.progress.tasks:
            if task.id not in (self._overall, self._wave):
                continue
            done = task.total if complete else None
            self.progress.update(
                task.id, note=text if task.id == self._overall else "", completed=done
            )

    def advance(self, n: int = 1, *, overall: bool = True) -> None:
        if self.progress is None:
            return
        for t in (self._wave, self._overall if overall else None):
            if t is not None:
                self.progress.advance(t, n)

    # -- lines --------------------------------------------------------------------------------
    def line(self, text: str) -> None:
        if not self.quiet:
            self._print(text)

    def warn(self, text: str) -> None:
        self._print(f"[yellow]warning:[/] {text}")

    def error(self, text: str) -> None:
        self._print(f"[red]error:[/] {text}")

    def _print(self, text: str) -> None:
        console = self.progress.console if self.progress is not None else self.console
        try:
            console.print(text, markup=True, highlight=False)
        except MarkupError:  # a VM name or a command's output with "[/...]" in it: as it is
            console.print(text, markup=False, highlight=False)


def summary_table(state: RunState, wave_names: dict[int, int] | None = None) -> Table:
    """Per wave: hosts upgraded / not, migrations done, retried, re-planned, failed, time."""
    t = Table(
        title="execution summary",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0),
    )
    for col in (
        "wave",
        "hosts",
        "upgraded",
        "not",
        "migrated",
        "retried",
        "re-planned",
        "failed",
        "time",
    ):
        t.add_column(col, justify="right" if col != "wave" else "left", no_wrap=True)
    per = state.per_wave
    secs = state.wave_seconds()
    totals = [0] * 7
    for k in sorted(state.started):
        w = state.schedule[k - 1] if k <= len(state.schedule) else None
        c: Counter[str] = per.get(k, Counter())
        hosts = len(w.hosts) if w else 0
        up = sum(1 for o in state.outcomes.values() if o.wave == k and o.status == HOST_UPGRADED)
        notup = sum(
            1
            for o in state.outcomes.values()
            if o.wave == k and o.status in (HOST_NOT_UPGRADED, HOST_FAILED)
        )
        row = [
            hosts,
            up,
            notup,
            c.get("done", 0),
            c.get("retried", 0),
            c.get("replanned", 0),
            c.get("failed", 0),
        ]
        totals = [a + b for a, b in zip(totals, row, strict=True)]
        status = "" if k in state.ended else " (open)"
        t.add_row(f"{k}{status}", *map(str, row), hms(secs.get(k)))
    t.add_row("total", *map(str, totals), hms(sum(secs.values())), style="bold")
    return t


def eta_status(state: RunState, now: float) -> dict[str, Any] | None:
    """The running run's ETA at wall time `now` (epoch s): its last ETA record counted down
    since it was written (the run writes one at each wave's start and end, at the soak's start
    and end, and whenever the ETA moves away from that countdown)."""
    rec = state.eta
    if rec is None or not rec.get("t") or rec.get("left_s") is None:
        return None
    since = max(now - parse_iso(str(rec["t"])), 0.0)
    out: dict[str, Any] = {
        "left_s": round(max(float(rec["left_s"]) - since, 0.0), 1),
        "as_of": rec["t"],
        "left_s_then": rec["left_s"],
        "model_s": rec.get("model_s"),
        "pace": rec.get("pace"),
        "wave": rec.get("wave"),
        "soak_left_s": None,
    }
    if rec.get("soak_left_s") is not None:
        out["soak_left_s"] = round(max(float(rec["soak_left_s"]) - since, 0.0), 1)
    return out


_WINDOW_FIELDS = ("what", "wave", "opens", "closes", "expected", "t")


def admission_status(state: RunState) -> dict[str, Any]:
    """A pipelined run's hosts: in maintenance (admitted, no outcome yet), how many were admitted
    in all, and those waiting with the reason admission last gave (in the plan's order)."""
    order = {h: i for i, h in enumerate(h for w in state.schedule for h in w.hosts)}
    recs = sorted(state.admission.values(), key=lambda r: order.get(str(r["host"]), 1 << 30))
    pending = [r for r in recs if str(r["host"]) not in state.outcomes]
    return {
        "in_maintenance": [
            {"host": r["host"], "wave": r.get("wave"), "since": r.get("t")}
            for r in pending
            if r.get("admitted")
        ],
        "admitted": sum(1 for r in recs if r.get("admitted")),
        "waiting": [
            {k_: r.get(k_) for k_ in ("host", "wave", "rule", "reason", "until")}
            | {"since": r.get("t")}
            for r in pending
            if not r.get("admitted")
        ],
    }


def status_dict(state: RunState, journal: str, now: float | None = None) -> dict[str, Any]:
    """Where a run stands, from its journal alone (`execute --status`); `now`: the wall time
    (epoch s) at which to count the running run's ETA down."""
    h = state.header
    k = state.next_wave()
    last_run = state.runs[-1] if state.runs else {}
    eta: dict[str, Any] | None = None  # only a running run has one
    if state.finished:
        status = str(last_run.get("status", "completed"))
    elif last_run.get("what") == "stop":
        status = str(last_run.get("status", "stopped"))
    elif journal_in_use(journal):
        status = f"running (pid {last_run.get('pid', '?')})"
        eta = eta_status(state, time.time() if now is None else now)
    else:
        status = "killed: no end record and no rollwave holds the journal (--resume continues it)"
    open_steps = [
        {
            **{k_: r.get(k_) for k_ in ("step", "op", "wave", "host", "vm", "src", "dst", "t")},
            "name": state.vm_names.get(r["vm"]) if r.get("vm") else None,
            "label": state.vm_label(r["vm"]) if r.get("vm") else r.get("host"),
        }
        for r in state.iter_open()
        if r.get("op") != "wave"
    ]
    return {
        "journal": journal,
        "plan_sha256": h.get("plan_sha256"),
        "plan_file": h.get("plan_file"),
        "cloud": h.get("cloud"),
        "rollwave": h.get("rollwave"),
        "started_at": h.get("t"),
        "last_record_at": state.last_t,
        "status": status,
        "reason": last_run.get("reason"),
        "waves": len(state.schedule),
        "waves_done": len(state.ended),
        "current_wave": k if k <= len(state.schedule) else None,
        "current_hosts": list(state.schedule[k - 1].hosts) if k <= len(state.schedule) else [],
        "counts": state.counts(),
        "open_steps": open_steps,
        "hosts_not_upgraded": {
            host: {"status": o.status, "reason": o.reason, "wave": o.wave}
            for host, o in sorted(state.outcomes.items())
            if o.status != HOST_UPGRADED
        },
        "disabled_by_rollwave": sorted(state.disabled_by_us),
        "stopped_by_rollwave": dict(sorted(state.stopped_by_us.items())),
        "replans": [{"wave": r.get("wave"), "reason": r.get("reason")} for r in state.replans],
        "canary": None
        if state.canary is None
        else {k_: state.canary.get(k_) for k_ in ("ev", "hosts", "vms", "reason")},
        "headroom_breaches": len(state.headroom_breaches),
        "forced": [
            {k_: r.get(k_) for k_ in ("wave", "vm", "migration", "why", "t")}
            | {"label": state.vm_label(str(r["vm"]))}
            for r in state.forced.values()
        ],
        "fallbacks": [
            {k_: r.get(k_) for k_ in ("wave", "vm", "src", "dst", "to", "reason", "t")}
            | {"label": state.vm_label(str(r["vm"]))}
            for r in state.fallbacks
        ],
        "vms_in_error": [
            {k_: r.get(k_) for k_ in ("wave", "vm", "name", "host", "fault", "t")}
            for r in state.vms_in_error
        ],
        "window": None
        if state.window is None
        else {k_: state.window.get(k_) for k_ in _WINDOW_FIELDS},
        "execution": "pipelined" if state.pipelined else "lockstep",
        "admission": admission_status(state) if state.pipelined else None,
        "eta": eta,
        "wave_seconds": {str(k_): round(v, 1) for k_, v in sorted(state.wave_seconds().items())},
    }


def clock() -> float:
    return time.monotonic()
