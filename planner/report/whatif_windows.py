"""The what-if windows axis (`rollwave whatif --vary windows...`): maintenance windows varied.

Three keys, their values separated by commas as every `--vary`:
- `windows=none,daily/22:00-06:00,mon-fri/22:00-04:00@America/New_York,sat+sun/08:00-20:00`:
  the policy's windows replaced by one window for every host (`none`: always open). A value is
  `DAYS/START-END[@ZONE]`: days as the policy writes them with `+` for `,` (`sat+sun`), times
  "HH:MM", the zone an IANA one (default: the base policy's first window's, else UTC).
- `windows.hours=4,6,8`: each of the base policy's windows lasts that many hours from its start
  (below 24).
- `windows.days=daily,mon-fri,sat+sun`: each of the base policy's windows on those days.
A value is checked when the sweep is parsed: a bad one is a UsageError naming the option.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from planner.errors import UsageError
from planner.policy import Policy
from planner.windows import MINUTES_PER_DAY, Window, parse_days, parse_time, zone

KEY = "windows"
HOURS = "windows.hours"
DAYS = "windows.days"
WINDOW_KEYS = (KEY, HOURS, DAYS)


def parse_value(key: str, raw: str, where: str) -> Any:
    """One value of a windows key, checked (its window built once); UsageError why not."""
    text = raw.strip()
    try:
        if key == HOURS:
            try:
                h = float(text)
            except ValueError:
                raise ValueError(f"{text!r} is not a number of hours") from None
            if not math.isfinite(h):
                raise ValueError(f"{text!r} is not a number of hours")
            if not 0 < h < 24:
                raise ValueError(f"{text!r} is not a number of hours above 0 and below 24")
            if round(h * 60) != h * 60:
                raise ValueError(f"{text!r}: a window's length is whole minutes")
            return int(h) if h == int(h) else h
        if key == DAYS:
            _days(text)
            return text
        if text.lower() != "none":
            window(text, "UTC")
        return text.lower() if text.lower() == "none" else text
    except ValueError as exc:
        raise UsageError(f"{where}: {exc}") from None


def _days(text: str) -> tuple[int, ...]:
    days = parse_days(text.replace("+", ","))
    if not days:
        raise ValueError(f"{text!r} names no day: the window never opens")
    return days


def window(text: str, default_tz: str) -> Window:
    """`DAYS/START-END[@ZONE]` -> the window; ValueError why not."""
    spec, _, tz = text.partition("@")
    days, slash, times = spec.partition("/")
    start, dash, end = times.partition("-")
    if not slash or not dash:
        raise ValueError(
            f"{text!r} is not DAYS/HH:MM-HH:MM[@ZONE] (e.g. daily/22:00-06:00, "
            "mon-fri/22:00-04:00@Europe/Berlin) or none"
        )
    a, b = parse_time(start), parse_time(end, end=True)
    if a == b % MINUTES_PER_DAY and b != MINUTES_PER_DAY:
        raise ValueError(f"{text!r}: start and end are the same time: the window never opens")
    name = tz.strip() or default_tz
    zone(name)
    return Window(_days(days), a, b, name)


def needs_base(key: str) -> bool:
    return key in (HOURS, DAYS)


def apply_windows(policy: Policy, combo: Mapping[str, Any]) -> Policy:
    """The policy with the combination's windows keys applied (`windows` first, then the
    length and the days of each window); UsageError when `windows.hours`/`windows.days` have
    no window to change."""
    if not any(k in combo for k in WINDOW_KEYS):
        return policy
    ws = policy.windows
    if KEY in combo:
        value = str(combo[KEY])
        tz = ws[0].tz if ws else "UTC"
        if value == "none":  # always open: no length or days to change
            return dataclasses.replace(policy, windows=())
        ws = (window(value, tz),)
    if (HOURS in combo or DAYS in combo) and not ws:
        which = HOURS if HOURS in combo else DAYS
        raise UsageError(
            f"--vary {which}: the policy has no maintenance window to change (give it windows, "
            f"or vary {KEY}=DAYS/HH:MM-HH:MM)"
        )
    if HOURS in combo:
        minutes = round(float(combo[HOURS]) * 60)
        ws = tuple(dataclasses.replace(w, end=(w.start + minutes) % MINUTES_PER_DAY) for w in ws)
    if DAYS in combo:
        d = _days(str(combo[DAYS]))
        ws = tuple(dataclasses.replace(w, days=d) for w in ws)
    return dataclasses.replace(policy, windows=ws)


__all__ = ["DAYS", "HOURS", "KEY", "WINDOW_KEYS", "apply_windows", "parse_value", "window"]
