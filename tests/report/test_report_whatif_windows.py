"""The what-if windows axis: `--vary windows=...`, `windows.hours=...`, `windows.days=...` with
`--start`: parsed and checked up front, applied to the policy, and the rows' calendar columns
(windows planned and simulated, the last host done)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from planner.errors import UsageError
from planner.formats import load_policy
from planner.report.whatif import apply_policy, parse_vary
from planner.windows import Window
from tests.report.support import example
from tests.test_sim_cli import invoke

NIGHTLY = Window(tuple(range(7)), 22 * 60, 6 * 60, "Europe/Berlin")


def _policy() -> object:
    return dataclasses.replace(load_policy(example("small-policy.yaml")), windows=(NIGHTLY,))


def test_parse_the_windows_keys() -> None:
    v = parse_vary("windows=none,daily/22:00-02:00,sat+sun/08:00-20:00@UTC")
    assert v.values == ("none", "daily/22:00-02:00", "sat+sun/08:00-20:00@UTC")
    assert parse_vary("windows.hours=4,6.5,8").values == (4, 6.5, 8)
    assert parse_vary("windows.days=daily,mon-fri,sat+sun").values == (
        "daily",
        "mon-fri",
        "sat+sun",
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("windows=daily/25:00-06:00", 'is not a time "HH:MM"'),
        ("windows=someday/22:00-06:00", "unknown day 'someday'"),
        ("windows=daily/22:00-06:00@Mars/Base", "unknown time zone 'Mars/Base'"),
        ("windows=daily/22:00-22:00", "the window never opens"),
        ("windows=daily", "is not DAYS/HH:MM-HH:MM[@ZONE]"),
        ("windows.hours=0", "above 0 and below 24"),
        ("windows.hours=24", "above 0 and below 24"),
        ("windows.hours=four", "is not a number"),
        ("windows.days=funday", "unknown day 'funday'"),
        ("windows.hours=4,4", "listed twice"),
    ],
)
def test_bad_windows_values_are_refused_naming_the_option(text: str, words: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_vary(text)
    assert f"--vary {text}" in str(exc.value) and words in str(exc.value)


def test_windows_values_change_the_policys_windows() -> None:
    pol = _policy()
    assert apply_policy(pol, {"windows": "none"}).windows == ()  # type: ignore[arg-type]
    w = apply_policy(pol, {"windows": "mon-fri/23:00-05:00"}).windows  # type: ignore[arg-type]
    assert w == (Window((0, 1, 2, 3, 4), 23 * 60, 5 * 60, "Europe/Berlin"),)  # the base's zone
    w = apply_policy(pol, {"windows.hours": 4, "windows.days": "sat+sun"}).windows  # type: ignore[arg-type]
    assert w == (Window((5, 6), 22 * 60, 2 * 60, "Europe/Berlin"),)
    # with other keys too
    p = apply_policy(pol, {"max_hosts_per_wave": 4, "windows.hours": 6})  # type: ignore[arg-type]
    assert p.max_hosts_per_wave == 4 and p.windows[0].end == 4 * 60
    base = load_policy(example("small-policy.yaml"))
    with pytest.raises(UsageError, match="no maintenance window to change"):
        apply_policy(base, {"windows.hours": 4})


def _cli(*args: str) -> tuple[int, str, str]:
    return invoke(*args)  # a RollwaveError as its exit code and message


def test_cli_whatif_over_windows(tmp_path: Path) -> None:
    pol = tmp_path / "policy.yaml"
    pol.write_text(
        Path(example("small-policy.yaml")).read_text()
        + '\nwindows:\n  - {days: daily, start: "22:00", end: "06:00", tz: Europe/Berlin}\n'
    )
    inv = str(example("small.json"))
    args = ["whatif", inv, "--policy", str(pol), "--planner", "greedy", "--jobs", "1"]
    vary = ["--vary", "windows=none,daily/22:00-02:00", "--vary", "windows.hours=3,8"]
    # a windows axis needs a start
    code, _, err = _cli(*args, *vary)
    assert code == 2 and "needs --start" in err
    code, out, err = _cli(
        *args, *vary, "--start", "2026-12-14T22:00", "--runs", "3", "--format", "json"
    )
    assert code == 0, err
    rows = {(r["windows"], r["windows.hours"]): r for r in json.loads(out)["rows"]}
    for r in rows.values():
        assert r["status"] == "ok" and r["windows_planned"] >= 1
        assert r["windows_used_p50"] >= 1 and r["p_more_windows_than_planned"] is not None
        assert r["finish_p50"].startswith("2026-12-")
    # always open: one window; nightly 3 hours: more windows, finished later
    free, short, long_ = (
        rows[("none", 3)],
        rows[("daily/22:00-02:00", 3)],
        rows[("daily/22:00-02:00", 8)],
    )
    assert free["windows_planned"] == 1
    assert short["windows_planned"] > long_["windows_planned"]
    assert short["windows_used_p50"] > long_["windows_used_p50"]
    assert short["finish_p50"] > long_["finish_p50"] >= free["finish_p50"]
    code, out, _ = _cli(
        *args, *vary, "--start", "2026-12-14T22:00", "--runs", "0", "--format", "csv"
    )
    head = out.splitlines()[0].split(",")
    assert code == 0 and head[:2] == ["windows", "windows.hours"]
    assert {"windows_planned", "last_done_planned", "windows_used_p50"} <= set(head)


def test_a_start_that_is_not_a_date_is_bad_input_and_writes_nothing(tmp_path: Path) -> None:
    plot = tmp_path / "t.png"
    code, _, err = _cli(
        "whatif",
        str(example("small.json")),
        "--policy",
        str(example("small-policy.yaml")),
        "--vary",
        "windows=none,daily/22:00-06:00",
        "--start",
        "whenever",
        "--plot",
        str(plot),
    )
    assert code == 2 and "--start: 'whenever' is not a date" in err
    assert not plot.exists()


def test_bad_windows_in_the_policy_file_are_bad_input_naming_the_file_and_place(
    tmp_path: Path,
) -> None:
    pol = tmp_path / "policy.yaml"
    pol.write_text(
        Path(example("small-policy.yaml")).read_text()
        + '\nwindows:\n  - {days: daily, start: "22:00", end: "06:00", tz: Mars/Olympus}\n'
    )
    plot = tmp_path / "t.png"
    code, _, err = _cli(
        "whatif",
        str(example("small.json")),
        "--policy",
        str(pol),
        "--vary",
        "windows.hours=4,8",
        "--start",
        "2026-12-14T22:00",
        "--plot",
        str(plot),
    )
    assert code == 2
    assert str(pol) in err and "windows[0].tz" in err and "unknown time zone" in err
    assert not plot.exists()
