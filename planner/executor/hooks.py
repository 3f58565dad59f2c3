"""Commands the executor runs for the operator (upgrade, rollback, health) and notifications.

A command is a shell command line with placeholders: `{host}` (shell-quoted), `{wave}`,
`{plan}` (the plan's sha256, first 12 digits) and `{version}` (the target version). Other
braces are left alone (awk and jq programs keep theirs). Each runs in a session of its own, so
that the operator's Ctrl-C reaches rollwave only (it decides what to do with the command), with
its output appended to a log file per host and kind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from planner.executor.journal import now_iso


def expand(template: str, *, host: str, wave: int, plan: str, version: str | None) -> str:
    out = template.replace("{host}", shlex.quote(host))
    out = out.replace("{wave}", str(wave)).replace("{plan}", plan[:12])
    return out.replace("{version}", shlex.quote(version or ""))


class Running(Protocol):
    command: str
    log: Path | None
    started: float

    def poll(self) -> int | None: ...
    def kill(self) -> None: ...


@dataclass
class _Proc:
    command: str
    log: Path | None
    started: float
    proc: subprocess.Popen[bytes]

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        """SIGTERM to the command's whole process group, SIGKILL 10 s later."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@dataclass
class _Done:
    """A command that is not run (the dry run): it has already succeeded."""

    command: str
    log: Path | None = None
    started: float = field(default_factory=time.monotonic)

    def poll(self) -> int | None:
        return 0

    def kill(self) -> None:
        return None


