"""The maintenance-window calendar (planner/windows.py): openings in UTC, exact in local
wall-clock time across DST changes, sorted, disjoint; is_open, next_open and open_until agree."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.windows import (
    FOREVER,
    UTC,
    Window,
    is_open,
    next_open,
    open_until,
    openings,
    parse_days,
    parse_time,
)

BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"


def win(days: str, start: str, end: str, tz: str = BERLIN, azs: tuple[str, ...] = ()) -> Window:
    return Window(parse_days(days), parse_time(start), parse_time(end, end=True), tz, azs)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def first(
    windows: list[Window], start: dt.datetime, n: int, az: str | None = None
) -> list[tuple[dt.datetime, dt.datetime]]:
    return list(itertools.islice(openings(windows, start, az), n))


# ---------------------------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------------------------
def test_weeknights_in_berlin() -> None:
    w = [win("mon-fri", "22:00", "06:00")]
    # Monday 14 December 2026, noon UTC; Berlin is UTC+1 in winter
    got = first(w, utc(2026, 12, 14, 12), 6)
    assert got[0] == (utc(2026, 12, 14, 21), utc(2026, 12, 15, 5))
    assert got[4] == (utc(2026, 12, 18, 21), utc(2026, 12, 19, 5))  # Friday night into Saturday
    assert got[5] == (utc(2026, 12, 21, 21), utc(2026, 12, 22, 5))  # then Monday again


def test_an_opening_already_open_is_clipped_to_the_start() -> None:
    w = [win("daily", "22:00", "06:00")]
    assert first(w, utc(2026, 12, 15, 2), 1) == [(utc(2026, 12, 15, 2), utc(2026, 12, 15, 5))]


@pytest.mark.parametrize(
    ("tz", "day", "hours"),
    [
        (BERLIN, dt.date(2026, 3, 29), 3),  # clocks go forward at 02:00: 01:00-05:00 is 3 h
        (BERLIN, dt.date(2026, 10, 25), 5),  # and back at 03:00: 5 h
        (NEW_YORK, dt.date(2026, 3, 8), 3),
        (NEW_YORK, dt.date(2026, 11, 1), 5),
        ("UTC", dt.date(2026, 3, 29), 4),
    ],
)
def test_a_window_keeps_its_wall_clock_times_across_dst(tz: str, day: dt.date, hours: int) -> None:
    w = [win("sun", "01:00", "05:00", tz)]
    start = dt.datetime.combine(day, dt.time(), tzinfo=UTC) - dt.timedelta(days=1)
    s, e = first(w, start, 1)[0]
    assert e - s == dt.timedelta(hours=hours)
    z = w[0].zone
    assert s.astimezone(z).time() == dt.time(1) and e.astimezone(z).time() == dt.time(5)


def test_a_start_the_clock_skips_opens_when_the_clock_jumps() -> None:
    # Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST (01:00 UTC); 02:30 is never read.
    w = [win("sun", "02:30", "04:00")]
    assert first(w, utc(2026, 3, 28), 1) == [(utc(2026, 3, 29, 1), utc(2026, 3, 29, 2))]


def test_an_hour_the_clock_reads_twice_is_open_twice() -> None:
    # Berlin, 25 October 2026: 03:00 CEST becomes 02:00 CET (01:00 UTC): 02:15-02:45 twice.
    w = [win("sun", "02:15", "02:45")]
    got = first(w, utc(2026, 10, 24), 2)
    assert got == [
        (utc(2026, 10, 25, 0, 15), utc(2026, 10, 25, 0, 45)),
        (utc(2026, 10, 25, 1, 15), utc(2026, 10, 25, 1, 45)),
    ]


def test_overlapping_and_touching_windows_merge() -> None:
    w = [
        win("mon-fri", "22:00", "06:00"),
        win("sat,sun", "00:00", "24:00"),  # overlaps Friday night's (to Saturday 06:00) ...
        win("mon", "00:00", "07:00"),  # ... and touches this (Sunday 24:00 is Monday 00:00)
    ]
    got = first(w, utc(2026, 12, 18, 12), 2)  # Friday noon
    assert got[0] == (utc(2026, 12, 18, 21), utc(2026, 12, 21, 6))  # Fri 22:00 to Mon 07:00
    assert got[1] == (utc(2026, 12, 21, 21), utc(2026, 12, 22, 5))


def test_windows_in_different_zones_merge_in_utc() -> None:
    w = [win("daily", "22:00", "23:00", BERLIN), win("daily", "16:00", "17:30", NEW_YORK)]
    # 16:00-17:30 EST is 21:00-22:30 UTC; 22:00-23:00 CET is 21:00-22:00 UTC
    assert first(w, utc(2026, 12, 14, 12), 1) == [
        (utc(2026, 12, 14, 21), utc(2026, 12, 14, 22, 30))
    ]


def test_windows_per_az() -> None:
    w = [win("daily", "22:00", "06:00", azs=("az1",)), win("sat", "10:00", "12:00")]
    t = utc(2026, 12, 14, 22)  # Monday 23:00 in Berlin
    assert is_open(w, t, "az1") and not is_open(w, t, "az2") and not is_open(w, t, None)
    assert next_open(w, t, "az2") == utc(2026, 12, 19, 9)  # Saturday's, the only one for az2
    only_az1 = [w[0]]
    assert next_open(only_az1, t, "az2") is None  # no window applies: never open
    assert first(only_az1, t, 3, "az2") == []


def test_no_windows_is_always_open() -> None:
    t = utc(2026, 12, 14, 12)
    assert is_open([], t) and next_open([], t) == t and open_until([], t) == FOREVER
    assert first([], t, 5) == [(t, FOREVER)]


def test_is_open_next_open_open_until() -> None:
    w = [win("mon-fri", "22:00", "06:00")]
    inside, outside = utc(2026, 12, 15, 3), utc(2026, 12, 15, 12)
    assert is_open(w, inside) and open_until(w, inside) == utc(2026, 12, 15, 5)
    assert next_open(w, inside) == inside
    assert not is_open(w, outside) and open_until(w, outside) is None
    assert next_open(w, outside) == utc(2026, 12, 15, 21)
    # the end is not inside: [open, close)
    assert not is_open(w, utc(2026, 12, 15, 5)) and is_open(w, utc(2026, 12, 15, 21))


def test_times_must_be_aware() -> None:
    w = [win("daily", "22:00", "06:00")]
    with pytest.raises(ValueError, match="aware"):
        is_open(w, dt.datetime(2026, 12, 14, 22))


def test_a_window_that_never_opens_cannot_be_made() -> None:
    with pytest.raises(ValueError, match="never opens"):
        win("daily", "22:00", "22:00")
    with pytest.raises(ValueError, match="non-empty"):
        Window((), 0, 60, "UTC")
    with pytest.raises(ValueError, match="unknown time zone"):
        win("daily", "22:00", "06:00", "Europe/Berln")
    assert win("daily", "00:00", "24:00").length_min == 24 * 60


# ---------------------------------------------------------------------------------------------
# Invariants
# ---------------------------------------------------------------------------------------------
ZONES = [BERLIN, NEW_YORK, "UTC", "Australia/Lord_Howe", "Asia/Kolkata"]
# Starts around the 2026 DST changes of Berlin (29 March, 25 October) and New York (8 March,
# 1 November), so that openings cross them.
CHANGES = [utc(2026, 3, 29), utc(2026, 10, 25), utc(2026, 3, 8), utc(2026, 11, 1)]


@st.composite
def windows(draw: st.DrawFn) -> list[Window]:
    out = []
    for _ in range(draw(st.integers(1, 3))):
        days = tuple(sorted(draw(st.sets(st.integers(0, 6), min_size=1))))
        # quarter hours hit the DST hours (01:00-04:00) often; any minute is allowed
        start = draw(st.integers(0, 24 * 4 - 1)) * 15 + draw(st.sampled_from([0, 0, 0, 7]))
        end = draw(st.integers(0, 24 * 4)) * 15
        if end == start:
            end = (end + 15) % (24 * 60)
        azs = draw(st.sampled_from([(), (), ("az1",), ("az2",)]))
        out.append(Window(days, start, end, draw(st.sampled_from(ZONES)), azs))
    return out


starts = st.builds(
    lambda base, minutes: base + dt.timedelta(minutes=minutes),
    st.sampled_from(CHANGES),
    st.integers(-3 * 24 * 60, 3 * 24 * 60),
)


def inside(ws: list[Window], t: dt.datetime, az: str | None) -> bool:
    """Whether the local clock at `t` reads a time inside some applicable window (brute force)."""
    for w in ws:
        if not w.applies(az):
            continue
        wall = t.astimezone(w.zone).replace(tzinfo=None)
        for day in (wall.date() - dt.timedelta(days=1), wall.date()):
            if day.weekday() in w.days:
                a, b = w.local_interval(day)
                if a <= wall < b:
                    return True
    return False


@settings(max_examples=150, deadline=None)
@given(windows(), starts, st.sampled_from(["az1", "az2", None]), st.data())
def test_openings_are_sorted_disjoint_and_exactly_the_wall_clock_windows(
    ws: list[Window], start: dt.datetime, az: str | None, data: st.DataObject
) -> None:
    got = first(ws, start, 8, az)
    if not any(w.applies(az) for w in ws):
        assert got == []
        return
    assert got, "windows recur: there is always a next opening"
    assert got[0][0] >= start
    for (s, e), nxt in itertools.zip_longest(got, got[1:]):
        assert s.tzinfo is UTC and e.tzinfo is UTC
        assert s < e
        if nxt is not None:
            assert e < nxt[0]  # disjoint, and not touching (those merge)
        # every instant of an opening is inside a window's local wall-clock interval
        for t in (s, e - dt.timedelta(microseconds=1), s + (e - s) / 2):
            assert inside(ws, t, az), (s, e, t)
        assert not inside(ws, e, az) or e == s  # it closes when the wall clock leaves
    # and every instant the clock reads inside a window is in an opening (up to the last)
    horizon = got[-1][1]
    for _ in range(20):
        frac = data.draw(st.floats(0, 1))
        t = start + (horizon - start) * frac
        t = t.replace(microsecond=0)
        if t < start or t >= horizon:
            continue
        in_opening = any(s <= t < e for s, e in got)
        assert in_opening == inside(ws, t, az), t
        assert is_open(ws, t, az) == in_opening
        if in_opening:
            assert open_until(ws, t, az) == next(e for s, e in got if s <= t < e)
            assert next_open(ws, t, az) == t
        else:
            assert open_until(ws, t, az) is None
            assert next_open(ws, t, az) == next(s for s, e in got if s > t)
