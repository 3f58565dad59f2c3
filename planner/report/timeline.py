"""Reading what the simulator writes, for the report: a run's timeline file (`rollwave simulate
-o TIMELINE`, format version 1.x), turned into a `Schedule` (waves, host maintenance, every
migration attempt) and headroom over time per scope group and class; and the Monte Carlo
results of `rollwave simulate --runs N --format json` (`read_montecarlo`).

The timeline is JSON lines (a header object with `format_version` and `kind: timeline`, then one
event per line) or CSV (a `# rollwave timeline format_version=... kind=timeline` line, a header
row, one event per row); docs/simulation.md describes the columns. Problems are reported with
the file and the line, as every rollwave reader does.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from planner.errors import InputError, Problem
from planner.formats import read_bytes
from planner.plan import Plan
from planner.report import calendar, plots
from planner.report.schedule import (
    FAILED_OUTCOMES,
    HostSpan,
    MigrationSpan,
    MonteCarlo,
    Schedule,
    Span,
    StopSpan,
    WaveSpan,
)

MAJOR = 1
NUMERIC = ("t_s", "bytes", "downtime_s", "free", "required")
INTEGER = ("wave",)
_CSV_HEAD = re.compile(r"^#\s*rollwave timeline\b(?P<rest>.*)$")


@dataclass(frozen=True)
class Timeline:
    """The events of one simulated run, in time order, and the file's header."""

    header: Mapping[str, Any]
    events: tuple[Mapping[str, Any], ...]
    source: str = "<timeline>"

    def of(self, *kinds: str) -> list[Mapping[str, Any]]:
        return [e for e in self.events if e.get("event") in kinds]

    @property
    def makespan_s(self) -> float:
        head = self.header.get("makespan_s")
        if isinstance(head, (int, float)) and math.isfinite(head):
            return float(head)
        return max((float(e["t_s"]) for e in self.events), default=0.0)


def read_timeline(path: str | os.PathLike[str]) -> Timeline:
    """Read a timeline file (JSON lines, or CSV when its first line is the CSV marker)."""
    file = os.fspath(path)
    raw = read_bytes(file)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(file, f"not UTF-8 text (byte {exc.start})") from None
    first = text.split("\n", 1)[0].strip()
    if _CSV_HEAD.match(first):
        header, rows = _csv(text, file)
    else:
        header, rows = _jsonl(text, file)
    events = tuple(_check_event(r, loc, file) for loc, r in rows)
    return Timeline(header, tuple(sorted(events, key=lambda e: float(e["t_s"]))), file)


def _check_header(head: Mapping[str, Any], file: str, where: str) -> None:
    problems = []
    if head.get("kind") != "timeline":
        got = head.get("kind")
        hint = " (is this a plan or an inventory? give the file `rollwave simulate -o` wrote)"
        problems.append(Problem(where, f"kind is {got!r}, expected 'timeline'" + hint))
    version = str(head.get("format_version", ""))
    major = version.split(".")[0]
    if not major.isdigit() or int(major) != MAJOR:
        problems.append(
            Problem(where, f"format_version {version or 'missing'}; this rollwave reads {MAJOR}.x")
        )
    if problems:
        raise InputError(file, problems)


def _jsonl(text: str, file: str) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    lines = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    if not lines:
        raise InputError(file, "empty file; expected a timeline (JSON lines or CSV)")
    out: list[tuple[str, dict[str, Any]]] = []
    for i, ln in lines:
        try:
            obj = json.loads(ln)
        except json.JSONDecodeError as exc:
            raise InputError(
                file, Problem(f"line {i} column {exc.colno}", f"invalid JSON: {exc.msg}")
            ) from None
        if not isinstance(obj, dict):
            raise InputError(file, Problem(f"line {i}", "must be a JSON object"))
        out.append((f"line {i}", obj))
    head = out[0][1]
    _check_header(head, file, out[0][0])
    return head, out[1:]


