"""Opt-in (`with_image`): a real Glance for the sandbox, and Nova pointed at it.

Imported by the sandbox process only. What it takes (the feasibility note's list):
- Glance in its own process (`glance_serve`), SQLite and the file store under the sandbox's work
  dir, started with the sandbox, stopped with it, and gone when the sandbox is (it watches it);
- the token-checking proxy (`imageproxy`): at the front's `/image` for clients, and on an
  internal port for Nova from the first boot on (the front serves only after seeding);
- Nova's image service back on HTTP (the harness stubs it in memory), with the caller's token
  carried into Nova's context as keystonemiddleware does (the harness's context drops it), and an
  internal token for the sandbox's own seeding requests;
- the base image the seed boots from (the harness's image1 id) uploaded to Glance;
- snapshots upload bytes (driver.py: `Control.image_upload`).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.openstack.sandbox import imageproxy

# What the seeded servers boot from: Nova's GlanceFixture.image1 id, kept so the seed is unchanged.
BASE_IMAGE_ID = "155d900f-4e14-4e4c-a73d-069cbf4541e6"
BASE_IMAGE_NAME = "rollwave-base"
BASE_IMAGE_BYTES = b"rollwave sandbox base image\n" * 512

_PASTE = """\
[composite:glance-api-trusted]
paste.composite_factory = glance.api:root_app_factory
/: api

[composite:api]
paste.composite_factory = glance.api:pipeline_factory
trusted = http_proxy_to_wsgi versionnegotiation context rootapp

[composite:rootapp]
paste.composite_factory = glance.api:root_app_factory
/: apiversions
/v2: apiv2app

[app:apiversions]
paste.app_factory = glance.api.versions:create_resource

[app:apiv2app]
paste.app_factory = glance.api.v2.router:API.factory

[filter:versionnegotiation]
paste.filter_factory = glance.api.middleware.version_negotiation:VersionNegotiationFilter.factory

[filter:context]
paste.filter_factory = glance.api.middleware.context:ContextMiddleware.factory

