"""The sandbox's image endpoint: a token-checking proxy in front of its Glance process.

Glance runs with the `trusted` paste pipeline (its own context middleware, no authtoken): this
proxy validates the caller's token as keystonemiddleware would and hands Glance the identity
headers keystonemiddleware sets (`X-Identity-Status: Confirmed`, user, project, roles). Served
at `/image` of the sandbox's front (the catalog's `image` entry) and, for Nova's own calls during
seeding (before the front serves), on an internal port. No nova or glance import here.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


@dataclass(frozen=True)
class Caller:
    user_id: str
    project_id: str
    roles: tuple[str, ...]


# A token -> its caller, or None when it is not valid.
TokenCheck = Callable[[str], Caller | None]

_KEEP = ("content-type", "location", "content-md5", "openstack-image-import-methods")


def _read_body(environ: Environ) -> bytes | None:
    """The request body; glanceclient streams uploads chunked, which wsgiref does not decode."""
    f = environ["wsgi.input"]
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        parts = []
        while True:
            size = int(f.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                f.readline()
                break
            parts.append(f.read(size))
            f.readline()
        return b"".join(parts)
    n = int(environ.get("CONTENT_LENGTH") or 0)
    return f.read(n) if n else None


class ImageProxy:
    """Forward to Glance at `glance_url` what a valid token asks; version discovery is open."""

    def __init__(self, glance_url: str, check: TokenCheck) -> None:
        self.glance_url = glance_url.rstrip("/")
        self.check = check

    def __call__(self, environ: Environ, start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        headers = {"Content-Type": environ.get("CONTENT_TYPE") or "application/json"}
        if path != "/":
            token = environ.get("HTTP_X_AUTH_TOKEN") or ""
            caller = self.check(token) if token else None
            if caller is None:
                return _unauthorized(start)
            headers.update(
                {
                    "X-Identity-Status": "Confirmed",
                    "X-Auth-Token": token,
                    "X-User-Id": caller.user_id,
                    "X-Project-Id": caller.project_id,
                    "X-Roles": ",".join(caller.roles),
                }
            )
        # Glance's links name the address the client used (its proxy-headers parsing).
        host = environ.get("HTTP_HOST")
        if host:
            headers["X-Forwarded-Host"] = host
            headers["X-Forwarded-Prefix"] = environ.get("SCRIPT_NAME", "")
        qs = environ.get("QUERY_STRING")
        url = self.glance_url + path + ("?" + qs if qs else "")
        req = urllib.request.Request(
            url, data=_read_body(environ), method=environ["REQUEST_METHOD"], headers=headers
        )
        try:
            with urllib.request.urlopen(req, timeout=300) as resp:
                status, data, got = resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as exc:
            status, data, got = exc.code, exc.read(), exc.headers
        keep = [(k, v) for k, v in got.items() if k.lower() in _KEEP]
        start(
            f"{status} {_REASON.get(status, 'Status')}", [*keep, ("Content-Length", str(len(data)))]
        )
        return [data]


_REASON = {
    200: "OK",
    201: "Created",
    204: "No Content",
    300: "Multiple Choices",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
}


def _unauthorized(start: StartResponse) -> list[bytes]:
    data = (
        b'{"error": {"code": 401, "title": "Unauthorized", '
        b'"message": "The request you have made requires authentication."}}'
    )
    start(
        "401 Unauthorized",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]
