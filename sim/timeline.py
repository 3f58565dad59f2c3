"""What a run produced, as data: the JSON report (`result_to_dict`) and the timeline file the
reports plot (`write_timeline`), JSON lines or CSV, format version 1.0 (docs/simulation.md).

Timeline, JSON lines (`.jsonl`, or any name not ending in `.csv`): the first line is a header
`{"format_version": "1.0", "kind": "timeline", "cloud": ..., "seed": ..., "makespan_s": ...,
"columns": [...]}`, then one JSON object per event with the columns below (a column that does
not apply to the event is left out). CSV (`.csv`): a first line
`# rollwave timeline format_version=1.0 kind=timeline`, then a header row with the same columns,
one row per event.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import Any

from planner.formats import write_text_atomic
from sim.engine import OUTCOME_NAMES, Prepared, SimResult

FORMAT_VERSION = "1.0"
# A live migration's outcomes when it was force-completed (Nova's force-complete: post-copy where
# permitted, else the guest paused).
FORCED = ("post-copy", "paused")
# The executor's fallback when its force-complete did not take (failures.force_complete).
FALLBACK_DETAIL = {
    "fallback-cold": "force-complete {}: live migration aborted, then migrated cold",
    "fallback-stayed": "force-complete {}: live migration aborted; no cold fallback, the VM "
    "stays and its host is not upgraded",
}
COLUMNS = (
    "t_s",
    "event",
    "wave",
    "host",
    "vm",
    "to",
    "method",
    "bytes",
    "downtime_s",
    "outcome",
    "group",
    "rc",
    "free",
    "required",
    "detail",
)
EVENTS = (
    "wave_start",
    "admission_refused",
    "host_disable",
    "migration_start",
    "migration_failed",
    "migration_end",
    "upgrade_start",
    "rollback_start",
    "rollback_end",
    "host_enable",
    "wave_end",
    "soak_start",
    "soak_end",
    "failure",
    "breach",
    "headroom",
    "stall",
)


def _num(x: float, nd: int = 3) -> float | None:
    return round(x, nd) if math.isfinite(x) else None


def hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "never"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------
def summary(prep: Prepared, res: SimResult) -> dict[str, Any]:
    n = len(prep.m_vm)
    started = [i for i in range(n) if res.mig_state[i] >= 0]
    codes = [res.mig_state[i] for i in started]
    by = {name: 0 for name in OUTCOME_NAMES}
    for c in codes:
        by[OUTCOME_NAMES[c]] += 1
    downs = [res.mig_down[i] for i in range(n) if res.mig_down[i] > 0]
    stop_total = sum(res.stop_down.values())
    statuses = list(res.host_status.values())
    return {
        "migrations": n,
        "live": sum(1 for c in prep.m_cold if not c),
        "cold": sum(1 for c in prep.m_cold if c),
        "stops": sum(len(s) for _, _, stops in prep.waves for s in stops.values()),
        "outcomes": {k: v for k, v in by.items() if v},
        "not_started": n - len(started),
        "non_converging": sum(1 for i in range(n) if prep.m_flag[i]),
        "retries": sum(max(0, a - 1) for a in res.mig_attempts),
        "bytes": _num(sum(res.mig_bytes), 0),
        "downtime_total_s": _num(res.total_downtime_s),
        "downtime_migrations_s": _num(sum(res.mig_down)),
        "downtime_stops_s": _num(stop_total),
        "downtime_max_s": _num(max(downs) if downs else 0.0),
        "downtime_worst_vm_s": _num(
            max((d for d, _ in vm_downtime(prep, res).values()), default=0.0)
        ),
        "remedies": remedies(prep, res),
        "force_fallbacks": {
            "cold": by["fallback-cold"],
            "stayed": by["fallback-stayed"],
        },
        "hosts": len(statuses),
        "hosts_upgraded": statuses.count("upgraded"),
        "hosts_not_upgraded": statuses.count("not-upgraded"),
        "hosts_upgrade_failed": statuses.count("upgrade-failed"),
        "hosts_rolled_back": statuses.count("rolled-back"),
        "rollback_s": _num(res.rollback_s),
        "soak_s": _num(res.soak_s),
        "canary": {"hosts": list(res.canary_hosts), "failed": res.canary_failed}
        if res.canary_hosts
        else None,
        "hosts_crashed": statuses.count("crashed") + statuses.count("down"),
        "vms_lost": res.vms_lost,
        "failures": len(res.failures),
        "failures_absorbed": sum(1 for f in res.failures if f.absorbed),
        "breaches": dict(sorted(res.breach_counts.items())),
        "events": res.events,
        "execution": res.execution,
        "admission_refusals": dict(sorted(res.refusals.items())),
    }


def remedies(prep: Prepared, res: SimResult) -> dict[str, int]:
    """The plan's remedies as the run carried them out: live migrations force-completed (by the
    executor, at the planned time or when their progress stalled), cold migrations and stops in
    place the plan made as a remedy."""
    forced = sum(
        1
        for mi, f in enumerate(prep.m_force)
        if f is not None and OUTCOME_NAMES[res.mig_state[mi]] in FORCED
    )
    cold = sum(1 for r in prep.m_remedy if r == "cold")
    return {"force-complete": forced, "cold": cold, "stop": len(prep.stop_remedy)}


def vm_downtime(prep: Prepared, res: SimResult) -> dict[int, tuple[float, str]]:
    """Per VM with downtime: its seconds down in the run (summed over its migrations and its stop)
    and how: `live` (the switch-over pause), `force-complete`, `cold`, `fallback-cold` (cold after
    a force-complete that did not take), `stop` (stopped in place for its host's maintenance) or
    `stop-remedy` (stopped as the policy's remedy)."""
    out: dict[int, tuple[float, str]] = {}
    for mi, d in enumerate(res.mig_down):
        if d <= 0:
            continue
        v = prep.m_vm[mi]
        st = res.mig_state[mi]
        how = (
            "cold"
            if prep.m_cold[mi]
            else "fallback-cold"
            if st >= 0 and OUTCOME_NAMES[st] == "fallback-cold"
            else "force-complete"
            if prep.m_force[mi] is not None and st >= 0 and OUTCOME_NAMES[st] in FORCED
            else "live"
        )
        prev = out.get(v)
        out[v] = (d + (prev[0] if prev else 0.0), how if prev is None or how != "live" else prev[1])
    for j, d in res.stop_down.items():
        prev = out.get(j)
        how = "stop-remedy" if j in prep.stop_remedy else "stop"
        out[j] = (d + (prev[0] if prev else 0.0), how)
    return out


def result_to_dict(prep: Prepared, res: SimResult, *, per_vm: bool = True) -> dict[str, Any]:
    inv, hosts = prep.inv, prep.hosts
    lb = res.lower_bound_s
    out: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "kind": "simulation",
        "makespan_s": _num(res.makespan_s),
        "makespan": hms(res.makespan_s),
        "completed": res.completed,
        "stalled": res.stalled,
        "stall": res.stall,
        "lower_bound_s": _num(lb),
        "makespan_over_lower_bound": _num(res.makespan_s / lb, 4) if lb > 0 else None,
        "plan_lower_bound_s": _num(res.plan_lower_bound_s),
        "seed": res.seed,
        "cloud": inv.cloud,
        "summary": summary(prep, res),
        "check": {
            "valid": prep.check_count == 0,
            "violations": prep.check_count,
            "first": prep.check_violations,
        },
        "waves": [
            {
                "index": w + 1,
                "start_s": _num(res.wave_start[w]),
                "end_s": _num(res.wave_end[w]),
                "duration_s": _num(res.wave_end[w] - res.wave_start[w]),
                "hosts": [hosts[h] for h in prep.waves[w][0]],
                "migrations": sum(len(q) for q in prep.waves[w][1].values()),
            }
            for w in range(len(prep.waves))
        ],
        "hosts": [
            {
                "host": hosts[h],
                "status": res.host_status[h],
                "maintenance_start_s": _num(t0),
                "upgrade_start_s": _num(t1),
                "end_s": _num(t2),
            }
            for h, (t0, t1, t2) in sorted(res.host_times.items())
        ],
        "failures": [f.to_dict() for f in res.failures],
        "breaches": {
            "counts": dict(sorted(res.breach_counts.items())),
            "first": [b.to_dict() for b in res.breaches],
        },
        "headroom": [
            {
                "t_s": _num(t),
                "group": prep.groups[g],
                "rc": prep.classes[c],
                "free": free,
                "required": req,
                "slack": free - req,
            }
            for t, g, c, free, req in res.headroom_samples
        ],
        "headroom_min": [
            {"group": prep.groups[g], "rc": prep.classes[c], "min_slack": ms}
            for g, row in enumerate(res.min_slack)
            for c, ms in enumerate(row)
            if ms < 1 << 61
        ],
        "model": prep.model.to_dict(),
    }
    if res.calendar is not None:
        out["calendar"] = res.calendar.to_dict()
    if per_vm:
        out["vms"] = [vm_record(prep, res, mi) for mi in range(len(prep.m_vm))]
        out["stops"] = [
            {"vm": inv.vms[j].id, "downtime_s": _num(d)}
            | ({"remedy": "stop"} if j in prep.stop_remedy else {})
            for j, d in sorted(res.stop_down.items())
        ]
        down = vm_downtime(prep, res)
        out["downtime"] = [
            {"vm": inv.vms[v].id, "downtime_s": _num(d, 4), "how": how}
            for v, (d, how) in sorted(down.items(), key=lambda kv: (-kv[1][0], kv[0]))
        ]
    return out


def vm_record(prep: Prepared, res: SimResult, mi: int) -> dict[str, Any]:
    st = res.mig_state[mi]
    rec = {
        "vm": prep.inv.vms[prep.m_vm[mi]].id,
        "wave": prep.m_wave[mi] + 1,
        "from": prep.hosts[prep.m_src[mi]],
        "to": prep.hosts[prep.m_dst[mi]],
        "method": "cold" if prep.m_cold[mi] else "live",
        "start_s": _num(res.mig_start[mi]),
        "end_s": _num(res.mig_end[mi]),
        "bytes": _num(res.mig_bytes[mi], 0),
        "downtime_s": _num(res.mig_down[mi], 4),
        "outcome": OUTCOME_NAMES[st] if st >= 0 else "not-started",
        "attempts": res.mig_attempts[mi],
        "non_converging": prep.m_flag[mi],
        "bandwidth_mb_s": _num(res.mig_bw[mi] / (1 << 20), 1),
    }
    if prep.m_remedy[mi] is not None:
        rec["remedy"] = prep.m_remedy[mi]
    if prep.m_force[mi] is not None:
        rec["force_complete_after_s"] = prep.m_force[mi]
    return rec


# ---------------------------------------------------------------------------------------------
# The timeline file
# ---------------------------------------------------------------------------------------------
def timeline_rows(prep: Prepared, res: SimResult) -> list[dict[str, Any]]:
    """Every event of the run in time order, as rows with COLUMNS."""
    if res.timeline is None:
        raise ValueError("the run was made with record=False; it has no timeline")
    rows: list[dict[str, Any]] = []
    inv = prep.inv
    empty = dict.fromkeys(COLUMNS)
    for t, event, wave, host, mi, peer, detail in res.timeline:
        row = dict(empty)
        row.update(t_s=_num(t), event=event, wave=wave, host=host, to=peer, detail=detail)
        if mi is not None:
            row["vm"] = inv.vms[prep.m_vm[mi]].id
            row["method"] = "cold" if prep.m_cold[mi] else "live"
            if event == "migration_start":
                row["detail"] = f"attempt {detail}"
            if event == "migration_failed":
                row["detail"] = f"attempt {detail} failed"
            if event == "migration_end":
                st = res.mig_state[mi]
                row["outcome"] = OUTCOME_NAMES[st] if st >= 0 else None
                row["bytes"] = _num(prep.m_bytes[mi], 0)
                row["downtime_s"] = _num(res.mig_down[mi], 4)
                if row["outcome"] in FALLBACK_DETAIL:
                    row["detail"] = FALLBACK_DETAIL[row["outcome"]].format(
                        prep.model.force_complete
                    )
        rows.append(row)
    for t, g, c, free, req in res.headroom_samples:
        row = dict(empty)
        row.update(
            t_s=_num(t),
            event="headroom",
            group=prep.groups[g],
            rc=prep.classes[c],
            free=free,
            required=req,
        )
        rows.append(row)
    order = {e: i for i, e in enumerate(EVENTS)}
    rows.sort(
        key=lambda r: (r["t_s"] if r["t_s"] is not None else math.inf, order.get(r["event"], 99))
    )
    return rows


def write_timeline(path: str | os.PathLike[str], prep: Prepared, res: SimResult) -> None:
    """JSON lines, or CSV when the name ends in .csv; atomically."""
    name = os.fspath(path)
    rows = timeline_rows(prep, res)
    if name.lower().endswith(".csv"):
        buf = io.StringIO()
        buf.write(f"# rollwave timeline format_version={FORMAT_VERSION} kind=timeline\n")
        w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
        write_text_atomic(name, buf.getvalue())
        return
    header = {
        "format_version": FORMAT_VERSION,
        "kind": "timeline",
        "cloud": prep.inv.cloud,
        "seed": res.seed,
        "makespan_s": _num(res.makespan_s),
        "completed": res.completed,
        "columns": list(COLUMNS),
    }
    cal = prep.calendar
    if cal is not None:  # the run in calendar time: its start and the windows' openings it met
        end = res.makespan_s
        header["calendar"] = {
            "start": cal.start.isoformat(),
            "openings": [
                [_num(a), _num(b) if math.isfinite(b) else None] for a, b in cal.nights if a <= end
            ],
        }
    lines = [json.dumps(header, ensure_ascii=False)]
    lines.extend(
        json.dumps({k: v for k, v in r.items() if v is not None}, separators=(",", ":"))
        for r in rows
    )
    write_text_atomic(name, "\n".join(lines) + "\n")
