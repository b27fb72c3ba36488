"""The Review page's reads: the ranger's queue (shadow.review_queue, which decides what a
ranger sees and in which order) and the site the ranger last chose."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from bearwatch.auth import Actor
from bearwatch.users import preferences
from shadow.review_queue import QueueItem, QueueSize, review_queue_and_size

SITE_PREFERENCE = "review_site"  # the users.preferences key of the site picker


@dataclass(frozen=True)
class ReviewQueue:
    items: tuple[QueueItem, ...]  # the next frames, in review order
    waiting: QueueSize  # frames in the whole queue (exact up to a cap, then "1,000+")


def review_queue_page(session: Session, reviewer: Actor, now: datetime, *, site: str | None) -> ReviewQueue:
    """The next frames for ``reviewer`` (of one site, or all) and how many wait in all, in
    the same few statements whatever the number of sites (shadow.review_queue); with the
    verdict before it (shadow.verdicts.submit_verdict) at most 10 that read or write rows."""
    items, waiting = review_queue_and_size(session, reviewer, now, site=site)
    return ReviewQueue(tuple(items), waiting)


def remembered_site(session: Session, user: str) -> str | None:
    """The site the user last picked on the Review page, if any."""
    site = preferences(session, user).get(SITE_PREFERENCE)
    return site if isinstance(site, str) else None
