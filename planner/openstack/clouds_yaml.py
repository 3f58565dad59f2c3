"""Merge one entry into the user's clouds.yaml, keeping every other entry as it was.

The file is rewritten through a temporary file in the same directory (never half-written) with
mode 0600, as it holds passwords. YAML comments in it are not preserved.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from planner.errors import InputError


def user_clouds_yaml() -> Path:
    """The file openstacksdk reads first: $OS_CLIENT_CONFIG_FILE, else the user's
    $XDG_CONFIG_HOME/openstack/clouds.yaml (~/.config/openstack/clouds.yaml)."""
    if os.environ.get("OS_CLIENT_CONFIG_FILE"):
        return Path(os.environ["OS_CLIENT_CONFIG_FILE"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "openstack" / "clouds.yaml"


def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(str(path), f"cannot read clouds.yaml: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("clouds", {}), dict):
        raise InputError(str(path), "clouds.yaml must be a mapping with a `clouds` mapping")
    return data


def _save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        yaml.safe_dump(data, f, default_flow_style=False, sort_keys=False)
    os.replace(tmp, path)


def merge_entry(name: str, entry: dict[str, Any], path: Path | None = None) -> Path:
    p = path or user_clouds_yaml()
    data = _load(p)
    data.setdefault("clouds", {})[name] = entry
    _save(p, data)
    return p


def remove_entry(
    name: str, *, only_if_auth_url: str | None = None, path: Path | None = None
) -> bool:
    """Remove `name`; with `only_if_auth_url`, only if it still points there (not the user's)."""
    p = path or user_clouds_yaml()
    try:
        data = _load(p)
    except InputError:
        return False
    entry = data.get("clouds", {}).get(name)
    if entry is None:
        return False
    if only_if_auth_url and (entry.get("auth") or {}).get("auth_url") != only_if_auth_url:
        return False
    del data["clouds"][name]
    _save(p, data)
    return True


def get_entry(name: str, path: Path | None = None) -> dict[str, Any] | None:
    """The entry `name` of the user's clouds.yaml (None if absent or unreadable)."""
    try:
        entry = _load(path or user_clouds_yaml()).get("clouds", {}).get(name)
    except InputError:
        return None
    return entry if isinstance(entry, dict) else None
