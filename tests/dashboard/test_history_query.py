"""The History page's query (dashboard.queries.history) on SQLite and PostgreSQL: frames by
site, camera, local date range, score band, verdict and model label, newest first; the
pages, walked by their cursors, list every match once; a page looks at a bounded number
of frames and a short page says how far back it looked, in the same few statements
whatever the page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Decision, Frame, FrameStatus, ModelVersion, Prediction, Role, User, Verdict
from bearwatch.users import add_user
from dashboard.queries.history import (
    Cursor,
    HistoryFilter,
    HistoryPage,
    VerdictFilter,
    cameras_of,
    day_bounds,
    history_page,
    label_options,
)
from ingest.cameras import add_camera
from shadow.sites import add_site, set_rollout_model
from tests.statements import sql_sent

# 2026-11-28 12:00 UTC is 05:00 in Denver (MST, UTC-7): 12 frames per camera, every 30 min
# from then, all on Denver's 28 November.
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


@dataclass
class Frames:
    by_camera: dict[str, list[int]]  # oldest first
    times: dict[int, datetime]
    scores: dict[int, float]
    labels: dict[int, str]
    verdicts: dict[int, Verdict]


def _build(factory: sessionmaker[Session]) -> Frames:
    out = Frames({}, {}, {}, {}, {})
    with factory.begin() as session:
        add_user(session, "ranger", Role.RANGER, "correct horse battery")
        model = ModelVersion(name="m", path="/m.pkl", sha256="ef" * 32, classes=["bear", "deer", "empty"], positive_classes=["bear"])
        session.add(model)
        session.flush()
        north, south = add_site(session, "north", actor="t"), add_site(session, "south", actor="t")
        north.timezone = "America/Denver"
        for site in (north, south):
            set_rollout_model(session, site, model, actor="t", now=T0 - timedelta(days=1))
        cams = {"creek": add_camera(session, north, "creek", "/a", interval_s=5),
                "gate": add_camera(session, north, "gate", "/b", interval_s=5),
                "shore": add_camera(session, south, "shore", "/c", interval_s=5)}
        user_id = session.scalar(sa.select(User.id).where(User.name == "ranger"))
        for c, (name, cam) in enumerate(cams.items()):
            out.by_camera[name] = []
            for i in range(12):
                at = T0 + timedelta(minutes=30 * i, seconds=c)  # three cameras, distinct times
                score = round(((i * 7 + c * 3) % 12) / 11, 3)
                deer = i % 4 == 1 and score < 0.5
                probs = {"bear": score, "deer": 0.9 if deer else 0.0, "empty": 0.0 if deer else 1 - score}
                f = Frame(camera_id=cam.id, captured_at=at, path=f"{name}/{i}.jpg", sha256="0" * 64, size_bytes=1,
                          width=160, height=120, status=FrameStatus.SCORED)
                session.add(f)
                session.flush()
                session.add(Prediction(frame_id=f.id, model_version_id=model.id, positive_score=score, flagged=score >= 0.5,
                                       probabilities=probs))
                out.by_camera[name].append(f.id)
                out.times[f.id], out.scores[f.id] = at, score
                out.labels[f.id] = max(probs, key=lambda k: probs[k])
                if i % 3 == 0:
                    verdict = (Verdict.CONFIRM if score >= 0.8 else Verdict.DISMISS) if score >= 0.5 else (
                        Verdict.MISSED if i == 3 else Verdict.DISMISS)
                    session.add(Decision(frame_id=f.id, reviewer_id=user_id, verdict=verdict, decided_at=at + timedelta(minutes=5)))
                    out.verdicts[f.id] = verdict
    return out


def _walk(session: Session, flt: HistoryFilter, page_size: int, scan: int = 2000) -> tuple[list[int], list[HistoryPage]]:
    ids: list[int] = []
    pages: list[HistoryPage] = []
    cursor: Cursor | None = None
    while True:
        page = history_page(session, flt, after=cursor, page_size=page_size, scan=scan)
        pages.append(page)
        ids += [r.frame_id for r in page.rows]
        if page.next is None:
            return ids, pages
        cursor = page.next
        assert len(pages) < 100


def _newest_first(frames: Frames, ids: list[int]) -> list[int]:
    return sorted(ids, key=lambda f: (frames.times[f], f), reverse=True)


def test_filters_and_pages_list_each_matching_frame_once_newest_first(factory: sessionmaker[Session]) -> None:
    frames = _build(factory)
    everything = [f for ids in frames.by_camera.values() for f in ids]
    north = frames.by_camera["creek"] + frames.by_camera["gate"]
    with factory() as session:
        creek_id = dict((n, i) for i, n in cameras_of(session, "north"))["creek"]
        assert label_options(session) == ["bear", "deer", "empty"]
        cases: list[tuple[HistoryFilter, list[int]]] = [
            (HistoryFilter(), everything),
            (HistoryFilter(site="north"), north),
            (HistoryFilter(site="north", camera_id=creek_id), frames.by_camera["creek"]),
            (HistoryFilter(score_min=0.5, score_max=0.8), [f for f in everything if 0.5 <= frames.scores[f] <= 0.8]),
            (HistoryFilter(verdict=VerdictFilter.CONFIRMED), [f for f, v in frames.verdicts.items() if v is Verdict.CONFIRM]),
            (HistoryFilter(verdict=VerdictFilter.DISMISSED, site="south"),
             [f for f in frames.by_camera["shore"] if frames.verdicts.get(f) is Verdict.DISMISS]),
            (HistoryFilter(verdict=VerdictFilter.MISSED), [f for f, v in frames.verdicts.items() if v is Verdict.MISSED]),
            (HistoryFilter(verdict=VerdictFilter.UNREVIEWED), [f for f in everything if f not in frames.verdicts]),
            (HistoryFilter(label="deer"), [f for f in everything if frames.labels[f] == "deer"]),
            (HistoryFilter(label="bear", site="north"), [f for f in north if frames.labels[f] == "bear"]),
        ]
        for flt, expected in cases:
            assert expected, flt  # every case selects something and leaves something out
            assert len(expected) < len(everything) or flt == HistoryFilter()
            for page_size in (4, 50):
                ids, pages = _walk(session, flt, page_size)
                assert ids == _newest_first(frames, expected), (flt, page_size)
                assert all(len(p.rows) <= page_size for p in pages)
        # what a row shows: the rollout model's label and score, and who said what, when
        (row,) = history_page(session, HistoryFilter(site="north", verdict=VerdictFilter.MISSED)).rows
        assert (row.site, row.camera) == ("north", "gate") and row.label == frames.labels[row.frame_id]
        assert row.score == frames.scores[row.frame_id] and not row.flagged
        assert [(v.reviewer, v.verdict) for v in row.verdicts] == [("ranger", Verdict.MISSED)]
        assert row.verdicts[0].decided_at == frames.times[row.frame_id] + timedelta(minutes=5)


def test_a_local_date_range_is_the_sites_days(factory: sessionmaker[Session]) -> None:
    frames = _build(factory)
    # Denver's 28 November (MST) ends at 07:00 UTC on the 29th: all 12 frames (12:00..17:30 UTC)
    start, end = day_bounds(date(2026, 11, 28), date(2026, 11, 28), "America/Denver")
    assert (start, end) == (datetime(2026, 11, 28, 7, tzinfo=timezone.utc), datetime(2026, 11, 29, 7, tzinfo=timezone.utc))
    # In Tokyo (UTC+9) the same frames fall on the 28th until 15:00 UTC, then on the 29th.
    t_start, t_end = day_bounds(date(2026, 11, 29), date(2026, 11, 29), "Asia/Tokyo")
    assert t_start == datetime(2026, 11, 28, 15, tzinfo=timezone.utc)
    # A day with a clock change is 25 hours long.
    d_start, d_end = day_bounds(date(2026, 11, 1), date(2026, 11, 1), "America/Denver")
    assert d_end - d_start == timedelta(hours=25)
    with factory() as session:
        ids, _ = _walk(session, HistoryFilter(site="north", start=start, end=end), 5)
        assert sorted(ids) == sorted(frames.by_camera["creek"] + frames.by_camera["gate"])
        ids, _ = _walk(session, HistoryFilter(start=t_start, end=t_end), 5)
        assert ids == _newest_first(frames, [f for f, at in frames.times.items() if at >= t_start])
        assert _walk(session, HistoryFilter(start=t_end, end=t_end + timedelta(days=1)), 5)[0] == []


def test_a_page_looks_at_a_bounded_number_of_frames_in_the_same_few_statements(factory: sessionmaker[Session]) -> None:
    frames = _build(factory)
    confirmed = [f for f, v in frames.verdicts.items() if v is Verdict.CONFIRM]
    engine = factory.kw["bind"]
    for flt in (HistoryFilter(verdict=VerdictFilter.CONFIRMED), HistoryFilter(site="north", verdict=VerdictFilter.CONFIRMED)):
        with factory() as session:
            with sql_sent(engine) as statements:
                ids, pages = _walk(session, flt, page_size=50, scan=5)
            expected = [f for f in confirmed if flt.site is None or f not in frames.by_camera["shore"]]
            assert ids == _newest_first(frames, expected)
            assert len(pages) > 1, "a rare filter over a small scan takes several pages"
            for page in pages[:-1]:  # each short page looked at 5 frames and says how far back
                assert page.scanned == 5 and page.next is not None and page.searched_to == page.next.captured_at
            looked = [page.searched_to for page in pages[:-1]]
            assert looked == sorted(looked, reverse=True), "each page goes further back"
            assert pages[-1].next is None
            # per page: the rows, the verdicts of the rows (when any), how far it looked (short pages);
            # plus the site's cameras when a site is chosen
            assert len(statements) <= 4 * len(pages), statements
