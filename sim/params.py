"""The simulation model's parameters, declared once. Each is a dataclass field (of `SimModel`, or of
the Nova and QEMU settings it holds) whose metadata is a `Param`: where it is in the model file,
what kind of value it takes, its bounds, its unit and a one-line doc. `sim.model` reads and checks
the model file, writes the effective model and renders the docs' table from them, so a new
parameter is one field here or there (`num`, `integer`, `choice`, ...) plus its use.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, Literal, TypeVar, cast

T = TypeVar("T")
# num: a float; integer; choice: one of `choices`; flag: true or false; duration: a
# Distribution (seconds or {kind: parameters}); nic_rules / upgrade_rules: lists of
# {match: SELECTOR, ...} rules; window: [start, end] seconds or null.
Kind = Literal[
    "num", "integer", "choice", "flag", "duration", "nic_rules", "upgrade_rules", "window"
]


@dataclass(frozen=True)
class Param:
    place: str  # its key in the model file, sections dotted: "network.nic_gbps"
    kind: Kind
    doc: str  # one line, for the docs' table
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    exclusive_min: bool = False  # > minimum, not >=
    nullable: bool = False  # null is a value of its own (not the default)
    choices: tuple[str, ...] = ()
    scale: float = 1.0  # the file's value is the model's x scale (ms in the file, s in the model)
    percent: bool = False  # at most 100, said as a percentage

    @property
    def section(self) -> str:
        return self.place.rpartition(".")[0]

    @property
    def key(self) -> str:
        return self.place.rpartition(".")[2]


def _param(default: T, p: Param) -> T:
    # (typed as the default, so that the field's annotation checks it)
    return field(default=default, metadata={"param": p})


def num(
    default: T,
    place: str,
    doc: str,
    *,
    unit: str = "",
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    nullable: bool = False,
    scale: float = 1.0,
) -> T:
    """A number (`above`: strictly greater than it)."""
    lo = above if above is not None else minimum
    p = Param(place, "num", doc, unit, lo, maximum, above is not None, nullable, scale=scale)
    return _param(default, p)


def integer(
    default: T,
    place: str,
    doc: str,
    *,
    unit: str = "",
    minimum: int | None = None,
    nullable: bool = False,
    percent: bool = False,
) -> T:
    p = Param(
        place, "integer", doc, unit, minimum, 100 if percent else None, False, nullable,
        percent=percent,
    )  # fmt: skip
    return _param(default, p)


def choice(default: T, place: str, doc: str, choices: tuple[str, ...]) -> T:
    return _param(default, Param(place, "choice", doc, choices=choices))


def flag(default: T, place: str, doc: str) -> T:
    return _param(default, Param(place, "flag", doc))


def other(default: T, place: str, kind: Kind, doc: str, *, unit: str = "") -> T:
    """A parameter of a kind with its own reader and writer in `sim.model` (durations, rules,
    the crash window)."""
    return _param(default, Param(place, kind, doc, unit))


@dataclass(frozen=True)
class Declared:
    path: tuple[str, ...]  # attribute path from the model: ("nova", "downtime_ms")
    param: Param
    default: Any


def declared(cls: type[Any], prefix: tuple[str, ...] = ()) -> Iterator[Declared]:
    """The parameters of dataclass `cls` in declaration order, those of its settings (a field
    whose default is made by a dataclass, e.g. `nova: NovaSettings`) in their place."""
    for f in fields(cls):
        p = f.metadata.get("param")
        if p is not None:
            yield Declared((*prefix, f.name), p, f.default)
        elif f.default_factory is not MISSING and is_dataclass(f.default_factory):
            yield from declared(cast(type[Any], f.default_factory), (*prefix, f.name))
