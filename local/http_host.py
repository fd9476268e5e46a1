"""The local HTTP host: a threaded stdlib server on 127.0.0.1 in front of the host-neutral Api."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("multiline.http")

MAX_BODY = 10 * 1024 * 1024


def make_server(api, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.send_error(413, f"body over {MAX_BODY} bytes")
                return
            body = self.rfile.read(length) if length else b""
            response = api.handle(method, self.path, dict(self.headers.items()), body)
            data, content_type = response.encoded()
            self.send_response(response.status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in response.headers.items():
                if key.lower() != "content-type":
                    self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._serve("GET")

        def do_POST(self):
            self._serve("POST")

        def do_OPTIONS(self):
            self._serve("OPTIONS")

        def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
            log.debug("%s " + format, self.address_string(), *args)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server


def serve_in_background(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="multiline-http", daemon=True)
    thread.start()
    return thread
