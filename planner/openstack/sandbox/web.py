"""The sandbox's HTTP front: a Keystone stand-in, the real Nova and Placement WSGI apps behind
it, and the rollwave control endpoint, all on one 127.0.0.1 port.

    /identity/v3   just enough of Keystone v3 for keystoneauth: password and token auth, catalog
    /compute       Nova's real API pipeline (paste), fed the identity Keystone would give it
    /placement     Placement's real app
    /image         the sandbox's real Glance, opt-in (`with_image`; imageproxy checks tokens)
    /rollwave      sandbox control; not in the catalog, needs the control secret

No nova import here: the apps are handed in by `server`.
"""

from __future__ import annotations

import json
import secrets
import socketserver
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
ControlHandler = Callable[[str, str, dict[str, Any]], tuple[int, Any]]

CONTROL_HEADER = "X-Rollwave-Control"


@dataclass(frozen=True)
class User:
    id: str
    name: str
    password: str
    project_id: str
    project_name: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class Token:
    user: User
    expires: datetime


class Identity:
    """Users and issued tokens. Tokens are random and live in memory only."""

    def __init__(self, users: list[User]) -> None:
        self.users = {u.name: u for u in users}
        self._tokens: dict[str, Token] = {}
        self._lock = threading.Lock()

    def issue(self, user: User) -> tuple[str, Token]:
        tok = Token(user, datetime.now(UTC) + timedelta(hours=12))
        value = secrets.token_hex(16)
        with self._lock:
            self._tokens[value] = tok
        return value, tok

    def check(self, value: str | None) -> Token | None:
        if not value:
            return None
        with self._lock:
            tok = self._tokens.get(value)
        if tok is None or tok.expires < datetime.now(UTC):
            return None
        return tok


def _json(
    start: StartResponse, status: int, body: Any, headers: tuple[tuple[str, str], ...] = ()
) -> list[bytes]:
    data = json.dumps(body).encode()
    reason = {
        200: "OK",
        201: "Created",
        204: "No Content",
        300: "Multiple Choices",
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        405: "Method Not Allowed",
        409: "Conflict",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }
    start(
        f"{status} {reason.get(status, 'Status')}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers],
    )
    return [data]


def _error(start: StartResponse, status: int, message: str) -> list[bytes]:
    title = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
    return _json(
        start,
        status,
        {"error": {"code": status, "message": message, "title": title.get(status, "Error")}},
    )


def _read_json(environ: Environ) -> Any:
    try:
        size = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        size = 0
    raw = environ["wsgi.input"].read(size) if size else b""
    return json.loads(raw) if raw else {}


