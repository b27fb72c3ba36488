"""review design: why each verdict's frame was before the ranger, and its inclusion probability

Adds decisions.review_reason, audit_stratum, inclusion_prob and design_derived
(design.md section 5). Existing decisions get them from the design then in force, as
the review queue of that time chose frames: the frame's prediction by the site's rollout
model in force at capture (the site's latest ledger row at or before the frame's
captured_at, else the site's own rollout model and thresholds); flagged: reason and
stratum 'flagged', probability 1; unflagged with the frame id's hash below the audit
rate then in force (one rate: those thresholds predate the audit strata; default 0.02):
'audit', stratum 'day' or 'night', probability the rate; otherwise 'missed_report' with
the chance the audit had of showing it. Frames without such a prediction stay NULL.
Backfilled rows are marked design_derived. Decisions are read and written in chunks.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 10:00:00
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 500  # decisions per read and write; also under old SQLite's 999 bound parameters
DEFAULT_AUDIT_RATE = 0.02
# shadow.alert_rules' audit sample, frozen here so the backfill keeps its meaning if the
# application's formula ever changes: Knuth's multiplicative hash of the frame id.
HASH_MULTIPLIER = 2654435761
HASH_MODULUS = 2**32

_sites = sa.table('sites', sa.column('id', sa.Integer()), sa.column('rollout_model_id', sa.Integer()),
                  sa.column('thresholds', sa.JSON()))
_ledger = sa.table('stage_changes', sa.column('id', sa.Integer()), sa.column('site_id', sa.Integer()),
                   sa.column('model_version_id', sa.Integer()), sa.column('thresholds', sa.JSON()),
                   sa.column('changed_at', sa.DateTime()))
_cameras = sa.table('cameras', sa.column('id', sa.Integer()), sa.column('site_id', sa.Integer()))
_frames = sa.table('frames', sa.column('id', sa.Integer()), sa.column('camera_id', sa.Integer()),
                   sa.column('captured_at', sa.DateTime()), sa.column('is_night', sa.Boolean()))
_predictions = sa.table('predictions', sa.column('frame_id', sa.Integer()), sa.column('model_version_id', sa.Integer()),
                        sa.column('flagged', sa.Boolean()))
_decisions = sa.table('decisions', sa.column('id', sa.Integer()), sa.column('frame_id', sa.Integer()),
                      sa.column('review_reason', sa.String()), sa.column('audit_stratum', sa.String()),
                      sa.column('inclusion_prob', sa.Double()), sa.column('design_derived', sa.Boolean()))


def upgrade() -> None:
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('review_reason', sa.Enum('flagged', 'held_alert', 'audit', 'follow_up', 'missed_report', name='reviewreason', native_enum=False, length=16), nullable=True))
        batch_op.add_column(sa.Column('audit_stratum', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('inclusion_prob', sa.Double(), nullable=True))
        batch_op.add_column(sa.Column('design_derived', sa.Boolean(), nullable=False, server_default=sa.false()))
    _backfill(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_column('design_derived')
        batch_op.drop_column('inclusion_prob')
        batch_op.drop_column('audit_stratum')
        batch_op.drop_column('review_reason')


def _audit_rate(thresholds: dict[str, Any] | None) -> float:
    rate = (thresholds or {}).get('audit_rate', DEFAULT_AUDIT_RATE)
    try:
        return min(max(float(rate), 0.0), 1.0)
    except (TypeError, ValueError):
        return DEFAULT_AUDIT_RATE


def _in_audit(frame_id: int, rate: float) -> bool:
    return (frame_id * HASH_MULTIPLIER) % HASH_MODULUS < int(round(rate * HASH_MODULUS))


def _backfill(conn: sa.Connection) -> None:
    # Sites and the ledger are small (a row per site and per stage change); decisions are not.
    sites = {sid: (model_id, thresholds) for sid, model_id, thresholds in conn.execute(
        sa.select(_sites.c.id, _sites.c.rollout_model_id, _sites.c.thresholds))}
    ledger: dict[int, list[tuple[datetime, int, int | None, dict[str, Any] | None]]] = defaultdict(list)
    for row in conn.execute(sa.select(_ledger.c.site_id, _ledger.c.changed_at, _ledger.c.id, _ledger.c.model_version_id,
                                      _ledger.c.thresholds).order_by(_ledger.c.site_id, _ledger.c.changed_at, _ledger.c.id)):
        ledger[row.site_id].append((row.changed_at, row.id, row.model_version_id, row.thresholds))
    starts = {sid: [r[0] for r in rows] for sid, rows in ledger.items()}

    def in_force(site_id: int, captured_at: datetime) -> tuple[int | None, float]:
        """The site's rollout model and audit rate at captured_at."""
        model_id, thresholds = sites.get(site_id, (None, None))
        i = bisect.bisect_right(starts.get(site_id, []), captured_at)
        if i:
            _, _, ledger_model, thresholds = ledger[site_id][i - 1]
            model_id = ledger_model if ledger_model is not None else model_id
        return model_id, _audit_rate(thresholds)

    update = (
        sa.update(_decisions)
        .where(_decisions.c.id == sa.bindparam('decision_id'))
        .values(review_reason=sa.bindparam('reason'), audit_stratum=sa.bindparam('stratum'),
                inclusion_prob=sa.bindparam('prob'), design_derived=sa.true())
    )
    last_id = 0
    while True:
        chunk = conn.execute(
            sa.select(_decisions.c.id, _decisions.c.frame_id, _frames.c.captured_at, _frames.c.is_night, _cameras.c.site_id)
            .join(_frames, _frames.c.id == _decisions.c.frame_id)
            .join(_cameras, _cameras.c.id == _frames.c.camera_id)
            .where(_decisions.c.id > last_id)
            .order_by(_decisions.c.id)
            .limit(CHUNK)
        ).all()
        if not chunk:
            break
        last_id = chunk[-1].id
        frame_ids = sorted({r.frame_id for r in chunk})
        flagged = {(f, m): bool(fl) for f, m, fl in conn.execute(
            sa.select(_predictions.c.frame_id, _predictions.c.model_version_id, _predictions.c.flagged)
            .where(_predictions.c.frame_id.in_(frame_ids)))}
        rows = []
        for r in chunk:
            model_id, rate = in_force(r.site_id, r.captured_at)
            was_flagged = flagged.get((r.frame_id, model_id))
            if model_id is None or was_flagged is None:
                continue  # no prediction by the model then in force: the design is unknown
            if was_flagged:
                reason, stratum, prob = 'flagged', 'flagged', 1.0
            else:
                stratum = 'night' if r.is_night else 'day'
                reason, prob = ('audit' if _in_audit(r.frame_id, rate) else 'missed_report'), rate
            rows.append({'decision_id': r.id, 'reason': reason, 'stratum': stratum, 'prob': prob})
        if rows:
            conn.execute(update, rows)