def _csv(text: str, file: str) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    first, _, body = text.partition("\n")
    m = _CSV_HEAD.match(first.strip())
    assert m is not None
    head: dict[str, Any] = dict(kv.split("=", 1) for kv in m.group("rest").split() if "=" in kv)
    _check_header(head, file, "line 1")
    reader = csv.DictReader(io.StringIO(body))
    if not reader.fieldnames or "t_s" not in reader.fieldnames or "event" not in reader.fieldnames:
        raise InputError(file, Problem("line 2", "header row must name at least t_s and event"))
    rows = []
    for n, row in enumerate(reader, 3):
        rows.append((f"line {n}", {k: v for k, v in row.items() if k and v not in ("", None)}))
    return head, rows


def _check_event(row: dict[str, Any], loc: str, file: str) -> dict[str, Any]:
    out = dict(row)
    problems = []
    for key in NUMERIC:
        if key in out and out[key] is not None:
            try:
                v = float(out[key])
            except (TypeError, ValueError):
                problems.append(Problem(f"{loc}.{key}", f"must be a number, got {out[key]!r}"))
                continue
            out[key] = v
    for key in INTEGER:
        if key in out and out[key] is not None:
            try:
                out[key] = int(out[key])
            except (TypeError, ValueError):
                problems.append(Problem(f"{loc}.{key}", f"must be an integer, got {out[key]!r}"))
    if "event" not in out:
        problems.append(Problem(f"{loc}.event", "missing"))
    if not isinstance(out.get("t_s"), float) or not math.isfinite(out["t_s"]):
        problems.append(Problem(f"{loc}.t_s", "missing or not a finite number"))
    if problems:
        raise InputError(file, problems)
    return out


# ---------------------------------------------------------------------------------------------
# What the report draws
# ---------------------------------------------------------------------------------------------
@dataclass
class _Attempt:
    vm: str
    src: str
    dst: str
    wave: int
    method: str
    start: float


@dataclass
class _Host:
    wave: int
    start: float
    drained: float | None = None
    end: float | None = None
    ok: bool = True


@dataclass
class _Acc:
    waves: dict[int, list[float]] = field(default_factory=dict)
    hosts: dict[str, _Host] = field(default_factory=dict)


