"""A whole-exchange deadline for a blocking network client (httpx, smtplib).

Their timeouts are per connect/read/write, so a receiver that trickles a byte now and then
never times out. A timer shuts the exchange's socket down when the deadline passes, which
wakes a read blocked in the sender's thread (also under TLS: the plain socket's shutdown).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class SocketCutter:
    """Shuts its socket down once fired: one ``attach``ed as it is opened, or, for a client
    that keeps its socket as an attribute, the one ``find_socket`` returns at that moment."""

    def __init__(self, limit_s: float, find_socket: Callable[[], object] | None = None) -> None:
        self.limit_s = limit_s
        self.fired = False
        self._find_socket = find_socket
        self._sock: object = None
        self._begun = time.monotonic()
        self._lock = threading.Lock()

    def attach(self, sock: object) -> None:
        with self._lock:
            if isinstance(sock, socket.socket):
                self._sock = sock
            if self.fired:
                self._shutdown()

    def fire(self) -> None:
        with self._lock:
            self.fired = True
            self._shutdown()

    def timed_out(self, by_client_timeout: bool) -> bool:
        """Whether a failure is the deadline: the cutter fired, or the client's own timeout
        went off first at the deadline (the same event, one message for ops)."""
        return self.fired or (by_client_timeout and time.monotonic() - self._begun >= self.limit_s)

    def _shutdown(self) -> None:
        sock = self._sock if self._sock is not None else (self._find_socket() if self._find_socket else None)
        if isinstance(sock, socket.socket):
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass  # already closed: the exchange is over


@contextmanager
def cut_after(limit_s: float, find_socket: Callable[[], object] | None = None) -> Iterator[SocketCutter]:
    """A cutter that fires ``limit_s`` seconds from now, unless the block ends first."""
    cutter = SocketCutter(limit_s, find_socket)
    timer = threading.Timer(limit_s, cutter.fire)
    timer.daemon = True
    timer.start()
    try:
        yield cutter
    finally:
        timer.cancel()
