"""Camera sources can carry credentials; this is the one place that hides them.

What is masked (``***``):

- the password in the userinfo (``rtsp://admin:***@host``), or the whole userinfo when it
  has no ``:`` (``http://***@host``: a lone token). The user name before the ``:`` stays
  visible: it is not a credential by itself, and ops need it to tell which camera account
  a "401 Unauthorized" is about;
- every query (and fragment) value whose key looks like a credential: it contains
  ``pass``, ``pwd``, ``token``, ``key``, ``auth``, ``secret``, ``sig``, ``cred``,
  ``session``, ``cookie``, ``jwt`` or ``bearer``, or names the user (``user``, ``usr``,
  ``login``, ``account``), case-insensitively (``x-api-key``, ``client_secret``,
  ``Passwd``). User names in the query are masked too: there they sit next to the
  password in one string and cameras differ in what they call which, so a wide net costs
  a little visibility and never a secret.

Passwords often hold reserved characters that real cameras accept unencoded
(``rtsp://admin:pa#ss/w?rd@host``), which :func:`urllib.parse.urlsplit` cuts at the ``#``,
leaving the password in plain view. So the authority is found here: the userinfo ends at
the last ``@`` that is followed by a host. Where that reading and the standard one
(RFC 3986: the authority ends at the first ``/``, ``?`` or ``#``) disagree, the string is
ambiguous, and whatever either reading calls secret is masked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_plus

MASK = "***"
# Contained anywhere in a query key: a credential. Over-masking a harmless key costs little.
_CREDENTIAL_WORDS = ("pass", "pwd", "token", "key", "auth", "secret", "sig", "cred", "session", "cookie", "jwt", "bearer")
_USER_WORDS = ("user", "usr", "login", "account")  # masked, but not a credential to warn about
_EXACT_CREDENTIAL_KEYS = {"pw", "sid"}  # too short to match inside other words
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_PLACEHOLDER = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")  # filled from the environment at capture time
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]+)(:[0-9]*)?")
_TRAILING = ".,;:!)]}'\">"  # punctuation of the sentence a URL sits in, not of its host
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
# The last "@" before each "/", "?", "#" or the end: only these can end a userinfo (a host has no "@").
_AT_BEFORE_HOST = re.compile(r"@([^/?#@]*)(?=[/?#]|\Z)")
_SPACE = re.compile(r"\s")
# A second URL inside one whitespace-free token is set off by punctuation ("'rtsp://a','http://b'").
_URL_SEPARATORS = frozenset("'\"`,;()[]{}<>|=")


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    what: str  # "password", "userinfo token" or "query value of 'key'"
    credential: bool  # False for user names: masked, but nothing to warn about


def _key_kind(raw_key: str) -> bool | None:
    """True: a credential key; False: a user-name key; None: not secret."""
    key = unquote_plus(raw_key).strip().lower()
    if key in _EXACT_CREDENTIAL_KEYS or any(word in key for word in _CREDENTIAL_WORDS):
        return True
    if any(word in key for word in _USER_WORDS):
        return False
    return None


def _pairs_spans(url: str, start: int, end: int) -> list[_Span]:
    """Secret values among ``key=value`` pairs in ``url[start:end]`` (a query or fragment).
    Pairs split on ``&``; a ``;`` inside a pair may start another pair, but a secret's
    value runs to the next ``&`` either way (a ``;`` in a password must not leak its tail)."""
    spans: list[_Span] = []
    pos = start
    while pos <= end:
        amp = url.find("&", pos, end)
        seg_end = end if amp < 0 else amp
        sub = pos
        while sub < seg_end:
            semi = url.find(";", sub, seg_end)
            sub_end = seg_end if semi < 0 else semi
            eq = url.find("=", sub, sub_end)
            kind = _key_kind(url[sub:eq]) if eq >= 0 else None
            if kind is not None:
                if seg_end > eq + 1:
                    spans.append(_Span(eq + 1, seg_end, f"query value of {unquote_plus(url[sub:eq])!r}", kind))
                break
            sub = sub_end + 1
        pos = seg_end + 1
    return spans


def _after_authority_spans(url: str, at: int) -> list[_Span]:
    """Secret query and fragment values after the authority that ends before ``at``."""
    hash_ = url.find("#", at)
    hash_ = len(url) if hash_ < 0 else hash_
    query = url.find("?", at, hash_)
    spans = _pairs_spans(url, query + 1, hash_) if query >= 0 else []
    if hash_ < len(url):  # a fragment with key=value pairs (OAuth-style tokens) is read like a query
        spans += _pairs_spans(url, hash_ + 1, len(url))
    return spans


def _userinfo_spans(url: str, start: int, at: int) -> list[_Span]:
    colon = url.find(":", start, at)
    if colon < 0:
        return [_Span(start, at, "userinfo token", True)] if at > start else []
    return [_Span(colon + 1, at, "password", True)] if at > colon + 1 else []


def _is_host(text: str) -> bool:
    return bool(_HOST.fullmatch(_PLACEHOLDER.sub("h", text).rstrip(_TRAILING)))


def _delimiter(url: str, start: int) -> int:
    """The first ``/``, ``?`` or ``#`` at or after ``start`` (the end of an authority)."""
    ends = [i for i in (url.find(c, start) for c in "/?#") if i >= 0]
    return min(ends, default=len(url))


