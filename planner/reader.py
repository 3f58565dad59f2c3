"""A reader of located documents: it collects every problem with its place in the file
(`hosts[3].capacity.VCPU: must be positive, got -4`) and raises them together as one
`InputError`. The formats' readers (`planner.formats`) and the simulator's model file use it."""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from planner.errors import InputError, Problem
from planner.limits import MAX_FLOAT, MAX_INT, shown

_RC_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
MISSING = object()  # a key absent from its object (not the same as null)
T = TypeVar("T")


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _g(value: float) -> str:
    return shown(value) if isinstance(value, int) and abs(value) >= 10**20 else f"{value:g}"


def at(loc: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{loc}[{key}]"
    return f"{loc}.{key}" if loc else key


class Reader:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def bad(self, loc: str, message: str) -> None:
        self.problems.append(Problem(loc, message))

    def done(self) -> None:
        if self.problems:
            raise InputError(self.file, self.problems)

    def get(self, d: Mapping[str, Any], key: str, loc: str, required: bool) -> Any:
        value = d.get(key, MISSING)
        if value is MISSING and required:
            self.bad(at(loc, key), "missing")
        return value

    def obj(self, value: Any, loc: str) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.bad(loc, f"must be an object, got {type_name(value)}")
        return None

    def items(self, d: Mapping[str, Any], key: str, loc: str, required: bool = True) -> list[Any]:
        value = self.get(d, key, loc, required)
        if value is MISSING or (value is None and not required):
            return []
        if not isinstance(value, list):
            self.bad(at(loc, key), f"must be a list, got {type_name(value)}")
            return []
        return value

    def str_(
        self,
        d: Mapping[str, Any],
        key: str,
        loc: str,
        *,
        required: bool = True,
        nullable: bool = False,
        default: str | None = None,
        choices: tuple[str, ...] | None = None,
        nonempty: bool = True,
    ) -> Any:
        value = self.get(d, key, loc, required)
        if value is MISSING:
            return default
        if value is None:
            if nullable:
                return None
            self.bad(at(loc, key), "must be a string, got null")
            return default
        if isinstance(value, (_dt.datetime, _dt.date)):  # YAML turns timestamps into datetimes
            value = value.isoformat()
        if not isinstance(value, str):
            hint = ""
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                # YAML reads `version: 2025.1` as a number (and 2025.10 as 2025.1!).
                hint = f' (write "{value}" in quotes if a label is meant)'
            self.bad(at(loc, key), f"must be a string, got {type_name(value)}{hint}")
            return default
        if nonempty and not value.strip():
            self.bad(at(loc, key), "must not be empty")
            return default
        if choices is not None and value not in choices:
            self.bad(at(loc, key), f"is {value!r}, expected one of: {', '.join(choices)}")
            return default
        return value

    def int_(
        self,
        d: Mapping[str, Any],
        key: str,
        loc: str,
        *,
        required: bool = True,
        default: int | None = None,
        minimum: int | None = None,
        maximum: int | None = None,
        nullable: bool = False,
        beyond: str = "",
    ) -> Any:
        """`maximum`: the largest value that makes sense; `beyond` says what to write instead."""
        value = self.get(d, key, loc, required)
        if value is MISSING or (value is None and nullable):
            return default
        return self.check_int(value, at(loc, key), minimum, default, maximum, beyond)

    def check_int(
        self,
        value: Any,
        loc: str,
        minimum: int | None,
        default: Any,
        maximum: int | None = None,
        beyond: str = "",
    ) -> Any:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.bad(loc, f"must be an integer, got {type_name(value)}")
            return default
        if minimum is not None and value < minimum:
            what = {0: "must not be negative", 1: "must be positive"}.get(
                minimum, f"must be at least {minimum}"
            )
            self.bad(loc, f"{what}, got {shown(value)}")
            return default
        if maximum is None and value > MAX_INT:  # every integer has a ceiling (planner.limits)
            maximum, beyond = MAX_INT, " (the largest integer rollwave reads)"
        if maximum is not None and value > maximum:
            self.bad(loc, f"must be at most {maximum:,}{beyond}, got {shown(value)}")
            return default
        return value

    def num(
        self,
        d: Mapping[str, Any],
        key: str,
        loc: str,
        *,
        required: bool = True,
        default: float | None = None,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_min: bool = False,
        nullable: bool = False,
    ) -> Any:
        value = self.get(d, key, loc, required)
        if value is MISSING or (value is None and nullable):
            return default
        return self.check_num(value, at(loc, key), minimum, maximum, exclusive_min, default)

    def check_num(
        self,
        value: Any,
        loc: str,
        minimum: float | None,
        maximum: float | None,
        exclusive_min: bool,
        default: Any,
    ) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.bad(loc, f"must be a number, got {type_name(value)}")
            return default
        if value != value or value in (float("inf"), float("-inf")):
            self.bad(loc, f"must be a finite number, got {value}")
            return default
        if maximum is None and value > MAX_FLOAT:  # every number has a ceiling (planner.limits)
            maximum = MAX_FLOAT
        if minimum is not None and (value <= minimum if exclusive_min else value < minimum):
            self.bad(loc, f"must be {'>' if exclusive_min else '>='} {minimum:g}, got {_g(value)}")
            return default
        if maximum is not None and value > maximum:
            self.bad(loc, f"must be <= {maximum:g}, got {_g(value)}")
            return default
        return float(value)

    def bool_(
        self, d: Mapping[str, Any], key: str, loc: str, *, required: bool = True, default: bool
    ) -> bool:
        value = self.get(d, key, loc, required)
        if value is MISSING:
            return default
        if not isinstance(value, bool):
            self.bad(at(loc, key), f"must be true or false, got {type_name(value)}")
            return default
        return value

    def str_list(
        self, d: Mapping[str, Any], key: str, loc: str, *, required: bool = False
    ) -> tuple[str, ...]:
        out = []
        for i, item in enumerate(self.items(d, key, loc, required)):
            if isinstance(item, str) and item.strip():
                out.append(item)
            else:
                self.bad(at(at(loc, key), i), f"must be a non-empty string, got {type_name(item)}")
        return tuple(out)

    def class_map(
        self,
        d: Mapping[str, Any],
        key: str,
        loc: str,
        check: Callable[[Any, str], T | None],
        *,
        required: bool = False,
    ) -> dict[str, T]:
        value = self.get(d, key, loc, required)
        if value is MISSING or (value is None and not required):
            return {}
        here = at(loc, key)
        m = self.obj(value, here)
        if m is None:
            return {}
        out: dict[str, T] = {}
        for rc, n in m.items():
            where = at(here, str(rc))
            if not isinstance(rc, str) or not _RC_NAME.match(rc):
                self.bad(
                    where,
                    f"{rc!r} is not a Placement resource class name "
                    "(upper case, e.g. VCPU, MEMORY_MB, DISK_GB, CUSTOM_X)",
                )
                continue
            checked = check(n, where)
            if checked is not None:
                out[rc] = checked
        return out
