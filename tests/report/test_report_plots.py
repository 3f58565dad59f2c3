"""Plot functions on small data: they draw what they are given, in both their forms."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from planner.report import plots
from planner.report.schedule import HostSpan, MigrationSpan, Schedule, StopSpan, WaveSpan


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def texts(fig: Figure) -> list[str]:
    out = [a.get_text() for a in fig.findobj(Text) if isinstance(a, Text)]
    return [t for t in out if t]


def schedule(n_hosts: int, *, failed: bool = False, stops: bool = True) -> Schedule:
    """n_hosts hosts, two per wave, two migrations each (the second one in lane 1)."""
    waves, hosts, migs, stop_spans = [], [], [], []
    t = 0.0
    for w in range(1, (n_hosts + 1) // 2 + 1):
        names = [f"h{i:04d}" for i in range(2 * (w - 1), min(2 * w, n_hosts))]
        for name in names:
            migs.append(MigrationSpan(f"{name}-v1", name, "x", w, "live", t, t + 30, 0.0))
            migs.append(
                MigrationSpan(
                    f"{name}-v2", name, "x", w, "cold", t, t + 50, 50.0, ok=not failed, lane=1
                )
            )
            hosts.append(HostSpan(name, w, t, t + 50, t + 350))
        if stops:
            stop_spans.append(StopSpan(f"{names[0]}-v3", names[0], w, t + 50, t + 350))
        waves.append(WaveSpan(w, t, t + 350))
        t += 350
    return Schedule("estimate", tuple(waves), tuple(hosts), tuple(migs), tuple(stop_spans))


# ---------------------------------------------------------------------------------------------
def test_png_is_the_documented_width_and_deterministic() -> None:
    a = plots.png_bytes(plots.gantt_figure(schedule(4)))
    b = plots.png_bytes(plots.gantt_figure(schedule(4)))
    assert a == b
    w, h = png_size(a)
    assert w == plots.WIDTH * plots.DPI and h > 200
    assert b"Software" not in a[:200]  # no version stamp in the header chunks


@pytest.mark.parametrize(
    ("seconds", "unit"), [(30, "s"), (119, "s"), (120, "min"), (7199, "min"), (7200, "h")]
)
def test_time_unit(seconds: float, unit: str) -> None:
    assert plots.time_unit(seconds)[1] == unit


def test_class_units_are_an_operators() -> None:
    assert plots.class_unit("MEMORY_MB") == (1024.0, "GiB")
    assert plots.class_unit("VCPU") == (1.0, "vCPU")
    assert plots.class_unit("CUSTOM_GPU") == (1.0, "CUSTOM_GPU")


def test_in_flight_counts_open_intervals_and_ends_before_starts() -> None:
    t, c = plots.in_flight([0, 0, 5], [5, 10, 6])
    assert list(zip(t.tolist(), c.tolist(), strict=True)) == [
        (0, 1),
        (0, 2),
        (5, 1),
        (5, 2),
        (6, 1),
        (10, 0),
    ]
    t, c = plots.in_flight([], [])
    assert c.tolist() == [0]


# ---------------------------------------------------------------------------------------------
def test_gantt_draws_one_row_per_host_grouped_by_wave() -> None:
    fig = plots.gantt_figure(schedule(5))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"h{i:04d}" for i in range(5)]
    labels = texts(fig)
    assert {"wave 1", "wave 2", "wave 3"} <= set(labels)
    assert "VM stopped in place" in labels and "failed" not in labels
    assert any("hours" in s or "(s)" in s or "(min)" in s for s in labels)


def test_gantt_shows_failures_in_the_legend() -> None:
    assert "failed migration attempt" in texts(plots.gantt_figure(schedule(4, failed=True)))


def test_gantt_aggregates_beyond_max_rows() -> None:
    fig = plots.gantt_figure(schedule(12), max_rows=10)
    ax, ax2 = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"wave {i}" for i in range(1, 7)]
    assert "2 hosts, 4 migrations" in " ".join(texts(fig))
    # the lower panel counts migrations in flight: 2 hosts x 2 migrations at once
    line = next(ln for ln in ax2.get_lines() if ln.get_label() == "migrations in flight")
    assert max(line.get_ydata()) == 4  # type: ignore[type-var, arg-type]


def test_gantt_of_an_empty_plan_says_so() -> None:
    fig = plots.gantt_figure(Schedule("estimate", (), (), (), ()))
    assert "the plan has no waves" in texts(fig)


# ---------------------------------------------------------------------------------------------
def series(
    group: str, free: list[float], required: list[float], rc: str = "MEMORY_MB"
) -> plots.HeadroomSeries:
    n = len(free)
    t0 = [0.0] + [100.0 * i for i in range(n - 2)] + [100.0 * (n - 2)]
    t1 = [0.0] + [100.0 * (i + 1) for i in range(n - 2)] + [100.0 * (n - 2)]
    labels = ["before"] + [f"wave {i + 1}" for i in range(n - 2)] + ["after"]
    return plots.HeadroomSeries(group, rc, t0, t1, free, required, labels)


def test_headroom_marks_the_tightest_point_by_free_over_required() -> None:
    gib = 1024.0
    fig = plots.headroom_figure(
        [
            series("az1", [100 * gib, 60 * gib, 90 * gib, 100 * gib], [40 * gib] * 4),
            series("az2", [100 * gib, 80 * gib, 30 * gib, 100 * gib], [10 * gib] * 4),
        ]
    )
    (ax,) = fig.axes
    title = ax.get_title(loc="left")
    assert "az1, wave 1: free = 1.50 x required (20.0 GiB above)" in title
    assert ax.get_ylabel() == "MEMORY_MB free (GiB)"
    assert "az2 required" in [ln.get_label() for ln in ax.get_lines()]


def test_headroom_below_the_requirement_is_flagged() -> None:
    fig = plots.headroom_figure([series("az1", [50.0, 10.0, 50.0], [20.0, 20.0, 20.0], "VCPU")])
    title = next(t for t in fig.findobj(Text) if "BELOW" in t.get_text())
    assert title.get_text().startswith("VCPU: tightest: az1, wave 1: free = 0.50 x required")
    assert title.get_color() == plots.VERMILLION


def test_headroom_switches_to_ratios_with_many_groups() -> None:
    many = [series(f"az{i}", [10.0, 8.0, 10.0, 10.0], [4.0] * 4) for i in range(1, 11)]
    many[8] = series("az9", [10.0, 5.0, 4.2, 10.0], [4.0] * 4)  # the tightest, at wave 2
    ax = plots.headroom_figure(many, max_groups=6).axes[0]
    assert "free / required" in ax.get_ylabel()
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert "required (1.0)" in labels and "az9 (tightest)" in labels
    assert "az9, wave 2: free = 1.05 x required" in ax.get_title(loc="left")
    band = next(c for c in ax.collections if c.get_label() == "range over 10 groups")
    ys = np.asarray(band.get_paths()[0].vertices)[:, 1]
    assert ys.min() == pytest.approx(4.2 / 4.0) and ys.max() == pytest.approx(10 / 4.0)


def test_groups_sort_naturally() -> None:
    assert sorted(["az10", "az2", "az1"], key=plots.natural_key) == ["az1", "az2", "az10"]


def test_headroom_one_panel_per_class() -> None:
    fig = plots.headroom_figure(
        [series("az1", [1.0, 1.0, 1.0], [0.0] * 3, rc) for rc in ("VCPU", "MEMORY_MB", "DISK_GB")]
    )
    assert [ax.get_ylabel().split()[0] for ax in fig.axes] == ["VCPU", "MEMORY_MB", "DISK_GB"]


# ---------------------------------------------------------------------------------------------
def util(n_hosts: int) -> plots.UtilisationData:
    rng = np.random.default_rng(1)
    values = rng.uniform(0, 1, size=(3, n_hosts, 2))
    down = np.zeros((3, n_hosts), bool)
    down[1, :2] = True  # two hosts in maintenance at the worst wave
    return plots.UtilisationData(
        hosts=[f"h{i}" for i in range(n_hosts)],
        groups=["az1" if i % 2 else "az2" for i in range(n_hosts)],
        classes=["VCPU", "MEMORY_MB"],
        states=["before", "wave 3 (worst)", "after"],
        values=values,
        down=down,
    )


def test_utilisation_heatmap_marks_hosts_down() -> None:
    data = util(6)
    fig = plots.utilisation_figure(data)
    ax = fig.axes[0]
    hatched = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_hatch() == "///"]
    assert len(hatched) == 2 * 2  # two hosts down x two classes
    labels = texts(fig)
    assert labels.count("down") == 4
    assert f"{data.values[0, 0, 0] * 100:.0f}" in labels
    assert [t.get_text() for t in ax.get_xticklabels()][:3] == list(data.states)


def test_utilisation_aggregates_beyond_max_rows() -> None:
    data = util(300)
    fig = plots.utilisation_figure(data, max_rows=60)
    assert len(fig.axes) == 2  # one panel per class
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list(data.states)
    assert "300 compute hosts" in fig.get_suptitle()
    # the fullest host of each state and group is marked
    marks = fig.axes[0].collections
    tops = sorted(float(np.nanmax(np.asarray(c.get_offsets())[:, 1])) for c in marks)
    assert max(tops) == pytest.approx(float(data.values[:, :, 0][~data.down].max()) * 100)


# ---------------------------------------------------------------------------------------------
def test_migrations_per_wave_stacks_live_cold_and_stops() -> None:
    fig = plots.migrations_per_wave_figure([1, 2], [3, 4], [1, 0], [0, 2], [0, 1])
    ax = fig.axes[0]
    tops = sorted({round(p.get_y() + p.get_height(), 6) for p in ax.patches})  # type: ignore[attr-defined]
    assert tops[-1] == 6  # wave 2: 4 live + 0 cold + 2 stopped
    assert "of which a VM's 2nd+ move" in [ln.get_label() for ln in ax.get_lines()]


def test_bounds_figure_draws_each_bound_and_the_plan() -> None:
    fig = plots.bounds_figure(9, {"max_hosts_per_wave": 8, "headroom": 6}, 124, 121)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["max_hosts_per_wave", "headroom"]
    assert "plan: 9 waves" in texts(fig) and "124" in texts(fig)


def test_makespan_figure_marks_percentiles() -> None:
    runs = [3600.0 * (3 + i / 100) for i in range(100)]
    fig = plots.makespan_figure(runs, breach_probability=0.25)
    labels = texts(fig)
    p95 = np.percentile(runs, 95) / 3600
    assert f"P95 = {p95:,.2f} h" in labels
    assert "P(headroom breach) = 25.0%" in fig.axes[0].get_title(loc="left")


def test_empty_inputs_draw_a_message_not_an_error() -> None:
    assert "no runs" in texts(plots.makespan_figure([]))
    assert "the plan has no waves" in texts(plots.migrations_per_wave_figure([], [], [], [], []))
    assert "no headroom data" in texts(plots.headroom_figure([]))


def test_gantt_marks_hosts_not_upgraded() -> None:
    from dataclasses import replace

    s = schedule(4)
    bad = replace(s.hosts[1], ok=False)
    s = replace(s, hosts=(s.hosts[0], bad, *s.hosts[2:]))
    fig = plots.gantt_figure(s)
    assert "host not upgraded" in texts(fig)
    ticks = {t.get_text(): t.get_color() for t in fig.axes[0].get_yticklabels()}
    assert ticks[bad.host] == plots.FAILED and ticks[s.hosts[0].host] != plots.FAILED
    agg = plots.gantt_figure(s, max_rows=2)
    assert "2 hosts, 4 migrations, 1 NOT upgraded" in " ".join(texts(agg))
