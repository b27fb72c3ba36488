"""A real webhook receiver on loopback that counts the idempotency keys it got."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Mode = Literal["ok", "hang", "trickle"]


class Receiver:
    """Start/stop at will on a fixed port: while stopped, the port refuses connections.
    ``fail_next`` answers that many requests with HTTP 503.

    ``mode``: "ok" answers 204; "hang" reads the request and never answers (the
    connection stays open until :meth:`recover` or :meth:`stop`); "trickle" starts a
    200 answer and then sends one header byte every 0.2 s, never finishing. Only
    answered requests count in ``keys``/``arrivals``; ``hung`` counts the others."""

    def __init__(self, port: int, mode: Mode = "ok") -> None:
        self.port = port
        self.mode: Mode = mode
        self.keys: Counter[str] = Counter()
        self.bodies: list[dict[str, object]] = []
        self.arrivals: list[tuple[float, str]] = []  # (time.monotonic(), idempotency key) of answered requests
        self.fail_next = 0
        self.hung = 0
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/secret-token"

    def recover(self) -> None:
        """Answer from now on; requests left hanging are dropped unanswered (as by a restarted receiver)."""
        self.mode = "ok"
        self._release.set()

    def _hold(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.hung += 1
        if self.mode == "hang":
            self._release.wait()
            return
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while not self._release.wait(0.2):
            try:
                handler.wfile.write(b"x")
            except OSError:  # the client gave up
                return

    def start(self) -> None:
        receiver = self
        self._release.clear()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.mode != "ok":
                    receiver._hold(self)
                    self.close_connection = True
                    return
                with receiver._lock:
                    if receiver.fail_next > 0:
                        receiver.fail_next -= 1
                        self.send_response(503)
                        self.end_headers()
                        return
                    key = self.headers["Idempotency-Key"]  # every format sends it; a Slack body has no key field
                    assert body.get("idempotency_key", key) == key
                    receiver.keys[key] += 1
                    receiver.bodies.append(body)
                    receiver.arrivals.append((time.monotonic(), key))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._release.set()  # let hanging handlers go
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
