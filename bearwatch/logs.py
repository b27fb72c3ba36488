"""Logging setup for every bearwatch process; log lines pass through redaction."""

from __future__ import annotations

import logging

from bearwatch.redact import redact_text


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("apscheduler", "PIL", "matplotlib", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
