"""The Review page's reads: the ranger's queue (shadow.review_queue, which decides what a
ranger sees and in which order), how many frames it holds, and the site the ranger last
chose."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from bearwatch.auth import Actor
from bearwatch.users import preferences
from shadow.review_queue import QueueItem, QueueSize, queue_size, review_queue

SITE_PREFERENCE = "review_site"  # the users.preferences key of the site picker


def review_queue_page(session: Session, reviewer: Actor, now: datetime, *, site: str | None) -> tuple[QueueItem, ...]:
    """The next frames for ``reviewer`` (of one site, or all), in the same few statements
    whatever the number of sites (shadow.review_queue); with the verdict before it
    (shadow.verdicts.submit_verdict) at most 10 that read or write rows: the verdict round
    trip a ranger waits on before the next frame shows."""
    return tuple(review_queue(session, reviewer, now, site=site))


def review_queue_waiting(session: Session, reviewer: Actor, now: datetime, *, site: str | None) -> QueueSize:
    """How many frames wait in ``reviewer``'s whole queue (of one site, or all), exact up to
    a cap, then "1,000+": read after the page has shown the next frame (at a season's size
    the count costs more than the page: shadow.review_queue.queue_size)."""
    return queue_size(session, reviewer, now, site=site)


def remembered_site(session: Session, user: str) -> str | None:
    """The site the user last picked on the Review page, if any."""
    site = preferences(session, user).get(SITE_PREFERENCE)
    return site if isinstance(site, str) else None
