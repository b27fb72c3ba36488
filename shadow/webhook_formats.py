"""The body of a webhook channel's POST in its format (docs/operations.md, "Alert
channels", shows each). Every format carries the same facts; the Idempotency-Key header
is sent with all of them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bearwatch.schema import WebhookFormat
from shadow.alert_text import facts, headline, notes, status_word


def _slack_escape(text: str) -> str:
    # Slack reads &, < and > as markup (links, mentions): a camera named "<!channel>" must not ping anyone.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming webhook message: ``text`` only (also what Mattermost and Rocket.Chat take)."""
    lines = [f"*{_slack_escape(headline(payload))}*", *(_slack_escape(n) for n in notes(payload))]
    lines += [f"{label}: {_slack_escape(value)}" for label, value in facts(payload)]
    return {"text": "\n".join(lines)}


def homeassistant_body(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A Home Assistant webhook trigger's data: flat fields an automation templates on
    (``{{ trigger.json.camera }}``), ``status`` one word to branch on."""
    return {
        "site": payload["site"],
        "camera": payload["camera"],
        "stage": payload["stage"],
        "score": payload.get("score"),
        "frame_id": payload["frame_id"],
        "time": payload["captured_at"],
        "status": status_word(payload),
        "unconfirmed": payload["unconfirmed"],
        "late": payload["late"],
        "alert_id": payload["alert_id"],
        "idempotency_key": payload["idempotency_key"],
        "title": headline(payload),
    }


def webhook_body(fmt: WebhookFormat, payload: Mapping[str, Any]) -> dict[str, Any]:
    if fmt is WebhookFormat.SLACK:
        return slack_body(payload)
    if fmt is WebhookFormat.HOMEASSISTANT:
        return homeassistant_body(payload)
    return dict(payload)
