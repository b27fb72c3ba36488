"""frames and predictions partitioned by capture day on PostgreSQL (issue 13 item 4)

Retention deleted old frames row by row (with their predictions, queue entries, votes
and flags by cascade); on PostgreSQL it now drops whole day partitions
(ingest.partitions). Each table is PARTITION BY LIST (kept): a plain ``*_kept``
partition for evidence (frames a decision, an alert or a stage change refers to, and
their predictions) and ``*_stream`` PARTITION BY RANGE (captured_at), one partition per
UTC day (``frames_YYYYMMDD``) plus a DEFAULT partition as a safety net. Moving a frame to
evidence is ``UPDATE frames SET kept = true``: the row changes partition, its id stays,
so nothing that refers to it (stage-change JSON included) is rewritten. predictions carry
their frame's capture time (``captured_at``) and ``kept`` so that a frame's predictions
live in its day: bulk writers (the inference worker's COPY, the season bench) give it; for
any other writer a trigger sets both from the frame after the insert (the row moves from
the default partition to its day: a second write, for the few rows such writers make).
Partitions live in the schema ``bearwatch_partitions``: the application's schema keeps
only the tables it names. The function ``bearwatch_partitions.ensure_day(date)`` creates
one day's partitions (this migration, for every day with frames and the next 7, and the
housekeeping job, daily).

A primary key or unique constraint of a partitioned table must hold the partition key:
frames' is (id, kept, captured_at); predictions has a unique (id, kept, captured_at)
instead (captured_at may be NULL until the trigger sets it; ids stay unique by their
sequence), and the unique (frame_id, model_version_id) gains (kept, captured_at) (the
same rows: both are functions of frame_id). Foreign keys to frames(id) or
predictions(id) need a unique key on the id alone, so they are replaced by triggers:
deleting a frame (or a prediction) deletes what the cascade deleted (an alert still blocks it, as its key did), and an insert into
predictions, decisions, alerts or alert_flags checks that its frame exists, locking the
frame row FOR KEY SHARE as a foreign key does, so that a partition drop waits for it.
Statement-level delete triggers: a row that moves partition (kept) is not deleted.

Existing rows are copied into the new tables, same ids (frames referred to by a decision
or an alert start in the kept partition). SQLite keeps its tables and foreign keys and
gets the new columns only. Downgrade copies back into plain tables.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0019'
down_revision: str | Sequence[str] | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "bearwatch_partitions"
_FILLFACTOR = 50  # bearwatch.schema.FRAMES_FILLFACTOR when this was written
_DAYS_AHEAD = 7
# bearwatch.schema's audit predicates when this was written.
_AUDIT = "(id * 2654435761) % 4294967296 < 429496730"
_AUDIT_PREDICTION = "NOT flagged AND (frame_id * 2654435761) % 4294967296 < 429496730"
_DONE = "('scored', 'failed')"

# The foreign keys to frames(id) and predictions(id) at 0018: (table, name, column, referred, on delete).
_FKS = [
    ("predictions", "fk_predictions_frame_id_frames", "frame_id", "frames", "CASCADE"),
    ("frame_queue", "fk_frame_queue_frame_id_frames", "frame_id", "frames", "CASCADE"),
    ("decisions", "fk_decisions_frame_id_frames", "frame_id", "frames", "CASCADE"),
    ("alerts", "fk_alerts_frame_id_frames", "frame_id", "frames", None),
    ("alert_flags", "fk_alert_flags_frame_id_frames", "frame_id", "frames", "CASCADE"),
    ("frame_votes", "fk_frame_votes_frame_id_frames", "frame_id", "frames", "CASCADE"),
    ("alert_flags", "fk_alert_flags_prediction_id_predictions", "prediction_id", "predictions", "CASCADE"),
    ("prediction_heatmaps", "fk_prediction_heatmaps_prediction_id_predictions", "prediction_id", "predictions", "CASCADE"),
]

# A partition's indexes named after the table's: <index>_<suffix> (YYYYMMDD, kept, stream,
# default), so that plans and pg_stat show which index of which day they read.
_NAME_INDEXES = f"""
CREATE FUNCTION {SCHEMA}.name_indexes(part regclass, suffix text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.relname AS child, root.relname AS root FROM pg_index x
             JOIN pg_class c ON c.oid = x.indexrelid
             JOIN pg_class root ON root.oid = pg_partition_root(x.indexrelid)
             WHERE x.indrelid = part AND root.oid <> x.indexrelid LOOP
        EXECUTE format('ALTER INDEX {SCHEMA}.%I RENAME TO %I', r.child, left(r.root, 62 - length(suffix)) || '_' || suffix);
    END LOOP;
END $$
"""
_NAME_ALL_INDEXES = (f"SELECT {SCHEMA}.name_indexes(c.oid, regexp_replace(c.relname, '^(frames|predictions)_', '')) "
                     f"FROM pg_class c WHERE c.relnamespace = '{SCHEMA}'::regnamespace AND c.relkind IN ('r', 'p')")

_ENSURE_DAY = f"""
CREATE FUNCTION {SCHEMA}.ensure_day(day date) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    suffix text := to_char(day, 'YYYYMMDD');
BEGIN
    IF to_regclass('{SCHEMA}.frames_' || suffix) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE {SCHEMA}.%I PARTITION OF {SCHEMA}.frames_stream FOR VALUES FROM (%L) TO (%L) '
                   'WITH (fillfactor = {_FILLFACTOR})', 'frames_' || suffix, day, day + 1);
    EXECUTE format('CREATE TABLE {SCHEMA}.%I PARTITION OF {SCHEMA}.predictions_stream FOR VALUES FROM (%L) TO (%L)',
                   'predictions_' || suffix, day, day + 1);
    PERFORM {SCHEMA}.name_indexes(format('{SCHEMA}.%I', 'frames_' || suffix)::regclass, suffix);
    PERFORM {SCHEMA}.name_indexes(format('{SCHEMA}.%I', 'predictions_' || suffix)::regclass, suffix);
    RETURN true;
