"""The report of a side-by-side plan: both clouds on one time axis (`planner.report.sidebyside`,
`rollwave report` on a plan with mode side-by-side)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from planner.app.report import write_side_by_side_report
from planner.checker import check_plan
from planner.formats import save_inventory, save_plan
from planner.report.sidebyside import HandOver, SideBySideReport, lanes, vms_per_cloud
from sim.crosscloud import simulate_side_by_side
from sim.model import DEFAULT
from tests.clouds_sbs import six_and_two
from tests.test_sidebyside import run


def _report(max_rows: int = 60) -> SideBySideReport:
    fx = six_and_two()
    run = simulate_side_by_side(fx.inventory, fx.plan, DEFAULT)
    cc = DEFAULT.crosscloud
    return SideBySideReport(
        fx.inventory,
        fx.plan,
        check_plan(fx.inventory, fx.plan),
        run,
        HandOver(cc.control_plane_s, cc.join_s),
        max_rows=max_rows,
    )


def test_every_host_has_a_lane_in_the_old_cloud_then_its_role() -> None:
    rep = _report()
    got = {lane.label: lane for lane in lanes(rep)}
    assert set(got) == {
        "cmp-1 (w1)", "cmp-2 (w1)", "cmp-3 (w1)", "cmp-4 (w2)", "cmp-5 (w3)", "cmp-6 (w3)",
        "ctl-1 (w3)", "ctl-2 (w4)",
    }  # fmt: skip
    ctl, comp, ret = got["cmp-1 (w1)"], got["cmp-4 (w2)"], got["ctl-2 (w4)"]
    assert ctl.role == "new-controller"
    assert ctl.ready_s == pytest.approx(ctl.old_end_s + DEFAULT.crosscloud.control_plane_s)
    assert comp.role == "new-compute"
    assert comp.ready_s == pytest.approx(comp.old_end_s + DEFAULT.crosscloud.join_s)
    assert ret.role == "retired" and ret.ready_s == ret.old_end_s
    # Hosts of a later wave stay in the old cloud longer.
    assert got["cmp-5 (w3)"].old_end_s > comp.old_end_s > ctl.old_end_s - 1e-9


def test_beyond_max_rows_one_lane_per_wave() -> None:
    rep = _report(max_rows=3)
    assert [lane.label for lane in lanes(rep)] == [
        "wave 1 (3 hosts)", "wave 2 (1 host)", "wave 3 (3 hosts)", "wave 4 (1 host)",
    ]  # fmt: skip


def test_vms_cross_from_the_old_cloud_into_the_new_one_down_while_crossing() -> None:
    rep = _report()
    ts, old, new, down = vms_per_cloud(rep)
    assert (old[0], new[0], down[0]) == (6, 0, 0)
    assert (old[-1], new[-1], down[-1]) == (0, 6, 0)
    assert max(down) >= 1
    assert all(o + n + d == 6 for o, n, d in zip(old, new, down, strict=True))
    assert ts == sorted(ts)


def test_the_report_is_written_with_both_clouds(tmp_path: Path) -> None:
    fx = six_and_two()
    out = tmp_path / "r.html"
    done = write_side_by_side_report(fx.inventory, fx.plan, out, tmp_path / "png")
    text = out.read_text()
    assert "Side-by-side upgrade plan" in text and "valid: every rule holds" in text
    assert "Both clouds over time" in text and "data:image/png;base64," in text
    assert "cross-cloud moves</th><td>6" in text
    assert [p.name for p in done.files[1:]] == ["sbs-gantt.png"]


def test_rollwave_report_draws_a_side_by_side_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fx = six_and_two()
    inv, plan = tmp_path / "inv.json", tmp_path / "plan.json"
    save_inventory(fx.inventory, inv)
    save_plan(replace(fx.plan, inventory_sha256=""), plan)
    args = ["report", str(inv), str(plan), "-o", str(tmp_path / "r.html"), "--ignore-digest"]
    code, stdout, _ = run([*args, "--format", "json"], capsys)
    assert code == 0
    data = json.loads(stdout)
    assert data["valid"] is True and data["schedule"] == "side-by-side simulation"
    assert data["makespan_s"] > DEFAULT.crosscloud.control_plane_s
    code, _, stderr = run([*args, "--bandwidth", "100"], capsys)
    assert code == 2
    assert "--bandwidth: not for a side-by-side plan" in stderr
