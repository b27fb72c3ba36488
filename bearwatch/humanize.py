"""Figures as people say them, for pages, CLI lines and logs alike."""

from __future__ import annotations


def duration_text(seconds: float) -> str:
    """A span as people say it: ``45 s``, ``2 h 30 min``, ``3 d 4 h``."""
    total = max(0, round(seconds))
    d, h, m = total // 86_400, total % 86_400 // 3600, total % 3600 // 60
    if d:
        return f"{d} d {h} h" if h else f"{d} d"
    if h:
        return f"{h} h {m} min" if m else f"{h} h"
    return f"{m} min" if m else f"{total} s"