EXCEPTION WHEN check_violation THEN
    -- the default partition holds rows of that day: they stay there (retained row by row)
    RAISE WARNING 'no partition for %: the default partition has rows of that day', day;
    RETURN false;
END $$
"""

# Deleting frames or predictions: what the foreign keys' cascade did.
_CASCADES = f"""
CREATE FUNCTION {SCHEMA}.frames_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM alerts a WHERE a.frame_id IN (SELECT id FROM gone)) THEN
        RAISE foreign_key_violation USING MESSAGE = 'a frame an alert refers to cannot be deleted';
    END IF;
    DELETE FROM predictions WHERE frame_id IN (SELECT id FROM gone);
    DELETE FROM frame_queue WHERE frame_id IN (SELECT id FROM gone);
    DELETE FROM alert_flags WHERE frame_id IN (SELECT id FROM gone);
    DELETE FROM decisions WHERE frame_id IN (SELECT id FROM gone);
    DELETE FROM frame_votes WHERE frame_id IN (SELECT id FROM gone);
    RETURN NULL;
END $$;
CREATE TRIGGER frames_deleted AFTER DELETE ON frames REFERENCING OLD TABLE AS gone
FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.frames_deleted();
CREATE FUNCTION {SCHEMA}.predictions_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM alert_flags WHERE prediction_id IN (SELECT id FROM gone);
    DELETE FROM prediction_heatmaps WHERE prediction_id IN (SELECT id FROM gone);
    RETURN NULL;
