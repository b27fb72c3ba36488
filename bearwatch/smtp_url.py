"""The target of an e-mail alert channel: one URL in the channel's ``url`` field.

    smtp://USER:${SMTP_PASSWORD}@mail.example.org:587?from=bearwatch@park.example&to=rangers@park.example,ops@park.example&starttls=1

``smtp://`` is plain SMTP (port 25 by default), upgraded with STARTTLS when ``starttls=1``;
``smtps://`` speaks TLS from the first byte (port 465 by default). The user name and
password are optional (no AUTH without them). ``to`` takes a comma-separated list and may
be repeated. One URL rather than new columns: channels already store one target string,
shown redacted everywhere (bearwatch.redact masks the password like a camera's).

Credentials are ``${VAR}`` placeholders, as in camera sources, filled from the
environment when a message is sent. They are filled *after* the URL is parsed, so a
password may hold ``@``, ``#`` or ``/``. Lives in the base package because the park file
validates the URL and the shadow loop's sender parses it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from bearwatch.redact import redact_url

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # the camera sources' syntax
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
_KEYS = ("from", "to", "starttls")

Tls = Literal["none", "starttls", "implicit"]


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    tls: Tls
    sender: str
    recipients: tuple[str, ...]
    username: str | None = None  # may hold ${VAR} placeholders until filled
    password: str | None = None

    def shown(self) -> str:
        """The target for people, password masked. Built from the parts: the ``@`` of the
        addresses makes the whole URL ambiguous to bearwatch.redact, which then masks the host too."""
        scheme = "smtps" if self.tls == "implicit" else "smtp"
        user = f"{self.username}{':***' if self.password is not None else ''}@" if self.username else ""
        tls = "&starttls=1" if self.tls == "starttls" else ""
        return f"{scheme}://{user}{self.host}:{self.port}?from={self.sender}&to={','.join(self.recipients)}{tls}"


def _address(value: str, what: str) -> str:
    name, addr = parseaddr(value)
    if not addr or "@" not in addr or name:
        raise ValueError(f"{what} {value!r} is not a plain e-mail address (user@domain)")
    return addr


def parse_smtp_url(url: str) -> SmtpTarget:
    """Parse (not fill) an ``smtp://`` or ``smtps://`` target; ValueError saying what is wrong,
    never quoting the password."""
    parts = urlsplit(url)
    shown = redact_url(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError(f"an e-mail channel's url starts with smtp:// or smtps:// (got {shown})")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValueError(f"bad port in {shown}") from None
    if not host:
        raise ValueError(f"no mail server host in {shown}")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError(f"an e-mail channel's url has no path or fragment: {shown}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    unknown = sorted({k for k, _ in query} - set(_KEYS))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)} in {shown}; known: {', '.join(_KEYS)}")
    senders = [v for k, v in query if k == "from"]
    if len(senders) != 1:
        raise ValueError(f"an e-mail channel's url needs exactly one from=ADDRESS: {shown}")
    recipients = tuple(_address(a.strip(), "to") for k, v in query if k == "to" for a in v.split(",") if a.strip())
    if not recipients:
        raise ValueError(f"an e-mail channel's url needs to=ADDRESS[,ADDRESS...]: {shown}")
    starttls = [v.lower() for k, v in query if k == "starttls"]
    if any(v not in _TRUE + _FALSE for v in starttls):
        raise ValueError(f"starttls is 1 or 0 in {shown}")
    wants_starttls = any(v in _TRUE for v in starttls)
    if wants_starttls and parts.scheme == "smtps":
        raise ValueError(f"smtps:// is TLS already; starttls=1 is for smtp:// ({shown})")
    tls: Tls = "implicit" if parts.scheme == "smtps" else "starttls" if wants_starttls else "none"
    return SmtpTarget(
        host=host, port=port or (465 if tls == "implicit" else 25), tls=tls,
        sender=_address(senders[0], "from"), recipients=recipients,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def fill_placeholders(text: str, environ: Mapping[str, str] = os.environ) -> str:
    """``${VAR}`` -> its value; a variable that is not set is an error naming it (never a value)."""

    def fill(match: re.Match[str]) -> str:
        value = environ.get(match.group(1))
        if value is None:
            raise ValueError(f"environment variable {match.group(1)} is not set")
        return value

    return PLACEHOLDER.sub(fill, text)


def placeholder_values(url: str, environ: Mapping[str, str] = os.environ) -> list[str]:
    """The secrets the URL's placeholders resolve to, to mask wherever an error echoes them."""
    return [v for name in PLACEHOLDER.findall(url) if (v := environ.get(name)) and len(v) >= 3]