def _secret_spans(url: str) -> list[_Span]:
    scheme = _SCHEME.match(url)
    if scheme is None:  # a path or bare file name: only a query can hold a secret
        return _after_authority_spans(url, 0)
    rest = scheme.end()
    # The standard reading: the authority ends at the first "/", "?" or "#".
    end = _delimiter(url, rest)
    at = url.rfind("@", rest, end)
    spans = (_userinfo_spans(url, rest, at) if at >= 0 else []) + _after_authority_spans(url, end)
    # The camera-vendor reading: the userinfo runs to the last "@" that a host follows,
    # whatever reserved characters the password holds.
    for match in reversed(list(_AT_BEFORE_HOST.finditer(url, rest))):  # linear, however many "@"
        if _is_host(match.group(1)):
            spans += _userinfo_spans(url, rest, match.start()) + _after_authority_spans(url, match.end())
            break
    return spans


def _mask(url: str, spans: list[_Span]) -> str:
    out: list[str] = []
    pos = 0
    for span in sorted(spans, key=lambda s: s.start):
        if span.end <= pos:
            continue
        if span.start > pos:
            out.append(url[pos : span.start])
            out.append(MASK)
        elif not out or out[-1] != MASK:  # overlaps or touches the previous mask
            out.append(MASK)
        pos = max(pos, span.end)
    out.append(url[pos:])
    return "".join(out)


def redact_url(url: str) -> str:
    """``rtsp://user:pw@host/x?token=abc`` -> ``rtsp://user:***@host/x?token=***``."""
    return _mask(url, _secret_spans(url))


def redact_text(text: str) -> str:
    """Redact every URL inside free text (error messages from OpenCV, FFmpeg, HTTP). A URL
    runs from its scheme to the next whitespace, or to another URL set off by a quote,
    bracket, comma or ``=`` (a bare ``x://`` inside a password does not end it)."""
    out: list[str] = []
    pos = 0
    while (start := _next_url(text, pos, len(text))) is not None:
        space = _SPACE.search(text, start)
        end = space.start() if space else len(text)
        nested = _next_url(text, text.index("://", start) + 3, end, set_off=True)
        end = nested if nested is not None else end
        out += [text[pos:start], redact_url(text[start:end])]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _next_url(text: str, pos: int, end: int, *, set_off: bool = False) -> int | None:
    """Where the next ``scheme://`` in ``text[pos:end]`` starts; with ``set_off``, only one
    that follows a separator. Found from each "://" backwards, in linear time (a regex
    search for the scheme backtracks quadratically over a long run of letters)."""
    while (sep := text.find("://", pos, end)) >= 0:
        start = sep
        while start > pos and text[start - 1] in _SCHEME_CHARS:
            start -= 1
        while start < sep and not text[start].isalpha():  # a scheme begins with a letter
            start += 1
        if start < sep and (not set_off or (start > 0 and text[start - 1] in _URL_SEPARATORS)):
            return start
        pos = sep + 3
    return None


def literal_secrets(source: str) -> list[str]:
    """What in ``source`` is a credential written out instead of a ``${VAR}`` placeholder
    ("password", "query value of 'token'"); user names are not counted."""
    found: dict[str, None] = {}
    for span in _secret_spans(source):
        if span.credential and _PLACEHOLDER.sub("", source[span.start : span.end]):
            found[span.what] = None
    return list(found)


def literal_secret_warning(source: str) -> str | None:
    """One line for `camera add` and `config apply`, or None when the source is clean."""
    found = literal_secrets(source)
    if not found:
        return None
    return (f"the source holds a literal {', '.join(found)}, stored in the database as written; put each secret in an "
            "environment variable and write ${NAME} in its place (e.g. rtsp://admin:${CAM_PASSWORD}@host/stream): "
            "ingest fills it in at capture time")
