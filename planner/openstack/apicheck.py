"""The API pre-check of a side-by-side upgrade: what a client pinned to the old cloud's API
versions and microversion ranges would lose against the new cloud.

For each service of `SERVICES`, the endpoint comes from each cloud's catalog (openstacksdk,
clouds.yaml names) and its version discovery document from that endpoint, parsed by
keystoneauth as every OpenStack client does: the unversioned root first (it lists every
version), else the catalog's URL itself. Per service the old cloud's versions are compared with
the new one's: a version removed, a maximum microversion lowered, a minimum raised or the whole
service missing is **lost** (the pair is incompatible); what the new cloud adds is **gained**
(reported, never blocking); a service in neither catalog is **absent**.

`check` does it for two clouds.yaml names (`catalog`, `same_cloud`, `documents`, `compare`);
`compare` is the pure comparison; `require_compatible` is the gate a side-by-side execution
calls before it starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from planner.errors import ApiIncompatibleError, CloudError, UsageError

SERVICES = ("compute", "image", "block-storage", "network", "placement")
Version = tuple[int, int]


class Verdict(Enum):
    COMPATIBLE = "compatible"
    INCOMPATIBLE = "incompatible"
    ABSENT = "absent"  # in neither cloud's catalog: nothing to lose


class Change(Enum):
    SERVICE_MISSING = "service-missing"  # lost: the new catalog has no such service
    VERSION_REMOVED = "version-removed"  # lost: a major version the old cloud lists
    MAX_LOWERED = "max-lowered"  # lost: microversions above the new maximum
    MIN_RAISED = "min-raised"  # lost: microversions below the new minimum
    SERVICE_ADDED = "service-added"  # gained
    VERSION_ADDED = "version-added"  # gained
    MAX_RAISED = "max-raised"  # gained
    MIN_LOWERED = "min-lowered"  # gained
    STATUS_CHANGED = "status-changed"  # noted, never blocking (e.g. CURRENT -> SUPPORTED)


LOSSES = frozenset(
    {Change.SERVICE_MISSING, Change.VERSION_REMOVED, Change.MAX_LOWERED, Change.MIN_RAISED}
)
NOTES = frozenset({Change.STATUS_CHANGED})


def mv(v: Version | None) -> str:
    return "" if v is None else f"{v[0]}.{v[1]}"


@dataclass(frozen=True)
class ApiVersion:
    """One version of a discovery document: `v2.1`, its status and microversion range (None
    where the service has no microversions)."""

    version: Version
    status: str
    min_microversion: Version | None = None
    max_microversion: Version | None = None

    @property
    def id(self) -> str:
        return f"v{self.version[0]}.{self.version[1]}"

    @property
    def range(self) -> str:
        if self.max_microversion is None:
            return self.id
        return f"{self.id} {mv(self.min_microversion)}-{mv(self.max_microversion)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "min_microversion": mv(self.min_microversion) or None,
            "max_microversion": mv(self.max_microversion) or None,
        }


@dataclass(frozen=True)
class ServiceApi:
    """A service as one cloud offers it: its catalog endpoint (None: not in the catalog), the
    URL its discovery document came from, and the versions that document lists."""

    service: str
    endpoint: str | None
    document_url: str | None = None
    versions: tuple[ApiVersion, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "document": self.document_url,
            "versions": [v.to_dict() for v in self.versions],
        }


@dataclass(frozen=True)
class CloudApis:
    """What `discover` found in one cloud: its clouds.yaml name, auth URL, region, services."""

    cloud: str
    auth_url: str
    region: str | None
    services: Mapping[str, ServiceApi]

    def to_dict(self) -> dict[str, Any]:
        return {"cloud": self.cloud, "auth_url": self.auth_url, "region": self.region}


@dataclass(frozen=True)
class Finding:
    change: Change
    version: str | None
    message: str

    @property
    def lost(self) -> bool:
        return self.change in LOSSES

    def to_dict(self) -> dict[str, Any]:
        return {"change": self.change.value, "version": self.version, "message": self.message}


@dataclass(frozen=True)
class ServiceVerdict:
    service: str
    verdict: Verdict
    old: ServiceApi
    new: ServiceApi
    findings: tuple[Finding, ...] = ()

    @property
    def lost(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.lost)

    @property
    def gained(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.change not in LOSSES | NOTES)

    @property
    def notes(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.change in NOTES)

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "verdict": self.verdict.value,
            "old": self.old.to_dict(),
            "new": self.new.to_dict(),
            "lost": [f.to_dict() for f in self.lost],
            "gained": [f.to_dict() for f in self.gained],
            "notes": [f.to_dict() for f in self.notes],
        }


@dataclass(frozen=True)
class Report:
    old: CloudApis
    new: CloudApis
    services: tuple[ServiceVerdict, ...] = field(default_factory=tuple)

    @property
    def compatible(self) -> bool:
        return all(s.verdict is not Verdict.INCOMPATIBLE for s in self.services)

    def incompatible(self) -> tuple[ServiceVerdict, ...]:
        return tuple(s for s in self.services if s.verdict is Verdict.INCOMPATIBLE)

    def summary(self) -> str:
        """One line: compatible, or each lost thing per service."""
        if self.compatible:
            return (
                f"the new cloud {self.new.cloud} serves every API version and microversion "
                f"the old cloud {self.old.cloud} serves"
            )
        parts = [
            f"{s.service}: " + "; ".join(f.message for f in s.lost) for s in self.incompatible()
        ]
        return (
            f"a client pinned to the old cloud {self.old.cloud}'s APIs would lose, in the new "
            f"cloud {self.new.cloud}: " + " | ".join(parts)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "compatible": self.compatible,
            "old": self.old.to_dict(),
            "new": self.new.to_dict(),
            "services": [s.to_dict() for s in self.services],
            "summary": self.summary(),
        }


# -- comparison (pure) --------------------------------------------------------------------------


def compare(old: CloudApis, new: CloudApis, services: Sequence[str] = SERVICES) -> Report:
    """What a client pinned to `old`'s versions and ranges loses and gains against `new`."""
    return Report(old, new, tuple(_compare_service(s, old, new) for s in services))


