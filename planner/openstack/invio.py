"""Inventories for the OpenStack adapter: the core's reader, validator and serialiser.

The sandbox and the snapshot work on the format's dict form; this module converts through
`planner.formats` so that what they read and write is exactly what the core accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from planner import formats


def read(path: str | Path) -> dict[str, Any]:
    """Load and validate an inventory file (JSON or YAML) into its dict form."""
    return formats.inventory_to_dict(formats.load_inventory(path))


def write(path: str | Path, inventory: dict[str, Any]) -> None:
    """Validate with the core, then write atomically. Extra keys the core does not model
    (`aggregates` with their metadata) are kept beside the core's fields."""
    inv = formats.inventory_from_dict(inventory, str(path))
    out = formats.inventory_to_dict(inv)
    for key in ("aggregates",):
        if key in inventory:
            out[key] = inventory[key]
    formats.write_json(path, out)
