"""The dashboard's session cookie, and the two HTTP routes that set and clear it.

A Streamlit script talks to the browser over a websocket and cannot set a cookie. So the
login form (dashboard.login, a Streamlit page like every other) checks the password,
opens a session (bearwatch.logins.open_session) and sends the browser to
:data:`SESSION_PATH` with a handoff code: signed, valid for ``HANDOFF_MAX_AGE_S``, bound
to this browser (the token of its Streamlit XSRF cookie, which no other site can read)
and good for one use (the route exchanges the session's first token for the cookie's, so
the code's token names nothing afterwards). The route sets the cookie and sends the
browser on to the page it had asked for. Logging out revokes the session in the script,
then sends the browser to :data:`LOGOUT_PATH` with a code signed the same way, where the
cookie is cleared (and the session revoked again, should the script's write have failed).

The cookie holds a random token signed with the dashboard's key (``dashboard_secret``, or
else a random key made once in ``<data dir>/dashboard-session.key``, mode 0600); the
database holds only the token's sha256. It is HttpOnly, SameSite=Lax, Secure when the
page was served over HTTPS, and lasts the session lifetime; the session's row decides
every page run whether it still holds.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from itsdangerous import BadData, Signer, URLSafeTimedSerializer
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from streamlit.web.server.starlette.starlette_app_utils import decode_xsrf_token_string
from streamlit.web.server.starlette.starlette_server_config import XSRF_COOKIE_NAME

from bearwatch.db import make_engine, session_factory
from bearwatch.logins import SessionLimits, exchange_token, revoke_session
from bearwatch.schema import utcnow
from bearwatch.settings import Settings, load_settings

COOKIE_NAME = "bearwatch_session"
SESSION_PATH = "/bearwatch/session"
LOGOUT_PATH = "/bearwatch/logout"
HANDOFF_MAX_AGE_S = 60
KEY_FILE = "dashboard-session.key"
_COOKIE_SALT = "bearwatch.dashboard.session"
_HANDOFF_SALT = "bearwatch.dashboard.handoff"
_LOGOUT_SALT = "bearwatch.dashboard.logout"
# Where a handoff may send the browser: one of the app's own page paths, with a plain query.
_PAGE_PATH = re.compile(r"/[A-Za-z0-9_-]{0,100}")
_QUERY = re.compile(r"[A-Za-z0-9_.~%=&+-]{0,500}")


def session_limits(settings: Settings) -> SessionLimits:
    return SessionLimits(idle=timedelta(seconds=settings.dashboard_idle_timeout_s),
                         lifetime=timedelta(seconds=settings.dashboard_session_lifetime_s))


def signing_key(settings: Settings) -> bytes:
    secret = settings.dashboard_secret
    return _key(secret.get_secret_value() if secret else None, (settings.data_dir / KEY_FILE).resolve())


@lru_cache(maxsize=4)
def _key(secret: str | None, key_file: Path) -> bytes:
    return secret.encode() if secret else _key_from_file(key_file)


def _key_from_file(path: Path) -> bytes:
    """The key in ``path``, made there first if missing: written whole to a private
    temporary file, then linked into place, so that a dashboard starting at the same time
    reads either no file or the complete key, and the first one made wins."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_hex(32))
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass
        finally:
            temporary.unlink(missing_ok=True)
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 32:
        raise ValueError(f"{path} holds no usable key: delete it (every dashboard login ends) and restart")
    return key.encode()


def cookie_value(key: bytes, token: str) -> str:
    return Signer(key, salt=_COOKIE_SALT).sign(token).decode()


def cookie_token(key: bytes, value: str) -> str | None:
    """The token a session cookie holds; None for a cookie this key did not sign."""
    try:
        return Signer(key, salt=_COOKIE_SALT).unsign(value).decode()
    except (BadData, UnicodeDecodeError):
        return None


def browser_id(cookies: Mapping[str, str]) -> str:
    """Names this browser for a handoff: a hash of its Streamlit XSRF token (kept across
    page loads, unreadable to other sites); "" without one."""
    raw = cookies.get(XSRF_COOKIE_NAME)
    token, _ = decode_xsrf_token_string(raw) if raw else (None, None)
    return hashlib.sha256(token).hexdigest() if token else ""


def safe_next(target: str | None) -> str:
    """``target`` (a path with an optional query) when it is one of this app's page
    paths, else the main page: the handoff must not become an open redirect."""
    parts = urlsplit(target or "/")
    if parts.scheme or parts.netloc or not _PAGE_PATH.fullmatch(parts.path) or not _QUERY.fullmatch(parts.query):
        return "/"
    return parts.path + (f"?{parts.query}" if parts.query else "")


def handoff_url(key: bytes, token: str, browser: str, wanted: str | None) -> str:
    code = URLSafeTimedSerializer(key, salt=_HANDOFF_SALT).dumps({"token": token, "browser": browser,
                                                                   "next": safe_next(wanted)})
    return f"{SESSION_PATH}?code={code}"


def logout_url(key: bytes, browser: str) -> str:
    return f"{LOGOUT_PATH}?code={URLSafeTimedSerializer(key, salt=_LOGOUT_SALT).dumps({'browser': browser})}"


def _code(key: bytes, salt: str, request: Request) -> dict[str, Any] | None:
    """The signed, fresh payload of the request's ``code``, when minted for this browser."""
    try:
        payload = URLSafeTimedSerializer(key, salt=salt).loads(request.query_params.get("code", ""),
                                                               max_age=HANDOFF_MAX_AGE_S)
    except BadData:
        return None
    browser = browser_id(request.cookies)
    ok = isinstance(payload, dict) and browser and payload.get("browser") == browser
    return payload if ok else None


@dataclass(frozen=True)
class _Server:
    settings: Settings
    factory: sessionmaker[Session]
    key: bytes


@lru_cache(maxsize=1)
def _server() -> _Server:
    # Made on the first request: the same settings the page scripts load (the environment).
    settings = load_settings()
    return _Server(settings, session_factory(make_engine(settings.database_url)), signing_key(settings))


def _redirect(target: str) -> Response:
    response = RedirectResponse(target, status_code=303)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the code is in this URL
    return response


def _set_cookie(request: Request) -> Response:
    server = _server()
    payload = _code(server.key, _HANDOFF_SALT, request)
    token = exchange_token(server.factory, str(payload["token"]), utcnow()) if payload else None
    if payload is None or token is None:
        return _redirect("/")  # the login form again
    response = _redirect(safe_next(str(payload.get("next"))))
    response.set_cookie(COOKIE_NAME, cookie_value(server.key, token), path="/", httponly=True, samesite="lax",
                        secure=request.url.scheme == "https",
                        max_age=int(server.settings.dashboard_session_lifetime_s))
    return response


def _clear_cookie(request: Request) -> Response:
    server = _server()
    response = _redirect("/")
    if _code(server.key, _LOGOUT_SALT, request) is None:
        return response
    token = cookie_token(server.key, request.cookies.get(COOKIE_NAME, ""))
    if token is not None:
        revoke_session(server.factory, utcnow(), token=token)
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="lax", secure=request.url.scheme == "https")
    return response


def session_routes() -> list[BaseRoute]:
    """The routes for ``st.App`` (dashboard.server_app). Plain functions: Starlette runs
    them in its thread pool, so the database calls do not block the event loop."""
    return [Route(SESSION_PATH, _set_cookie, methods=["GET"]), Route(LOGOUT_PATH, _clear_cookie, methods=["GET"])]