def _compare_service(service: str, old_cloud: CloudApis, new_cloud: CloudApis) -> ServiceVerdict:
    old = old_cloud.services.get(service) or ServiceApi(service, None)
    new = new_cloud.services.get(service) or ServiceApi(service, None)
    if old.endpoint is None and new.endpoint is None:
        return ServiceVerdict(service, Verdict.ABSENT, old, new)
    if new.endpoint is None:
        lost = Finding(
            Change.SERVICE_MISSING,
            None,
            f"{service} is missing from the new cloud's catalog (the old one serves "
            + ", ".join(v.range for v in old.versions)
            + ")",
        )
        return ServiceVerdict(service, Verdict.INCOMPATIBLE, old, new, (lost,))
    if old.endpoint is None:
        gained = Finding(Change.SERVICE_ADDED, None, f"{service} is only in the new cloud")
        return ServiceVerdict(service, Verdict.COMPATIBLE, old, new, (gained,))
    findings: list[Finding] = []
    new_by = {v.version: v for v in new.versions}
    old_by = {v.version: v for v in old.versions}
    for ov in old.versions:
        nv = new_by.get(ov.version)
        if nv is None:
            findings.append(
                Finding(Change.VERSION_REMOVED, ov.id, f"{ov.range} removed ({ov.status} before)")
            )
            continue
        findings.extend(_compare_ranges(ov, nv))
    for nv in new.versions:
        if nv.version not in old_by:
            findings.append(Finding(Change.VERSION_ADDED, nv.id, f"{nv.range} is new"))
    verdict = Verdict.INCOMPATIBLE if any(f.lost for f in findings) else Verdict.COMPATIBLE
    return ServiceVerdict(service, verdict, old, new, tuple(findings))


