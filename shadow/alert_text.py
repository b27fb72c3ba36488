"""An alert in words, from its payload (shadow.delivery.alert_payload): the one-line
headline and the facts that an e-mail and a Slack message show. One place, so every
channel says the same thing and marks an unconfirmed or late alert the same way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

UNCONFIRMED_NOTE = "UNCONFIRMED: no ranger decided this held alert in time; it was sent unverified."
LATE_NOTE = "LATE: the frame was captured over an hour before this alert was sent."


def status_word(payload: Mapping[str, Any]) -> str:
    """One word an automation can branch on: unconfirmed wins over late (it asks for action)."""
    return "unconfirmed" if payload["unconfirmed"] else "late" if payload["late"] else "alert"


def markers(payload: Mapping[str, Any]) -> list[str]:
    return [word for word, on in (("UNCONFIRMED", payload["unconfirmed"]), ("LATE", payload["late"])) if on]


def headline(payload: Mapping[str, Any]) -> str:
    """``[UNCONFIRMED] Bear alert: north / trailhead (limited)``."""
    prefix = "".join(f"[{m}] " for m in markers(payload))
    return f"{prefix}Bear alert: {payload['site']} / {payload['camera']} ({payload['stage']})"


def score_text(score: float | None) -> str:
    return "-" if score is None else f"{score:.2f}"


def facts(payload: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs, in reading order."""
    return [
        ("Site", str(payload["site"])),
        ("Camera", str(payload["camera"])),
        ("Stage", str(payload["stage"])),
        ("Score", score_text(payload.get("score"))),
        ("Captured", str(payload.get("captured_local") or payload["captured_at"])),
        ("Frame", f"{payload['frame_id']} ({payload['frame_path']})"),
        ("From", "the model's flag" if payload["source"] == "model" else "a ranger's sighting"),
        ("Flags", str(payload["flag_count"])),
        ("Alert", f"{payload['alert_id']} (key {payload['idempotency_key']})"),
    ]


def notes(payload: Mapping[str, Any]) -> list[str]:
    return [note for note, on in ((UNCONFIRMED_NOTE, payload["unconfirmed"]), (LATE_NOTE, payload["late"])) if on]
