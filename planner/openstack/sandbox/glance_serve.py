"""A real Glance API in its own process, for a sandbox started with `with_image`.

Run by the sandbox process (`glance.start`) as
`python -m planner.openstack.sandbox.glance_serve CONF_DIR PORT_FILE PARENT_PID`: Glance's WSGI
application (glance.wsgi.api, configured from CONF_DIR) on 127.0.0.1, a free port written to
PORT_FILE once it serves. Glance and Nova's harness both drive the process-wide oslo.config, so
Glance cannot share the sandbox's process. It exits when PARENT_PID (the sandbox) is gone, so a
SIGKILLed sandbox leaves no Glance behind.
"""

from __future__ import annotations

import os
import socketserver
import sys
import threading
import time
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _Threading(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests carry tokens in headers; never log them


def main(argv: list[str]) -> int:
    conf_dir, port_file, parent = Path(argv[0]), Path(argv[1]), int(argv[2])

    def watch_parent() -> None:
        # The sandbox is our parent: once it is gone (even SIGKILLed and not yet reaped, a
        # zombie that still answers kill 0), we are re-parented.
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch_parent, name="rollwave-parent", daemon=True).start()
    os.environ["OS_GLANCE_CONFIG_DIR"] = str(conf_dir)
    from glance.wsgi import api

    httpd = make_server(
        "127.0.0.1", 0, api.application, server_class=_Threading, handler_class=_Quiet
    )
    tmp = port_file.with_name(port_file.name + ".tmp")
    tmp.write_text(str(httpd.server_address[1]))
    os.replace(tmp, port_file)
    httpd.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
