"""Capped microversions: a sandbox that advertises and serves a narrower API range.

Nova has no option for its microversion range and Placement none for its maximum: the range is
module constants (nova `api_version_request._MIN/_MAX_API_VERSION`, the version document
`compute.versions.VERSIONS`, placement `microversion.VERSIONS`), read at each request. The
sandbox process sets them before the apps load, so the real negotiation refuses a version
outside the range (406) and the discovery documents say the capped range. This narrows the
installed release; it does not run an older one: below the cap, the behaviour is the new
release's, which the microversion contract promises is the same.

`check` runs on the client side (no nova import); `apply` in the sandbox process.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from planner.errors import UsageError

KEYS = ("compute_max", "compute_min", "placement_max")
# The sandbox process exits with this code when the installed release cannot serve a cap.
BAD_CAP_EXIT = 64
# What the sandbox itself needs: it boots its VMs at compute 2.96 (server._api_for) and Nova's
# scheduler asks Placement for 1.36 (report.SAME_SUBTREE_VERSION).
SANDBOX_COMPUTE = (2, 96)
NOVA_PLACEMENT = (1, 36)
_MAJOR = {"compute_max": 2, "compute_min": 2, "placement_max": 1}


class CapError(ValueError):
    """A cap the installed Nova or Placement cannot serve."""


def parse(text: str) -> tuple[int, int]:
    """'2.96' -> (2, 96); ValueError otherwise."""
    m = re.fullmatch(r"(\d{1,3})\.(\d{1,4})", text.strip())
    if not m:
        raise ValueError(text)
    return int(m.group(1)), int(m.group(2))


def check(caps: Mapping[str, str | None]) -> dict[str, str]:
    """The caps given, validated in form (`2.N` for compute, `1.N` for placement); UsageError."""
    out: dict[str, str] = {}
    for key, value in caps.items():
        if key not in KEYS:
            raise UsageError(f"unknown microversion cap {key!r} (known: {', '.join(KEYS)})")
        if value is None:
            continue
        option = "--" + key.replace("_", "-")
        try:
            major, minor = parse(str(value))
        except ValueError:
            raise UsageError(f"{option} {value!r}: not a microversion like 2.96") from None
        if major != _MAJOR[key]:
            raise UsageError(f"{option} {value}: microversions of this API are {_MAJOR[key]}.N")
        out[key] = f"{major}.{minor}"
    lo, hi = out.get("compute_min"), out.get("compute_max")
    if lo and hi and parse(lo) > parse(hi):
        raise UsageError(f"--compute-min {lo} is above --compute-max {hi}")
    return out


def apply(caps: Mapping[str, str]) -> None:
    """Narrow the installed Nova's and Placement's ranges (in the sandbox process, before the
    apps load); CapError when the release cannot serve a cap or the sandbox needs more."""
    if not caps:
        return
    import nova.tests.functional  # noqa: F401  (Nova's threading mode first, as server does)
    from nova.api.openstack import api_version_request as avr
    from nova.api.openstack.compute import versions
    from placement import microversion

    nova_lo, nova_hi = parse(avr._MIN_API_VERSION), parse(avr._MAX_API_VERSION)
    lo = parse(caps.get("compute_min", avr._MIN_API_VERSION))
    hi = parse(caps.get("compute_max", avr._MAX_API_VERSION))
    if not nova_lo <= lo <= hi <= nova_hi:
        raise CapError(
            f"compute range {_s(lo)}-{_s(hi)}: this Nova serves {_s(nova_lo)}-{_s(nova_hi)}"
        )
    if hi < SANDBOX_COMPUTE or lo > SANDBOX_COMPUTE:
        raise CapError(
            f"compute range {_s(lo)}-{_s(hi)}: the sandbox seeds its cloud at "
            f"{_s(SANDBOX_COMPUTE)}, so the range must include it"
        )
    avr._MIN_API_VERSION, avr._MAX_API_VERSION = _s(lo), _s(hi)
    avr.DEFAULT_API_VERSION = _s(lo)  # a request without a version gets the minimum
    versions.VERSIONS["v2.1"]["min_version"] = _s(lo)
    versions.VERSIONS["v2.1"]["version"] = _s(hi)
    if "placement_max" in caps:
        known = [parse(v) for v in microversion.VERSIONS]
        cap = parse(caps["placement_max"])
        if cap not in known:
            raise CapError(
                f"placement max {_s(cap)}: this Placement serves "
                f"{microversion.VERSIONS[0]}-{microversion.VERSIONS[-1]}"
            )
        if cap < NOVA_PLACEMENT:
            raise CapError(
                f"placement max {_s(cap)}: Nova's scheduler needs {_s(NOVA_PLACEMENT)} at least"
            )
        del microversion.VERSIONS[known.index(cap) + 1 :]


def _s(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"
