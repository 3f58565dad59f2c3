"""Where rollwave's fields live in a Nova cloud, for the inventory fields Nova has no place for.

They are documented conventions (docs/cli.md, docs/sandbox.md) that an operator can use on a
real cloud; `snapshot` reads them, the sandbox writes them:
- a host's `version` and `rack`: metadata `rollwave_version:<host>` / `rollwave_rack:<host>` of
  any aggregate (the sandbox uses one with no hosts, `rollwave-labels`: one API call for the
  whole cloud, where an aggregate per label costs a membership call per host), or the metadata
  `rollwave_version` / `rollwave_rack` of an aggregate the host is a member of;
- a host's `az`: an aggregate named after the zone with `availability_zone` metadata; hosts in
  none are in Nova's default zone, `nova`;
- a VM's `migration`, `dirty_rate_mb_s`, `local_disk`, `allowed_aggregates`: server metadata
  `rollwave_<field>` (JSON values, or the plain string);
- controllers and HA groups: the mapping file (Nova has no notion of them).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

DEFAULT_AZ = "nova"  # Nova's default_availability_zone: hosts in no AZ aggregate are here
LABELS_AGGREGATE = "rollwave-labels"
VERSION_KEY = "rollwave_version"
RACK_KEY = "rollwave_rack"
VM_META_FIELDS = ("migration", "dirty_rate_mb_s", "local_disk", "allowed_aggregates")
META_PREFIX = "rollwave_"


def label_key(key: str, host: str) -> str:
    """Aggregate metadata key holding one host's label, e.g. `rollwave_version:cmp-001`."""
    return f"{key}:{host}"


def host_name_ok(name: str) -> bool:
    """Nova accepts these characters in metadata keys; host names nearly always fit."""
    return re.fullmatch(r"[a-zA-Z0-9_:. -]{1,230}", name) is not None


def vm_metadata(vm: Mapping[str, Any]) -> dict[str, str]:
    """Server metadata carrying the VM fields Nova has no place for (`vm`: its JSON form)."""
    meta: dict[str, str] = {}
    for f in VM_META_FIELDS:
        v = vm.get(f)
        if v is None or v == []:
            continue
        meta[META_PREFIX + f] = v if isinstance(v, str) else json.dumps(v)
    return meta


def vm_fields(metadata: Mapping[str, str]) -> dict[str, Any]:
    """The VM fields a server's metadata carries (`vm_metadata`'s inverse)."""
    return {
        k[len(META_PREFIX) :]: _meta_value(v)
        for k, v in metadata.items()
        if k.startswith(META_PREFIX) and k[len(META_PREFIX) :] in VM_META_FIELDS
    }


def _meta_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw
