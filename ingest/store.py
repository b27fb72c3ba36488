"""The frame store: JPEG files under the data dir, by site/camera/day.

A file is written atomically (temp + fsync + rename) before its row is committed, so
a row never points at a missing or partial file.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bearwatch.files import atomic_write_bytes


@dataclass(frozen=True)
class StoredFile:
    path: str  # relative to the store root, with forward slashes
    sha256: str
    size_bytes: int


_CAMERA_DAY = re.compile(r"site-\d+/camera-(\d+)/(\d{4}-\d{2}-\d{2})")


class FrameStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def relative_path(self, site_id: int, camera_id: int, captured_at: datetime) -> str:
        day = captured_at.strftime("%Y-%m-%d")
        stamp = captured_at.strftime("%H%M%S_%f")
        return f"site-{site_id}/camera-{camera_id}/{day}/{stamp}-{secrets.token_hex(3)}.jpg"

    def write(self, site_id: int, camera_id: int, captured_at: datetime, jpeg: bytes) -> StoredFile:
        rel = self.relative_path(site_id, camera_id, captured_at)
        atomic_write_bytes(self.root / rel, jpeg)
        return StoredFile(rel, hashlib.sha256(jpeg).hexdigest(), len(jpeg))

    @staticmethod
    def camera_day(folder: str) -> tuple[int, datetime] | None:
        """The camera id and the day (UTC midnight) of a camera-day folder as relative_path
        names it (``site-1/camera-2/2026-07-01``); None for any other folder."""
        match = _CAMERA_DAY.fullmatch(folder)
        if match is None:
            return None
        try:
            day = datetime.strptime(match.group(2), "%Y-%m-%d").replace(tzinfo=timezone.utc)
        except ValueError:
            return None
        return int(match.group(1)), day

    def absolute(self, rel: str) -> Path:
        return self.root / rel

    def delete(self, rel: str) -> None:
        (self.root / rel).unlink(missing_ok=True)
