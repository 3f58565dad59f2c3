"""Reading and writing inventories for the OpenStack adapter, as plain dicts in the format.

Stop-gap until the core's `planner.formats` (load_inventory / the serialiser) lands on main:
then `read` and `write` delegate to it and this module shrinks to those two calls.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from planner.errors import InputError, Problem


def read(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InputError(str(p), f"cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InputError(str(p), f"not valid JSON/YAML: {exc}") from None
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise InputError(str(p), "an inventory must be a mapping")
    if data.get("kind", "inventory") != "inventory":
        problems.append(Problem("kind", f"expected 'inventory', got {data.get('kind')!r}"))
    for i, h in enumerate(data.get("hosts") or []):
        if not isinstance(h, dict) or not h.get("name"):
            problems.append(Problem(f"hosts[{i}].name", "missing"))
    for i, v in enumerate(data.get("vms") or []):
        if not isinstance(v, dict) or not v.get("id"):
            problems.append(Problem(f"vms[{i}].id", "missing"))
    if problems:
        raise InputError(str(p), problems)
    return data


def write(path: str | Path, inventory: dict[str, Any]) -> None:
    """Write JSON atomically: a temporary file in the same directory, then os.replace."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(inventory, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, p)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(str(p), f"cannot write: {exc.strerror or exc}") from None
