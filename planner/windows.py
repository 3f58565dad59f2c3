"""Maintenance windows: when hosts may go down (policy `windows`), as a calendar.

A window recurs weekly in local wall-clock time: `{days: mon-fri, start: "22:00", end: "06:00",
tz: Europe/Berlin, azs: [az1]}` opens at 22:00 local on each of its days and closes at 06:00 the
next day (`end <= start`: the window ends the day after it starts). `tz` is an IANA zone
(zoneinfo), so a window keeps its wall-clock times across DST changes: it lasts an hour more or
less on those nights. `azs` limits a window to hosts of those AZs; without it, it applies to
every host. A host may go down only inside a window that applies to it (several: their union).
No windows at all: always open. Windows, but none that applies to a host's AZ: never open.

Wall-clock semantics, exactly: an instant is inside an occurrence of a window (the one starting
on local date D) when the local clock at that instant reads a time in [D start, D' end), D' = D
or the next day. A local time the clock skips (spring forward) is simply never read; one it reads
twice (fall back) counts both times. `openings` turns this into UTC intervals, merged where they
overlap or touch.

Pure functions, no state: the policy reader parses windows with `read_windows`; the planner, the
simulator and the executor ask `openings`, `next_open`, `is_open` and `open_until`.
"""

from __future__ import annotations

import datetime as _dt
import heapq
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from planner.reader import MISSING, Reader, at, type_name

UTC = _dt.UTC
# The end of an opening that never closes (no windows: always open). Compare with it; do not
# add to it.
FOREVER = _dt.datetime.max.replace(tzinfo=UTC)
DAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY = {name: i for i, name in enumerate(DAY_NAMES)}
_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")
MINUTES_PER_DAY = 24 * 60
# No zone's UTC offset is beyond +-14 h: a bound on where an occurrence can fall in UTC.
_SLACK = _dt.timedelta(hours=15)


# ---------------------------------------------------------------------------------------------
# A window
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Window:
    """One recurring window. `days`: the local days it starts on (0 = Monday ... 6 = Sunday,
    sorted, at least one); `start`, `end`: minutes after local midnight (`start` 0..1439, `end`
    0..1440, 1440 written "24:00"); `end <= start`: it ends the next day; `tz`: an IANA zone;
    `azs`: the AZs whose hosts it applies to (empty: every host)."""

    days: tuple[int, ...]
    start: int
    end: int
    tz: str
    azs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.days or any(d not in range(7) for d in self.days):
            raise ValueError(f"days must be a non-empty subset of 0..6, got {self.days}")
        if tuple(sorted(set(self.days))) != self.days:
            raise ValueError(f"days must be sorted and distinct, got {self.days}")
        if not 0 <= self.start < MINUTES_PER_DAY or not 0 <= self.end <= MINUTES_PER_DAY:
            raise ValueError(f"start/end out of range: {self.start}, {self.end}")
        if self.start == self.end:
            raise ValueError("start == end: the window never opens")
        zone(self.tz)

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.tz)

    @property
    def length_min(self) -> int:
        """Its length in wall-clock minutes (real time differs by the DST change, if any)."""
        n = (self.end - self.start) % MINUTES_PER_DAY
        return n if n else MINUTES_PER_DAY

    def applies(self, az: str | None) -> bool:
        """Whether the window applies to a host in `az` (None: a host without an AZ)."""
        return not self.azs or (az is not None and az in self.azs)

    def local_interval(self, day: _dt.date) -> tuple[_dt.datetime, _dt.datetime]:
        """The occurrence starting on local date `day` as naive local wall-clock times."""
        begin = _dt.datetime.combine(day, _dt.time()) + _dt.timedelta(minutes=self.start)
        return begin, begin + _dt.timedelta(minutes=self.length_min)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "days": [DAY_NAMES[i] for i in self.days],
            "start": format_time(self.start),
            "end": format_time(self.end),
            "tz": self.tz,
        }
        if self.azs:
            d["azs"] = list(self.azs)
        return d


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError naming it when there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r} (an IANA zone, e.g. Europe/Berlin, America/New_York "
            "or UTC)"
        ) from None


