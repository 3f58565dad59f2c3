"""The report as one self-contained HTML file: inline CSS, plots as PNG data URIs, no script and
no network reference, so it opens offline in any browser and can be attached to a change."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from planner import __version__
from planner.errors import InputError
from planner.formats import policy_to_dict, write_bytes_atomic, write_text_atomic
from planner.report import plots
from planner.report.build import (
    FigureSpec,
    Report,
    duration,
    figures,
    moved_twice_rows,
    shorten,
    stopped_rows,
    summary_rows,
    wave_rows,
)
from planner.report.timeline import incidents

MAX_TABLE_ROWS = 200

CSS = """
body{font-family:"DejaVu Sans",Verdana,Arial,sans-serif;font-size:15px;line-height:1.45;
color:#1a1a1a;max-width:1180px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:20px;margin:34px 0 6px;border-bottom:2px solid
#0072B2;padding-bottom:3px}h3{font-size:16px;margin:18px 0 4px}
.sub{color:#555;margin:0 0 14px}.verdict{display:inline-block;padding:3px 10px;border-radius:4px;
font-weight:bold;color:#fff}.ok{background:#009E73}.bad{background:#D55E00}
table{border-collapse:collapse;margin:6px 0 10px;font-size:14px}
th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
th{background:#f2f2f2}tr:nth-child(even) td{background:#fafafa}td.n,th.n{text-align:right}
table.kv th{background:none;width:230px}
figure{margin:10px 0 6px}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption,.note{color:#444;font-size:14px;max-width:1000px}
code{font-size:13px;background:#f4f4f4;padding:1px 4px;border-radius:3px}
nav a{margin-right:14px}details{margin:6px 0}
"""


def esc(x: object) -> str:
    return html.escape(str(x), quote=True)


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int] = ()
) -> str:
    head = "".join(
        f'<th class="n">{esc(h)}</th>' if i in numeric else f"<th>{esc(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = []
    for r in rows:
        cells = "".join(
            f'<td class="n">{esc(v)}</td>' if i in numeric else f"<td>{esc(v)}</td>"
            for i, v in enumerate(r)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _kv(rows: Iterable[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _more(total: int, shown: int, what: str) -> str:
    if total <= shown:
        return ""
    return f'<p class="note">… and {total - shown:,} more {esc(what)} (not shown).</p>'


def figure_html(spec: FigureSpec, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="fig-{esc(spec.key)}"><img alt="{esc(spec.title)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{esc(spec.caption)}</figcaption>'
        "</figure>"
    )


def _policy_rows(report: Report) -> list[tuple[str, object]]:
    p = policy_to_dict(report.plan.policy, standalone=False)
    head = p.pop("headroom")
    rows: list[tuple[str, object]] = [
        (
            "headroom",
            f"N+{head['failures']} per {head['scope']}"
            + (f", reserve {head['reserve_percent']:g}%" if head["reserve_percent"] else ""),
        )
    ]
    for k, v in p.items():
        if v is None:
            v = "-"
        elif isinstance(v, bool):
            v = "yes" if v else "no"
        elif isinstance(v, list):
            v = ", ".join(map(str, v)) or "-"
        rows.append((k, v))
    return rows


def _digest_rows(report: Report) -> list[tuple[str, object]]:
    inv, plan = report.inventory, report.plan
    match = report.digest_matches
    verdict = {
        True: "matches the plan's inventory_sha256",
        False: "DIFFERS from the plan's inventory_sha256: the plan was made for another file",
        None: "not compared",
    }[match]
    rows: list[tuple[str, object]] = []
    if inv.source:
        rows.append(("inventory file", inv.source))
    rows.append(("inventory sha256", f"{inv.digest or '-'} ({verdict})"))
    if match is False:
        rows.append(("plan made for sha256", plan.inventory_sha256))
    return rows


def render_figures(report: Report) -> list[tuple[FigureSpec, bytes]]:
    """Every figure of the report with its PNG."""
    return [(s, plots.png_bytes(s.figure)) for s in figures(report)]


def render_html(report: Report, rendered: list[tuple[FigureSpec, bytes]] | None = None) -> str:
    """The whole report; `rendered` (from `render_figures`) avoids drawing the figures twice."""
    if rendered is None:
        rendered = render_figures(report)
    specs = [s for s, _ in rendered]
    pngs = {s.key: png for s, png in rendered}
    inv, chk = report.inventory, report.check
    n_bad = len(chk.violations)
    verdict = (
        '<span class="verdict ok">valid: every rule holds at every wave</span>'
        if chk.ok
        else f'<span class="verdict bad">INVALID: {n_bad:,} violation(s)</span>'
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>rollwave report: {esc(inv.cloud)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Rolling upgrade plan: {esc(inv.cloud)}</h1>",
        f'<p class="sub">{verdict} &nbsp; checked by rollwave {esc(__version__)}; '
        f"{esc(report.schedule.note)}</p>",
        "<nav>"
        + "".join(f'<a href="#fig-{esc(s.key)}">{esc(s.title)}</a>' for s in specs)
        + ('<a href="#incidents">Failures</a>' if report.timeline is not None else "")
        + '<a href="#waves">Waves</a><a href="#moved-twice">Moved twice</a>'
        '<a href="#stopped">Stopped VMs</a></nav>',
        "<h2>Summary</h2>",
        _kv(summary_rows(report)),
        "<h3>Policy</h3>",
        _kv(_policy_rows(report)),
        "<h3>Inventory</h3>",
        _kv(_digest_rows(report)),
    ]
    if not chk.ok:
        parts.append("<h3>Violations</h3>")
        parts.append(
            _table(
                ["wave", "rule", "what"],
                (
                    [v.wave if v.wave is not None else "-", v.rule, v.message]
                    for v in chk.violations[:MAX_TABLE_ROWS]
                ),
            )
        )
        parts.append(_more(n_bad, MAX_TABLE_ROWS, "violations"))
    for s in specs:
        parts.append(f"<h2>{esc(s.title)}</h2>")
        parts.append(figure_html(s, pngs[s.key]))
    parts += _incidents_html(report)
    parts += _waves_html(report)
    parts += _moved_twice_html(report)
    parts += _stopped_html(report)
    if chk.warnings:
        parts.append(f"<h2>Warnings ({len(chk.warnings):,})</h2>")
        parts.append(
            _table(["rule", "what"], ((w.rule, w.message) for w in chk.warnings[:MAX_TABLE_ROWS]))
        )
        parts.append(_more(len(chk.warnings), MAX_TABLE_ROWS, "warnings"))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _incidents_html(report: Report) -> list[str]:
    if report.timeline is None:
        return []
    rows = incidents(report.timeline)
    out = [f'<h2 id="incidents">Failures and breaches in the simulated run ({len(rows):,})</h2>']
    if not rows:
        out.append('<p class="note">None: no failure, no invariant breached, no stall.</p>')
        return out
    out.append(
        '<p class="note">What went wrong during the run, in time order: failures drawn by the '
        "simulator (and whether headroom absorbed them), invariants breached, stalls.</p>"
    )
    out.append(
        _table(
            ["time", "event", "host", "what"],
            (
                [
                    duration(float(e["t_s"])),
                    e.get("event", ""),
                    e.get("host") or "-",
                    e.get("detail") or "",
                ]
                for e in rows[:MAX_TABLE_ROWS]
            ),
        )
    )
    out.append(_more(len(rows), MAX_TABLE_ROWS, "events"))
    return out


def _waves_html(report: Report) -> list[str]:
    rows = wave_rows(report)
    table = _table(
        [
            "wave",
            "hosts",
            "live",
            "cold",
            "stopped",
            "2nd+ moves",
            "start",
            "end",
            "min free / required",
        ],
        (
            [
                r["index"],
                f"{len(r['hosts'])}: " + shorten(r["hosts"], 6),
                r["live"],
                r["cold"],
                r["stops"],
                r["repeat"],
                duration(r["start_s"]),
                duration(r["end_s"]),
                "-" if r["min_headroom_ratio"] is None else f"{r['min_headroom_ratio']:.2f}",
            ]
            for r in rows[:MAX_TABLE_ROWS]
        ),
        numeric=(0, 2, 3, 4, 5, 6, 7, 8),
    )
    return [
        '<h2 id="waves">Waves</h2>',
        '<p class="note">Start and end are times since the start of the upgrade; the last column'
        " is the tightest headroom of the wave over every scope group and class (below 1.00 the "
        "policy is broken).</p>",
        table,
        _more(len(rows), MAX_TABLE_ROWS, "waves"),
    ]


def _moved_twice_html(report: Report) -> list[str]:
    rows = moved_twice_rows(report)
    out = [f'<h2 id="moved-twice">VMs moved more than once ({len(rows):,})</h2>']
    if not rows:
        out.append('<p class="note">None: every VM that moves, moves once.</p>')
        return out
    out.append(
        '<p class="note">A VM moves again when an earlier wave sent it to a host that is '
        "upgraded later. Each extra move costs a migration and its risk.</p>"
    )
    out.append(
        _table(
            ["VM", "id", "moves"],
            (
                [
                    r["vm"],
                    r["id"],
                    "; ".join(f"wave {w}: {s} → {d} ({k})" for w, s, d, k in r["moves"]),
                ]
                for r in rows[:MAX_TABLE_ROWS]
            ),
        )
    )
    out.append(_more(len(rows), MAX_TABLE_ROWS, "VMs"))
    return out


def _stopped_html(report: Report) -> list[str]:
    rows = stopped_rows(report)
    out = [f'<h2 id="stopped">VMs stopped in place ({len(rows):,})</h2>']
    if not rows:
        out.append('<p class="note">None: every VM stays up.</p>')
        return out
    total = sum(r["downtime_s"] or 0.0 for r in rows)
    kind = "simulated" if report.schedule.source == "simulation" else "estimated"
    out.append(
        f'<p class="note">VMs that cannot migrate (migration: none) are shut down while their '
        f"host is upgraded. Downtime ({kind}) in all: {esc(duration(total))}; longest first.</p>"
    )
    out.append(
        _table(
            ["VM", "id", "host", "wave", "memory (GiB)", "downtime"],
            (
                [
                    r["vm"],
                    r["id"],
                    r["host"],
                    r["wave"],
                    f"{r['memory_mb'] / 1024:.1f}",
                    duration(r["downtime_s"]),
                ]
                for r in rows[:MAX_TABLE_ROWS]
            ),
            numeric=(3, 4, 5),
        )
    )
    out.append(_more(len(rows), MAX_TABLE_ROWS, "VMs"))
    return out


def write_report(
    report: Report, output: str | os.PathLike[str], png_dir: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Write the HTML file (atomically) and, with `png_dir`, every figure as a PNG there.
    Returns the files written."""
    rendered = render_figures(report)
    return write_page(output, render_html(report, rendered), rendered, png_dir)


def write_page(
    output: str | os.PathLike[str],
    text: str,
    rendered: Sequence[tuple[FigureSpec, bytes]],
    png_dir: str | os.PathLike[str] | None,
) -> list[Path]:
    """The page (atomically) and, with `png_dir`, each figure's PNG there (the directory made
    first: bad input when it cannot be). Returns the files written, the page first."""
    written = []
    if png_dir is not None:
        d = Path(png_dir)
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(str(d), f"cannot create directory: {exc.strerror or exc}") from None
        for spec, data in rendered:
            write_bytes_atomic(d / f"{spec.key}.png", data)
            written.append(d / f"{spec.key}.png")
    write_text_atomic(output, text)
    written.insert(0, Path(output))
    return written
