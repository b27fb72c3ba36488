"""frame_votes: each decided frame's verdicts summed, kept by triggers (issue 13)

The review queue's second looks (a lone verdict against the site's rollout model, or two
rangers who disagree: shadow.truth.needs_another_look) were found by grouping every
verdict of the 24 h window, joined to its frame and the rollout model's prediction, on
every page and every count: 12,400 verdicts at 1M frames in the season bench, 0.3 s each.
frame_votes holds one row per decided frame (its camera and capture time, its votes, the
bear votes among them, and the rollout model's flag on it when last summed), and a partial
index holds only the frames that may need another look (may_need_look, a stored generated
column: bearwatch.schema.FRAME_VOTES_LOOK_PREDICATE, so the planner has statistics of how
few they are), so the queue reads those and never the settled verdicts.

Database triggers keep it, in the writer's transaction, whoever writes (submit_verdict and
undo, the demo, tests' helpers, the season bench's COPY of verdicts, SQL by hand):

- decisions inserted, updated or deleted (an undo, a frame's retention cascade): the
  frames concerned are summed again from their decisions (a few rows each), and a frame
  left without any loses its row. On PostgreSQL one statement-level trigger per event
  with transition tables (a COPY of 100k verdicts is summed in one statement); on SQLite
  row triggers.
- a site's rollout model changes: the model flag of the site's summed frames is read
  again from the new model's predictions (one statement; rare, and proportional to the
  site's decided frames, not to its frames). Likewise a camera moved to another site.

A rollout prediction written after the verdict (a report on a frame not yet scored) is not
watched: the summary says "unknown" (NULL), the index keeps such a lone verdict, and the
queue decides with the prediction it joins.

Also a partial index of the missed-bear verdicts by decision time: the queue's follow-ups
start from the misses the audit found in the window, which it read by scanning every
verdict of the window (once per site); misses are few. And an index of each ranger's
verdicts: the queue leaves out the frames this ranger decided, and without it PostgreSQL
read the ranger's few verdicts by scanning every verdict, once per section (8 scans of
the whole table per page in the season bench: the queue's work grew with the history).

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30 19:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0018'
down_revision: str | Sequence[str] | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# bearwatch.schema.FRAME_VOTES_LOOK_PREDICATE when this was written.
_LOOK = "votes = 2 AND bears = 1 OR votes = 1 AND (model_flag IS NULL OR model_flag <> (bears = 1))"
# Verdict values that say bear (shadow.truth.BEAR_VERDICTS), as stored.
_BEAR = "('confirm', 'missed')"


def _sum_again(changed: str) -> str:
    """SQL: the summary of the frames ``changed`` (a query of frame ids) from their
    decisions, inserted or replaced (frames without decisions are left to _drop_empty)."""
    # WHERE true: SQLite needs a WHERE before ON CONFLICT when inserting from a join.
    return f"""
    INSERT INTO frame_votes (frame_id, camera_id, captured_at, votes, bears, model_flag)
    SELECT f.id, f.camera_id, f.captured_at, v.votes, v.bears, p.flagged
    FROM (
        SELECT d.frame_id, count(*) AS votes, count(CASE WHEN d.verdict IN {_BEAR} THEN 1 END) AS bears
        FROM decisions d WHERE d.frame_id IN ({changed}) GROUP BY d.frame_id
    ) v
    JOIN frames f ON f.id = v.frame_id
    JOIN cameras c ON c.id = f.camera_id
    JOIN sites s ON s.id = c.site_id
    LEFT JOIN predictions p ON p.frame_id = f.id AND p.model_version_id = s.rollout_model_id
    WHERE true
    ON CONFLICT (frame_id) DO UPDATE SET votes = excluded.votes, bears = excluded.bears, model_flag = excluded.model_flag
    """


def _drop_empty(changed: str) -> str:
    return f"""
    DELETE FROM frame_votes WHERE frame_id IN ({changed})
    AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.frame_id = frame_votes.frame_id)
    """


# The model flag again, from the predictions of the rollout model of a site (NEW: sites)
# or of a camera's site (NEW: cameras).
_SITE_MODEL_FLAG = """
    UPDATE frame_votes SET model_flag = (
        SELECT p.flagged FROM predictions p
        WHERE p.frame_id = frame_votes.frame_id AND p.model_version_id = NEW.rollout_model_id)
    WHERE camera_id IN (SELECT c.id FROM cameras c WHERE c.site_id = NEW.id)
"""
_CAMERA_MODEL_FLAG = """
    UPDATE frame_votes SET model_flag = (
        SELECT p.flagged FROM predictions p JOIN sites s ON s.rollout_model_id = p.model_version_id
        WHERE s.id = NEW.site_id AND p.frame_id = frame_votes.frame_id)
    WHERE camera_id = NEW.id
