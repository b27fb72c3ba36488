"""A ranger's verdict round trip (shadow.verdicts.submit_verdict, then the Review page's
next queue over all sites: dashboard.queries.review.review_queue_page), the queue's size
the page reads after it (review_queue_waiting) and the Rollout page's site list, on
SQLite and PostgreSQL: the number of statements they send stays the same whatever the
number of sites, and the queue a ranger sees is unchanged.

Statements are counted as the driver sends them; the transaction set-up (BEGIN, SQLite's
PRAGMA busy_timeout, PostgreSQL's SET LOCAL) is left out of the bound: it is one
round trip per transaction, the same for every page.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from bearwatch.auth import Actor
from bearwatch.schema import Stage, Verdict
from dashboard.queries.review import review_queue_page, review_queue_waiting
from dashboard.queries.rollout import site_rollouts
from shadow.alert_rules import Effect
from shadow.alerts import process_new_flags
from shadow.review_queue import QueueItem, QueueReason, QueueSize, review_queue
from shadow.sites import get_site
from shadow.verdicts import submit_verdict
from tests.shadow.helpers import Park, add_channel, add_frame, add_user, at, make_park
from tests.statements import sql_sent

ROUND_TRIP_MAX = 10
SIZE_MAX = 2  # the queue's size, read after the page: the sites, then the count
NOW = at(10_000)
LATER = NOW + timedelta(days=2)  # the first frames are out of the 24 h window by then
SET_UP = ("BEGIN", "PRAGMA", "SET ")

# Each site's frames, seconds before now (plus the site's index, so that no two sites'
# frames share a time): what kind of frame it is for the ranger ana.
LAYOUT = {
    "fresh_flag": (0, 600, 0.9),  # camera 0, flagged 10 min ago (site 0 is in a trial there: a held alert)
    "older_flag": (1, 7200, 0.9),  # camera 1, flagged 2 h ago (outside site 0's trial scope)
    "dismissed": (0, 1800, 0.8),  # flagged, dismissed by ben: a second look for ana
    "found_miss": (1, 3000, 0.3),  # near the threshold (audited), a bear ben found: a second look
    "follow_up": (1, 2940, 0.1),  # a minute after ben's found bear, not audited: follow-up
    "audited": (0, 2400, 0.3),  # near the threshold: the audit sample
    "quiet": (0, 2390, 0.1),  # neither audited nor near a found bear: never shown
}

Parks = dict[str, Park]
Frames = dict[str, dict[str, int]]  # site -> kind -> frame id


def _add_sites(factory: sessionmaker[Session], first: int, count: int) -> Parks:
    """Sites ``first`` .. ``first + count - 1`` with two cameras each; site 0 runs a
    limited trial on its camera 0, the others are in manual."""
    parks = {}
    for i in range(first, first + count):
        name = f"site{i:02d}"
        parks[name] = make_park(factory, name=name, stage=Stage.LIMITED if i == 0 else Stage.MANUAL,
                                trial=(at(0), at(7 * 86_400)) if i == 0 else None,
                                thresholds={"audit_rate": 0.0, "audit_near_rate": 1.0, "alert_cooldown_s": 300})
        if i == 0:
            with factory.begin() as session:
                get_site(session, name).trial_scope = {"cameras": [parks[name].cameras[0]]}
    return parks


def _add_frames(factory: sessionmaker[Session], parks: Parks, now: datetime, ben: Actor) -> Frames:
    """LAYOUT's frames at every site before ``now``, their flags processed and ben's
    verdicts given."""
    frames = {
        name: {kind: add_frame(factory, park.cameras[camera], now - timedelta(seconds=before - int(name[4:])),
                               model_id=park.model_id, score=score)
               for kind, (camera, before, score) in LAYOUT.items()}
        for name, park in parks.items()
    }
    process_new_flags(factory, now - timedelta(seconds=300), max_age_s=None)
    for site_frames in frames.values():
        submit_verdict(factory, site_frames["dismissed"], ben, Verdict.DISMISS, now - timedelta(seconds=200))
        submit_verdict(factory, site_frames["found_miss"], ben, Verdict.MISSED, now - timedelta(seconds=200))
    return frames


def _expected(frames: Frames) -> list[tuple[int, QueueReason]]:
    """ana's whole queue in the order rangers work it: held alerts, flags of the last hour
    (newest first), second looks (oldest first), older flags (newest first), follow-ups,
    then the audit (oldest first)."""
    sites = sorted(frames)
    manual = sites[1:]

    def of(kind: str, names: list[str]) -> list[int]:
        return [frames[name][kind] for name in names]

    return [
        (frames["site00"]["fresh_flag"], QueueReason.PENDING_ALERT),
        *((f, QueueReason.FLAGGED) for f in of("fresh_flag", manual[::-1])),
        *((f, QueueReason.SECOND_LOOK) for f in of("found_miss", sites) + of("dismissed", sites)),
        *((f, QueueReason.FLAGGED) for f in of("older_flag", sites[::-1])),
        *((f, QueueReason.FOLLOW_UP) for f in of("follow_up", sites)),
        *((f, QueueReason.AUDIT) for f in of("audited", sites)),
    ]


def _work(statements: list[str]) -> list[str]:
    return [s for s in statements if not s.lstrip().upper().startswith(SET_UP)]


def _page(factory: sessionmaker[Session], ranger: Actor, now: datetime) -> tuple[QueueItem, ...]:
    with factory() as session:
        return review_queue_page(session, ranger, now, site=None)


def _waiting(factory: sessionmaker[Session], ranger: Actor, now: datetime) -> tuple[int, QueueSize]:
    """The queue's size as the page reads it after the page, and the statements it took."""
    with sql_sent(factory.kw["bind"]) as statements, factory() as session:
        waiting = review_queue_waiting(session, ranger, now, site=None)
    return len(_work(statements)), waiting


