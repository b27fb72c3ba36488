"""Credentials in camera URLs never reach a log line, a CLI line or a page."""

from __future__ import annotations

import logging

import pytest

from bearwatch.logs import RedactingFormatter
from bearwatch.redact import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/stream1", "rtsp://admin:***@10.0.0.5:554/stream1"),
        ("http://token123@cam.park/snap.jpg", "http://***@cam.park/snap.jpg"),
        ("https://cam.park/mjpg?user=ops&password=hunter2&fps=2", "https://cam.park/mjpg?user=ops&password=***&fps=2"),
        ("https://cam.park/live?token=abc", "https://cam.park/live?token=***"),
        ("rtsp://10.0.0.5/stream1", "rtsp://10.0.0.5/stream1"),
        ("/var/footage/north.avi", "/var/footage/north.avi"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_finds_urls_inside_error_messages() -> None:
    text = "[rtsp @ 0x1] method DESCRIBE failed for rtsp://admin:hunter2@10.0.0.5/s: 401 Unauthorized"
    out = redact_text(text)
    assert "hunter2" not in out and "rtsp://admin:***@10.0.0.5/s:" in out


def test_log_lines_are_redacted() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "cannot open %s", ("rtsp://a:pw@h/s",), None)
    assert "pw" not in RedactingFormatter("%(message)s").format(record).replace("rtsp://a:***@h/s", "")