class Front:
    """Routes by path prefix and stands in for Keystone in front of Nova and Placement."""

    def __init__(
        self,
        identity: Identity,
        nova: WSGIApp,
        placement: WSGIApp,
        control: ControlHandler,
        control_secret: str,
        image: WSGIApp | None = None,
    ) -> None:
        self.identity = identity
        self.image = image  # the Glance proxy (with_image), else no image service
        self.nova = nova
        self.placement = placement
        self.control = control
        self.control_secret = control_secret
        self.base_url = ""  # set once the port is known

    def catalog(self) -> list[dict[str, Any]]:
        def service(kind: str, name: str, path: str) -> dict[str, Any]:
            url = self.base_url + path
            return {
                "type": kind,
                "name": name,
                "id": uuid.uuid5(uuid.NAMESPACE_URL, url).hex,
                "endpoints": [
                    {
                        "id": uuid.uuid5(uuid.NAMESPACE_URL, url + i).hex,
                        "interface": i,
                        "region": "RegionOne",
                        "region_id": "RegionOne",
                        "url": url,
                    }
                    for i in ("public", "internal", "admin")
                ],
            }

        out = [
            service("identity", "keystone", "/identity/v3"),
            service("compute", "nova", "/compute/v2.1"),
            service("placement", "placement", "/placement"),
        ]
        if self.image is not None:
            out.append(service("image", "glance", "/image"))
        return out

    def __call__(self, environ: Environ, start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        for prefix, handler in (
            ("/identity", self._identity),
            ("/compute", self._nova),
            ("/placement", self._placement),
            ("/rollwave", self._control),
            ("/image", self._image),
        ):
            if path == prefix or path.startswith(prefix + "/"):
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
                environ["PATH_INFO"] = path[len(prefix) :]
                return handler(environ, start)
        return _error(start, 404, f"no service at {path}")

    # -- Keystone v3, the parts keystoneauth and openstacksdk use ------------------------------

    def _identity(self, environ: Environ, start: StartResponse) -> Iterable[bytes]:
        path = environ["PATH_INFO"].rstrip("/")
        method = environ["REQUEST_METHOD"]
        v3 = {
            "id": "v3.14",
            "status": "stable",
            "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": self.base_url + "/identity/v3/"}],
            "media-types": [
                {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
            ],
        }
        if path == "" and method == "GET":
            return _json(start, 300, {"versions": {"values": [v3]}})
        if path == "/v3" and method == "GET":
            return _json(start, 200, {"version": v3})
        if path == "/v3/auth/tokens" and method == "POST":
            return self._issue_token(environ, start)
        if path == "/v3/auth/tokens" and method in ("GET", "HEAD"):
            tok = self.identity.check(environ.get("HTTP_X_SUBJECT_TOKEN"))
            if tok is None:
                return _error(start, 404, "token not found")
            return _json(start, 200, {"token": self._token_body(tok)})
        return _error(start, 404, f"identity: no route for {method} {path}")

    def _token_body(self, tok: Token) -> dict[str, Any]:
        u = tok.user
        domain = {"id": "default", "name": "Default"}
        return {
            "methods": ["password"],
            "user": {"id": u.id, "name": u.name, "domain": domain, "password_expires_at": None},
            "project": {"id": u.project_id, "name": u.project_name, "domain": domain},
            "roles": [{"id": r, "name": r} for r in u.roles],
            "catalog": self.catalog(),
            "expires_at": tok.expires.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "issued_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "audit_ids": [secrets.token_hex(8)],
        }

    def _issue_token(self, environ: Environ, start: StartResponse) -> Iterable[bytes]:
        try:
            req = _read_json(environ)["auth"]
            ident = req["identity"]
            methods = ident["methods"]
            environ["rollwave.scope"] = req.get("scope")
        except (KeyError, TypeError, ValueError):
            return _error(start, 400, "malformed auth request")
        user: User | None = None
        if "password" in methods:
            pw = ident.get("password", {}).get("user", {})
            cand = self.identity.users.get(pw.get("name", "")) or next(
                (x for x in self.identity.users.values() if x.id == pw.get("id")), None
            )
            if cand and secrets.compare_digest(cand.password, str(pw.get("password", ""))):
                user = cand
        elif "token" in methods:
            tok = self.identity.check(ident.get("token", {}).get("id"))
            user = tok.user if tok else None
        if user is None:
            return _error(start, 401, "The request you have made requires authentication.")
        user = _scoped(user, _read_scope(environ))
        if user is None:
            return _error(start, 401, "only an admin may scope a token to another project")
        value, tok = self.identity.issue(user)
        return _json(start, 201, {"token": self._token_body(tok)}, (("X-Subject-Token", value),))

    # -- Nova and Placement behind the stand-in ----------------------------------------------

    def _authenticate(self, environ: Environ, start: StartResponse) -> Token | list[bytes]:
        tok = self.identity.check(environ.get("HTTP_X_AUTH_TOKEN"))
        if tok is None:
            return _error(start, 401, "The request you have made requires authentication.")
        return tok

    def _nova(self, environ: Environ, start: StartResponse) -> Iterable[bytes]:
        # Version discovery needs no token: the root and /v2.1 itself, as Nova's paste maps
        # them (`/v2.1: oscomputeversion_v2`, api-paste.ini).
        if environ["PATH_INFO"] in ("", "/", "/v2.1", "/v2.1/"):
            return self.nova(environ, start)
        tok = self._authenticate(environ, start)
        if not isinstance(tok, Token):
            return tok
        # What keystonemiddleware would set; Nova's harness builds its context from these.
        environ["HTTP_X_AUTH_USER"] = tok.user.id
        environ["HTTP_X_AUTH_PROJECT_ID"] = tok.user.project_id
        environ["HTTP_X_ROLES"] = ",".join(tok.user.roles)
        return self.nova(environ, start)

    def _placement(self, environ: Environ, start: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] in ("", "/"):
            return self.placement(environ, start)
        tok = self._authenticate(environ, start)
        if not isinstance(tok, Token):
            return tok
        # Placement's noauth2 middleware reads `user:project` and X-Roles.
        environ["HTTP_X_AUTH_TOKEN"] = f"{tok.user.id}:{tok.user.project_id}"
        environ["HTTP_X_ROLES"] = ",".join(tok.user.roles)
        return self.placement(environ, start)

    def _image(self, environ: Environ, start: StartResponse) -> Iterable[bytes]:
        if self.image is None:
            return _error(start, 404, "no image service (start the sandbox with --with-image)")
        return self.image(environ, start)  # it checks the token itself

    # -- control ------------------------------------------------------------------------------

    def _control(self, environ: Environ, start: StartResponse) -> Iterable[bytes]:
        given = environ.get("HTTP_" + CONTROL_HEADER.upper().replace("-", "_"), "")
        if not secrets.compare_digest(given, self.control_secret):
            return _error(start, 403, "control endpoint: wrong or missing secret")
        try:
            body = _read_json(environ)
        except ValueError:
            return _error(start, 400, "control endpoint: body is not JSON")
        status, out = self.control(environ["REQUEST_METHOD"], environ["PATH_INFO"], body)
        return _json(start, status, out)


def _read_scope(environ: Environ) -> str | None:
    """The project name (or id) a token request asks to be scoped to, if any."""
    scope = environ.get("rollwave.scope")
    project = scope.get("project") if isinstance(scope, dict) else None
    if not isinstance(project, dict):
        return None
    name = project.get("name") or project.get("id")
    return str(name) if name else None


def _scoped(user: User, project: str | None) -> User | None:
    """`user` with its token scoped to `project`: its own, or any for an admin (as an
    operator's admin account holds a role in every project); None: refused."""
    if not project or project in (user.project_id, user.project_name):
        return user
    if "admin" not in user.roles:
        return None
    from dataclasses import replace

    return replace(user, project_id=project, project_name=project)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests carry tokens in headers; never log them


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def bind(port: int) -> WSGIServer:
    """Take 127.0.0.1:`port` (0 picks a free one) now; `serve` answers on it later.

    Binding first makes a busy port fail in a second, not after the whole start-up.
    """
    return make_server(
        "127.0.0.1", port, _unset_app, server_class=_ThreadingServer, handler_class=_QuietHandler
    )


def _unset_app(environ: Environ, start: StartResponse) -> Iterable[bytes]:
    return _error(start, 503, "the sandbox is still starting")


def serve(server: WSGIServer, app: WSGIApp) -> threading.Thread:
    """Answer on a bound server with `app`, in a daemon thread."""
    server.set_app(app)
    thread = threading.Thread(target=server.serve_forever, name="rollwave-http", daemon=True)
    thread.start()
    return thread
