"""docs/formats.md keeps up with the code: every checker rule, every field the writers emit and
every property the schemas name is documented, and links into it resolve."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from planner.checker import RULES
from planner.formats import inventory_to_dict, plan_to_dict, policy_to_dict, schema
from planner.policy import SELECTOR_KEYS
from tests.clouds import three_plus_spare

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "formats.md").read_text()


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in text.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def keys(data: Any) -> set[str]:
    if isinstance(data, dict):
        return set(data) | {k for v in data.values() for k in keys(v)}
    if isinstance(data, list):
        return {k for v in data for k in keys(v)}
    return set()


def test_every_rule_is_documented() -> None:
    missing = [r for r in RULES if f"| `{r}` |" not in DOC]
    assert missing == []


def test_every_written_field_is_documented() -> None:
    fx = three_plus_spare()
    written = keys(inventory_to_dict(fx.inventory)) | keys(policy_to_dict(fx.policy))
    written |= keys(plan_to_dict(fx.plan)) | {"disabled_reason", "dirty_rate_mb_s", "local_disk"}
    written |= {"first", "last"}
    written -= {"VCPU", "MEMORY_MB", "DISK_GB"}  # classes, not fields
    missing = sorted(k for k in written if f"`{k}`" not in DOC and f"`headroom.{k}`" not in DOC)
    assert missing == []


def test_every_schema_property_is_documented() -> None:
    def props(node: Any) -> set[str]:
        found: set[str] = set()
        if isinstance(node, dict):
            found |= set(node.get("properties", {}))
            for v in node.values():
                found |= props(v)
        elif isinstance(node, list):
            for v in node:
                found |= props(v)
        return found

    names = props(schema("inventory")) | props(schema("policy")) | props(schema("plan"))
    missing = sorted(n for n in names if f"`{n}`" not in DOC and f"`headroom.{n}`" not in DOC)
    assert missing == []


def test_selector_keys_are_documented() -> None:
    assert all(f"`{k}=" in DOC for k in SELECTOR_KEYS)


def test_links_into_formats_md_resolve() -> None:
    targets = anchors(DOC)
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        for anchor in re.findall(r"formats\.md#([\w\-]+)", text):
            assert anchor in targets, f"{path.name}: formats.md#{anchor}"
        if path.name == "formats.md":
            for anchor in re.findall(r"\]\(#([\w\-]+)\)", text):
                assert anchor in targets, f"formats.md: #{anchor}"
