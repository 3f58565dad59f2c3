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
import time
import urllib.error
import urllib.request
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


class Notifier:
    """Runs `--notify-command` (event JSON on stdin, ROLLWAVE_EVENT etc. in its environment)
    and POSTs to `--notify-webhook`. A notification that fails is a warning, never a stop."""

    def __init__(
        self,
        command: str | None,
        webhook: str | None,
        warn: Callable[[str], None],
        *,
        dry: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self.command = command
        self.webhook = webhook
        self.warn = warn
        self.dry = dry
        self.timeout = timeout

    def __call__(self, event: str, **fields: Any) -> None:
        if self.dry or not (self.command or self.webhook):
            return
        payload = {"event": event, "t": now_iso(), **fields}
        body = json.dumps(payload, default=str).encode()
        if self.command:
            env = dict(
                os.environ,
                ROLLWAVE_EVENT=event,
                ROLLWAVE_WAVE=str(fields.get("wave", "")),
                ROLLWAVE_HOST=str(fields.get("host", "")),
                ROLLWAVE_MESSAGE=str(fields.get("message", "")),
            )
            try:
                res = subprocess.run(
                    self.command,
                    shell=True,
                    input=body,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    timeout=self.timeout,
                    start_new_session=True,
                    check=False,
                )
                if res.returncode != 0:
                    err = res.stderr.decode(errors="replace").strip().splitlines()
                    self.warn(
                        f"notify command exited {res.returncode} on {event}"
                        + (f": {err[-1]}" if err else "")
                    )
            except subprocess.TimeoutExpired:
                self.warn(f"notify command timed out after {self.timeout:.0f} s on {event}")
        if self.webhook:
            req = urllib.request.Request(
                self.webhook,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "User-Agent": "rollwave"},
            )
            try:
                with urllib.request.urlopen(req, timeout=min(self.timeout, 10.0)):
                    pass
            except (urllib.error.URLError, OSError, ValueError) as exc:
                self.warn(f"notify webhook failed on {event}: {exc}")