def schedule_from_timeline(tl: Timeline, plan: Plan) -> Schedule:
    """The run as a Schedule: each migration attempt a span (failed attempts marked), hosts from
    disable to enable (or to their failure), stopped VMs down while their host was away. A
    timeline of another plan is an InputError naming what does not match."""
    check_matches(tl, plan)
    acc = _Acc()
    open_attempts: dict[str, _Attempt] = {}
    spans: list[MigrationSpan] = []
    end = tl.makespan_s
    rolling: dict[str, float] = {}
    rollbacks: list[Span] = []
    soak_from: tuple[float, str] | None = None
    soaks: list[Span] = []
    for e in tl.events:
        kind, t = e.get("event"), float(e["t_s"])
        wave = int(e.get("wave", 0) or 0)
        if kind == "rollback_start":
            rolling[str(e.get("host"))] = t
        elif kind == "rollback_end" and str(e.get("host")) in rolling:
            host = str(e.get("host"))
            rollbacks.append(Span(rolling.pop(host), t, "rolling back", host))
        elif kind == "soak_start":
            soak_from = (t, str(e.get("detail") or "canary soak"))
        elif kind == "soak_end" and soak_from is not None:
            verdict = str(e.get("detail") or "")
            soaks.append(Span(soak_from[0], t, f"{soak_from[1]}; {verdict}".strip("; ")))
            soak_from = None
        elif (
            kind == "host_enable"
            and e.get("detail") == "rolled-back"
            and (str(e.get("host")) in acc.hosts and acc.hosts[str(e["host"])].end is not None)
        ):
            acc.hosts[str(e["host"])].ok = False  # a canary host, rolled back after its wave
        elif kind == "wave_start":
            acc.waves[wave] = [t, math.nan]
        elif kind == "wave_end" and wave in acc.waves:
            acc.waves[wave][1] = t
        elif kind == "host_disable":
            acc.hosts[str(e.get("host"))] = _Host(wave, t)
        elif kind == "upgrade_start" and str(e.get("host")) in acc.hosts:
            acc.hosts[str(e["host"])].drained = t
        elif kind == "host_enable" and str(e.get("host")) in acc.hosts:
            h = acc.hosts[str(e["host"])]
            h.end = t
            h.ok = e.get("detail", "upgraded") == "upgraded"
            if h.drained is None:  # never upgraded (e.g. a VM could not leave)
                h.drained = t
        elif kind == "failure" and str(e.get("host")) in acc.hosts:
            h = acc.hosts[str(e["host"])]
            if str(e.get("detail", "")).startswith("upgrade") and h.end is None:
                h.end, h.ok = t, False
        elif kind == "migration_start":
            vm = str(e.get("vm"))
            open_attempts[vm] = _Attempt(
                vm, str(e.get("host")), str(e.get("to")), wave, str(e.get("method", "live")), t
            )
        elif kind in ("migration_failed", "migration_end"):
            a = open_attempts.pop(str(e.get("vm")), None)
            if a is None:
                continue
            ok = kind == "migration_end" and e.get("outcome") not in FAILED_OUTCOMES
            spans.append(
                MigrationSpan(
                    a.vm,
                    a.src,
                    a.dst,
                    a.wave,
                    a.method,
                    a.start,
                    t,
                    float(e.get("downtime_s", 0.0) or 0.0),
                    ok,
                )
            )
    rollbacks += [Span(t0, end, "rolling back", h) for h, t0 in rolling.items()]
    if soak_from is not None:
        soaks.append(Span(soak_from[0], end, soak_from[1]))
    for a in open_attempts.values():  # still running when the run ended (a stall)
        spans.append(MigrationSpan(a.vm, a.src, a.dst, a.wave, a.method, a.start, end, 0.0, False))
    spans = _assign_lanes(spans)
    hosts = tuple(
        HostSpan(
            name,
            h.wave,
            h.start,
            h.drained if h.drained is not None else (h.end if h.end is not None else end),
            h.end if h.end is not None else end,
            h.ok and h.end is not None,
        )
        for name, h in acc.hosts.items()
    )
    waves = tuple(
        WaveSpan(i, s, e if not math.isnan(e) else end) for i, (s, e) in sorted(acc.waves.items())
    )
    host_span = {h.host: h for h in hosts}
    stops = tuple(
        StopSpan(s.vm, s.host, w.index, host_span[s.host].start, host_span[s.host].end)
        for w in plan.waves
        for s in w.stops
        if s.host in host_span
    )
    seed = tl.header.get("seed")
    note = "simulated" + (f" (seed {seed})" if seed is not None else "") + f" from {tl.source}"
    return Schedule(
        "simulation",
        waves,
        hosts,
        tuple(spans),
        stops,
        note,
        tuple(rollbacks),
        tuple(soaks),
        calendar.from_header(tl.header),
    )


def check_matches(tl: Timeline, plan: Plan) -> None:
    """The timeline's hosts and migrations must be the plan's (a run of another plan or another
    version of it would draw a wrong picture)."""
    wave_of = plan.wave_of()
    moves = {(w.index, m.vm) for w in plan.waves for m in w.migrations}
    problems: list[Problem] = []
    for e in tl.events:
        kind = e.get("event")
        if kind == "host_disable":
            host, wave = str(e.get("host")), e.get("wave")
            if wave_of.get(host) != wave:
                where = f"wave {wave_of[host]}" if host in wave_of else "no wave"
                problems.append(
                    Problem(
                        f"t = {e['t_s']:g} s",
                        f"host {host} goes down in wave {wave}; the plan has it in {where}",
                    )
                )
        elif kind == "migration_start" and (e.get("wave"), str(e.get("vm"))) not in moves:
            problems.append(
                Problem(
                    f"t = {e['t_s']:g} s",
                    f"VM {e.get('vm')} migrates in wave "
                    f"{e.get('wave')}; the plan does not move it then",
                )
            )
        if len(problems) >= 5:
            break
    if problems:
        problems.append(Problem("", "this timeline is not a run of this plan"))
        raise InputError(tl.source, problems)


def _assign_lanes(spans: Sequence[MigrationSpan]) -> list[MigrationSpan]:
    """Interval partitioning per source host: each span gets the lowest lane free at its start."""
    by_src: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(spans):
        by_src[s.src].append(i)
    out = list(spans)
    for idx in by_src.values():
        lane_free: list[float] = []
        for i in sorted(idx, key=lambda i: (spans[i].start, spans[i].end)):
            s = spans[i]
            lane = next((k for k, f in enumerate(lane_free) if f <= s.start), len(lane_free))
            if lane == len(lane_free):
                lane_free.append(s.end)
            else:
                lane_free[lane] = s.end
            out[i] = MigrationSpan(
                s.vm, s.src, s.dst, s.wave, s.method, s.start, s.end, s.downtime_s, s.ok, lane
            )
    return out


