"""Property tests of credential redaction (issue 15 item 11): for generated camera URLs
with generated secrets, no secret survives redact_url or redact_text, and what ops need
to find the camera (scheme, host, path, harmless query values) stays visible."""

from __future__ import annotations

import string
from dataclasses import dataclass
from urllib.parse import quote

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bearwatch.redact import redact_text, redact_url

# Passwords as cameras accept them: unencoded, with the reserved characters that break
# urlsplit ('#', '?', '/', '@', ':') and anything else printable but whitespace.
_RESERVED = "#?/@:[]!$&'()*+,;=%~-._"
_PASSWORD_CHARS = st.one_of(
    st.sampled_from(string.ascii_letters + string.digits + _RESERVED),
    st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
)
_SECRET_KEY_WORDS = ["user", "username", "login", "pass", "passwd", "password", "pwd", "token", "key", "apikey",
                     "api_key", "auth", "secret", "sig", "signature", "credential", "session", "access_token"]
_PLAIN_KEYS = ["fps", "channel", "subtype", "resolution", "stream", "loop", "chn", "profile"]


@dataclass(frozen=True)
class CameraUrl:
    url: str
    scheme: str
    host: str
    path: str
    user: str | None
    secrets: tuple[str, ...]  # as they appear in the URL (query values percent-encoded)
    plain_pairs: tuple[str, ...]  # "key=value" that must stay visible
    ambiguous: bool  # the userinfo also reads as the start of a query with a secret key (see below)


def _password() -> st.SearchStrategy[str]:
    """At least one of the characters that broke urlsplit, anywhere in it; "x://" in a
    password would read as a second URL inside the first (a documented limit)."""
    part = st.text(_PASSWORD_CHARS, max_size=12)
    return (st.tuples(part, st.sampled_from("#?/@:"), part).map("".join)
            .filter(lambda p: len(p) >= 6 and "://" not in p))


@st.composite
def _secret_key(draw: st.DrawFn) -> str:
    word = draw(st.sampled_from(_SECRET_KEY_WORDS))
    word = "".join(c.upper() if draw(st.booleans()) else c for c in word)  # any case
    return draw(st.sampled_from(["", "x-", "client_", "cam."])) + word + draw(st.sampled_from(["", "_id", "-value"]))


@st.composite
def camera_urls(draw: st.DrawFn) -> CameraUrl:
    scheme = draw(st.sampled_from(["rtsp", "rtsps", "http", "https"]))
    host = draw(st.one_of(
        st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True),
        st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    ))
    host += draw(st.sampled_from(["", ":554", ":8080"]))
    path = draw(st.from_regex(r"(/[A-Za-z0-9._~-]{1,12}){0,3}", fullmatch=True))
    secrets: list[str] = []
    user = None
    form = draw(st.sampled_from(["none", "user:password", "token"]))
    userinfo = ""
    if form == "user:password":
        user = draw(st.from_regex(r"[A-Za-z][A-Za-z0-9._-]{0,10}", fullmatch=True))
        password = draw(_password())
        secrets.append(password)
        userinfo = f"{user}:{password}@"
    elif form == "token":
        token = draw(_password().filter(lambda t: ":" not in t))  # its first ":" would start a password
        secrets.append(token)
        userinfo = f"{token}@"
    pairs: list[str] = []
    plain: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            value = quote(draw(st.text(_PASSWORD_CHARS, min_size=6, max_size=24)), safe="")
            secrets.append(value)
            pairs.append(f"{draw(_secret_key())}={value}")
        else:
            pair = f"{draw(st.sampled_from(_PLAIN_KEYS))}={draw(st.from_regex(r'[A-Za-z0-9]{1,6}', fullmatch=True))}"
            plain.append(pair)
            pairs.append(pair)
    pairs = draw(st.permutations(pairs)) if pairs else []
    query = "?" + "&".join(pairs) if pairs else ""
    url = f"{scheme}://{userinfo}{host}{path}{query}"
    # A secret that also happens to be a visible part (the host, a path segment) cannot be hidden.
    visible = f"{scheme}://{user or ''}:***@{host}{path}?{'&'.join(plain)}"
    assume(not any(s in visible for s in secrets))
    return CameraUrl(url, scheme, host, path, user, tuple(secrets), tuple(plain), ambiguous=_reads_as_query(userinfo))


# Words that make a query key secret (bearwatch.redact), for _reads_as_query.
_KEY_WORDS = ("pass", "pwd", "pw", "token", "key", "auth", "secret", "sig", "cred", "session", "cookie", "jwt",
              "bearer", "user", "usr", "login", "account", "sid")


def _reads_as_query(userinfo: str) -> bool:
    """'pa?key=x@host' or 'a#PWD@host/x?fps=1': the standard reading (the authority ends at
    the first '/', '?' or '#') sees a query or fragment whose secret value runs over the host,
    so both readings are masked and the host goes too (never the password)."""
    lowered = userinfo.lower()
    return any(c in userinfo for c in "?#") and ("=" in userinfo or any(w in lowered for w in _KEY_WORDS))


def _visible_parts_kept(shown: str, cam: CameraUrl) -> None:
    assert f"{cam.scheme}://" in shown
    if cam.ambiguous:
        return
    after_userinfo = f"{cam.user}:***@{cam.host}{cam.path}" if cam.user else f"{cam.host}{cam.path}"
    assert after_userinfo in shown, (cam.url, shown)
    for pair in cam.plain_pairs:
        assert pair in shown, (cam.url, shown)


_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(camera_urls())
def test_redact_url_hides_every_secret_and_keeps_the_rest(cam: CameraUrl) -> None:
    shown = redact_url(cam.url)
    for secret in cam.secrets:
        assert secret not in shown, (cam.url, shown)
    _visible_parts_kept(shown, cam)


@_SETTINGS
@given(camera_urls(), st.sampled_from([
    "error opening {url}: timeout",
    "VIDEOIO(FFMPEG): can't open '{url}'",
    "[rtsp @ 0x55d1] method DESCRIBE failed for {url}: 401 Unauthorized",
    "capture failed (url={url}), retrying",
    "{url}",
]))
def test_redact_text_hides_every_secret_inside_error_messages(cam: CameraUrl, template: str) -> None:
    text = template.format(url=cam.url)
    shown = redact_text(text)
    for secret in cam.secrets:
        assert secret not in shown, (text, shown)
    _visible_parts_kept(shown, cam)


@_SETTINGS
@given(st.text())
def test_redaction_never_fails_on_any_text(text: str) -> None:
    assert isinstance(redact_url(text), str) and isinstance(redact_text(text), str)