END $$;
CREATE TRIGGER predictions_deleted AFTER DELETE ON predictions REFERENCING OLD TABLE AS gone
FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.predictions_deleted();
"""

# Inserting rows that refer to a frame: it must exist (locked FOR KEY SHARE till commit,
# as a foreign key's check does: a partition drop waits, and then re-marks the evidence).
_CHECKS = f"""
CREATE FUNCTION {SCHEMA}.frame_must_exist() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM frames WHERE id = NEW.frame_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE foreign_key_violation USING MESSAGE = format('%s: frame %s does not exist', TG_TABLE_NAME, NEW.frame_id);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER decisions_frame_exists BEFORE INSERT OR UPDATE OF frame_id ON decisions
FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.frame_must_exist();
CREATE TRIGGER alerts_frame_exists BEFORE INSERT OR UPDATE OF frame_id ON alerts
FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.frame_must_exist();
CREATE TRIGGER alert_flags_frame_exists BEFORE INSERT OR UPDATE OF frame_id ON alert_flags
FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.frame_must_exist();
CREATE FUNCTION {SCHEMA}.predictions_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad bigint;
BEGIN
    -- written with its frame's capture time (bulk writers): found in that day's partition alone
    PERFORM 1 FROM frames f JOIN new_rows n ON f.id = n.frame_id AND f.captured_at = n.captured_at FOR KEY SHARE OF f;
    IF EXISTS (SELECT 1 FROM new_rows WHERE captured_at IS NULL) THEN
        -- left out (it went to the default partition): the frame's, which moves the row to its day
        PERFORM 1 FROM frames f JOIN new_rows n ON f.id = n.frame_id WHERE n.captured_at IS NULL FOR KEY SHARE OF f;
        UPDATE predictions p SET captured_at = f.captured_at FROM new_rows n JOIN frames f ON f.id = n.frame_id
        WHERE n.captured_at IS NULL AND p.id = n.id AND p.captured_at IS NULL;
    END IF;
    SELECT n.frame_id INTO bad FROM new_rows n
    WHERE NOT EXISTS (SELECT 1 FROM frames f WHERE f.id = n.frame_id AND f.captured_at = coalesce(n.captured_at, f.captured_at))
    LIMIT 1;
    IF FOUND THEN
        RAISE foreign_key_violation USING MESSAGE = format(
            'predictions: frame %s does not exist, or captured_at is not its capture time', bad);
    END IF;
    -- a prediction of an evidence frame goes with it (writers leave kept false)
    UPDATE predictions p SET kept = true FROM new_rows n JOIN frames f ON f.id = n.frame_id AND f.kept
    WHERE p.id = n.id AND NOT n.kept AND NOT p.kept;
    RETURN NULL;
END $$;
CREATE TRIGGER predictions_inserted AFTER INSERT ON predictions REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.predictions_inserted();
"""
_CHECK_TRIGGERS = [("decisions", "decisions_frame_exists"), ("alerts", "alerts_frame_exists"),
                   ("alert_flags", "alert_flags_frame_exists")]

# The queue's triggers of migration 0013 (their functions stay).
_ENQUEUE = f"""
CREATE TRIGGER frames_enqueue_inserted AFTER INSERT ON frames REFERENCING NEW TABLE AS inserted_frames
FOR EACH STATEMENT EXECUTE FUNCTION frames_enqueue_inserted();
CREATE TRIGGER frames_enqueue_requeued AFTER UPDATE OF status ON frames
FOR EACH ROW WHEN (OLD.status IN {_DONE} AND NEW.status = 'pending') EXECUTE FUNCTION frames_enqueue_requeued();
"""


# SQLite: a prediction written without its frame's capture time gets it (as on PostgreSQL).
_SQLITE_FILL = """
CREATE TRIGGER predictions_captured_at AFTER INSERT ON predictions FOR EACH ROW WHEN NEW.captured_at IS NULL
BEGIN UPDATE predictions SET captured_at = (SELECT f.captured_at FROM frames f WHERE f.id = NEW.frame_id) WHERE id = NEW.id; END
"""


def _frames_keys(partitioned: bool) -> list[str]:
    """frames' constraints and indexes (the key gains the partition key when partitioned)."""
    key = ", kept, captured_at" if partitioned else ""
    return [
        f"ALTER TABLE frames ADD CONSTRAINT pk_frames PRIMARY KEY (id{key})",
        f"ALTER TABLE frames ADD CONSTRAINT uq_frames_camera_id_captured_at UNIQUE (camera_id, captured_at{', kept' if partitioned else ''})",
        "ALTER TABLE frames ADD CONSTRAINT fk_frames_camera_id_cameras FOREIGN KEY (camera_id) REFERENCES cameras (id) ON DELETE CASCADE",
        "CREATE INDEX ix_frames_captured_at ON frames (captured_at)",
        f"CREATE INDEX ix_frames_audit_captured_at ON frames (captured_at) INCLUDE (id, camera_id, is_night) WHERE {_AUDIT}",
        # partitioned: captured_at is NULL for a moment when a writer leaves it out (predictions_inserted), so
        # no primary key: the id is unique by its sequence, and by this constraint within a partition
        ("ALTER TABLE predictions ADD CONSTRAINT uq_predictions_id_kept_captured_at UNIQUE (id, kept, captured_at)"
         if partitioned else "ALTER TABLE predictions ADD CONSTRAINT pk_predictions PRIMARY KEY (id)"),
        f"ALTER TABLE predictions ADD CONSTRAINT uq_predictions_frame_id_model_version_id UNIQUE (frame_id, model_version_id{key})",
        "ALTER TABLE predictions ADD CONSTRAINT fk_predictions_model_version_id_model_versions "
        "FOREIGN KEY (model_version_id) REFERENCES model_versions (id)",
        "CREATE INDEX ix_predictions_model_version_id_flagged ON predictions (model_version_id, flagged)",
        "CREATE INDEX ix_predictions_flagged_id ON predictions (id) WHERE flagged",
        "CREATE INDEX ix_predictions_flagged_scored_at ON predictions (scored_at) WHERE flagged",
        f"CREATE INDEX ix_predictions_audit_frame_id ON predictions (frame_id, model_version_id) "
        f"INCLUDE (positive_score, id) WHERE {_AUDIT_PREDICTION}",
    ]