def headroom_from_timeline(tl: Timeline) -> list[plots.HeadroomSeries]:
    """The simulator's headroom samples per scope group and class, each held until the next."""
    samples: dict[tuple[str, str], list[tuple[float, float, float]]] = defaultdict(list)
    for e in tl.of("headroom"):
        if "group" in e and "rc" in e and "free" in e and "required" in e:
            samples[(str(e["group"]), str(e["rc"]))].append(
                (float(e["t_s"]), float(e["free"]), float(e["required"]))
            )
    end = tl.makespan_s
    out = []
    for (group, rc), pts in samples.items():
        # several samples at one instant: the state after all of them is the one that lasts
        # (a breach within the instant is an event of its own, listed with the incidents)
        last: dict[float, tuple[float, float]] = {}
        for t, free, req in pts:
            last[t] = (free, req)
        t0 = sorted(last)
        t1 = [*t0[1:], max(end, t0[-1])]
        out.append(
            plots.HeadroomSeries(
                group,
                rc,
                t0,
                t1,
                [last[t][0] for t in t0],
                [last[t][1] for t in t0],
                [f"at {_hms(t)}" for t in t0],
            )
        )
    order = {rc: i for i, rc in enumerate(("VCPU", "MEMORY_MB", "DISK_GB"))}
    out.sort(key=lambda s: (order.get(s.rc, 9), s.rc, s.group))
    return out


def _hms(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def incidents(tl: Timeline) -> list[Mapping[str, Any]]:
    """Failures, invariant breaches and stalls of the run, in time order."""
    return tl.of("failure", "breach", "stall")


# ---------------------------------------------------------------------------------------------
# Monte Carlo results (`rollwave simulate --runs N --format json`)
# ---------------------------------------------------------------------------------------------
def read_montecarlo(path: str | os.PathLike[str]) -> MonteCarlo:
    """The per-run results of a Monte Carlo series: the JSON `rollwave simulate --runs N
    --format json` prints (kind `simulation-montecarlo`)."""
    file = os.fspath(path)
    raw = read_bytes(file)
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(file, f"not a JSON document: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != "simulation-montecarlo":
        got = data.get("kind") if isinstance(data, dict) else type(data).__name__
        raise InputError(
            file,
            Problem(
                "kind",
                f"is {got!r}, expected 'simulation-montecarlo' (the output of "
                "`rollwave simulate --runs N --format json`)",
            ),
        )
    version = str(data.get("format_version", ""))
    if version.split(".")[0] != str(MAJOR):
        raise InputError(
            file,
            Problem("format_version", f"{version or 'missing'}; this rollwave reads {MAJOR}.x"),
        )
    runs = data.get("run_results")
    if not isinstance(runs, list) or not runs:
        raise InputError(file, Problem("run_results", "must be a non-empty list of runs"))
    makespans: list[float] = []
    breaches = stalls = 0
    problems = []
    for i, r in enumerate(runs):
        loc = f"run_results[{i}]"
        if not isinstance(r, dict):
            problems.append(Problem(loc, "must be an object"))
            continue
        m = r.get("makespan_s")
        if isinstance(m, bool) or not isinstance(m, (int, float)):
            problems.append(Problem(f"{loc}.makespan_s", f"must be a number, got {m!r}"))
            continue
        if r.get("completed", True) and math.isfinite(m):
            makespans.append(float(m))
        breaches += bool(r.get("headroom_breach"))
        stalls += bool(r.get("stalled"))
    if problems:
        raise InputError(file, problems)
    lb = data.get("lower_bound_s")
    lower = lb.get("p50") if isinstance(lb, dict) else None
    return MonteCarlo(
        tuple(makespans),
        breaches=breaches,
        stalls=stalls,
        total_runs=len(runs),
        source=file,
        lower_bound_s=float(lower) if isinstance(lower, (int, float)) and lower > 0 else None,
    )