def format_time(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# ---------------------------------------------------------------------------------------------
# Parsing (the policy reader's part)
# ---------------------------------------------------------------------------------------------
def parse_time(text: str, *, end: bool = False) -> int:
    """ "HH:MM" (24-hour; "24:00" only as an end) -> minutes after midnight; ValueError why not."""
    m = _TIME.match(text)
    if not m:
        raise ValueError(f'is not a time "HH:MM" (24-hour), got {text!r}')
    h, mi = int(m.group(1)), int(m.group(2))
    if h == 24 and mi == 0 and end:
        return MINUTES_PER_DAY
    if h > 23 or mi > 59:
        raise ValueError(f'is not a time "HH:MM" (00:00 to 23:59), got {text!r}')
    return h * 60 + mi


def parse_days(value: str | Sequence[str]) -> tuple[int, ...]:
    """`"mon-fri"`, `"sat,sun"`, `"fri-mon"` (ranges wrap), `"daily"`, or a list of such items
    (case-insensitive) -> the days, 0 = Monday; ValueError naming the first unknown one. An
    empty result (no days) is the caller's to refuse: such a window never opens."""
    items = value.split(",") if isinstance(value, str) else list(value)
    found: set[int] = set()
    for item in items:
        text = item.strip().lower()
        if not text and isinstance(value, str) and not value.strip():
            continue
        if text == "daily":
            found.update(range(7))
            continue
        first, dash, last = text.partition("-")
        a, b = _day(first.strip(), item), _day(last.strip(), item) if dash else None
        if b is None:
            found.add(a)
        else:
            found.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return tuple(sorted(found))


def _day(name: str, item: str) -> int:
    if name not in _DAY:
        raise ValueError(
            f"unknown day {item.strip()!r}; days are {', '.join(DAY_NAMES)}, ranges such as "
            "mon-fri or fri-mon, or daily"
        )
    return _DAY[name]


def read_windows(r: Reader, d: Mapping[str, Any], key: str, loc: str) -> tuple[Window, ...]:
    """The list `d[key]` of windows (absent, null or empty: none), each problem located at
    `loc.key[i].field` in `r`."""
    out = []
    for i, item in enumerate(r.items(d, key, loc, required=False)):
        w = _window(r, item, at(at(loc, key), i))
        if w is not None:
            out.append(w)
    return tuple(out)


def _window(r: Reader, x: Any, loc: str) -> Window | None:
    d = r.obj(x, loc)
    if d is None:
        return None
    n = len(r.problems)
    days: tuple[int, ...] = ()
    raw = r.get(d, "days", loc, True)
    if raw is not MISSING:
        if not isinstance(raw, (str, list)) or (
            isinstance(raw, list) and not all(isinstance(s, str) for s in raw)
        ):
            r.bad(at(loc, "days"), f"must be a string or a list of day names, got {type_name(raw)}")
        else:
            try:
                days = parse_days(raw)
            except ValueError as exc:
                r.bad(at(loc, "days"), str(exc))
            else:
                if not days:
                    r.bad(at(loc, "days"), "names no day: the window never opens")
    start = _time(r, d, "start", loc, end=False)
    end = _time(r, d, "end", loc, end=True)
    tz = r.str_(d, "tz", loc, default=None)
    if tz is not None:
        try:
            zone(tz)
        except ValueError as exc:
            r.bad(at(loc, "tz"), str(exc))
    azs = r.str_list(d, "azs", loc)
    if "azs" in d and d["azs"] is not None and not azs and len(r.problems) == n:
        r.bad(at(loc, "azs"), "names no AZ (leave it out for a window of every host)")
    if start is not None and start == end:
        r.bad(
            at(loc, "end"),
            f"is the same time as start ({format_time(start)}): the window never opens "
            '(for a whole day write start "00:00", end "24:00")',
        )
    if len(r.problems) != n or start is None or end is None or tz is None:
        return None
    return Window(days, start, end, tz, azs)


def _time(r: Reader, d: Mapping[str, Any], key: str, loc: str, *, end: bool) -> int | None:
    value = r.get(d, key, loc, True)
    if value is MISSING:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 22:00 as the sexagesimal number 1320.
        hint = ""
        if 0 <= value < MINUTES_PER_DAY:
            hint = f" (YAML reads an unquoted {format_time(value)} as the number {value})"
        r.bad(at(loc, key), f'must be a time "HH:MM" in quotes, got {type_name(value)}{hint}')
        return None
    if not isinstance(value, str):
        r.bad(at(loc, key), f'must be a time "HH:MM", got {type_name(value)}')
        return None
    try:
        return parse_time(value, end=end)
    except ValueError as exc:
        r.bad(at(loc, key), str(exc))
        return None


# ---------------------------------------------------------------------------------------------
# The calendar
# ---------------------------------------------------------------------------------------------
Opening = tuple[_dt.datetime, _dt.datetime]


def _aware(t: _dt.datetime, what: str) -> _dt.datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime (with a UTC offset), got {t}")
    return t.astimezone(UTC)


def _offset(z: ZoneInfo, t: _dt.datetime) -> _dt.timedelta:
    off = t.astimezone(z).utcoffset()
    assert off is not None
    return off


def _segments(
    z: ZoneInfo, a: _dt.datetime, b: _dt.datetime
) -> list[tuple[_dt.datetime, _dt.datetime, _dt.timedelta]]:
    """[a, b) cut where the zone's UTC offset changes, each piece with its offset. A change is
    found by bisection to the second; two changes within one span (about two days) that come
    back to the same offset do not happen in the tz database's modern rules."""
    out = []
    while True:
        oa, ob = _offset(z, a), _offset(z, b)
        if oa == ob:
            out.append((a, b, oa))
            return out
        lo, hi = a, b  # offset(lo) == oa, offset(hi) != oa
        while hi - lo > _dt.timedelta(seconds=1):
            mid = lo + (hi - lo) / 2
            mid = mid.replace(microsecond=0)
            if mid <= lo:
                mid = lo + _dt.timedelta(seconds=1)
            if _offset(z, mid) == oa:
                lo = mid
            else:
                hi = mid
        out.append((a, hi, oa))
        a = hi


def occurrence(w: Window, day: _dt.date) -> list[Opening]:
    """The UTC intervals of the occurrence of `w` that starts on local date `day` (usually one;
    two when the clock falls back across its start or end; none if the clock skips it all)."""
    begin, finish = w.local_interval(day)
    z = w.zone
    a = (begin - _SLACK).replace(tzinfo=UTC)
    b = (finish + _SLACK).replace(tzinfo=UTC)
    out = []
    for s0, s1, off in _segments(z, a, b):
        lo = max((begin - off).replace(tzinfo=UTC), s0)
        hi = min((finish - off).replace(tzinfo=UTC), s1)
        if lo < hi:
            out.append((lo, hi))
    return out


def _window_openings(w: Window, start: _dt.datetime) -> Iterator[Opening]:
    """Every occurrence of `w` from about two days before `start` on, sorted by start."""
    z = w.zone
    day = start.astimezone(z).date() - _dt.timedelta(days=2)
    heap: list[Opening] = []
    while True:
        if day.weekday() in w.days:
            for piece in occurrence(w, day):
                heapq.heappush(heap, piece)
        day += _dt.timedelta(days=1)
        # No occurrence from `day` on starts before this (offsets are within +-14 h).
        bound = (w.local_interval(day)[0] - _SLACK).replace(tzinfo=UTC)
        while heap and heap[0][0] < bound:
            yield heapq.heappop(heap)


def applicable(windows: Iterable[Window], az: str | None) -> tuple[Window, ...]:
    return tuple(w for w in windows if w.applies(az))


def openings(
    windows: Sequence[Window], start: _dt.datetime, az: str | None = None
) -> Iterator[Opening]:
    """The times a host in `az` may be down, from `start` on: (open, close) in UTC, sorted,
    disjoint and not touching (overlapping or adjacent windows merged), the first clipped to
    `start` if it is already open then. Endless (windows recur) unless no window applies to
    `az` (then nothing: never open). No windows at all: one opening, (start, FOREVER)."""
    t0 = _aware(start, "start")
    if not windows:
        yield t0, FOREVER
        return
    streams = [_window_openings(w, t0) for w in applicable(windows, az)]
    if not streams:
        return
    cur: Opening | None = None
    for s, e in heapq.merge(*streams):
        if e <= t0:
            continue
        s = max(s, t0)
        if cur is None:
            cur = (s, e)
        elif s <= cur[1]:
            cur = (cur[0], max(cur[1], e))
        else:
            yield cur
            cur = (s, e)
    if cur is not None:  # pragma: no cover - the streams are endless
        yield cur


def _first(windows: Sequence[Window], at_: _dt.datetime, az: str | None) -> Opening | None:
    return next(openings(windows, at_, az), None)


def is_open(windows: Sequence[Window], at_: _dt.datetime, az: str | None = None) -> bool:
    """Whether a host in `az` may be down at `at_`."""
    first = _first(windows, at_, az)
    return first is not None and first[0] == _aware(at_, "at")


def next_open(
    windows: Sequence[Window], at_: _dt.datetime, az: str | None = None
) -> _dt.datetime | None:
    """The first instant from `at_` on (in UTC) at which a host in `az` may be down: `at_`
    itself if open then; None if no window applies to `az`."""
    first = _first(windows, at_, az)
    return first[0] if first is not None else None


def open_until(
    windows: Sequence[Window], at_: _dt.datetime, az: str | None = None
) -> _dt.datetime | None:
    """When the opening `at_` is in closes (UTC; FOREVER without windows), or None if closed at
    `at_`."""
    first = _first(windows, at_, az)
    return first[1] if first is not None and first[0] == _aware(at_, "at") else None


__all__ = [
    "DAY_NAMES",
    "FOREVER",
    "UTC",
    "Opening",
    "Window",
    "applicable",
    "format_time",
    "is_open",
    "next_open",
    "occurrence",
    "open_until",
    "openings",
    "parse_days",
    "parse_time",
    "read_windows",
    "zone",
]
