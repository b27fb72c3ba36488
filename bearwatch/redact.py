"""Camera sources can carry credentials; this is the one place that hides them."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_QUERY_KEYS = {"password", "pass", "pwd", "token", "key", "apikey", "api_key", "auth", "secret", "sig"}
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
MASK = "***"


def redact_url(url: str) -> str:
    """``rtsp://user:pw@host/x?token=abc`` -> ``rtsp://user:***@host/x?token=***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if k.lower() in SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Redact every URL inside free text (error messages from OpenCV, FFmpeg, HTTP)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
