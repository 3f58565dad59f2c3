"""The policy's keys for Nova's state rules (`planner.rules.method`): read and written here so
that `planner.formats` grows by a line each way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from planner.policy import AFFINITY_MOVES, UNMOVABLES, Policy
from planner.reader import Reader


def read_nova_policy(r: Reader, d: Mapping[str, Any], loc: str) -> dict[str, Any]:
    """`unmovable` (refuse | leave), `allow_evacuate` (bool), `affinity_moves` (shelve | forced |
    null), as keyword arguments of `Policy`."""
    return {
        "unmovable": r.str_(
            d, "unmovable", loc, required=False, default="refuse", choices=UNMOVABLES
        ),
        "allow_evacuate": r.bool_(d, "allow_evacuate", loc, required=False, default=False),
        "affinity_moves": r.str_(
            d, "affinity_moves", loc, required=False, nullable=True, choices=AFFINITY_MOVES
        ),
    }


def nova_policy_to_dict(p: Policy) -> dict[str, Any]:
    """The keys that differ from their defaults (files written before stay as they were)."""
    d: dict[str, Any] = {}
    if p.unmovable != "refuse":
        d["unmovable"] = p.unmovable
    if p.allow_evacuate:
        d["allow_evacuate"] = True
    if p.affinity_moves is not None:
        d["affinity_moves"] = p.affinity_moves
    return d