def _set_aside() -> list[str]:
    """The current frames and predictions renamed out of the way, their sequences kept."""
    return [
        "LOCK TABLE frames, predictions IN ACCESS EXCLUSIVE MODE",
        *(f"ALTER TABLE {t} DROP CONSTRAINT {n}" for t, n, *_ in _FKS),
        "ALTER SEQUENCE frames_id_seq OWNED BY NONE",
        "ALTER SEQUENCE predictions_id_seq OWNED BY NONE",
        "ALTER TABLE frames RENAME TO frames_before",
        "ALTER TABLE predictions RENAME TO predictions_before",
    ]


def _take_over() -> list[str]:
    """The old tables dropped (their triggers with them), the new ones' sequences, keys, triggers."""
    return [
        "DROP TABLE predictions_before",
        "DROP TABLE frames_before",
        "ALTER SEQUENCE frames_id_seq OWNED BY frames.id",
        "ALTER SEQUENCE predictions_id_seq OWNED BY predictions.id",
    ]


def _pg_upgrade() -> None:
    for statement in [
        f"CREATE SCHEMA {SCHEMA}",
        *_set_aside(),
        "CREATE TABLE frames (LIKE frames_before INCLUDING DEFAULTS, kept boolean NOT NULL DEFAULT false) "
        "PARTITION BY LIST (kept)",
        "CREATE TABLE predictions (LIKE predictions_before INCLUDING DEFAULTS, kept boolean NOT NULL DEFAULT false, "
        "captured_at timestamp without time zone) PARTITION BY LIST (kept)",
        f"CREATE TABLE {SCHEMA}.frames_kept PARTITION OF frames FOR VALUES IN (true) WITH (fillfactor = {_FILLFACTOR})",
        f"CREATE TABLE {SCHEMA}.frames_stream PARTITION OF frames FOR VALUES IN (false) PARTITION BY RANGE (captured_at)",
        f"CREATE TABLE {SCHEMA}.frames_default PARTITION OF {SCHEMA}.frames_stream DEFAULT WITH (fillfactor = {_FILLFACTOR})",
        f"CREATE TABLE {SCHEMA}.predictions_kept PARTITION OF predictions FOR VALUES IN (true)",
        f"CREATE TABLE {SCHEMA}.predictions_stream PARTITION OF predictions FOR VALUES IN (false) "
        "PARTITION BY RANGE (captured_at)",
        f"CREATE TABLE {SCHEMA}.predictions_default PARTITION OF {SCHEMA}.predictions_stream DEFAULT",
        _NAME_INDEXES, _ENSURE_DAY,
        # a partition for every day with frames, and the next days (the housekeeping job keeps that up)
        f"SELECT {SCHEMA}.ensure_day(day) FROM (SELECT DISTINCT captured_at::date AS day FROM frames_before "
        f"UNION SELECT (now() AT TIME ZONE 'UTC')::date + n FROM generate_series(0, {_DAYS_AHEAD}) n) days",
        # evidence (decided or alerted frames) starts kept
        "INSERT INTO frames SELECT f.*, f.id IN (SELECT frame_id FROM decisions UNION SELECT frame_id FROM alerts) "
        "FROM frames_before f",
        "INSERT INTO predictions SELECT p.*, f.kept, f.captured_at FROM predictions_before p "
        "JOIN frames f ON f.id = p.frame_id",
        *_take_over(),
        *_frames_keys(partitioned=True),
        _NAME_ALL_INDEXES,
        _ENQUEUE, _CASCADES, _CHECKS,
    ]:
        op.execute(statement)


