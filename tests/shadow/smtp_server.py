"""Real SMTP servers on loopback for the e-mail channel tests: aiosmtpd (a full SMTP
server with AUTH) that can refuse or "lose its reply", and a hung one that accepts TCP
and never answers (or trickles a greeting that never ends)."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from email.message import EmailMessage
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

USER, PASSWORD = "bearwatch", "s3cret-Pa55#word"


class MailServer:
    """aiosmtpd on a fixed port; start/stop at will (while stopped the port refuses).
    ``refuse_next``: that many messages are answered 451 and not kept. ``lose_reply_next``:
    that many are kept and still answered 451, as when the server's reply is lost, so the
    sender sends again. ``auth_failures`` counts rejected logins."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse_next = 0
        self.lose_reply_next = 0
        self.auth_failures = 0
        self._controller: Controller | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # aiosmtpd's name
        if self.refuse_next > 0:
            self.refuse_next -= 1
            return "451 4.3.0 try again later"
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.envelopes.append((str(envelope.mail_from), [str(r) for r in envelope.rcpt_tos]))
        if self.lose_reply_next > 0:
            self.lose_reply_next -= 1
            return "451 4.4.2 connection lost before the reply"
        return "250 OK"

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == USER.encode() and data.password == PASSWORD.encode()
        self.auth_failures += 0 if ok else 1
        return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd sends the 235 or 535 itself

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, authenticator=self._authenticate,
                                      auth_require_tls=False, ready_timeout=10)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


class HungServer:
    """Accepts connections and never completes a greeting: ``silent`` sends nothing,
    ``trickle`` sends a multi-line 220 greeting one line every 0.2 s, forever (a
    per-read timeout never fires; only a whole-send deadline ends it)."""

    def __init__(self, mode: Literal["silent", "trickle"] = "silent") -> None:
        self.mode = mode
        self.accepted = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            self._conns.append(conn)
            if self.mode == "trickle":
                threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        while not self._stop.wait(0.2):
            try:
                conn.sendall(b"220-still warming up\r\n")
            except OSError:  # the client gave up
                return

    def stop(self) -> None:
        self._stop.set()
        for conn in self._conns:
            conn.close()
        self._listener.close()
