"""The local HTTP host: a threaded stdlib server on 127.0.0.1 in front of the host-neutral Api.

Every answer is the Api's; the errors the server itself raises (a body too large, a bad Content-Length,
a request line it cannot read, a method it has no handler for) are JSON `{"error": ...}` as well.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("multiline.http")

MAX_BODY = 10 * 1024 * 1024


class _Server(ThreadingHTTPServer):
    # The stdlib listens with a backlog of 5: a burst of Event Grid deliveries or relay posts (tens at once)
    # overflowed it and the kernel reset connections the handler never saw.
    request_queue_size = 1024
    daemon_threads = True


def make_server(api, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        timeout = 60  # a client that sends less than it announced must not hold a thread forever

        def _serve(self, method: str) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0:
                self.send_error(400, f"Content-Length {self.headers.get('Content-Length')!r} is not a byte count")
                return
            if length > MAX_BODY:
                self.send_error(413, f"body of {length} bytes is over the limit of {MAX_BODY} bytes")
                return
            body = self.rfile.read(length) if length else b""
            response = api.handle(method, self.path, dict(self.headers.items()), body)
            data, content_type = response.encoded()
            self.send_response(response.status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in response.headers.items():
                if key.lower() not in ("content-type", "content-length"):
                    self.send_header(key, value)
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(data)

        def send_error(self, code, message=None, explain=None):
            """The stdlib's errors (an HTML page by default) as JSON; the connection is closed after them."""
            if code == HTTPStatus.NOT_IMPLEMENTED:  # no do_<METHOD>: a method no route takes
                code, message = 405, f"method {self.command} is not supported; routes take GET, POST or OPTIONS"
            short = self.responses.get(code, ("error",))[0]
            self.log_error("code %d, message %s", code, message)
            data = json.dumps({"error": message or short}).encode()
            self.send_response(code, short)
            self.send_header("Connection", "close")
            if code == 405:
                self.send_header("Allow", "GET, POST, OPTIONS")
            body_allowed = code >= 200 and code not in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED)
            if body_allowed:
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD" and body_allowed:
                self.wfile.write(data)

        def do_GET(self):
            self._serve("GET")

        def do_POST(self):
            self._serve("POST")

        def do_OPTIONS(self):
            self._serve("OPTIONS")

        def do_HEAD(self):
            self._serve("HEAD")

        def do_PUT(self):
            self._serve("PUT")

        def do_DELETE(self):
            self._serve("DELETE")

        def do_PATCH(self):
            self._serve("PATCH")

        def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
            log.debug("%s " + format, self.address_string(), *args)

    return _Server(("127.0.0.1", port), Handler)


def serve_in_background(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="multiline-http", daemon=True)
    thread.start()
    return thread
