"""The e-mail alert channel: one message per delivery, over SMTP with the standard library.

The outbox (shadow.delivery) gives it the same treatment as a webhook: a pool thread per
request, retries with backoff, and a whole-send deadline enforced here by shutting the
socket down (smtplib's timeout is per socket read, so a server answering a byte at a time
would never time out). The Message-ID is derived from the alert's idempotency key, so a
message sent again after a lost reply is recognisable, and mail clients thread or drop it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mimetypes
import os
import smtplib
import socket
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any

from bearwatch.redact import MASK, redact_text
from bearwatch.smtp_url import SmtpTarget, fill_placeholders, parse_smtp_url, placeholder_values
from shadow.alert_text import facts, headline, notes
from shadow.deadline import cut_after

log = logging.getLogger(__name__)

# Attached up to this size: rangers read alerts on phones, often off the park network where a
# dashboard link would not open; a camera frame is a few hundred KB. Larger ones are named only.
MAX_ATTACHMENT_BYTES = 1 << 20
DEFAULT_TIMEOUT_S = 30.0  # per socket operation when no deadline is given


class SmtpDeadlineExceeded(Exception):
    """The mail server took longer than the whole-send deadline (hung, or trickling bytes)."""


def message_id(idempotency_key: str, sender: str) -> str:
    """The same for every send of one alert; hashed, because a key may hold characters a
    Message-ID may not (``flag:12:unconfirmed``)."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
    return f"<bearwatch.{digest}@{sender.rpartition('@')[2]}>"


def read_frame(frames_dir: Path | None, frame_path: str) -> tuple[bytes | None, str]:
    """The frame's bytes to attach, or None and why not (said in the message body)."""
    if frames_dir is None:
        return None, "the shadow loop was not given the frame store"
    root = frames_dir.resolve()
    path = (root / frame_path).resolve()
    if not path.is_relative_to(root):
        return None, "its path is outside the frame store"
    try:
        size = path.stat().st_size
        if size > MAX_ATTACHMENT_BYTES:
            return None, f"it is {size:,} bytes (attached up to {MAX_ATTACHMENT_BYTES:,})"
        return path.read_bytes(), ""
    except OSError:
        return None, "the file is gone (deleted by retention, or not yet stored)"


def build_message(target: SmtpTarget, payload: Mapping[str, Any], frame: bytes | None, why_not: str = "") -> EmailMessage:
    msg = EmailMessage()
    # A site or camera name never breaks a header: EmailMessage refuses line breaks in one.
    msg["Subject"] = " ".join(headline(payload).split())
    msg["From"] = target.sender
    msg["To"] = ", ".join(target.recipients)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id(payload["idempotency_key"], target.sender)
    msg["X-Bearwatch-Idempotency-Key"] = payload["idempotency_key"]
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: out-of-office replies stay away
    lines = [headline(payload), ""]
    lines += [*notes(payload), ""] if notes(payload) else []
    lines += [*(f"{label + ':':<10} {value}" for label, value in facts(payload)), ""]
    name = f"frame-{payload['frame_id']}{Path(payload['frame_path']).suffix or '.jpg'}"
    lines.append(f"The frame is attached ({name})." if frame is not None else
                 f"The frame is not attached: {why_not}. It is {payload['frame_path']} in the frame store.")
    lines += ["", "Sent by bearwatch. A repeat of this message (after a lost reply) has the same Message-ID."]
    msg.set_content("\n".join(lines) + "\n")
    if frame is not None:
        kind = (mimetypes.guess_type(name)[0] or "image/jpeg").split("/", 1)
        msg.add_attachment(frame, maintype=kind[0], subtype=kind[1], filename=name)
    return msg


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"{exc.smtp_code} {text}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "every recipient refused: " + "; ".join(f"{addr} {code}" for addr, (code, _) in exc.recipients.items())
    return f"{type(exc).__name__}: {exc}"


def by_socket_timeout(exc: BaseException) -> bool:
    """Whether the client's own socket timeout ended the exchange. smtplib turns a timed-out
    read of the reply into SMTPServerDisconnected("Connection unexpectedly closed: timed
    out"), the TimeoutError kept as its context: on a busy machine that timeout can go off
    before the deadline's timer thread runs, and ops must read the same message either way."""
    return isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError)


def scrub(text: str, url: str, environ: Mapping[str, str]) -> str:
    """URLs redacted, and every secret the url's placeholders resolve to masked wherever it
    appears (a server may echo what it was sent)."""
    text = redact_text(text)
    for secret in placeholder_values(url, environ):
        text = text.replace(secret, MASK)
    return text


def send_email(url: str, payload: Mapping[str, Any], *, frames_dir: Path | None = None, deadline_s: float | None = None,
               environ: Mapping[str, str] = os.environ) -> None:
    """Send the alert to the channel's target; raises (a message safe to log) on failure."""
    target = parse_smtp_url(url)
    where = f"smtp server {target.host}:{target.port}"
    try:
        username = fill_placeholders(target.username, environ) if target.username else None
        password = fill_placeholders(target.password or "", environ)
    except ValueError as exc:
        raise RuntimeError(f"{where}: {exc}") from None
    frame, why_not = read_frame(frames_dir, payload["frame_path"])
    msg = build_message(target, payload, frame, why_not)
    context = ssl.create_default_context()  # system CAs; SSL_CERT_FILE points it at another bundle
    # gethostname, not smtplib's default getfqdn: a DNS lookup here would run outside the deadline.
    smtp = (smtplib.SMTP_SSL(local_hostname=socket.gethostname(), timeout=deadline_s or DEFAULT_TIMEOUT_S, context=context)
            if target.tls == "implicit" else
            smtplib.SMTP(local_hostname=socket.gethostname(), timeout=deadline_s or DEFAULT_TIMEOUT_S))
    # The socket appears inside connect(), before the greeting is read: the cutter looks it up when it fires.
    cutting = (cut_after(deadline_s, lambda: getattr(smtp, "sock", None)) if deadline_s is not None
               else contextlib.nullcontext(None))
    with cutting as cutter:
        try:
            smtp.connect(target.host, target.port)
            if target.tls == "starttls":
                smtp.starttls(context=context)
            if username is not None:
                smtp.login(username, password)
            refused = smtp.send_message(msg, from_addr=target.sender, to_addrs=list(target.recipients))
            if refused:  # the others have it; sending again would repeat it to them and not help these
                log.warning("alert %s: %s refused %s", payload["idempotency_key"], where, ", ".join(sorted(refused)))
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                pass  # the message was accepted: a lost goodbye is no failure
        except (smtplib.SMTPException, OSError) as exc:
            if cutter is not None and cutter.timed_out(by_socket_timeout(exc)):
                raise SmtpDeadlineExceeded(f"no complete answer from {where} within {cutter.limit_s:g} s") from None
            raise RuntimeError(scrub(f"{where}: {_describe(exc)}", url, environ)) from None
        finally:
            smtp.close()
