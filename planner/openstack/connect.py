"""Connecting to an OpenStack cloud the way every OpenStack tool does, and calling it.

`connect()` takes clouds.yaml, OS_CLOUD and the usual OS_* variables through openstacksdk.
`Api` wraps the REST calls rollwave makes so that every failure becomes a `CloudError` naming
the call and the HTTP status, never a traceback and never a token.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from planner.errors import CloudError, UsageError

T = TypeVar("T")


def connect(cloud: str | None, project: str | None = None) -> Any:
    """An openstacksdk Connection for `cloud` (None: OS_CLOUD or the OS_* variables);
    `project`: scoped to that project instead of the entry's own (what an operator's admin
    account does to create resources that belong to a project)."""
    import openstack
    from keystoneauth1 import exceptions as ks_exc
    from openstack import exceptions as sdk_exc

    try:
        if project:
            return openstack.connect(
                cloud=cloud, load_yaml_config=True, load_envvars=True, project_name=project
            )
        return openstack.connect(cloud=cloud, load_yaml_config=True, load_envvars=True)
    except sdk_exc.ConfigException as exc:
        where = f"cloud {cloud!r}" if cloud else "the OS_* environment"
        raise CloudError(f"cannot configure a connection from {where}: {exc}") from None
    except (ks_exc.MissingRequiredOptions, ks_exc.MissingAuthPlugin) as exc:
        raise UsageError(no_cloud_message(cloud, exc)) from None


def no_cloud_message(cloud: str | None, exc: Exception) -> str:
    """What to configure when openstacksdk found too little to authenticate (often: nothing)."""
    missing = getattr(exc, "options", None) or []
    names = ", ".join(getattr(o, "dest", str(o)) for o in missing)
    if cloud:
        what = f"cloud {cloud!r} lacks"
    elif any(k.startswith("OS_") for k in os.environ):
        what = "the OS_* variables lack"
    else:
        what = "no cloud is configured: rollwave found no"
    lack = f" (missing: {names})" if names else ""
    return (
        f"{what} credentials to authenticate with{lack}. Configure one of:\n"
        "  --os-cloud NAME (or OS_CLOUD=NAME) naming an entry of clouds.yaml: ./clouds.yaml, "
        "~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml, or the file "
        "OS_CLIENT_CONFIG_FILE names;\n"
        "  or the OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME, ... variables "
        "(source the cloud's openrc file)"
    )


def _version_tuple(v: str | None) -> tuple[int, int]:
    if not v:
        return (0, 0)
    major, _, minor = str(v).partition(".")
    try:
        return (int(major), int(minor or 0))
    except ValueError:
        return (0, 0)


@dataclass
class Api:
    """REST calls through openstacksdk's service adapters, with uniform error reporting."""

    conn: Any
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def request(
        self,
        service: str,
        method: str,
        path: str,
        *,
        microversion: str | None = None,
        json: Any = None,
    ) -> Any:
        from keystoneauth1 import exceptions as ks_exc
        from openstack import exceptions as sdk_exc

        call = f"{method} {service} {path.split('?')[0]}"
        with self._lock:
            self.calls += 1
        try:
            adapter = getattr(self.conn, service)
            resp = adapter.request(
                path, method, microversion=microversion, json=json, raise_exc=False
            )
        except ks_exc.Unauthorized:
            raise CloudError(
                "authentication failed: the cloud refused the credentials", call=call, status=401
            ) from None
        except (ks_exc.ConnectFailure, ks_exc.ConnectTimeout) as exc:
            raise CloudError(f"cannot reach the endpoint ({_reason(exc)})", call=call) from None
        except ks_exc.EndpointNotFound:
            raise CloudError(f"the service catalog has no {service} endpoint", call=call) from None
        except ks_exc.DiscoveryFailure as exc:
            raise CloudError(
                f"cannot reach the endpoint or discover its API versions ({_reason(exc)})",
                call=call,
            ) from None
        except ks_exc.HttpError as exc:
            raise CloudError(
                _first_line(exc), call=call, status=getattr(exc, "http_status", None)
            ) from None
        except (ks_exc.ClientException, sdk_exc.SDKException) as exc:
            raise CloudError(_first_line(exc), call=call) from None
        if resp.status_code == 401:
            raise CloudError("authentication failed: the token was refused", call=call, status=401)
        if resp.status_code == 403:
            raise CloudError(
                "permission denied: rollwave needs an admin role on this cloud "
                "(read access to services, hypervisors, all projects' servers "
                "and Placement)",
                call=call,
                status=403,
            )
        if resp.status_code >= 400:
            raise CloudError(_error_message(resp), call=call, status=resp.status_code)
        return resp.json() if resp.content else {}

    def sdk(self, call: str, fn: Callable[[Any], T]) -> T:
        """One call through openstacksdk's own proxies (`fn(conn)`), where it has the call;
        its failures become a `CloudError` naming `call` and the HTTP status, as `request`'s."""
        from keystoneauth1 import exceptions as ks_exc
        from openstack import exceptions as sdk_exc

        with self._lock:
            self.calls += 1
        try:
            return fn(self.conn)
        except sdk_exc.HttpException as exc:
            status = exc.status_code
            if status == 401:
                raise CloudError("authentication failed", call=call, status=401) from None
            msg = str(exc.details or "").strip() or _first_line(exc)
            raise CloudError(msg[:300], call=call, status=status) from None
        except (ks_exc.ConnectFailure, ks_exc.ConnectTimeout) as exc:
            raise CloudError(f"cannot reach the endpoint ({_reason(exc)})", call=call) from None
        except (ks_exc.ClientException, sdk_exc.SDKException) as exc:
            raise CloudError(_first_line(exc), call=call) from None

    def get(self, service: str, path: str, microversion: str | None = None) -> Any:
        return self.request(service, "GET", path, microversion=microversion)

    def max_microversion(self, service: str) -> tuple[int, int]:
        """The newest microversion the endpoint serves ((0, 0) if it does not say)."""
        from keystoneauth1 import exceptions as ks_exc

        try:
            data = getattr(self.conn, service).get_endpoint_data()
        except ks_exc.Unauthorized:
            raise CloudError(
                "authentication failed: the cloud refused the credentials",
                call=f"discover {service}",
                status=401,
            ) from None
        except (ks_exc.ConnectFailure, ks_exc.ConnectTimeout) as exc:
            raise CloudError(
                f"cannot reach the endpoint ({_reason(exc)})", call=f"discover {service}"
            ) from None
        except ks_exc.EndpointNotFound:
            raise CloudError(
                f"the service catalog has no {service} endpoint", call=f"discover {service}"
            ) from None
        except ks_exc.DiscoveryFailure as exc:
            raise CloudError(
                f"cannot reach the endpoint or discover its API versions ({_reason(exc)})",
                call=f"discover {service}",
            ) from None
        except ks_exc.ClientException as exc:
            raise CloudError(_first_line(exc), call=f"discover {service}") from None
        if data is None or not data.max_microversion:
            return (0, 0)
        mv = data.max_microversion
        return (int(mv[0]), int(mv[1]))

    def paginate(
        self,
        service: str,
        path: str,
        key: str,
        *,
        microversion: str | None,
        limit: int = 1000,
        by_offset: bool = False,
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of a list call (marker or offset pagination), never one call per item.

        A cloud may cap pages below `limit` (Nova's `[api] max_limit`): marker pagination
        follows Nova's `<key>_links` "next" link; offset pagination reads until an empty page.
        """
        sep = "&" if "?" in path else "?"
        marker: str | None = None
        offset = 0
        while True:
            url = f"{path}{sep}limit={limit}"
            if by_offset:
                url += f"&offset={offset}"
            elif marker:
                url += f"&marker={marker}"
            body = self.get(service, url, microversion)
            page = body[key]
            if page:
                yield page
            if by_offset:
                if not page:
                    return
                offset += len(page)
                continue
            has_next = any(link.get("rel") == "next" for link in body.get(f"{key}_links") or [])
            if not page or (not has_next and len(page) < limit):
                return
            marker = str(page[-1]["id"])


def pick_microversion(maximum: tuple[int, int], wanted: tuple[int, int]) -> str | None:
    if maximum == (0, 0):
        return None
    best = min(maximum, wanted)
    return f"{best[0]}.{best[1]}"


def _reason(exc: BaseException) -> str:
    """The useful end of a keystoneauth message (they nest urllib3's whole story)."""
    text = str(exc)
    for known in (
        "Connection refused",
        "timed out",
        "Name or service not known",
        "No route to host",
        "certificate verify failed",
    ):
        if known in text:
            return known
    return _first_line(exc)[:160]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _error_message(resp: Any) -> str:
    try:
        body = resp.json()
    except ValueError:
        return (resp.text or resp.reason or "error").strip()[:200]
    if isinstance(body, dict):
        for v in body.values():
            if isinstance(v, dict) and "message" in v:
                return str(v["message"])
        errs = body.get("errors")
        if isinstance(errs, list) and errs and isinstance(errs[0], dict):
            return str(errs[0].get("detail") or errs[0].get("title"))
    return str(body)[:200]