def _round_trip(factory: sessionmaker[Session], ranger: Actor, frame_id: int, verdict: Verdict, now: datetime,
                expect: Effect) -> tuple[list[str], tuple[QueueItem, ...]]:
    """A verdict and the page's next queue over all sites: their statements and the queue."""
    with sql_sent(factory.kw["bind"]) as statements:
        result = submit_verdict(factory, frame_id, ranger, verdict, now)
        page = _page(factory, ranger, now)
    assert result.effect is expect
    return statements, page


def _round_trips(factory: sessionmaker[Session], ranger: Actor, frames: Frames, now: datetime) -> dict[str, tuple[int, int, int]]:
    """Three verdicts as the Review page sends them (the held alert it shows first
    confirmed, a fresh flag dismissed, a bear reported on a follow-up frame), each with
    the next queue and then its size: all the round trip's statements, those that read or
    write rows, and the size's. The queue is the ranger's expected one at every step."""
    expected = _expected(frames)
    page = _page(factory, ranger, now)
    assert [(i.frame_id, i.reason) for i in page] == expected[:50] and _waiting(factory, ranger, now)[1].count == len(expected)
    steps = [
        ("confirm the held alert", page[0].frame_id, Verdict.CONFIRM, Effect.RELEASE),
        ("dismiss a fresh flag", frames[max(frames)]["fresh_flag"], Verdict.DISMISS, Effect.NONE),
        ("a bear on a follow-up frame", frames["site01"]["follow_up"], Verdict.MISSED, Effect.SIGHTING),
    ]
    assert steps[0][1] == frames["site00"]["fresh_flag"]
    counts = {}
    for name, frame_id, verdict, effect in steps:
        statements, page = _round_trip(factory, ranger, frame_id, verdict, now, effect)
        expected = [e for e in expected if e[0] != frame_id]
        assert [(i.frame_id, i.reason) for i in page] == expected[:50], name
        size_statements, waiting = _waiting(factory, ranger, now)
        assert waiting == QueueSize(len(expected)), name
        counts[name] = (len(statements), len(_work(statements)), size_statements)
    return counts


def test_a_verdict_round_trip_costs_the_same_few_statements_at_3_and_at_12_sites(factory: sessionmaker[Session]) -> None:
    ana, ben = add_user(factory, "ana"), add_user(factory, "ben")
    add_channel(factory, "log")  # a released or new alert is queued for delivery
    parks = _add_sites(factory, 0, 3)
    at_3_sites = _round_trips(factory, ana, _add_frames(factory, parks, NOW, ben), NOW)

    parks |= _add_sites(factory, 3, 9)
    at_12_sites = _round_trips(factory, ana, _add_frames(factory, parks, LATER, ben), LATER)

    assert at_12_sites == at_3_sites, (at_3_sites, at_12_sites)
    assert all(work <= ROUND_TRIP_MAX and size <= SIZE_MAX for _, work, size in at_3_sites.values()), at_3_sites


def test_the_queue_of_all_sites_is_the_queues_of_each_site_merged(factory: sessionmaker[Session]) -> None:
    """Across sites the queue keeps each site's order and interleaves them by what is most
    urgent: the first of all sites' queues merged, whatever the page size."""
    ana, ben = add_user(factory, "ana"), add_user(factory, "ben")
    parks = _add_sites(factory, 0, 4)
    _add_frames(factory, parks, NOW, ben)
    with factory() as session:
        whole = review_queue(session, ana, NOW, limit=100)
        for limit in (1, 5, 13):
            mine = [(i.frame_id, i.reason) for i in review_queue(session, ana, NOW, limit=limit)]
            assert mine == [(i.frame_id, i.reason) for i in whole[:limit]]
        per_site = {name: review_queue(session, ana, NOW, site=name, limit=100) for name in parks}
    for name, items in per_site.items():
        assert [i.frame_id for i in items] == [i.frame_id for i in whole if i.site == name]
    assert len(whole) == sum(len(items) for items in per_site.values())


def test_the_rollout_page_lists_any_number_of_sites_in_two_statements(factory: sessionmaker[Session]) -> None:
    engine = factory.kw["bind"]
    parks = _add_sites(factory, 0, 3)

    def listed() -> tuple[int, list[tuple[str, str, tuple[str, ...]]]]:
        with sql_sent(engine) as statements, factory() as session:
            rows = site_rollouts(session, NOW)
        return len(_work(statements)), [(r.site, r.trial_scope, r.cameras) for r in rows]

    at_3_sites = listed()
    parks |= _add_sites(factory, 3, 9)
    at_12_sites = listed()
    assert at_3_sites[0] == at_12_sites[0] == 2
    assert at_12_sites[1] == [(name, "cameras cam0, all hours" if name == "site00" else "", ("cam0", "cam1"))
                              for name in sorted(parks)]
