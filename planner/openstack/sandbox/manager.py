"""The client side of the sandbox: start it in its own process, find it, control it, stop it.

State lives in one directory per sandbox name (`state_dir(name)`), so `status`, `ctl` and `down`
work from anywhere, and sandboxes of different names run side by side:
    state.json     written by the sandbox once it serves (pid, port, urls, timings)
    secrets.json   passwords and the control secret (mode 0600), written before start
    mapping.json   controllers and HA groups of the seeded inventory (for `snapshot --mapping`)
    ids.json       inventory VM / server group ids -> Nova uuids
    sandbox.log    the sandbox's warnings
    work/          the sandbox's temporary files (SQLite databases); removed when it stops
Never imports nova.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.errors import SandboxError, UsageError
from planner.openstack import clouds_yaml
from planner.openstack.sandbox import caps
from planner.openstack.sandbox.seed import check_seedable

CLOUD_NAME = "rollwave-sandbox"
CONTROL_HEADER = "X-Rollwave-Control"
# A sandbox's name is its clouds.yaml entry and a part of its state directory's name.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def check_name(name: str) -> str:
    """`name` if it can name a sandbox (letters, digits, `_.-`, 63 at most), else UsageError."""
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"sandbox name {name!r}: use letters, digits, '_', '.' and '-' "
            "(first a letter or digit, 63 at most)"
        )
    return name


def state_dir(name: str = CLOUD_NAME) -> Path:
    """$ROLLWAVE_SANDBOX_DIR, else $XDG_RUNTIME_DIR/rollwave/sandbox, else ~/.cache/...;
    a sandbox named other than `rollwave-sandbox` lives beside it, in `<that dir>.<name>`."""
    if os.environ.get("ROLLWAVE_SANDBOX_DIR"):
        d = Path(os.environ["ROLLWAVE_SANDBOX_DIR"])
    elif os.environ.get("XDG_RUNTIME_DIR"):
        d = Path(os.environ["XDG_RUNTIME_DIR"]) / "rollwave" / "sandbox"
    else:
        d = Path.home() / ".cache" / "rollwave" / "sandbox"
    return d if name == CLOUD_NAME else d.with_name(f"{d.name}.{check_name(name)}")


@dataclass(frozen=True)
class Running:
    """A sandbox that answered: where it is and how to reach it."""

    pid: int
    port: int
    url: str
    auth_url: str
    state: dict[str, Any]
    admin_password: str
    demo_password: str
    control_secret: str
    dir: Path
    name: str = CLOUD_NAME

    @property
    def mapping_file(self) -> Path:
        return self.dir / "mapping.json"

    @property
    def ids_file(self) -> Path:
        return self.dir / "ids.json"

    def cloud_entry(self, user: str = "admin") -> dict[str, Any]:
        """A clouds.yaml entry: ordinary password auth against the sandbox's Keystone."""
        password = self.admin_password if user == "admin" else self.demo_password
        return {
            "auth": {
                "auth_url": self.auth_url,
                "username": user,
                "password": password,
                "project_name": user,
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "region_name": "RegionOne",
            "interface": "public",
            "identity_api_version": 3,
        }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_private(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def find(directory: Path | None = None, name: str = CLOUD_NAME) -> Running | None:
    """The running sandbox of `directory` (default: `name`'s), or None (stale files ignored)."""
    d = directory or state_dir(name)
    st = _read_json(d / "state.json")
    sec = _read_json(d / "secrets.json")
    if not st or not sec or not _alive(int(st.get("pid", 0))):
        return None
    return Running(
        int(st["pid"]),
        int(st["port"]),
        st["url"],
        st["auth_url"],
        st,
        sec["admin_password"],
        sec["demo_password"],
        sec["control_secret"],
        d,
        str(st.get("name") or CLOUD_NAME),
    )


def _remove_stale(d: Path) -> None:
    for name in ("state.json", "secrets.json", "mapping.json", "ids.json", "spec.json", "pid"):
        (d / name).unlink(missing_ok=True)
    shutil.rmtree(d / "work", ignore_errors=True)


def start(
    inventory: Mapping[str, Any],
    *,
    port: int = 0,
    migration_seconds: float = 1.0,
    migration_link_mib_s: float | None = None,
    nova_libvirt: Mapping[str, Any] | None = None,
    scheduler_sync_seconds: float = 2.0,
    directory: Path | None = None,
    exit_with_parent: bool = False,
    timeout: float = 900.0,
    write_clouds_yaml: bool = True,
    with_image: bool = False,
    name: str = CLOUD_NAME,
    api_caps: Mapping[str, str] | None = None,
) -> Running:
    """Start a sandbox seeded from `inventory` (its JSON form) and wait until it serves.
    `migration_link_mib_s`: the link mode of live migrations (driver.py; None: fixed
    durations); `nova_libvirt`: Nova's [libvirt] options it reads (server.NOVA_LIBVIRT).
    `name`: its clouds.yaml entry and, without `directory`, its state directory.
    `api_caps`: microversion caps (`caps.KEYS`: compute_max, compute_min, placement_max).
    `with_image`: a real Glance process beside it (the catalog's `image`; docs/sandbox.md)."""
    check_name(name)
    caps_ = caps.check(api_caps or {})
    if write_clouds_yaml and name != CLOUD_NAME:
        _check_entry_is_ours(name)
    d = directory or state_dir(name)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    running = find(d)
    if running:
        raise SandboxError(
            f"a sandbox is already running (pid {running.pid}, {running.url}); "
            f"run `rollwave sandbox down{_name_arg(name)}` first"
        )
    pid_file = d / "pid"
    if pid_file.exists():  # a sandbox that died during start-up: clean after it
        try:
            old = int(pid_file.read_text())
        except ValueError:
            old = 0
        if old and _alive(old):
            raise SandboxError(
                f"a sandbox is still starting (pid {old}); wait, or "
                f"`rollwave sandbox down{_name_arg(name)}`"
            )
    _remove_stale(d)
    problems = check_seedable(inventory)
    if problems:
        raise SandboxError(
            "the inventory cannot be reproduced in the sandbox:\n  " + "\n  ".join(problems[:20])
        )
    work = d / "work"
    work.mkdir(mode=0o700)
    secrets_ = {
        "admin_password": secrets.token_urlsafe(16),
        "demo_password": secrets.token_urlsafe(16),
        "control_secret": secrets.token_hex(16),
    }
    _write_private(d / "secrets.json", secrets_)
    spec = {
        "inventory": dict(inventory),
        "state_dir": str(d),
        "work_dir": str(work),
        "port": port,
        "migration_seconds": migration_seconds,
        "migration_link_mib_s": migration_link_mib_s,
        "nova_libvirt": dict(nova_libvirt or {}),
        "scheduler_sync_seconds": scheduler_sync_seconds,
        "with_image": with_image,
        "exit_with_parent": os.getpid() if exit_with_parent else None,
        "name": name,
        "api_caps": caps_,
        **secrets_,
    }
    _write_private(d / "spec.json", spec)
    env = dict(
        os.environ, TMPDIR=str(work), OS_NOVA_DISABLE_EVENTLET_PATCHING="1", PYTHONWARNINGS="ignore"
    )
    log = open(d / "sandbox.out", "wb")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "planner.openstack.sandbox.server", str(d / "spec.json")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=str(d),
        )
    finally:
        log.close()
    pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            (d / "spec.json").unlink(missing_ok=True)
            if proc.returncode == caps.BAD_CAP_EXIT:  # a cap this Nova cannot serve
                raise UsageError(_tail(d / "sandbox.out", 3).strip())
            raise SandboxError(
                f"the sandbox exited during start-up (code {proc.returncode}):\n"
                + _tail(d / "sandbox.out")
            )
        got = find(d)
        if got:
            (d / "spec.json").unlink(missing_ok=True)  # it holds the passwords twice
            if write_clouds_yaml:
                clouds_yaml.merge_entry(name, got.cloud_entry())
            return got
        time.sleep(0.2)
    _kill(proc.pid)
    raise SandboxError(
        f"the sandbox did not come up within {timeout:.0f} s:\n" + _tail(d / "sandbox.out")
    )


def _check_entry_is_ours(name: str) -> None:
    """Refuse to overwrite a clouds.yaml entry NAME that is not a sandbox's (a real cloud)."""
    entry = clouds_yaml.get_entry(name)
    if entry is None:
        return
    url = str((entry.get("auth") or {}).get("auth_url") or "")
    if not re.fullmatch(r"http://127\.0\.0\.1:\d+/identity/v3", url):
        raise UsageError(
            f"{clouds_yaml.user_clouds_yaml()} already has a cloud {name!r} "
            f"({url or 'no auth_url'}) that is not a sandbox: choose another --name"
        )


def _name_arg(name: str) -> str:
    return "" if name == CLOUD_NAME else f" --name {name}"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "  (no output)"
    useful = [t for t in text if "Warning" not in t and t.strip()]
    return "\n".join("  " + t for t in useful[-lines:]) or "  (no output)"


def _kill(pid: int, grace: float = 20.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child


def stop(
    directory: Path | None = None, *, remove_cloud_entry: bool = True, name: str = CLOUD_NAME
) -> bool:
    """Stop the sandbox of `directory` (default: `name`'s) and remove its files, and its
    clouds.yaml entry if it still points at it. False if none was running."""
    d = directory or state_dir(name)
    pid = 0
    for name in ("state.json", "pid"):
        path = d / name
        if name == "state.json":
            pid = int((_read_json(path) or {}).get("pid", 0)) or pid
        elif path.exists():
            with contextlib.suppress(ValueError):
                pid = pid or int(path.read_text())
    st = _read_json(d / "state.json") or {}
    auth_url, entry = st.get("auth_url"), str(st.get("name") or name)
    was_running = bool(pid) and _alive(pid)
    if was_running:
        _kill(pid)
    _remove_stale(d)
    if remove_cloud_entry and auth_url:
        clouds_yaml.remove_entry(entry, only_if_auth_url=auth_url)
    return was_running


def require(directory: Path | None = None, name: str = CLOUD_NAME) -> Running:
    got = find(directory, name)
    if got is None:
        what = "no sandbox" if name == CLOUD_NAME else f"no sandbox named {name}"
        raise SandboxError(
            f"{what} is running (start one with `rollwave sandbox up{_name_arg(name)}`)"
        )
    return got


def control(
    sb: Running,
    method: str,
    path: str,
    body: Mapping[str, Any] | None = None,
    timeout: float = 300.0,
) -> Any:
    """Call the sandbox's control endpoint; errors become SandboxError with its message."""
    data = json.dumps(dict(body or {})).encode() if method != "GET" else None
    req = urllib.request.Request(
        f"{sb.url}/rollwave/{path.lstrip('/')}",
        data=data,
        method=method,
        headers={CONTROL_HEADER: sb.control_secret, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            msg = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            msg = exc.reason
        raise SandboxError(f"sandbox control {method} /{path}: {msg} (HTTP {exc.code})") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SandboxError(f"sandbox control endpoint unreachable at {sb.url}: {exc}") from None


def upgrade(sb: Running, host: str, version: str) -> str:
    """Upgrade `host` to `version`; "compute" or "controller", what it was.

    A compute host's nova-compute stops, its version label changes, and it starts again (the
    guests keep running; SandboxError if it refuses to come back). A controller of the seeded
    inventory has no nova-compute in the sandbox: the sandbox sets its version in mapping.json,
    where `rollwave snapshot --mapping` reads it, so one upgrade hook serves every host of a plan.
    """
    out = control(sb, "POST", f"hosts/{host}/upgrade", {"version": version})
    return str(out.get("role", "compute"))