def _pg_downgrade() -> None:
    for statement in [
        *(f"DROP TRIGGER {name} ON {table}" for table, name in _CHECK_TRIGGERS),
        *(f"DROP TRIGGER {name} ON {table}" for table, name in [
            ("frames", "frames_deleted"), ("predictions", "predictions_deleted"), ("predictions", "predictions_inserted")]),
        "LOCK TABLE frames, predictions IN ACCESS EXCLUSIVE MODE",
        "ALTER SEQUENCE frames_id_seq OWNED BY NONE",
        "ALTER SEQUENCE predictions_id_seq OWNED BY NONE",
        "ALTER TABLE frames RENAME TO frames_before",
        "ALTER TABLE predictions RENAME TO predictions_before",
        "CREATE TABLE frames (LIKE frames_before INCLUDING DEFAULTS)",
        "ALTER TABLE frames DROP COLUMN kept",
        f"ALTER TABLE frames SET (fillfactor = {_FILLFACTOR})",
        "CREATE TABLE predictions (LIKE predictions_before INCLUDING DEFAULTS)",
        "ALTER TABLE predictions DROP COLUMN kept, DROP COLUMN captured_at",
        "INSERT INTO frames SELECT id, camera_id, captured_at, path, sha256, size_bytes, width, height, brightness, "
        "contrast, sharpness, is_night, change_score, status, last_error, file_missing_at FROM frames_before",
        "INSERT INTO predictions SELECT id, frame_id, model_version_id, probabilities, positive_score, flagged, "
        "ood_score, embedding, scored_at FROM predictions_before",
        *_take_over(),
        f"DROP SCHEMA {SCHEMA} CASCADE",  # the partitions went with their tables; the functions
        *_frames_keys(partitioned=False),
        _ENQUEUE,
        *(f"ALTER TABLE {t} ADD CONSTRAINT {n} FOREIGN KEY ({c}) REFERENCES {r} (id)"
          + (f" ON DELETE {d}" if d else "") for t, n, c, r, d in _FKS),
    ]:
        op.execute(statement)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _pg_upgrade()
        return
    # SQLite: the columns only (same tables, same foreign keys).
    op.add_column('frames', sa.Column('kept', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('predictions', sa.Column('kept', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('predictions', sa.Column('captured_at', sa.DateTime(), nullable=True))
    op.execute("UPDATE predictions SET captured_at = (SELECT f.captured_at FROM frames f WHERE f.id = predictions.frame_id)")
    op.execute(_SQLITE_FILL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _pg_downgrade()
        return
    op.execute("DROP TRIGGER predictions_captured_at")
    op.drop_column('predictions', 'captured_at')
    op.drop_column('predictions', 'kept')
    op.drop_column('frames', 'kept')
