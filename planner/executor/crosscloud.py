"""Side-by-side execution: a side-by-side plan's waves against two clouds
(`rollwave execute PLAN --source-cloud A --target-cloud B`).

Per wave, in order: the moves inside the old cloud (live or cold migrations), the cross-cloud moves
(`crossmove.Mover`), then the wave's hosts take their roles: once they are empty in the old cloud,
the new controllers' deployment (`--deploy-hook`, once, its completion verified in the target
cloud: the compute API answers) and each new compute's hand-over (`--handover-hook`, its completion
verified in the target: the host's hypervisor appears and is up, its service enabled). Retired
hosts only leave. Every step is journaled; a resumed run skips what the journal says is done and
finds what a killed run did by looking at the clouds (a hook is not run again when its result is
already there).
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.documents import read_bytes
from planner.errors import ExecutionError, InputError, Problem, RollwaveError, UsageError
from planner.executor.crossmove import MV, SOURCE_STATUS, Mover, Side
from planner.executor.crosswindow import (
    WAIT_STEP_S,
    Clock,
    Verdict,
    held_message,
    judge,
    need_of,
    utc_now,
)
from planner.executor.hooks import Hooks, expand
from planner.executor.journal import now_iso
from planner.executor.window import iso
from planner.plan import CROSS_CLOUD, Migration, Plan, Wave

JOURNAL_KIND = "rollwave-crosscloud-journal"


@dataclass(frozen=True)
class CrossOptions:
    source_cloud: str
    target_cloud: str
    networks: Mapping[str, str]
    deploy_hook: str | None
    handover_hook: str | None
    poll_s: float = 1.0
    timeout_s: float = 600.0
    hook_timeout_s: float = 0.0
    network_map_path: str = "--network-map"
    # The API compatibility gate (planner.openstack.apicheck) overridden: run even when the new
    # cloud does not serve every API version and microversion the old one does.
    allow_api_loss: bool = False
    # With the policy's project_windows: wait for a closed window (True) or stop, exit 5.
    window_wait: bool = True


def read_network_map(path: str) -> dict[str, str]:
    """`--network-map F`: a JSON or YAML object, each old network's name -> its new one's."""
    import yaml

    try:
        data = yaml.safe_load(read_bytes(path).decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(path, f"cannot read the network map: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()
    ):
        raise InputError(path, "the network map must map each old network's name to a new one's")
    return dict(data)


def unmapped(
    servers: Mapping[str, Mapping[str, Any]], networks: Mapping[str, str]
) -> dict[str, list[str]]:
    """Each network (as Nova names it in a server's `addresses`) of these servers that the map
    does not name, with the VMs on it."""
    missing: dict[str, list[str]] = {}
    for vm, server in sorted(servers.items()):
        for net in sorted(server.get("addresses") or {}):
            if net not in networks:
                missing.setdefault(net, []).append(vm)
    return missing


class Journal:
    """Append-only JSON lines: a header naming the plan and both clouds, then one record per
    step. `done` is what a resumed run skips."""

    def __init__(self, path: Path, header: Mapping[str, Any], resume: bool) -> None:
        self.path = path
        self.done: set[str] = set()
        if path.exists() and path.stat().st_size:
            if not resume:
                raise InputError(str(path), "a journal of an earlier run exists: --resume it")
            try:  # a regular file only: a FIFO or a device is refused, never read
                lines = read_bytes(path).decode("utf-8").splitlines()
            except UnicodeDecodeError as exc:
                raise InputError(str(path), f"not UTF-8 text (byte {exc.start})") from None
            head = json.loads(lines[0])
            if head.get("kind") != JOURNAL_KIND or any(
                head.get(k) != header[k] for k in ("plan_sha256", "source", "target")
            ):
                raise InputError(
                    str(path), "the journal is of another plan or other clouds: not resumed"
                )
            for line in lines[1:]:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill
                if rec.get("event") == "done":
                    self.done.add(str(rec["step"]))
            self._write({"event": "resumed"})
        elif resume:
            raise InputError(str(path), "no journal to resume")
        else:
            self._write({"kind": JOURNAL_KIND, **header, "at": now_iso()})

    def _write(self, rec: Mapping[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"at": now_iso(), **rec}, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def log(self, event: str, **fields: Any) -> None:
        self._write({"event": event, **fields})

    def finish(self, step: str) -> None:
        self._write({"event": "done", "step": step})
        self.done.add(step)


def same_cloud(source: Side, target: Side) -> bool:
    """Two names for one cloud: the same identity endpoint and the same compute endpoint."""

    def where(side: Side) -> tuple[str, str]:
        conn = side.api().conn
        auth = str(conn.config.config.get("auth", {}).get("auth_url", "")).rstrip("/")
        return auth, str(conn.compute.get_endpoint()).rstrip("/")

    a, b = where(source), where(target)
    return a[0] == b[0] or a[1] == b[1]


def configured_same(source: str, target: str) -> bool:
    """Before the target exists: the same entry, or entries with the same auth_url."""
    if source == target:
        return True
    import openstack.config

    try:
        cfg = openstack.config.OpenStackConfig()
        a = cfg.get_one(source).config.get("auth", {}).get("auth_url")
        b = cfg.get_one(target).config.get("auth", {}).get("auth_url")
    except Exception:  # the target is not configured yet: the deploy hook makes it
        return False
    return bool(a) and str(a).rstrip("/") == str(b).rstrip("/")


class CrossCloudRun:
    def __init__(
        self,
        plan: Plan,
        plan_path: str,
        opts: CrossOptions,
        journal: Journal,
        connect: Callable[[str, str | None], Any],
        hooks: Hooks,
        echo: Callable[[str], None],
        warn: Callable[[str], None] | None = None,
        clock: Clock = utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.plan = plan
        self.clock = clock
        self.sleep = sleep
        self.windows = dict(plan.policy.project_windows)
        self._waits_noted: set[str] = set()
        self.plan_path = plan_path
        self.opts = opts
        self.journal = journal
        self.source = Side(opts.source_cloud, connect)
        self.target = Side(opts.target_cloud, connect)
        self.hooks = hooks
        self.echo = echo
        self.warn = warn or echo  # printed even when progress is not
        self.mover = Mover(
            self.source, self.target, opts.networks, self._log, opts.poll_s, opts.timeout_s
        )

    def _log(self, event: str, **fields: Any) -> None:
        self.journal.log(event, **fields)

    # -- before anything moves -------------------------------------------------------------------

    def validate(self) -> None:
        """Bad input found before anything moves (exit 2): the same cloud twice, a network of a
        VM that crosses missing from the map, a plan this run cannot carry out."""
        o = self.opts
        if configured_same(o.source_cloud, o.target_cloud):
            raise UsageError(_same(o.source_cloud, o.target_cloud))
        if self.plan.mode != "side-by-side":
            raise InputError(self.plan_path, "not a side-by-side plan: execute it without clouds")
        for w in self.plan.waves:
            if w.stops:
                raise InputError(
                    self.plan_path, f"wave {w.index}: stops are not carried out side by side"
                )
        roles = {r for w in self.plan.waves for r in w.roles.values()}
        if "new-controller" in roles and not o.deploy_hook:
            raise UsageError("the plan deploys new controllers: give --deploy-hook")
        if "new-compute" in roles and not o.handover_hook:
            raise UsageError("the plan hands hosts over to the new cloud: give --handover-hook")
        crossing = {m.vm for w in self.plan.waves for m in w.migrations if m.method == CROSS_CLOUD}
        servers = {vm: self.mover.original(vm) for vm in sorted(crossing)}
        missing = unmapped({vm: s for vm, s in servers.items() if s}, o.networks)
        if missing:
            problems = [
                Problem(n, f"no mapping for this network of VM(s) {', '.join(v[:5])}")
                for n, v in sorted(missing.items())
            ]
            raise InputError(o.network_map_path, problems)

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> None:
        for w in self.plan.waves:
            step = f"wave:{w.index}"
            if step in self.journal.done:
                continue
            self.echo(f"wave {w.index}: {len(w.migrations)} moves, hosts {', '.join(w.hosts)}")
            self.journal.log("wave-start", wave=w.index)
            for h in w.hosts:
                self._disable(h, w.index)
            # Crossings whose project's window is closed: the wave's other moves go first.
            held: list[Migration] = []
            for m in w.migrations:
                if f"vm:{m.vm}:{w.index}" in self.journal.done:
                    continue
                if m.method == CROSS_CLOUD and not self._admitted(m, w.index):
                    held.append(m)
                    continue
                self._one(m, w.index)
            self._wait_for_held(held, w.index)
            self._roles(w)
            self.journal.finish(step)
        self.journal.log("run-done")

    def _one(self, m: Migration, wave: int) -> None:
        if m.method == CROSS_CLOUD:
            self._target_deployed()
            self.mover.move(m.vm, m.dst, wave)
        else:
            self._inside(m.vm, m.dst, m.method)
        self.journal.finish(f"vm:{m.vm}:{wave}")

    # -- per-project windows ---------------------------------------------------------------------

    def _verdict(self, m: Migration) -> Verdict | None:
        """The window verdict of a crossing now; None when no window holds it (its project has
        none, or its move is already under way or done)."""
        if not self.windows:
            return None
        server = self.mover.original(m.vm)
        if server is None or SOURCE_STATUS in (server.get("metadata") or {}):
            return None  # the copy stands, or the VM is stopped: finish the move
        project = str(server.get("tenant_id") or server.get("project_id") or "")
        windows = self.windows.get(project)
        if windows is None:
            return None
        v = judge(m.vm, project, windows, self.clock(), need_of(m))
        if v is None:
            raise ExecutionError(
                f"VM {m.vm} of project {project}: its project's windows never open"
            )
        return v

    def _admitted(self, m: Migration, wave: int) -> bool:
        """Whether this crossing may start now; journals the verdict either way."""
        v = self._verdict(m)
        if v is None:
            return True
        if v.go:
            self.journal.log(
                "window-open", vm=v.vm, project=v.project, wave=wave, closes=iso(v.closes),
                need_s=v.need_s, fits=v.fits,
            )  # fmt: skip
            if not v.fits:
                self.warn(
                    f"VM {v.vm}: its predicted {v.need_s:.0f} s crossing fits no opening of "
                    f"project {v.project}'s windows; started now, the window closes at "
                    f"{iso(v.closes)}"
                )
            return True
        if v.vm not in self._waits_noted:
            self._waits_noted.add(v.vm)
            self.journal.log(
                "window-wait", vm=v.vm, project=v.project, wave=wave, opens=iso(v.opens),
                closes=iso(v.closes), need_s=v.need_s,
            )  # fmt: skip
            self.echo(
                f"VM {v.vm}: project {v.project}'s window is closed; it crosses from "
                f"{iso(v.opens)} (the wave's other moves go on)"
            )
        return False

    def _wait_for_held(self, held: list[Migration], wave: int) -> None:
        """Cross the held VMs as their windows open (in the plan's order), waiting between; with
        --no-window-wait, stop (exit 5) with nothing half-moved."""
        noted = False
        while held:
            for m in list(held):
                if self._admitted(m, wave):
                    self._one(m, wave)
                    held.remove(m)
            if not held:
                return
            waiting = [v for m in held if (v := self._verdict(m)) is not None and not v.go]
            if not waiting:
                continue  # opened meanwhile
            why = f"wave {wave}: {held_message(waiting)}"
            if not self.opts.window_wait:
                self.journal.log("window-stop", wave=wave, vms=[v.vm for v in waiting])
                raise ExecutionError(
                    f"{why} (--no-window-wait): resume the run then: rollwave execute "
                    f"{shlex.quote(self.plan_path)} --source-cloud "
                    f"{shlex.quote(self.opts.source_cloud)} --target-cloud "
                    f"{shlex.quote(self.opts.target_cloud)} --resume --journal "
                    f"{shlex.quote(str(self.journal.path))} (with the same options)"
                )
            if not noted:
                noted = True
                self.echo(f"{why}: waiting (Ctrl-C stops the run; --resume continues it)")
            opens = min(v.opens for v in waiting)
            left = (opens - self.clock()).total_seconds()
            self.sleep(min(max(left, 0.05), WAIT_STEP_S))

    def _disable(self, host: str, wave: int) -> None:
        """The old cloud schedules nothing more onto a host the wave empties (as the in-place
        executor does); a host already handed over has no service there any more."""
        if f"role:{host}" in self.journal.done:
            return
        api = self.source.api()
        path = f"/os-services?binary=nova-compute&host={host}"
        for svc in api.get("compute", path, MV)["services"]:
            if svc["status"] != "disabled":
                body = {
                    "status": "disabled",
                    "disabled_reason": f"rollwave side-by-side wave {wave}",
                }
                api.request(
                    "compute", "PUT", f"/os-services/{svc['id']}", microversion=MV, json=body
                )
                self.journal.log("host-disabled", host=host, wave=wave)

    def _target_deployed(self) -> None:
        """Before the first VM crosses: the new cloud is there and passes the API gate."""
        if "deploy" not in self.journal.done and not self._target_answers():
            raise ExecutionError("a cross-cloud move before the new control plane is deployed")
        if "api-check" in self.journal.done:
            return
        from planner.openstack.apicheck import require_compatible

        o = self.opts
        report = require_compatible(o.source_cloud, o.target_cloud, override=o.allow_api_loss)
        if not report.compatible:
            self.warn(
                "WARNING: --allow-api-loss: the new cloud does not serve every API version the "
                f"old one does:\n{report.summary()}"
            )
        self.journal.log(
            "api-check", compatible=report.compatible, overridden=not report.compatible
        )
        self.journal.finish("api-check")

    def _inside(self, vm: str, dst: str, method: str) -> None:
        """A move inside the old cloud: live (block migration auto) or cold (confirmed)."""
        api = self.source.api()
        s = api.get("compute", f"/servers/{vm}", MV)["server"]
        if s.get("OS-EXT-SRV-ATTR:host") != dst:
            if method == "live":
                body: dict[str, Any] = {"os-migrateLive": {"host": dst, "block_migration": "auto"}}
            else:
                body = {"migrate": {"host": dst}}
            api.request("compute", "POST", f"/servers/{vm}/action", microversion=MV, json=body)
            self.journal.log("migration-started", vm=vm, to=dst, method=method)
        deadline = time.monotonic() + self.opts.timeout_s
        while True:
            s = api.get("compute", f"/servers/{vm}", MV)["server"]
            if s["status"] == "VERIFY_RESIZE":
                api.request(
                    "compute",
                    "POST",
                    f"/servers/{vm}/action",
                    microversion=MV,
                    json={"confirmResize": None},
                )
            elif not s.get("OS-EXT-STS:task_state") and s["status"] in ("ACTIVE", "SHUTOFF"):
                if s.get("OS-EXT-SRV-ATTR:host") == dst:
                    break
                raise ExecutionError(f"VM {vm}: its {method} migration to {dst} did not happen")
            if s["status"] == "ERROR" or time.monotonic() > deadline:
                raise ExecutionError(f"VM {vm}: {s['status']} while migrating to {dst}")
            time.sleep(self.opts.poll_s)
        self.journal.log("migration-done", vm=vm, to=dst)

    # -- roles: deployment and hand-over -----------------------------------------------------------

    def _roles(self, w: Wave) -> None:
        for h in w.hosts:
            left = self.source.api().get("compute", f"/servers?all_tenants=1&host={h}", MV)[
                "servers"
            ]
            if left and f"role:{h}" not in self.journal.done:
                raise ExecutionError(
                    f"wave {w.index}: host {h} still has {len(left)} server(s) in the old cloud"
                )
        controllers = [h for h in w.hosts if w.roles.get(h) == "new-controller"]
        if controllers and "deploy" not in self.journal.done:
            if not self._target_answers():
                cmd = (self.opts.deploy_hook or "").replace(
                    "{hosts}", " ".join(shlex.quote(h) for h in controllers)
                )
                self._hook("deploy", "control-plane", cmd, w.index)
            if not self._target_answers():
                raise ExecutionError(
                    "the deploy hook finished but the target cloud does not answer"
                )
            if same_cloud(self.source, self.target):
                raise UsageError(_same(self.opts.source_cloud, self.opts.target_cloud))
            self.journal.finish("deploy")
        for h in w.hosts:
            if f"role:{h}" in self.journal.done:
                continue
            role = w.roles.get(h, "new-compute")
            if role == "new-compute":
                if not self._hypervisor_up(h):
                    self._hook("handover", h, self.opts.handover_hook or "", w.index)
                if not self._hypervisor_up(h):
                    raise ExecutionError(
                        f"host {h}: the hand-over hook finished but its hypervisor is not up "
                        "and enabled in the target cloud"
                    )
            self.journal.log("role", host=h, role=role, wave=w.index)
            self.journal.finish(f"role:{h}")

    def _target_answers(self) -> bool:
        try:
            self.target.api().get("compute", "/os-services?binary=nova-compute", MV)
        except RollwaveError:
            self.target._apis.clear()  # not there yet: connect again next time
            return False
        return True

    def _hypervisor_up(self, host: str) -> bool:
        api = self.target.api()
        svcs = api.get("compute", f"/os-services?binary=nova-compute&host={host}", MV)["services"]
        if not any(s["state"] == "up" and s["status"] == "enabled" for s in svcs):
            return False
        hyps = api.get("compute", "/os-hypervisors/detail", MV)["hypervisors"]
        return any(x["hypervisor_hostname"] == host and x["state"] == "up" for x in hyps)

    def _hook(self, kind: str, host: str, template: str, wave: int) -> None:
        cmd = expand(template, host=host, wave=wave, plan=self.plan_path, version=None)
        self.journal.log("hook-start", kind=kind, host=host, command=cmd)
        proc = self.hooks.start(kind, host, cmd, wave=wave, plan=self.plan_path, version=None)
        limit = self.opts.hook_timeout_s
        while (rc := proc.poll()) is None:
            if limit and time.monotonic() - proc.started > limit:
                proc.kill()
                raise ExecutionError(f"the {kind} hook of {host} ran over {limit:.0f} s")
            time.sleep(0.2)
        self.journal.log("hook-end", kind=kind, host=host, rc=rc)
        if rc != 0:
            raise ExecutionError(f"the {kind} hook of {host} exited {rc} (log: {proc.log})")


def _same(source: str, target: str) -> str:
    return (
        f"--target-cloud {target} is the same cloud as --source-cloud {source} (same identity "
        "or compute endpoint): a side-by-side run needs two clouds"
    )