"""

# PostgreSQL: decisions' triggers are per statement, over the rows it wrote.
_PG_NEW, _PG_OLD = "SELECT frame_id FROM new_rows", "SELECT frame_id FROM old_rows"
_PG_DECISION_TRIGGERS = {
    # name: (event, transition tables, statements)
    "frame_votes_inserted": ("INSERT", "NEW TABLE AS new_rows", [_sum_again(_PG_NEW)]),
    "frame_votes_updated": ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows",
                            [_sum_again(f"{_PG_NEW} UNION {_PG_OLD}"), _drop_empty(_PG_OLD)]),
    "frame_votes_deleted": ("DELETE", "OLD TABLE AS old_rows", [_sum_again(_PG_OLD), _drop_empty(_PG_OLD)]),
}
_PG_ROW_TRIGGERS = {
    # name: (table, column, statement)
    "frame_votes_site_model": ("sites", "rollout_model_id", _SITE_MODEL_FLAG),
    "frame_votes_camera_site": ("cameras", "site_id", _CAMERA_MODEL_FLAG),
}


def _plpgsql(name: str, statements: list[str]) -> str:
    body = ";\n".join(statements)
    return f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n{body};\nRETURN NULL;\nEND $$"


def _pg_up() -> list[str]:
    ddl = []
    for name, (event, tables, statements) in _PG_DECISION_TRIGGERS.items():
        ddl += [_plpgsql(name, statements),
                f"CREATE TRIGGER {name} AFTER {event} ON decisions REFERENCING {tables} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"]
    for name, (table, column, statement) in _PG_ROW_TRIGGERS.items():
        ddl += [_plpgsql(name, [statement]),
                f"CREATE TRIGGER {name} AFTER UPDATE OF {column} ON {table} FOR EACH ROW "
                f"WHEN (OLD.{column} IS DISTINCT FROM NEW.{column}) EXECUTE FUNCTION {name}()"]
    return ddl


def _pg_down() -> list[str]:
    tables = {name: "decisions" for name in _PG_DECISION_TRIGGERS} | {n: t for n, (t, _, _) in _PG_ROW_TRIGGERS.items()}
    return [s for name, table in tables.items() for s in (f"DROP TRIGGER {name} ON {table}", f"DROP FUNCTION {name}()")]


# SQLite: row triggers.
_SQLITE_NEW, _SQLITE_OLD = "SELECT NEW.frame_id", "SELECT OLD.frame_id"
_SQLITE_TRIGGERS = {
    "frame_votes_inserted": ("AFTER INSERT ON decisions", [_sum_again(_SQLITE_NEW)]),
    "frame_votes_updated": ("AFTER UPDATE ON decisions",
                            [_sum_again(f"{_SQLITE_NEW} UNION {_SQLITE_OLD}"), _drop_empty(_SQLITE_OLD)]),
    "frame_votes_deleted": ("AFTER DELETE ON decisions", [_sum_again(_SQLITE_OLD), _drop_empty(_SQLITE_OLD)]),
    "frame_votes_site_model": ("AFTER UPDATE OF rollout_model_id ON sites FOR EACH ROW "
                               "WHEN OLD.rollout_model_id IS NOT NEW.rollout_model_id", [_SITE_MODEL_FLAG]),
    "frame_votes_camera_site": ("AFTER UPDATE OF site_id ON cameras FOR EACH ROW WHEN OLD.site_id IS NOT NEW.site_id",
                                [_CAMERA_MODEL_FLAG]),
}


def _sqlite_up() -> list[str]:
    return [f"CREATE TRIGGER {name} {when} BEGIN {'; '.join(statements)}; END"
            for name, (when, statements) in _SQLITE_TRIGGERS.items()]


def _is_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    op.create_table(
        'frame_votes',
        sa.Column('frame_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
        sa.Column('camera_id', sa.Integer(), nullable=False),
        sa.Column('captured_at', sa.DateTime(), nullable=False),
        sa.Column('votes', sa.Integer(), nullable=False),
        sa.Column('bears', sa.Integer(), nullable=False),
        sa.Column('model_flag', sa.Boolean(), nullable=True),
        sa.Column('may_need_look', sa.Boolean(), sa.Computed(_LOOK, persisted=True), nullable=False),
        sa.ForeignKeyConstraint(['frame_id'], ['frames.id'], name=op.f('fk_frame_votes_frame_id_frames'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('frame_id', name=op.f('pk_frame_votes')),
    )
    if _is_postgresql():
        # No verdict or rollout change by anyone else until the triggers exist (SQLite's
        # write lock, taken by CREATE TABLE above, does the same): the backfill misses none.
        op.execute("LOCK TABLE decisions, sites, cameras IN SHARE ROW EXCLUSIVE MODE")
    op.execute(_sum_again("SELECT frame_id FROM decisions"))
    op.create_index('ix_frame_votes_look_captured_at', 'frame_votes', ['captured_at'], unique=False,
                    sqlite_where=sa.text('may_need_look = 1'), postgresql_where=sa.text('may_need_look'),
                    postgresql_include=['frame_id', 'camera_id', 'votes', 'bears'])
    for statement in _pg_up() if _is_postgresql() else _sqlite_up():
        op.execute(statement)
    op.create_index('ix_decisions_missed_decided_at', 'decisions', ['decided_at'], unique=False,
                    sqlite_where=sa.text("verdict = 'missed'"), postgresql_where=sa.text("verdict = 'missed'"))
    op.create_index('ix_decisions_reviewer_id_frame_id', 'decisions', ['reviewer_id', 'frame_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_decisions_reviewer_id_frame_id', table_name='decisions')
    op.drop_index('ix_decisions_missed_decided_at', table_name='decisions')
    for statement in _pg_down() if _is_postgresql() else [f"DROP TRIGGER {name}" for name in _SQLITE_TRIGGERS]:
        op.execute(statement)
    op.drop_index('ix_frame_votes_look_captured_at', table_name='frame_votes')
    op.drop_table('frame_votes')
