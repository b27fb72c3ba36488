"""Migration 0008 on SQLite and PostgreSQL: decisions made before the review design was
stored get it from the design then in force (the ledger's rollout model and audit rate
at the frame's capture, else the site's own), marked design_derived."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import command

from bearwatch.db import make_engine
from bearwatch.migrations import alembic_config
from shadow.alert_rules import in_audit_sample

T0 = datetime(2026, 6, 1, 12, 0)  # naive UTC, as the database stores it
BULK = 1100  # more decisions than one backfill chunk


def _row(**values: Any) -> dict[str, Any]:
    return values


def _add_bulk(
    conn: sa.Connection, tables: Mapping[str, sa.Table], camera_id: int, model_id: int, reviewer_id: int,
) -> dict[int, tuple[str | None, str | None, float | None, bool]]:
    """BULK scored frames on a camera of a site at audit_rate 0.3, each dismissed by
    ``reviewer_id``; returns the design the backfill must give each."""
    rng = random.Random(8)
    expected: dict[int, tuple[str | None, str | None, float | None, bool]] = {}
    bulk_frames, bulk_predictions, bulk_decisions = [], [], []
    for k in range(BULK):
        fid, score, night = 100_000 + k, rng.random(), rng.random() < 0.3
        bulk_frames.append(_row(id=fid, camera_id=camera_id, captured_at=T0 + timedelta(seconds=k), path=f"{fid}.jpg",
                                sha256="0" * 64, size_bytes=1, width=1, height=1, status="scored", attempts=0, is_night=night))
        bulk_predictions.append(_row(frame_id=fid, model_version_id=model_id, probabilities={"bear": score},
                                     positive_score=score, flagged=score >= 0.5, scored_at=T0))
        bulk_decisions.append(_row(frame_id=fid, reviewer_id=reviewer_id, verdict="dismiss", decided_at=T0 + timedelta(days=3)))
        if score >= 0.5:
            expected[fid] = ("flagged", "flagged", 1.0, True)
        else:
            expected[fid] = ("audit" if in_audit_sample(fid, 0.3) else "missed_report", "night" if night else "day", 0.3, True)
    conn.execute(tables["frames"].insert(), bulk_frames)
    conn.execute(tables["predictions"].insert(), bulk_predictions)
    conn.execute(tables["decisions"].insert(), bulk_decisions)
    return expected


def test_upgrade_backfills_the_design_of_existing_decisions(database_url: str) -> None:
    cfg = alembic_config(database_url)
    command.upgrade(cfg, "0007")
    engine = make_engine(database_url)
    meta = sa.MetaData()
    meta.reflect(engine)
    tables = meta.tables
    used: set[int] = set()

    def pick(cond: Any) -> int:
        """A frame id (explicit, so the audit hash is known) that satisfies ``cond``."""
        i = 1
        while i in used or not cond(i):
            i += 1
        used.add(i)
        return i

    with engine.begin() as conn:
        def insert(table: str, *rows: dict[str, Any]) -> list[int]:
            ids = []
            for row in rows:
                result = conn.execute(tables[table].insert().values(**row))
                ids.append(row.get("id") or result.inserted_primary_key[0])
            return ids

        model_a, model_b = insert("model_versions", *[
            _row(name=n, path=f"/m/{n}.pkl", sha256=n * 64, classes=["bear", "not_bear"], positive_classes=["bear"],
                 threshold=0.5, role="rollout", created_at=T0 - timedelta(days=30)) for n in "ab"])

        def site(name: str, model: int | None, thresholds: dict[str, Any]) -> int:
            return insert("sites", _row(name=name, stage="manual", stage_since=T0, trial_scope={}, thresholds=thresholds,
                                        rollout_model_id=model, created_at=T0 - timedelta(days=30)))[0]

        north = site("north", model_b, {"audit_rate": 0.5})  # now: model b; earlier the ledger says otherwise
        south = site("south", model_a, {"audit_rate": 0.3})  # no ledger rows: its own model and rate
        west = site("west", None, {})  # no model at all
        cams = {}
        for name, site_id in (("n", north), ("s", south), ("s2", south), ("w", west)):
            cams[name] = insert("cameras", _row(site_id=site_id, name=name, source=f"/{name}.avi", interval_s=5.0, enabled=True,
                                                health="online", consecutive_failures=0, created_at=T0))[0]
        insert("stage_changes",
               _row(site_id=north, from_stage=None, to_stage="manual", actor="ops", reason="model a", model_version_id=model_a,
                    thresholds={"audit_rate": 0.25}, evidence={}, changed_at=T0),
               # thresholds from before the audit strata existed may lack audit_rate: 0.02
               _row(site_id=north, from_stage="manual", to_stage="manual", actor="ops", reason="model b", model_version_id=model_b,
                    thresholds={}, evidence={}, changed_at=T0 + timedelta(days=1)))
        ana, ben = insert("users", _row(name="ana", role="ranger", created_at=T0), _row(name="ben", role="ranger", created_at=T0))

        def frame(frame_id: int, camera: str, captured_at: datetime, night: bool | None, scores: dict[int, float]) -> int:
            insert("frames", _row(id=frame_id, camera_id=cams[camera], captured_at=captured_at, path=f"{frame_id}.jpg",
                                  sha256="0" * 64, size_bytes=1, width=1, height=1, status="scored", attempts=0, is_night=night))
            for model, score in scores.items():
                insert("predictions", _row(frame_id=frame_id, model_version_id=model, probabilities={"bear": score},
                                           positive_score=score, flagged=score >= 0.5, scored_at=captured_at))
            return frame_id

        hour = timedelta(hours=1)
        expected: dict[int, tuple[str | None, str | None, float | None, bool]] = {}
        # Under the first ledger row: model a at 0.25.
        f = frame(pick(lambda i: True), "n", T0 + hour, False, {model_a: 0.9, model_b: 0.1})
        expected[f] = ("flagged", "flagged", 1.0, True)
        f = frame(pick(lambda i: in_audit_sample(i, 0.25)), "n", T0 + 2 * hour, False, {model_a: 0.2, model_b: 0.9})
        expected[f] = ("audit", "day", 0.25, True)
        f = frame(pick(lambda i: in_audit_sample(i, 0.25)), "n", T0 + 3 * hour, True, {model_a: 0.2})
        expected[f] = ("audit", "night", 0.25, True)
        f = frame(pick(lambda i: not in_audit_sample(i, 0.25)), "n", T0 + 4 * hour, None, {model_a: 0.2})
        expected[f] = ("missed_report", "day", 0.25, True)
        f = frame(pick(lambda i: True), "n", T0 + 5 * hour, False, {model_b: 0.2})  # no prediction by model a
        expected[f] = (None, None, None, False)
        # The second row (from its very instant): model b, no audit_rate stored: 0.02.
        f = frame(pick(lambda i: in_audit_sample(i, 0.02)), "n", T0 + timedelta(days=1), False, {model_a: 0.9, model_b: 0.1})
        expected[f] = ("audit", "day", 0.02, True)
        f = frame(pick(lambda i: not in_audit_sample(i, 0.02) and in_audit_sample(i, 0.5)), "n", T0 + timedelta(days=2), True,
                  {model_b: 0.1})
        expected[f] = ("missed_report", "night", 0.02, True)
        # Before the site's first ledger row: the site's own model and thresholds.
        f = frame(pick(lambda i: in_audit_sample(i, 0.5) and not in_audit_sample(i, 0.25)), "n", T0 - hour, False,
                  {model_a: 0.2, model_b: 0.3})
        expected[f] = ("audit", "day", 0.5, True)
        f = frame(pick(lambda i: not in_audit_sample(i, 0.3)), "s", T0 + hour, False, {model_a: 0.1})
        expected[f] = ("missed_report", "day", 0.3, True)
        f = frame(pick(lambda i: True), "w", T0 + hour, False, {model_a: 0.9})
        expected[f] = (None, None, None, False)
        decisions = [_row(frame_id=fid, reviewer_id=ana, verdict="dismiss", decided_at=T0 + timedelta(days=3)) for fid in expected]
        first = next(iter(expected))
        decisions.append(_row(frame_id=first, reviewer_id=ben, verdict="confirm", decided_at=T0 + timedelta(days=3)))
        conn.execute(tables["decisions"].insert(), decisions)

        # Many decisions at south, over several chunks.
        expected.update(_add_bulk(conn, tables, cams["s2"], model_a, ana))

    command.upgrade(cfg, "head")

    decisions_t = sa.Table("decisions", sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(decisions_t.c.frame_id, decisions_t.c.reviewer_id, decisions_t.c.review_reason,
                                      decisions_t.c.audit_stratum, decisions_t.c.inclusion_prob, decisions_t.c.design_derived)).all()
    assert len(rows) == len(expected) + 1
    got = {(r.frame_id, r.reviewer_id): (r.review_reason, r.audit_stratum, r.inclusion_prob, bool(r.design_derived)) for r in rows}
    assert got[(first, ben)] == expected[first]
    wrong = {fid: (got[(fid, ana)], want) for fid, want in expected.items() if got[(fid, ana)] != want}
    assert wrong == {}
    reasons = {want[0] for want in expected.values()}
    assert reasons == {"flagged", "audit", "missed_report", None}

    # Decisions recorded after the upgrade without the flag are not derived (server default).
    with engine.begin() as conn:
        fid = next(fid for fid, want in expected.items() if want[0] is None)
        conn.execute(decisions_t.insert().values(frame_id=fid, reviewer_id=ben, verdict="dismiss", decided_at=T0))
        assert conn.scalar(sa.select(decisions_t.c.design_derived).where(decisions_t.c.frame_id == fid,
                                                                          decisions_t.c.reviewer_id == ben)) in (False, 0)
    engine.dispose()