def _compare_ranges(ov: ApiVersion, nv: ApiVersion) -> list[Finding]:
    out: list[Finding] = []
    if ov.status.upper() != nv.status.upper():
        out.append(
            Finding(Change.STATUS_CHANGED, ov.id, f"{ov.id} is {nv.status} (was {ov.status})")
        )
    o_hi = ov.max_microversion
    if o_hi is None:
        if nv.max_microversion is not None:
            out.append(
                Finding(Change.MAX_RAISED, ov.id, f"{ov.id} now has microversions {nv.range}")
            )
        return out
    # A version that stops announcing microversions serves its base only (2.1 for v2.1).
    o_lo = ov.min_microversion or o_hi
    n_hi = nv.max_microversion or nv.version
    n_lo = nv.min_microversion or n_hi
    if n_hi < o_hi:
        lost = f"{mv(max(_next(n_hi), o_lo))}-{mv(o_hi)}"
        out.append(
            Finding(
                Change.MAX_LOWERED,
                ov.id,
                f"{ov.id} max microversion lowered {mv(o_hi)} -> {mv(n_hi)}: "
                f"{lost} no longer served",
            )
        )
    elif n_hi > o_hi:
        out.append(
            Finding(Change.MAX_RAISED, ov.id, f"{ov.id} max microversion {mv(o_hi)} -> {mv(n_hi)}")
        )
    if n_lo > o_lo:
        lost = f"{mv(o_lo)}-{mv(min(_prev(n_lo), o_hi))}"
        out.append(
            Finding(
                Change.MIN_RAISED,
                ov.id,
                f"{ov.id} min microversion raised {mv(o_lo)} -> {mv(n_lo)}: "
                f"{lost} no longer served",
            )
        )
    elif n_lo < o_lo:
        out.append(
            Finding(Change.MIN_LOWERED, ov.id, f"{ov.id} min microversion {mv(o_lo)} -> {mv(n_lo)}")
        )
    return out


def _next(v: Version) -> Version:
    return (v[0], v[1] + 1)


def _prev(v: Version) -> Version:
    return (v[0], max(v[1] - 1, 0))


# -- discovery (network) ------------------------------------------------------------------------

_VERSION_SEGMENT = re.compile(r"/v\d+(\.\d+)?/?$")


def _version_of(data: Mapping[str, Any]) -> ApiVersion:
    """One entry of keystoneauth's `Discover.version_data()`."""

    def pair(v: Any) -> Version | None:
        return None if not v else (int(v[0]), int(v[1]))

    version = pair(data.get("version")) or (0, 0)
    return ApiVersion(
        version,
        str(data.get("raw_status") or data.get("status") or ""),
        pair(data.get("min_microversion")),
        pair(data.get("max_microversion")),
    )


def _candidates(endpoint: str) -> list[str]:
    """Where the discovery document is: the unversioned root first (it lists every version),
    then the catalog's URL itself (a versioned document: that version only)."""
    root = _VERSION_SEGMENT.sub("/", endpoint.rstrip("/") + "/")
    return [root, endpoint] if root.rstrip("/") != endpoint.rstrip("/") else [endpoint]


def _endpoint(conn: Any, cloud: str, service: str) -> str | None:
    """The catalog's endpoint for `service` (clouds.yaml overrides honoured), None if absent."""
    from keystoneauth1 import exceptions as ks_exc

    call = f"catalog {service}"
    try:
        endpoint = conn.endpoint_for(service)
    except ks_exc.Unauthorized:
        raise CloudError(
            f"cloud {cloud!r}: authentication failed: the cloud refused the credentials",
            call=call,
            status=401,
        ) from None
    except (ks_exc.ConnectFailure, ks_exc.ConnectTimeout, ks_exc.DiscoveryFailure) as exc:
        raise CloudError(
            f"cloud {cloud!r}: cannot reach Keystone ({_line(exc)})", call=call
        ) from None
    except ks_exc.ClientException as exc:
        raise CloudError(f"cloud {cloud!r}: {_line(exc)}", call=call) from None
    return str(endpoint) if endpoint else None


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _document(conn: Any, cloud: str, api: ServiceApi) -> ServiceApi:
    """`api` with the versions its endpoint's discovery document lists."""
    from keystoneauth1 import discover
    from keystoneauth1 import exceptions as ks_exc

    if api.endpoint is None:
        return api
    call = f"discover {api.service}"
    last = ""
    for url in _candidates(api.endpoint):
        try:
            data = discover.Discover(conn.session, url, authenticated=None).version_data()
        except (ks_exc.ConnectFailure, ks_exc.ConnectTimeout) as exc:
            raise CloudError(
                f"cloud {cloud!r}: cannot reach the {api.service} endpoint {api.endpoint} "
                f"({_line(exc)})",
                call=call,
            ) from None
        except (ks_exc.HttpError, ks_exc.DiscoveryFailure) as exc:
            last = _line(exc)
            continue
        versions = tuple(sorted((_version_of(d) for d in data), key=lambda v: v.version))
        if versions:
            return ServiceApi(api.service, api.endpoint, url, versions)
        last = "the document lists no version"
    raise CloudError(
        f"cloud {cloud!r}: the {api.service} endpoint {api.endpoint} has no version discovery "
        f"document ({last})",
        call=call,
    )


