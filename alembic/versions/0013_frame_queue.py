"""the inference queue in its own table: frame_queue, filled by triggers on frames

The queue read frames through ix_frames_status_id (status, id) and kept its claims in
frames (status 'claimed', claim_token, claimed_by, claimed_until, attempts), so every
frame was updated twice (claim, result), both times non-HOT on PostgreSQL: two dead
tuples and new entries in every index of frames per frame. The frames waiting to be
scored and their leases are now rows of frame_queue; a claim writes only there, and
frames is updated once, with the result (status, last_error), which no index holds, and
on PostgreSQL gets fillfactor 50 so that its pages have room for that new version (HOT;
bearwatch.schema.FRAMES_FILLFACTOR). Frames claimed at the upgrade keep their lease (in
frame_queue) and become pending.

Triggers keep frame_queue complete whoever writes frames (ingest, the demo, seeders, bulk
COPY): a frame inserted pending is queued, and so is one set back to pending after it
was scored or failed. The queue (inference.queue) deletes the entry when the frame is
scored or fails for good.

On SQLite the claim columns are dropped with ALTER TABLE ... DROP COLUMN (SQLite 3.35),
not by batch mode: a batch "move and copy" of frames drops the table, and with
foreign_keys on that deletes every prediction, verdict and queue entry of its frames
(ON DELETE CASCADE); it would also drop the triggers. A later migration that must
rebuild frames has to do it with foreign keys off and create the triggers again.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | Sequence[str] | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FILLFACTOR = 50  # bearwatch.schema.FRAMES_FILLFACTOR when this was written

# FrameStatus values as stored (a non-native enum: the lower-case value).
_DONE = "('scored', 'failed')"
_CLAIM_COLUMNS = ("claim_token", "claimed_by", "claimed_until", "attempts")

# PostgreSQL: one statement-level trigger per INSERT (a COPY of a million frames queues
# them in one INSERT ... SELECT), and a row trigger whose WHEN skips every ordinary update.
_PG_UP = [
    """
    CREATE FUNCTION frames_enqueue_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO frame_queue (frame_id)
        SELECT id FROM inserted_frames WHERE status = 'pending'
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER frames_enqueue_inserted AFTER INSERT ON frames
    REFERENCING NEW TABLE AS inserted_frames
    FOR EACH STATEMENT EXECUTE FUNCTION frames_enqueue_inserted()
    """,
    """
    CREATE FUNCTION frames_enqueue_requeued() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO frame_queue (frame_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE TRIGGER frames_enqueue_requeued AFTER UPDATE OF status ON frames
    FOR EACH ROW WHEN (OLD.status IN {_DONE} AND NEW.status = 'pending')
    EXECUTE FUNCTION frames_enqueue_requeued()
    """,
]
_PG_DOWN = [
    "DROP TRIGGER frames_enqueue_requeued ON frames",
    "DROP FUNCTION frames_enqueue_requeued()",
    "DROP TRIGGER frames_enqueue_inserted ON frames",
    "DROP FUNCTION frames_enqueue_inserted()",
]

_SQLITE_UP = [
    """
    CREATE TRIGGER frames_enqueue_inserted AFTER INSERT ON frames
    FOR EACH ROW WHEN NEW.status = 'pending'
    BEGIN INSERT OR IGNORE INTO frame_queue (frame_id) VALUES (NEW.id); END
    """,
    f"""
    CREATE TRIGGER frames_enqueue_requeued AFTER UPDATE OF status ON frames
    FOR EACH ROW WHEN OLD.status IN {_DONE} AND NEW.status = 'pending'
    BEGIN INSERT OR IGNORE INTO frame_queue (frame_id) VALUES (NEW.id); END
    """,
]
_SQLITE_DOWN = ["DROP TRIGGER frames_enqueue_requeued", "DROP TRIGGER frames_enqueue_inserted"]


def _is_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    op.create_table(
        'frame_queue',
        sa.Column('frame_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
        sa.Column('claim_token', sa.String(length=36), nullable=True),
        sa.Column('claimed_by', sa.String(length=100), nullable=True),
        sa.Column('claimed_until', sa.DateTime(), nullable=True),
        sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
        sa.Column('last_error', sa.String(length=1000), nullable=True),
        sa.ForeignKeyConstraint(['frame_id'], ['frames.id'], name=op.f('fk_frame_queue_frame_id_frames'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('frame_id', name=op.f('pk_frame_queue')),
    )
    if _is_postgresql():
        # No frame written by anyone else until the triggers exist (SQLite's write lock,
        # taken by CREATE TABLE above, does the same), so the fill below misses none.
        op.execute("LOCK TABLE frames IN ACCESS EXCLUSIVE MODE")
    # Waiting frames with their claim state (a live lease stays its worker's); a pending
    # frame's last_error is that of an attempt to be retried.
    op.execute(
        "INSERT INTO frame_queue (frame_id, claim_token, claimed_by, claimed_until, attempts, last_error) "
        "SELECT id, claim_token, claimed_by, claimed_until, attempts, last_error FROM frames "
        "WHERE status IN ('pending', 'claimed')"
    )
    op.execute("UPDATE frames SET status = 'pending', last_error = NULL WHERE status IN ('pending', 'claimed')")
    op.drop_index('ix_frames_status_id', table_name='frames')
    for column in _CLAIM_COLUMNS:
        op.drop_column('frames', column)  # not batch mode: see the module docstring
    for statement in _PG_UP if _is_postgresql() else _SQLITE_UP:
        op.execute(statement)
    if _is_postgresql():
        # Room on each page for a new version of each of its rows (the result, HOT);
        # pages written from now on (existing pages stay as they are).
        op.execute(f"ALTER TABLE frames SET (fillfactor = {_FILLFACTOR})")


def downgrade() -> None:
    if _is_postgresql():
        op.execute("LOCK TABLE frames IN ACCESS EXCLUSIVE MODE")
        op.execute("ALTER TABLE frames RESET (fillfactor)")
    for statement in _PG_DOWN if _is_postgresql() else _SQLITE_DOWN:
        op.execute(statement)
    op.add_column('frames', sa.Column('claim_token', sa.String(length=36), nullable=True))
    op.add_column('frames', sa.Column('claimed_by', sa.String(length=100), nullable=True))
    op.add_column('frames', sa.Column('claimed_until', sa.DateTime(), nullable=True))
    # A server default, unlike 0001's column: SQLite adds a NOT NULL column only with one.
    op.add_column('frames', sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
    queued = "FROM frame_queue q WHERE q.frame_id = frames.id"
    op.execute(
        "UPDATE frames SET "
        + ", ".join(f"{c} = (SELECT q.{c} {queued})" for c in (*_CLAIM_COLUMNS, "last_error"))
        + ", status = CASE WHEN (SELECT q.claimed_until " + queued + ") IS NULL THEN 'pending' ELSE 'claimed' END"
        + " WHERE id IN (SELECT frame_id FROM frame_queue)"
    )
    op.create_index('ix_frames_status_id', 'frames', ['status', 'id'], unique=False)
    op.drop_table('frame_queue')
