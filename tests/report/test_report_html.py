"""The HTML report and `rollwave report`: self-contained, complete, loads in a real browser,
and bad input is a clear error (exit 2) that leaves no file behind."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from planner.cli import cli
from planner.formats import load_inventory, load_plan, save_plan
from planner.plan import Migration
from planner.report import build_report, render_html, write_report
from planner.report.build import Report, summary_rows, wave_rows
from planner.report.schedule import EstimateModel, MonteCarlo, estimate_schedule
from tests.report.support import Case, bundled, example, load_images

SECTIONS = (
    "Summary",
    "Policy",
    "Schedule",
    "Headroom",
    "Utilisation per host",
    "Migrations per wave",
    "Lower bounds",
    "Waves",
    "VMs moved more than once",
    "VMs stopped in place",
)


def data_uris(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', text)]


def assert_self_contained(text: str) -> None:
    """Nothing to fetch: no external src/href, no stylesheet or script from elsewhere."""
    refs = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert refs, "no references at all: the figures are missing"
    for ref in refs:
        assert ref.startswith(("data:image/png;base64,", "#")), ref[:80]
    assert "<script" not in text and "@import" not in text and "url(" not in text


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a subprocess (exit codes, stderr, no traceback)."""
    return subprocess.run(
        [sys.executable, "-c", "from planner.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@dataclass(frozen=True)
class Rendered:
    report: Report
    files: list[Path]

    @property
    def text(self) -> str:
        return self.files[0].read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def example_report(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """The bundled example's report, written once with its PNGs (inventory read from its file,
    so the digest is the file's)."""
    inv = load_inventory(example("small.json"))
    report = build_report(inv, bundled().plan)
    d = tmp_path_factory.mktemp("example")
    return Rendered(report, write_report(report, d / "r.html", d / "png"))


# ---------------------------------------------------------------------------------------------
def test_report_of_the_bundled_example_is_complete_and_self_contained(
    example_report: Rendered,
) -> None:
    report, text = example_report.report, example_report.text
    inv = report.inventory
    assert_self_contained(text)
    for title in SECTIONS:
        assert f">{title}" in text, title
    assert report.check.ok and "valid: every rule holds at every wave" in text
    assert inv.digest is not None and inv.digest in text and "matches the plan" in text
    assert "N+1 per az" in text  # the policy
    m = report.metrics
    assert f"{m['waves']}; lower bound {m['lower_bounds']['waves']}" in text
    pngs = data_uris(text)
    assert len(pngs) == 5 and all(p[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    # one table row per wave, stopped VMs listed with their downtime
    assert text.count('<tr><td class="n">') >= len(report.plan.waves)
    for s in report.replay.stops:
        assert s.vm in text


def test_report_is_deterministic(example_report: Rendered) -> None:
    again = build_report(example_report.report.inventory, example_report.report.plan)
    assert render_html(again) == example_report.text


def test_invalid_plan_is_reported_as_invalid_with_its_violations(small: Case) -> None:
    w = small.plan.waves[-1]
    stray = next(v for v in small.inventory.vms if v.host not in w.hosts)
    bad = Migration(stray.id, stray.host, w.hosts[0])  # from a host not in the wave, into it
    plan = replace(
        small.plan, waves=(*small.plan.waves[:-1], replace(w, migrations=(*w.migrations, bad)))
    )
    report = build_report(small.inventory, plan)
    assert not report.check.ok
    text = render_html(report)
    assert "INVALID" in text and ">Violations<" in text
    for v in report.check.violations[:5]:
        assert v.rule in text


def test_digest_mismatch_is_shown_and_can_be_ignored(small: Case) -> None:
    other = replace(small.plan, inventory_sha256="0" * 64)
    rep = build_report(small.inventory, other)
    assert not rep.check.ok and rep.digest_matches is False
    assert "DIFFERS" in render_html(rep)
    assert build_report(small.inventory, other, ignore_digest=True).check.ok


def test_monte_carlo_results_add_a_figure_and_summary_row(small: Case) -> None:
    mc = MonteCarlo(tuple(3600.0 * (3 + i / 50) for i in range(50)), breaches=5, stalls=1)
    text = render_html(build_report(small.inventory, small.plan, montecarlo=mc))
    assert len(data_uris(text)) == 6
    assert "headroom breached in 10.0% of runs, stalled in 2.0%" in text


def test_write_report_writes_html_and_pngs_atomically(example_report: Rendered) -> None:
    files = example_report.files
    assert [f.name for f in files] == [
        "r.html",
        "gantt.png",
        "headroom.png",
        "utilisation.png",
        "migrations.png",
        "bounds.png",
    ]
    html_pngs = data_uris(example_report.text)
    assert html_pngs == [f.read_bytes() for f in files[1:]]  # the same pictures in both
    assert not list(files[0].parent.rglob("*.tmp"))


# ---------------------------------------------------------------------------------------------
def test_cli_report_writes_the_report(tmp_path: Path, small_files: Case) -> None:
    out = tmp_path / "report.html"
    r = CliRunner().invoke(
        cli,
        [
            "report",
            str(small_files.inventory_file),
            str(small_files.plan_file),
            "-o",
            str(out),
            "--png",
            str(tmp_path / "png"),
            "--format",
            "json",
            "--bandwidth",
            "500",
            "--overhead",
            "20",
            "--upgrade-minutes",
            "40",
        ],
    )
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["valid"] is True and result["schedule"] == "estimate"
    assert len(result["png"]) == 5 and out.exists()
    # the estimate's options reach the estimate
    model = EstimateModel(bandwidth_mib_s=500, overhead_s=20, upgrade_s=2400)
    expected = estimate_schedule(small_files.inventory, small_files.plan, model).makespan_s
    assert result["makespan_s"] == pytest.approx(expected, abs=1e-3)
    assert "500 MiB/s per migration, 20 s overhead" in out.read_text()


@pytest.mark.parametrize(
    ("swap", "expect"),
    [
        ("missing", "no such file"),
        ("order", "are the arguments in the right order?"),
        ("outdir", "does not exist"),
        ("broken", "invalid JSON"),
    ],
)
def test_cli_bad_input_exits_2_without_output(
    tmp_path: Path, small_files: Case, swap: str, expect: str
) -> None:
    inv, plan = str(small_files.inventory_file), str(small_files.plan_file)
    out = tmp_path / "report.html"
    if swap == "missing":
        inv = str(tmp_path / "nope.json")
    elif swap == "order":
        inv, plan = plan, inv
    elif swap == "outdir":
        out = tmp_path / "no" / "report.html"
    elif swap == "broken":
        Path(plan).write_text('{"kind": "plan", "format_version": "1.0", "waves": [}')
    r = run_cli("report", inv, plan, "-o", str(out))
    assert r.returncode == 2, r.stderr
    assert expect in r.stderr and "Traceback" not in r.stderr
    assert not out.exists() and not list(tmp_path.rglob("*.tmp"))


# ---------------------------------------------------------------------------------------------
def test_example_report_loads_in_chromium_with_every_image(
    example_report: Rendered, chromium: str
) -> None:
    images = load_images(chromium, example_report.files[0])
    assert len(images) == 5
    for img in images:
        assert img["complete"] and img["w"] > 0 and img["h"] > 0, img


def test_a_broken_image_is_caught_by_the_browser_check(tmp_path: Path, chromium: str) -> None:
    """The browser check above can fail: an undecodable image has naturalWidth 0."""
    page = tmp_path / "bad.html"
    page.write_text('<html><body><img alt="x" src="data:image/png;base64,AAAA"></body></html>')
    (img,) = load_images(chromium, page)
    assert img["w"] == 0


@pytest.mark.slow
def test_report_of_a_2000_host_cloud(tmp_path: Path, big: Case, chromium: str) -> None:
    """Renders in well under a minute, aggregates the per-host plots, and loads in a browser."""
    assert len(big.inventory.compute_hosts) == 2000
    out = tmp_path / "big.html"
    t0 = time.perf_counter()
    r = run_cli(
        "report", str(big.inventory_file), str(big.plan_file), "-o", str(out), "--format", "json"
    )
    elapsed = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["valid"] is True
    text = out.read_text()
    assert_self_contained(text)
    assert "One row per wave (too many hosts for one row each)" in text
    assert len(text) < 3_000_000  # aggregated, not 2,000 rows of everything
    assert elapsed < 60
    images = load_images(chromium, out)
    assert len(images) == 5 and all(i["complete"] and i["w"] > 0 for i in images)


def test_a_plan_read_back_from_its_file_reports_the_same(tmp_path: Path, small: Case) -> None:
    f = tmp_path / "p.json"
    save_plan(small.plan, f)
    a = build_report(small.inventory, small.plan)
    b = build_report(small.inventory, load_plan(f))
    assert summary_rows(a) == summary_rows(b)
    assert wave_rows(a) == wave_rows(b)