def identity(conn: Any, cloud: str) -> CloudApis:
    """Where a configured cloud authenticates (its auth URL and region), before any call."""
    auth = dict(conn.config.config.get("auth") or {})
    return CloudApis(cloud, str(auth.get("auth_url") or ""), conn.config.get_region_name(), {})


def catalog(conn: Any, cloud: str, services: Sequence[str] = SERVICES) -> CloudApis:
    """One connected cloud's auth URL, region and each service's endpoint (no documents yet)."""
    ident = identity(conn, cloud)
    found = {s: ServiceApi(s, _endpoint(conn, cloud, s)) for s in services}
    return CloudApis(cloud, ident.auth_url, ident.region, found)


def documents(conn: Any, apis: CloudApis) -> CloudApis:
    """`apis` with every listed service's discovery document read."""
    found = {s: _document(conn, apis.cloud, api) for s, api in apis.services.items()}
    return CloudApis(apis.cloud, apis.auth_url, apis.region, found)


def _norm_url(url: str | None) -> str:
    return (url or "").strip().rstrip("/").lower()


def same_cloud(old: CloudApis, new: CloudApis) -> str | None:
    """Why `old` and `new` are one cloud (None if they are not). Ids cannot tell (two fresh
    deployments share project names, regions and fixture ids): one Keystone with one region, or
    any service endpoint in common, is one cloud."""
    auth = _norm_url(old.auth_url)
    if auth and auth == _norm_url(new.auth_url) and (old.region or "") == (new.region or ""):
        return f"both authenticate at {old.auth_url} in region {old.region or '(default)'}"
    for s, api in old.services.items():
        other = new.services.get(s)
        if api.endpoint and other and _norm_url(api.endpoint) == _norm_url(other.endpoint):
            return f"both have the {s} endpoint {api.endpoint}"
    return None


def check(old_cloud: str, new_cloud: str, services: Sequence[str] = SERVICES) -> Report:
    """Connect to both clouds.yaml entries, read their discovery documents and compare.

    UsageError (exit 2) when both names are one cloud; CloudError (exit 4) when a cloud is not
    configured, refuses the credentials or an endpoint cannot be reached."""
    from planner.openstack.connect import connect

    if old_cloud == new_cloud:
        raise UsageError(f"--old-cloud and --new-cloud are both {old_cloud!r}: give two clouds")
    old_conn, new_conn = connect(old_cloud), connect(new_cloud)

    def refuse_same(old: CloudApis, new: CloudApis) -> None:
        why = same_cloud(old, new)
        if why:
            raise UsageError(
                f"--old-cloud {old_cloud!r} and --new-cloud {new_cloud!r} are the same cloud "
                f"({why})"
            )

    refuse_same(identity(old_conn, old_cloud), identity(new_conn, new_cloud))  # before any call
    old = catalog(old_conn, old_cloud, services)
    new = catalog(new_conn, new_cloud, services)
    refuse_same(old, new)
    return compare(documents(old_conn, old), documents(new_conn, new), services)


def require_compatible(old_cloud: str, new_cloud: str, *, override: bool = False) -> Report:
    """The gate of a side-by-side execution, before the first VM crosses (once the new control
    plane is deployed: its APIs exist only then): the report when the new cloud covers the old
    one's APIs; ApiIncompatibleError (exit 7) carrying the report when it does not, unless
    `override` (the caller then says so loudly: its journal and its output). The override
    never covers two names for one cloud (UsageError) or an unreachable cloud (CloudError)."""
    report = check(old_cloud, new_cloud)
    if not report.compatible and not override:
        raise ApiIncompatibleError(report.summary(), report.to_dict())
    return report