class Hooks:
    """Starts commands; `log_dir` receives `<host>.<kind>.log` files."""

    def __init__(self, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.env = dict(env or {})

    def log_path(self, kind: str, host: str) -> Path | None:
        return self.log_dir / f"{_safe(host)}.{kind}.log"

    def start(
        self, kind: str, host: str, command: str, *, wave: int, plan: str, version: str | None
    ) -> Running:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{_safe(host)}.{kind}.log"
        with open(log, "ab") as f:
            f.write(f"# {now_iso()} rollwave {kind} hook, wave {wave}: {command}\n".encode())
            f.flush()
            env = dict(
                os.environ,
                **self.env,
                ROLLWAVE_HOST=host,
                ROLLWAVE_WAVE=str(wave),
                ROLLWAVE_PLAN=plan,
                ROLLWAVE_STEP=kind,
                ROLLWAVE_TARGET_VERSION=version or "",
            )
            proc = subprocess.Popen(
                command,
                shell=True,
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return _Proc(command, log, time.monotonic(), proc)


class DryRunHooks:
    """Prints the command through the dry-run cloud; it never runs."""

    def __init__(self, run_hook: Callable[[str, str, str], None]) -> None:
        self.run_hook = run_hook

    def log_path(self, kind: str, host: str) -> Path | None:
        return None

    def start(
        self, kind: str, host: str, command: str, *, wave: int, plan: str, version: str | None
    ) -> Running:
        self.run_hook(kind, host, command)
        return _Done(command)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"


def tail(path: Path | None, lines: int = 5) -> str:
    if path is None:
        return ""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    body = [t for t in text if not t.startswith("# ")]
    return "\n".join(body[-lines:])


# ---------------------------------------------------------------------------------------------
# Notifications
# ---------------------------------------------------------------------------------------------
EVENTS = (
    "run_start",
    "run_end",
    "run_stopped",
    "wave_start",
    "wave_end",
    "drift",
    "replan",
    "migration_failed",
    "host_failed",
    "canary",
)


# Events waiting per channel before new ones are dropped (a webhook down for the whole run).
NOTIFY_QUEUE = 1000
# How long the end of a run waits for the notifications still queued.
NOTIFY_FLUSH_S = 5.0


class NotifyFailed(Exception):
    """A notification that could not be delivered: the message says which and why."""


@dataclass(frozen=True)
class _Event:
    name: str
    body: bytes
    fields: Mapping[str, Any]

    @property
    def label(self) -> str:
        wave = self.fields.get("wave")
        host = self.fields.get("host")
        where = ", ".join(x for x in (f"wave {wave}" if wave else "", str(host or "")) if x)
        return f"{self.name} ({where})" if where else self.name


class _Channel:
    """One destination (the command or the webhook), fed in order by a worker thread of its
    own, so that a slow destination delays neither the run nor the other destination."""

    def __init__(
        self,
        name: str,
        send: Callable[[_Event], None],
        warn: Callable[[str], None],
        maxsize: int,
    ) -> None:
        self.name = name
        self.send = send
        self.warn = warn
        self.maxsize = maxsize
        self.cv = threading.Condition()
        self.queue: deque[_Event] = deque()
        self.busy: _Event | None = None
        self.closed = False
        self.abandoned = False  # the run ended without it: no more warnings from it
        self.dropped: list[str] = []
        self.delivered = 0
        self.thread = threading.Thread(target=self._work, name=f"rollwave-{name}", daemon=True)
        self.thread.start()

    def put(self, ev: _Event) -> None:
        with self.cv:
            if self.closed:
                return
            if len(self.queue) < self.maxsize:
                self.queue.append(ev)
                self.cv.notify_all()
                return
            self.dropped.append(ev.label)
            first = len(self.dropped) == 1
        if first:
            self.warn(
                f"the {self.name} is not keeping up ({self.maxsize} notifications waiting): "
                f"dropping new ones until it does, starting with {ev.label}"
            )

    def _work(self) -> None:
        while True:
            with self.cv:
                while not self.queue and not self.closed:
                    self.cv.wait()
                if not self.queue:
                    return
                ev = self.busy = self.queue.popleft()
            try:
                self.send(ev)
            except Exception as exc:  # a notification never stops the run, nor its worker
                if not self.abandoned:
                    self.warn(
                        str(exc)
                        if isinstance(exc, NotifyFailed)
                        else f"{self.name} failed on {ev.name}: {type(exc).__name__}: {exc}"
                    )
            with self.cv:
                self.busy = None
                self.delivered += 1
                self.cv.notify_all()

    def flush(self, deadline: float) -> list[str]:
        """Waits until every queued event is sent or `deadline` (monotonic) passes; returns
        the events not sent by then (the one being sent first), which are given up."""
        with self.cv:
            self.closed = True
            self.cv.notify_all()
            while (self.queue or self.busy) and (left := deadline - time.monotonic()) > 0:
                self.cv.wait(left)
            late = [e.label for e in ([self.busy] if self.busy else []) + list(self.queue)]
            self.queue.clear()
            self.abandoned = bool(late)
        return late


class Notifier:
    """Sends each event to `--notify-command` (the event's JSON on its stdin, ROLLWAVE_EVENT etc.
    in its environment) and POSTs it to `--notify-webhook`, from a background worker per
    destination: in order, never holding the run up. A notification that fails is a warning,
    never a stop. `close()` at the end of the run waits a bounded time for those still queued
    and warns about what was not delivered."""

    def __init__(
        self,
        command: str | None,
        webhook: str | None,
        warn: Callable[[str], None],
        *,
        dry: bool = False,
        timeout: float = 30.0,
        webhook_timeout: float = 10.0,
        queue_size: int = NOTIFY_QUEUE,
        flush_s: float = NOTIFY_FLUSH_S,
    ) -> None:
        self.command = command
        self.webhook = webhook
        self.warn = warn
        self.dry = dry
        self.timeout = timeout
        self.webhook_timeout = webhook_timeout
        self.flush_s = flush_s
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._channels: list[_Channel] = []
        if dry:
            return
        if command:
            self._channels.append(_Channel("notify command", self._run_command, warn, queue_size))
        if webhook:
            self._channels.append(_Channel("notify webhook", self._post, warn, queue_size))

    def __call__(self, event: str, **fields: Any) -> None:
        if not self._channels:
            return
        payload = {"event": event, "t": now_iso(), **fields}  # t: when it happened
        ev = _Event(event, json.dumps(payload, default=str).encode(), fields)
        for ch in self._channels:
            ch.put(ev)

    def close(self, timeout: float | None = None) -> dict[str, list[str]]:
        """The end of the run: waits at most `timeout` (default `flush_s`) seconds in all for
        the queued notifications, then gives up the rest (a command still running is sent
        SIGTERM) and warns about them. Returns {destination: events not delivered}."""
        deadline = time.monotonic() + (self.flush_s if timeout is None else timeout)
        lost: dict[str, list[str]] = {}
        for ch in self._channels:
            late = ch.flush(deadline)
            if late or ch.dropped:
                lost[ch.name] = ch.dropped + late
            if late:
                self.warn(
                    f"{len(late)} notification(s) not delivered by the {ch.name} at the end of "
                    f"the run (waited {self.flush_s if timeout is None else timeout:g} s): "
                    + ", ".join(late[:10])
                    + (", ..." if len(late) > 10 else "")
                )
            if ch.dropped:
                self.warn(
                    f"{len(ch.dropped)} notification(s) were dropped for the {ch.name} "
                    "(queue full): " + ", ".join(ch.dropped[:10])
                )
        with self._lock:
            procs = list(self._procs)
        for proc in procs:  # abandoned: nothing is left running behind the run
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        self._channels = []
        return lost

    # -- the destinations (on the workers' threads) ------------------------------------------
    def _run_command(self, ev: _Event) -> None:
        assert self.command
        env = dict(
            os.environ,
            ROLLWAVE_EVENT=ev.name,
            ROLLWAVE_WAVE=str(ev.fields.get("wave", "")),
            ROLLWAVE_HOST=str(ev.fields.get("host", "")),
            ROLLWAVE_MESSAGE=str(ev.fields.get("message", "")),
        )
        proc = subprocess.Popen(
            self.command,
            shell=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        with self._lock:
            self._procs.add(proc)
        try:
            try:
                _, err = proc.communicate(ev.body, timeout=self.timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                raise NotifyFailed(
                    f"notify command timed out after {self.timeout:g} s on {ev.name} (killed)"
                ) from None
        finally:
            with self._lock:
                self._procs.discard(proc)
        if proc.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines()
            raise NotifyFailed(
                f"notify command exited {proc.returncode} on {ev.name}"
                + (f": {lines[-1]}" if lines else "")
            )

    def _post(self, ev: _Event) -> None:
        assert self.webhook
        req = urllib.request.Request(
            self.webhook,
            data=ev.body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "rollwave"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.webhook_timeout):
                pass
        except (urllib.error.URLError, OSError, ValueError) as exc:
            # the URL is not repeated: it may hold a token
            raise NotifyFailed(f"notify webhook failed on {ev.name}: {_url_error(exc)}") from None


def _url_error(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__