[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware:HTTPProxyToWSGI.factory
"""


def _conf(d: Path) -> str:
    return f"""\
[DEFAULT]
enabled_backends = fs:file
log_file = {d}/glance-api.log
[database]
connection = sqlite:///{d}/glance.sqlite
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = {d}/images
[os_glance_staging_store]
filesystem_store_datadir = {d}/staging
[os_glance_tasks_store]
filesystem_store_datadir = {d}/tasks
[oslo_middleware]
enable_proxy_headers_parsing = true
[paste_deploy]
config_file = {d}/glance-api-paste.ini
flavor = trusted
"""


@dataclass
class Glance:
    """A started Glance process and the internal proxy Nova reaches it through."""

    proc: subprocess.Popen[bytes]
    url: str  # Glance itself (trusted: only the proxies talk to it)
    internal_token: str
    dir: Path
    internal_url: str = ""


def launch(work_dir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """Create Glance's database and start its process (it comes up while Nova's harness does)."""
    d = work_dir / "glance"
    for sub in ("images", "staging", "tasks"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "glance-api.conf").write_text(_conf(d))
    (d / "glance-api-paste.ini").write_text(_PASTE)
    env = dict(os.environ, PYTHONWARNINGS="ignore", OS_GLANCE_CONFIG_DIR=str(d))
    manage = Path(sys.executable).parent / "glance-manage"
    subprocess.run(
        [str(manage), "--config-file", str(d / "glance-api.conf"), "db_sync"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    out = open(d / "serve.out", "wb")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "planner.openstack.sandbox.glance_serve",
                str(d),
                str(d / "port"),
                str(os.getpid()),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    finally:
        out.close()
    return proc, d


def wait_ready(proc: subprocess.Popen[bytes], d: Path, timeout: float = 120.0) -> Glance:
    deadline = time.monotonic() + timeout
    while not (d / "port").exists():
        if proc.poll() is not None:
            tail = (d / "serve.out").read_text(errors="replace")[-1500:]
            raise RuntimeError(f"Glance exited during start-up:\n{tail}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("Glance did not come up in time")
        time.sleep(0.1)
    url = f"http://127.0.0.1:{int((d / 'port').read_text())}"
    return Glance(proc, url, "internal-" + secrets.token_hex(16), d)


def _trusted(g: Glance, method: str, path: str, body: Any, ctype: str) -> int:
    headers = {
        "X-Identity-Status": "Confirmed",
        "X-Auth-Token": g.internal_token,
        "X-User-Id": "admin",
        "X-Project-Id": "admin",
        "X-Roles": "admin,member,reader",
        "Content-Type": ctype,
    }
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(g.url + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return int(resp.status)


def seed_base_image(g: Glance) -> None:
    """The image every seeded server boots from, public, with bytes."""
    meta = {
        "id": BASE_IMAGE_ID,
        "name": BASE_IMAGE_NAME,
        "disk_format": "raw",
        "container_format": "bare",
        "visibility": "public",
    }
    _trusted(g, "POST", "/v2/images", meta, "application/json")
    _trusted(
        g, "PUT", f"/v2/images/{BASE_IMAGE_ID}/file", BASE_IMAGE_BYTES, "application/octet-stream"
    )


def serve_internal(g: Glance, check: imageproxy.TokenCheck) -> None:
    """The proxy on an internal port, for Nova (from the first boot on)."""
    from planner.openstack.sandbox import web

    httpd = web.bind(0)
    web.serve(httpd, imageproxy.ImageProxy(g.url, check))
    g.internal_url = f"http://127.0.0.1:{httpd.server_address[1]}"


def point_nova_at(g: Glance) -> None:
    """Nova's image service over HTTP again, at the internal proxy, carrying tokens."""
    import nova.image.glance as nova_glance
    from nova import context as nova_context
    from nova.api import auth as nova_auth
    from oslo_config import cfg

    # The harness's GlanceFixture replaced this with its in-memory service; the real one is
    # the function it saved, still bound in the module's namespace of nova.image.glance.API.
    nova_glance.get_default_image_service = _ORIGINAL_IMAGE_SERVICE
    cfg.CONF.set_override("api_servers", [g.internal_url], group="glance")

    def create_context(env: dict[str, Any], **kw: Any) -> Any:
        user = env["HTTP_X_AUTH_USER"]
        roles = env["HTTP_X_ROLES"].split(",")
        return nova_context.RequestContext(
            user,
            env["HTTP_X_AUTH_PROJECT_ID"],
            is_admin=(user == "admin" or "admin" in roles),
            roles=roles,
            auth_token=env.get("HTTP_X_AUTH_TOKEN") or g.internal_token,
            **kw,
        )

    nova_auth.NovaKeystoneContext._create_context = staticmethod(create_context)


_ORIGINAL_IMAGE_SERVICE: Any = None


def remember_image_service() -> None:
    """Keep Nova's real image service factory before the harness stubs it."""
    global _ORIGINAL_IMAGE_SERVICE
    import nova.image.glance as nova_glance

    _ORIGINAL_IMAGE_SERVICE = nova_glance.get_default_image_service


def launch_if_asked(spec: dict[str, Any], work_dir: Path, stoppers: list[Any]) -> Any:
    """Opt-in: start Glance's process now, so it comes up while Nova's harness does."""
    if not spec.get("with_image"):
        return None
    proc, d = launch(work_dir)

    def stop() -> None:
        if proc.poll() is None:
            proc.kill()

    stoppers.append(stop)
    return proc, d


def ready(sb: Any, identity: Any, launched: Any) -> Any:
    """Glance serving, the base image in it, Nova pointed at it: the front's image app."""
    g = wait_ready(*launched)

    def check(token: str) -> imageproxy.Caller | None:
        if token == g.internal_token:
            return imageproxy.Caller("admin", "admin", ("admin", "member", "reader"))
        tok = identity.check(token)
        if tok is None:
            return None
        return imageproxy.Caller(tok.user.id, tok.user.project_id, tuple(tok.user.roles))

    seed_base_image(g)
    serve_internal(g, check)
    point_nova_at(g)
    sb.driver.CONTROL.image_upload = True
    return imageproxy.ImageProxy(g.url, check)
