"""The execution journal: JSON lines, append-only, each record flushed and fsync'd.

Every step is written twice: an `intent` record before it happens and a `done` (or `failed`)
record after, with the same step id, so a run killed at any instant (SIGKILL included) knows
which steps were begun but not finished. `note` records carry facts that are not steps (checks,
re-plans, host outcomes). The first record is a header naming the plan (its sha256), the cloud
and rollwave's version; no record ever holds a credential or a token.

`RunState.apply` folds records into the state of a run; the executor applies each record as it
writes it, and `--resume` / `--status` replay the file: one code path for both.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from planner.documents import read_bytes
from planner.errors import InputError, Problem, UsageError
from planner.executor.states import Ev, HostStatus, Op, RunEvent
from planner.plan import Migration, Plan, Stop, Wave

FORMAT_VERSION = "1.0"
KIND = "rollwave-journal"

# The events by their old names (tests and tools use them).
INTENT, DONE, FAILED, NOTE, HEADER = Ev.INTENT, Ev.DONE, Ev.FAILED, Ev.NOTE, Ev.HEADER


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def parse_iso(t: str) -> float:
    return _dt.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()


def wave_to_dict(w: Wave) -> dict[str, Any]:
    return {
        "index": w.index,
        "hosts": list(w.hosts),
        "migrations": [_migration_to_dict(m) for m in w.migrations],
        "stops": [{"vm": s.vm, "host": s.host} for s in w.stops],
    }


def wave_from_dict(d: Mapping[str, Any]) -> Wave:
    return Wave(
        index=int(d["index"]),
        hosts=tuple(d["hosts"]),
        migrations=tuple(
            Migration(
                m["vm"],
                m["from"],
                m["to"],
                m.get("method", "live"),
                force_complete_after_s=m.get("force_complete_after_s"),
                remedy=m.get("remedy"),
            )
            for m in d.get("migrations", ())
        ),
        stops=tuple(Stop(s["vm"], s["host"]) for s in d.get("stops", ())),
    )


def _migration_to_dict(m: Migration) -> dict[str, Any]:
    d: dict[str, Any] = {"vm": m.vm, "from": m.src, "to": m.dst, "method": m.method}
    # the remedy fields only when set: journals of plans without them stay as they were
    if m.force_complete_after_s is not None:
        d["force_complete_after_s"] = m.force_complete_after_s
    if m.remedy is not None:
        d["remedy"] = m.remedy
    return d


class Journal:
    """The writer. Opened in append mode; each record is one line, flushed and fsync'd."""

    def __init__(self, path: str | os.PathLike[str], *, seq: int = 0) -> None:
        self.path = Path(path)
        new = not self.path.exists()
        _only_regular(self.path)  # a FIFO would block the open; a device would take the records
        try:
            self._f: TextIO | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise InputError(str(path), f"cannot write the journal: {exc.strerror}") from None
        try:
            # One writer per journal: a second executor on the same run would act twice. The
            # lock dies with its process, SIGKILL included.
            fcntl.flock(self._f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._f.close()
            self._f = None
            raise UsageError(
                f"another rollwave is executing with the journal {path} right now "
                "(see `rollwave execute --status`); one run at a time"
            ) from None
        if new:  # the new file's directory entry must survive a crash too
            _fsync_dir(self.path.parent)
        self.seq = seq

    def write(self, record: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        rec = {"seq": self.seq, "t": now_iso(), **record}
        assert self._f is not None, "journal closed"
        self._f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        return rec

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d if str(d) else ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _only_regular(path: Path) -> None:
    """A journal is a regular file or none yet: anything else is refused, never opened."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing (a new journal) or unreadable: the open says why
    if not stat.S_ISREG(mode):
        raise InputError(str(path), "is not a regular file; a journal must be one")


def journal_in_use(path: str | os.PathLike[str]) -> bool:
    """Whether a running rollwave holds the journal (its lock)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False  # never rollwave's journal; opening a FIFO would block
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing releases a lock taken here
    return False


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record of a journal. A torn last line (the writer was killed mid-line) is dropped;
    a bad line anywhere else is an error naming its line."""
    file = os.fspath(path)
    try:
        if not os.path.exists(file):
            raise InputError(file, "no such journal")
        text = read_bytes(file).decode("utf-8")  # regular files only: a FIFO never blocks it
    except UnicodeDecodeError as exc:
        raise InputError(file, f"not UTF-8 text (byte {exc.start})") from None
    lines = text.split("\n")
    out: list[dict[str, Any]] = []
    last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            if i == last and not text.endswith("\n"):
                break  # torn write at the very end: the step it announced never started
            raise InputError(file, Problem(f"line {i + 1}", "is not a JSON record")) from None
        if not isinstance(rec, dict):
            raise InputError(file, Problem(f"line {i + 1}", "is not a JSON object"))
        out.append(rec)
    if not out or out[0].get("ev") != HEADER or out[0].get("kind") != KIND:
        raise InputError(file, Problem("line 1", f"is not a {KIND} header"))
    major = str(out[0].get("format_version", "")).split(".")[0]
    if major != FORMAT_VERSION.split(".")[0]:
        raise InputError(
            file,
            Problem(
                "line 1",
                f"format_version {out[0].get('format_version')!r}; this rollwave reads "
                f"{FORMAT_VERSION.split('.')[0]}.x",
            ),
        )
    return out


# ---------------------------------------------------------------------------------------------
# The run state
# ---------------------------------------------------------------------------------------------
HOST_UPGRADED = HostStatus.UPGRADED
HOST_NOT_UPGRADED = HostStatus.NOT_UPGRADED
HOST_FAILED = HostStatus.FAILED


@dataclass
class HostOutcome:
    status: str
    reason: str | None
    wave: int
    left_disabled: bool = False


@dataclass
class RunState:
    """What the journal says about a run. Built by replaying records (`apply`)."""

    header: dict[str, Any] = field(default_factory=dict)
    schedule: list[Wave] = field(default_factory=list)  # by execution order, re-plans applied
    started: set[int] = field(default_factory=set)
    ended: set[int] = field(default_factory=set)
    wave_t: dict[int, list[float]] = field(default_factory=dict)  # wave -> [start, end?]
    moved: dict[str, tuple[int, str]] = field(default_factory=dict)  # vm -> its last move
    done_moves: set[tuple[int, str]] = field(default_factory=set)  # (wave, vm) confirmed
    attempts: Counter[tuple[int, str]] = field(default_factory=Counter)  # (wave, vm) -> begun
    failed_attempts: Counter[str] = field(default_factory=Counter)
    retargeted: dict[str, int] = field(default_factory=dict)  # vm -> times re-planned
    skipped: dict[str, str] = field(default_factory=dict)  # vm -> why it stays
    disabled_by_us: dict[str, dict[str, Any]] = field(default_factory=dict)  # host -> before
    stopped_by_us: dict[str, str] = field(default_factory=dict)  # vm -> host
    outcomes: dict[str, HostOutcome] = field(default_factory=dict)
    open_steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    replans: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    canary: dict[str, Any] | None = None  # the canary's last step record
    canary_verdict: dict[str, Any] | None = None  # a failed canary's verdict (before rollback)
    headroom_breaches: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)  # start / resume / stop / end notes
    last_t: str | None = None
    hook_failures: int = 0
    per_wave: dict[int, Counter[str]] = field(default_factory=dict)  # done/retried/... per wave
    # host -> its last upgrade / rollback / wait / rbwait step outcome ("done" or "failed";
    # a step cut by an interruption is forgotten: it is done again), and why it failed
    last_steps: dict[str, dict[str, str]] = field(default_factory=dict)
    first_version: dict[str, str] = field(default_factory=dict)  # as observed before the run
    upgrade_order: list[str] = field(default_factory=list)  # hosts in the order they came back
    upgrade_begun: set[str] = field(default_factory=set)  # hosts whose upgrade command ran
    vm_names: dict[str, str] = field(default_factory=dict)  # VM id -> name, as last recorded
    eta: dict[str, Any] | None = None  # this run's last ETA record (a run note clears it)
    forced: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)  # accepted
    force_refusals: list[dict[str, Any]] = field(default_factory=list)  # force failed records
    fallbacks: list[dict[str, Any]] = field(default_factory=list)  # fallback notes
    vms_in_error: list[dict[str, Any]] = field(default_factory=list)  # vm-error notes
    window: dict[str, Any] | None = None  # the last window note (a wait, or an opening)
    # pipelined runs: host -> its last admit note (admitted, or the refusal it waits on)
    admission: dict[str, dict[str, Any]] = field(default_factory=dict)
    _retried: set[tuple[int, str]] = field(default_factory=set)

    @classmethod
    def start(cls, plan: Plan) -> RunState:
        return cls(schedule=list(plan.waves))

    @classmethod
    def replay(cls, records: Iterable[dict[str, Any]], plan: Plan | None = None) -> RunState:
        st = cls(schedule=list(plan.waves) if plan is not None else [])
        for rec in records:
            st.apply(rec)
        return st

    # -- folding ------------------------------------------------------------------------------
    def apply(self, rec: Mapping[str, Any]) -> None:
        ev, op = rec.get("ev"), rec.get("op")
        self.last_t = rec.get("t", self.last_t)
        if ev == HEADER:
            self.header = dict(rec)
            if not self.schedule and rec.get("waves_detail"):
                self.schedule = [wave_from_dict(w) for w in rec["waves_detail"]]
            return
        if rec.get("vm") and rec.get("name"):
            self.vm_names[str(rec["vm"])] = str(rec["name"])
        step = rec.get("step")
        if ev == INTENT and step:
            self.open_steps[step] = dict(rec)
        elif ev in (DONE, FAILED) and step:
            self.open_steps.pop(step, None)
        handler = _HANDLERS.get(str(op))  # an op this version does not know: ignored
        if handler is not None:
            handler(self, str(ev), rec)

    def _on_run(self, ev: str, rec: Mapping[str, Any]) -> None:
        self.runs.append(dict(rec))
        self.eta = None  # an earlier run's ETA says nothing about this one

    def _on_eta(self, ev: str, rec: Mapping[str, Any]) -> None:
        self.eta = dict(rec)

    def _on_wave(self, ev: str, rec: Mapping[str, Any]) -> None:
        k = int(rec["wave"])
        t = parse_iso(rec["t"])
        if ev == INTENT:
            self.started.add(k)
            self.wave_t.setdefault(k, [t])
        elif ev == DONE:
            self.ended.add(k)
            self.wave_t.setdefault(k, [t]).append(t)

    def _on_check(self, ev: str, rec: Mapping[str, Any]) -> None:
        self.checks.append(dict(rec))

    def _on_replan(self, ev: str, rec: Mapping[str, Any]) -> None:
        k = int(rec["wave"])
        waves = [wave_from_dict(w) for w in rec["waves"]]
        self.schedule = self.schedule[: k - 1] + waves
        # Waves from k on are new: a move done in the wave k they replace is history (counted
        # in per_wave), not a move of the new wave k.
        self.done_moves = {(w, vm) for w, vm in self.done_moves if w < k}
        # Pipelined, later waves may have begun (or ended) before the re-plan: the new ones
        # after k are new (lock-step never begins a wave after the one re-planned)
        for w in {w for w in self.started | self.ended if w > k}:
            self.started.discard(w)
            self.ended.discard(w)
            self.wave_t.pop(w, None)
        self.replans.append(dict(rec))

    def _on_retarget(self, ev: str, rec: Mapping[str, Any]) -> None:
        k, vm, dst = int(rec["wave"]), rec["vm"], rec["dst"]
        w = self.schedule[k - 1]
        migs = tuple(replace(m, dst=dst) if m.vm == vm else m for m in w.migrations)
        if not any(m.vm == vm for m in w.migrations):  # a VM found on the host mid-wave
            migs = (*migs, Migration(vm, rec["src"], dst, rec.get("method", "live")))
        self.schedule[k - 1] = replace(w, migrations=migs)
        self.retargeted[vm] = self.retargeted.get(vm, 0) + 1
        self._count(k, "replanned")

    def _on_force(self, ev: str, rec: Mapping[str, Any]) -> None:
        key = (int(rec.get("wave") or 0), str(rec["vm"]))
        if ev == DONE:
            self.forced[key] = dict(rec)
        elif ev == FAILED and not rec.get("interrupted"):
            self.force_refusals.append(dict(rec))

    def _on_vm_error(self, ev: str, rec: Mapping[str, Any]) -> None:
        self.vms_in_error.append(dict(rec))

    def _on_fallback(self, ev: str, rec: Mapping[str, Any]) -> None:
        """A live migration whose force did not take: aborted, then (`to: cold`) moved cold to
        the same destination: the schedule's migration becomes that."""
        self.fallbacks.append(dict(rec))
        k, vm = int(rec["wave"]), str(rec["vm"])
        self.forced.pop((k, vm), None)
        if rec.get("to") != "cold" or not 1 <= k <= len(self.schedule):
            return
        w = self.schedule[k - 1]
        migs = tuple(
            replace(m, method="cold", force_complete_after_s=None, remedy="cold")
            if m.vm == vm
            else m
            for m in w.migrations
        )
        self.schedule[k - 1] = replace(w, migrations=migs)

    def _on_window(self, ev: str, rec: Mapping[str, Any]) -> None:
        self.window = dict(rec)

    def _on_admit(self, ev: str, rec: Mapping[str, Any]) -> None:
        self.admission[str(rec["host"])] = dict(rec)

    @property
    def admitted(self) -> set[str]:
        """Hosts a pipelined run admitted into maintenance (whatever became of them)."""
        return {h for h, r in self.admission.items() if r.get("admitted")}

    @property
    def pipelined(self) -> bool:
        """The run admits hosts one by one (its header says so; older journals ran lock-step)."""
        return self.header.get("execution") == "pipelined"

    def _on_skip(self, ev: str, rec: Mapping[str, Any]) -> None:
        why = str(rec.get("reason", ""))
        self.skipped[rec["vm"]] = why
        if why.startswith("could not"):
            self._count(int(rec.get("wave") or 0), "failed")

    def _on_migrate(self, ev: str, rec: Mapping[str, Any]) -> None:
        vm = rec["vm"]
        k = int(rec.get("wave") or 0)
        if ev == INTENT:
            self.attempts[(k, vm)] += 1
            if self.attempts[(k, vm)] > 1 and (k, vm) not in self._retried:
                self._retried.add((k, vm))
                self._count(k, "retried")
        elif ev == DONE:
            self.moved[vm] = (k, rec["host"])
            if (k, vm) not in self.done_moves:
                self.done_moves.add((k, vm))
                self._count(k, "done")
        elif ev == FAILED:
            self.failed_attempts[vm] += 1

    def _count(self, k: int, what: str) -> None:
        self.per_wave.setdefault(k, Counter())[what] += 1

    def _on_disable(self, ev: str, rec: Mapping[str, Any]) -> None:
        if ev == DONE:
            self.disabled_by_us[rec["host"]] = {
                "wave": rec.get("wave"),
                "reason": rec.get("reason"),
            }

    def _on_enable(self, ev: str, rec: Mapping[str, Any]) -> None:
        if ev == DONE:
            self.disabled_by_us.pop(rec["host"], None)

    def _on_stop(self, ev: str, rec: Mapping[str, Any]) -> None:
        if ev == DONE and rec.get("was") in RUNNING:
            self.stopped_by_us[rec["vm"]] = rec["host"]

    def _on_start(self, ev: str, rec: Mapping[str, Any]) -> None:
        if ev == DONE:
            self.stopped_by_us.pop(rec["vm"], None)

    def _on_host(self, ev: str, rec: Mapping[str, Any]) -> None:
        host = rec["host"]
        self.outcomes[host] = HostOutcome(
            rec["status"], rec.get("reason"), int(rec.get("wave") or 0), bool(rec.get("disabled"))
        )
        if rec["status"] == HOST_UPGRADED and host not in self.upgrade_order:
            self.upgrade_order.append(host)

    def _host_step(self, ev: str, rec: Mapping[str, Any]) -> None:
        host, op = rec.get("host"), str(rec.get("op"))
        if not host or ev not in (DONE, FAILED):
            return
        last = self.last_steps.setdefault(host, {})
        if ev == FAILED and rec.get("interrupted"):
            last.pop(op, None)
            return
        last[op] = ev
        if ev == FAILED:
            last["failure_reason"] = str(rec.get("reason") or f"{op} failed")

    def _on_upgrade(self, ev: str, rec: Mapping[str, Any]) -> None:
        if ev == INTENT and rec.get("host"):
            self.upgrade_begun.add(str(rec["host"]))
        if ev == FAILED and not rec.get("interrupted"):
            self.hook_failures += 1
        self._host_step(ev, rec)

    def _on_rollback(self, ev: str, rec: Mapping[str, Any]) -> None:
        self._host_step(ev, rec)

    def _on_wait(self, ev: str, rec: Mapping[str, Any]) -> None:
        self._host_step(ev, rec)

    def _on_rbwait(self, ev: str, rec: Mapping[str, Any]) -> None:
        self._host_step(ev, rec)

    def _on_version(self, ev: str, rec: Mapping[str, Any]) -> None:
        self.first_version.setdefault(rec["host"], str(rec.get("version") or ""))

    def _on_canary(self, ev: str, rec: Mapping[str, Any]) -> None:
        if ev == NOTE and rec.get("what") == "verdict":
            self.canary_verdict = dict(rec)
        else:
            self.canary = dict(rec)

    def _on_headroom(self, ev: str, rec: Mapping[str, Any]) -> None:
        self.headroom_breaches.append(dict(rec))

    # -- views --------------------------------------------------------------------------------
    @property
    def upgraded(self) -> set[str]:
        return {h for h, o in self.outcomes.items() if o.status == HOST_UPGRADED}

    @property
    def mid_upgrade(self) -> set[str]:
        """Hosts whose upgrade this run began and has not concluded (no outcome yet)."""
        return self.upgrade_begun - set(self.outcomes)

    @property
    def excluded(self) -> dict[str, str]:
        """Hosts this run gave up on: not upgraded, or failed (host -> reason)."""
        return {h: o.reason or o.status for h, o in self.outcomes.items() if o.status != "upgraded"}

    def next_wave(self) -> int:
        """The first wave (1-based) not ended; len(schedule) + 1 when all are."""
        for k in range(1, len(self.schedule) + 1):
            if k not in self.ended:
                return k
        return len(self.schedule) + 1

    @property
    def options(self) -> dict[str, Any]:
        """The options in effect at the last (re)start: the header's, then each run note's."""
        opts = dict(self.header.get("options") or {})
        for r in self.runs:
            opts.update(r.get("options") or {})
        return opts

    @property
    def canary_over(self) -> bool:
        """The canary passed or failed (one cut by an interruption is not over): it does not
        come again."""
        c = self.canary
        return c is not None and c.get("ev") in (DONE, FAILED) and not c.get("interrupted")

    @property
    def finished(self) -> bool:
        return any(r.get("what") == RunEvent.END for r in self.runs)

    def counts(self) -> dict[str, int]:
        retried = len(self._retried)
        return {
            "migrations_done": sum(c["done"] for c in self.per_wave.values()),
            "migrations_retried": retried,
            "migrations_replanned": len(self.retargeted),
            "migrations_failed": len(self.skipped_failed()),
            "waves_replanned": len(self.replans),
            "hosts_upgraded": len(self.upgraded),
            "hosts_not_upgraded": sum(
                1 for o in self.outcomes.values() if o.status == HOST_NOT_UPGRADED
            ),
            "hosts_failed": sum(1 for o in self.outcomes.values() if o.status == HOST_FAILED),
            "migrations_forced": len(self.forced),
            "force_fallbacks": len(self.fallbacks),
        }

    def skipped_failed(self) -> list[str]:
        """VMs that could not be moved (retries and re-planning exhausted)."""
        return [vm for vm, why in self.skipped.items() if why.startswith("could not")]

    def wave_seconds(self) -> dict[int, float]:
        return {k: t[1] - t[0] for k, t in self.wave_t.items() if len(t) > 1}

    def vm_label(self, vm: str) -> str:
        """A VM's name and the start of its id, when the journal knows its name; else its id."""
        name = self.vm_names.get(vm)
        return f"{name} ({vm[:8]})" if name and name != vm else vm

    def iter_open(self) -> Iterator[dict[str, Any]]:
        return iter(sorted(self.open_steps.values(), key=lambda r: int(r.get("seq", 0))))


# How each op folds into the state (ops without an entry leave only their open step).
_HANDLERS: dict[str, Callable[[RunState, str, Mapping[str, Any]], None]] = {
    Op.RUN: RunState._on_run,
    Op.ETA: RunState._on_eta,
    Op.WAVE: RunState._on_wave,
    Op.CHECK: RunState._on_check,
    Op.REPLAN: RunState._on_replan,
    Op.RETARGET: RunState._on_retarget,
    Op.SKIP: RunState._on_skip,
    Op.MIGRATE: RunState._on_migrate,
    Op.DISABLE: RunState._on_disable,
    Op.ENABLE: RunState._on_enable,
    Op.STOP: RunState._on_stop,
    Op.START: RunState._on_start,
    Op.HOST: RunState._on_host,
    Op.UPGRADE: RunState._on_upgrade,
    Op.ROLLBACK: RunState._on_rollback,
    Op.WAIT: RunState._on_wait,
    Op.RBWAIT: RunState._on_rbwait,
    Op.VERSION: RunState._on_version,
    Op.CANARY: RunState._on_canary,
    Op.HEADROOM: RunState._on_headroom,
    Op.FORCE: RunState._on_force,
    Op.FALLBACK: RunState._on_fallback,
    Op.WINDOW: RunState._on_window,
    Op.ADMIT: RunState._on_admit,
    Op.VM_ERROR: RunState._on_vm_error,
}


RUNNING = ("ACTIVE", "PAUSED", "SUSPENDED")
