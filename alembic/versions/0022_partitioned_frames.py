"""PostgreSQL: frames and predictions partitioned, so retention drops whole partitions

Retention deleted old frames row by row (with their predictions, about 30 MB a camera-day
with one model), leaving dead rows for vacuum and bloat behind: a park's database grew
and churned with the season. On PostgreSQL 15 and later:

- ``frames`` is partitioned by LIST (kept): ``frames_kept`` holds the frames retention
  kept as evidence (a decision, an alert or a stage change refers to them), and
  ``frames_stream`` everything else, partitioned by RANGE (id): the frame ids come from
  one sequence in capture order, so a range is a stretch of time, and an id lookup or a
  join by frame id reads one partition of each. ``frames_stream_default`` catches ids no
  range holds (frames written while no partition was made ahead; ids given by hand).
- ``predictions`` likewise by LIST (frame_kept), then RANGE (frame_id) with the frames'
  bounds: a stream partition of frames and the predictions of its frames go together.
- The old tables become the first stream partitions (``frames_p0``, ``predictions_p0``),
  holding every id up to the sequence's next value: the upgrade keeps every row without
  copying it. It reads each table once (the partition bound's check) and builds the new
  unique indexes (the primary keys must hold the partition keys); it does not rewrite.
  ``_p1`` and ``_p2`` are made ahead, each about a week of frames (7 times the last day's
  count, at least 100,000 ids); bearwatch.partitions keeps making them, and retention
  (ingest.sweeper.retain) moves a partition's evidence to the kept partition and drops
  the rest of it with its predictions.

What refers to frames: decisions, alerts, frame_votes and frame_queue keep a foreign key,
now on (frame_id, frame_kept) with ON UPDATE CASCADE, so a frame moved to the kept
partition takes its references along, and a detach of a partition someone still refers
to fails (evidence cannot be dropped). A trigger fills frame_kept on insert (a verdict on
a kept frame). predictions, alert_flags and prediction_heatmaps have no foreign key to
frames (nor to predictions): a partition detach checks every referring row against the
partition, a scan of the whole partition that would hold the tables locked; triggers
delete a deleted frame's predictions and a deleted prediction's flags and heatmaps
(what ON DELETE CASCADE did), and retention deletes them with a dropped partition.

The unique (camera_id, captured_at) of frames cannot span partitions (a partitioned
table's unique keys must hold its partition keys): each stream partition has its own.

SQLite, and PostgreSQL before 15 (a row moving to another partition is a delete and an
insert there, which would fire the ON DELETE CASCADE), keep the tables as they were; so
does PostgreSQL unless BEARWATCH_PARTITIONED_FRAMES=1 is set where the upgrade runs (the
layout's costs: docs/benchmarks.md, "A park's season on partitioned tables").

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01 17:10:00
"""
from __future__ import annotations

import os
from collections.abc import Sequence

from alembic import op

revision: str = '0022'
down_revision: str | Sequence[str] | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPT_IN = "BEARWATCH_PARTITIONED_FRAMES"  # bearwatch.partitions.OPT_IN when this was written
_MIN_SPAN = 100_000
# Tables that keep a foreign key to frames: (table, ON DELETE action).
_REFERRERS = (("decisions", "CASCADE"), ("alerts", "NO ACTION"), ("frame_votes", "CASCADE"), ("frame_queue", "CASCADE"))
_FILLED = ("decisions", "alerts", "frame_votes")  # frame_queue is filled by the enqueue triggers
_FILLFACTOR = 50  # bearwatch.schema.FRAMES_FILLFACTOR when this was written
_AUDIT = "(id * 2654435761) % 4294967296 < 429496730"
_AUDIT_PREDICTION = "NOT flagged AND (frame_id * 2654435761) % 4294967296 < 429496730"
_DONE = "('scored', 'failed')"

# Indexes of the parents (each partition gets its own); the old tables have the same
# ones under these names, renamed *_p0 and attached.
_FRAME_INDEXES = (
    ("ix_frames_captured_at", "(captured_at)"),
    ("ix_frames_audit_captured_at", f"(captured_at) INCLUDE (id, camera_id, is_night) WHERE {_AUDIT}"),
)
_PREDICTION_INDEXES = (
    ("ix_predictions_model_version_id_flagged", "(model_version_id, flagged)"),
    ("ix_predictions_flagged_id", "(id) WHERE flagged"),
    ("ix_predictions_flagged_scored_at", "(scored_at) WHERE flagged"),
    ("ix_predictions_audit_frame_id", f"(frame_id, model_version_id) INCLUDE (positive_score, id) WHERE {_AUDIT_PREDICTION}"),
)


def _partitioning() -> bool:
    """Only when asked for (BEARWATCH_PARTITIONED_FRAMES=1 where the upgrade runs), on
    PostgreSQL 15 or later: measured on the season bench, every query by capture time
    probes each partition and plans over all of them (the verdict round trip 43 -> 187 ms,
    the flag pass 16 -> 273 ms at 10M frames), so it is not the default yet."""
    bind = op.get_bind()
    return (os.environ.get(OPT_IN) == "1" and bind.dialect.name == "postgresql"
            and int(bind.exec_driver_sql("SHOW server_version_num").scalar_one()) >= 150000)


def _is_partitioned() -> bool:
    bind = op.get_bind()
    return bind.dialect.name == "postgresql" and bool(bind.exec_driver_sql(
        "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass('frames'))").scalar_one())


def _next_id() -> int:
    """The first frame id not given yet (the sequence's next value, or past the highest row)."""
    bind = op.get_bind()
    last, called = bind.exec_driver_sql("SELECT last_value, is_called FROM frames_id_seq").one()
    highest = bind.exec_driver_sql("SELECT coalesce(max(id), 0) FROM frames").scalar_one()
    return max(last + 1 if called else last, highest + 1)


def _week_of_frames() -> int:
    bind = op.get_bind()
    count = bind.exec_driver_sql(
        "SELECT count(*) FROM frames WHERE captured_at > (SELECT max(captured_at) FROM frames) - interval '1 day'"
    ).scalar_one()
    return max(_MIN_SPAN, 7 * int(count))


def _make_stream_partition(number: int, low: int, high: int) -> None:
    """frames_pN and predictions_pN for ids [low, high), their indexes named after the
    parents' (frozen copy of bearwatch.partitions.make_stream_partition)."""
    op.execute(f"CREATE TABLE frames_p{number} PARTITION OF frames_stream FOR VALUES FROM ({low}) TO ({high}) "
               f"WITH (fillfactor = {_FILLFACTOR})")
    op.execute(f"CREATE TABLE predictions_p{number} PARTITION OF predictions_stream FOR VALUES FROM ({low}) TO ({high})")
    op.execute(f"CREATE UNIQUE INDEX uq_frames_camera_id_captured_at_p{number} ON frames_p{number} (camera_id, captured_at)")
    for table in ("frames", "predictions"):
        _name_indexes(f"{table}_p{number}", f"_p{number}")


def _name_indexes(partition: str, suffix: str) -> None:
    """A partition's indexes named after the root table's: ix_frames_captured_at_p3."""
    for index, root in op.get_bind().exec_driver_sql(
        "SELECT c.relname, pg_partition_root(c.oid)::regclass::text FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
        f"WHERE x.indrelid = '{partition}'::regclass AND pg_partition_root(c.oid) <> c.oid"
    ).all():
        op.execute(f'ALTER INDEX "{index}" RENAME TO "{root}{suffix}"')


def upgrade() -> None:
    if not _partitioning():
        return
    op.execute("LOCK TABLE frames, predictions IN ACCESS EXCLUSIVE MODE")
    bound = _next_id()
    span = _week_of_frames()
    _old_tables_set_aside()
    _parents()
    _old_tables_attached(bound)
    _make_stream_partition(1, bound, bound + span)
    _make_stream_partition(2, bound + span, bound + 2 * span)
    _referrers_keyed()
    _cascades_by_trigger()
    _enqueue_with_kept()


def _old_tables_set_aside() -> None:
    """The keys and triggers to and on frames and predictions dropped, and the tables
    renamed *_p0 with their constraints and indexes, with the partition keys."""
    for table, _action in _REFERRERS:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT fk_{table}_frame_id_frames")
    op.execute("ALTER TABLE predictions DROP CONSTRAINT fk_predictions_frame_id_frames")
    op.execute("ALTER TABLE alert_flags DROP CONSTRAINT fk_alert_flags_frame_id_frames, "
               "DROP CONSTRAINT fk_alert_flags_prediction_id_predictions")
    op.execute("ALTER TABLE prediction_heatmaps DROP CONSTRAINT fk_prediction_heatmaps_prediction_id_predictions")
    op.execute("DROP TRIGGER frames_enqueue_inserted ON frames")
    op.execute("DROP TRIGGER frames_enqueue_requeued ON frames")
    op.execute("ALTER TABLE frames RENAME TO frames_p0")
    op.execute("ALTER TABLE predictions RENAME TO predictions_p0")
    op.execute("ALTER TABLE frames_p0 ADD COLUMN kept boolean NOT NULL DEFAULT false")
    op.execute("ALTER TABLE predictions_p0 ADD COLUMN frame_kept boolean NOT NULL DEFAULT false")
    op.execute("ALTER TABLE frames_p0 RENAME CONSTRAINT uq_frames_camera_id_captured_at TO uq_frames_camera_id_captured_at_p0")
    op.execute("ALTER TABLE frames_p0 DROP CONSTRAINT pk_frames")
    op.execute("ALTER TABLE predictions_p0 DROP CONSTRAINT pk_predictions, "
               "DROP CONSTRAINT uq_predictions_frame_id_model_version_id")
    for name, _columns in (*_FRAME_INDEXES, *_PREDICTION_INDEXES):
        op.execute(f"ALTER INDEX {name} RENAME TO {name}_p0")


def _parents() -> None:
    """The partitioned frames and predictions, with their kept and stream partitions."""
    op.execute("CREATE TABLE frames (LIKE frames_p0 INCLUDING DEFAULTS) PARTITION BY LIST (kept)")
    op.execute("ALTER TABLE frames ADD CONSTRAINT pk_frames PRIMARY KEY (id, kept), "
               "ADD CONSTRAINT fk_frames_camera_id_cameras FOREIGN KEY (camera_id) REFERENCES cameras (id) ON DELETE CASCADE")
    op.execute("CREATE TABLE predictions (LIKE predictions_p0 INCLUDING DEFAULTS) PARTITION BY LIST (frame_kept)")
    op.execute("ALTER TABLE predictions ADD CONSTRAINT pk_predictions PRIMARY KEY (id, frame_kept, frame_id), "
               "ADD CONSTRAINT uq_predictions_frame_id_model_version_id UNIQUE (frame_id, model_version_id, frame_kept), "
               "ADD CONSTRAINT fk_predictions_model_version_id_model_versions FOREIGN KEY (model_version_id) "
               "REFERENCES model_versions (id)")
    for table, indexes in (("frames", _FRAME_INDEXES), ("predictions", _PREDICTION_INDEXES)):
        op.execute(f"ALTER SEQUENCE {table}_id_seq OWNED BY {table}.id")
        for name, columns in indexes:
            op.execute(f"CREATE INDEX {name} ON {table} {columns}")
    op.execute(f"CREATE TABLE frames_kept PARTITION OF frames FOR VALUES IN (true) WITH (fillfactor = {_FILLFACTOR})")
    op.execute("CREATE INDEX ix_frames_kept_camera_id_captured_at ON frames_kept (camera_id, captured_at)")
    op.execute("CREATE TABLE frames_stream PARTITION OF frames FOR VALUES IN (false) PARTITION BY RANGE (id)")
    op.execute("CREATE TABLE predictions_kept PARTITION OF predictions FOR VALUES IN (true)")
    op.execute("CREATE TABLE predictions_stream PARTITION OF predictions FOR VALUES IN (false) PARTITION BY RANGE (frame_id)")
    for table in ("frames", "predictions"):
        _name_indexes(f"{table}_kept", "_kept")
        _name_indexes(f"{table}_stream", "_stream")


def _old_tables_attached(bound: int) -> None:
    """The old tables attached below ``bound``: their unique indexes first (adopted by
    the parents' keys), and a checked bound, so the attach itself does not read the table
    again; then the default partitions."""
    op.execute("ALTER TABLE frames_p0 ADD CONSTRAINT pk_frames_p0 PRIMARY KEY (id, kept)")
    op.execute("ALTER TABLE predictions_p0 ADD CONSTRAINT pk_predictions_p0 PRIMARY KEY (id, frame_kept, frame_id), "
               "ADD CONSTRAINT uq_predictions_frame_id_model_version_id_p0 UNIQUE (frame_id, model_version_id, frame_kept)")
    for table, key in (("frames", "id"), ("predictions", "frame_id")):
        kept = "kept" if table == "frames" else "frame_kept"
        op.execute(f"ALTER TABLE {table}_p0 ADD CONSTRAINT {table}_p0_bound CHECK (NOT {kept} AND {key} < {bound})")
        op.execute(f"ALTER TABLE {table}_stream ATTACH PARTITION {table}_p0 FOR VALUES FROM (MINVALUE) TO ({bound})")
        op.execute(f"ALTER TABLE {table}_p0 DROP CONSTRAINT {table}_p0_bound")
    op.execute(f"CREATE TABLE frames_stream_default PARTITION OF frames_stream DEFAULT WITH (fillfactor = {_FILLFACTOR})")
    op.execute("CREATE INDEX ix_frames_stream_default_camera_id_captured_at ON frames_stream_default (camera_id, captured_at)")
    op.execute("CREATE TABLE predictions_stream_default PARTITION OF predictions_stream DEFAULT")
    for table in ("frames", "predictions"):
        _name_indexes(f"{table}_stream_default", "_default")


def _referrers_keyed() -> None:
    """Referrers: the frame's kept with the frame id, kept up by the key and on insert."""
    op.execute("""
        CREATE FUNCTION frames_kept_of_referrer() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.frame_kept := EXISTS (SELECT 1 FROM frames_kept WHERE id = NEW.frame_id);
            RETURN NEW;
        END $$""")
    for table, action in _REFERRERS:
        op.execute(f"ALTER TABLE {table} ADD COLUMN frame_kept boolean NOT NULL DEFAULT false")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT fk_{table}_frame_id_frames FOREIGN KEY (frame_id, frame_kept) "
                   f"REFERENCES frames (id, kept) ON UPDATE CASCADE ON DELETE {action}")
    for table in _FILLED:
        op.execute(f"CREATE TRIGGER {table}_frame_kept BEFORE INSERT ON {table} FOR EACH ROW "
                   "EXECUTE FUNCTION frames_kept_of_referrer()")
    # Moving a frame's alerts with it: without an index every moved frame reads all alerts.
    op.execute("CREATE INDEX ix_alerts_frame_id_frame_kept ON alerts (frame_id, frame_kept)")


def _cascades_by_trigger() -> None:
    """What ON DELETE CASCADE did for predictions and their flags and heatmaps. Statement
    triggers: a frame moving to the kept partition (a delete and an insert inside one
    UPDATE) fires none of them, a partition dropped neither. And ids fixed, as the keys
    kept them."""
    op.execute("""
        CREATE FUNCTION frames_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM predictions p USING deleted_frames d WHERE p.frame_id = d.id AND p.frame_kept = d.kept;
            RETURN NULL;
        END $$""")
    op.execute("CREATE TRIGGER frames_deleted AFTER DELETE ON frames REFERENCING OLD TABLE AS deleted_frames "
               "FOR EACH STATEMENT EXECUTE FUNCTION frames_deleted()")
    op.execute("""
        CREATE FUNCTION predictions_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM alert_flags a USING deleted_predictions d WHERE a.prediction_id = d.id;
            DELETE FROM prediction_heatmaps h USING deleted_predictions d WHERE h.prediction_id = d.id;
            RETURN NULL;
        END $$""")
    op.execute("CREATE TRIGGER predictions_deleted AFTER DELETE ON predictions REFERENCING OLD TABLE AS deleted_predictions "
               "FOR EACH STATEMENT EXECUTE FUNCTION predictions_deleted()")
    # What the keys' ON UPDATE NO ACTION did: an id others refer to does not change.
    op.execute("""
        CREATE FUNCTION ids_are_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the id of a row of % cannot change (other rows refer to it)', TG_TABLE_NAME
                USING ERRCODE = 'foreign_key_violation';
        END $$""")
    op.execute("CREATE TRIGGER frames_id_fixed BEFORE UPDATE OF id ON frames FOR EACH ROW WHEN (OLD.id <> NEW.id) "
               "EXECUTE FUNCTION ids_are_fixed()")
    op.execute("CREATE TRIGGER predictions_id_fixed BEFORE UPDATE OF id, frame_id ON predictions FOR EACH ROW "
               "WHEN (OLD.id <> NEW.id OR OLD.frame_id <> NEW.frame_id) EXECUTE FUNCTION ids_are_fixed()")


def _enqueue_with_kept() -> None:
    """The inference queue's triggers (migration 0013) on the new parent, with kept."""
    op.execute("""
        CREATE OR REPLACE FUNCTION frames_enqueue_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO frame_queue (frame_id, frame_kept)
            SELECT id, kept FROM inserted_frames WHERE status = 'pending'
            ON CONFLICT DO NOTHING;
            RETURN NULL;
        END $$""")
    op.execute("""
        CREATE OR REPLACE FUNCTION frames_enqueue_requeued() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO frame_queue (frame_id, frame_kept) VALUES (NEW.id, NEW.kept) ON CONFLICT DO NOTHING;
            RETURN NULL;
        END $$""")
    _enqueue_triggers()


def _enqueue_triggers() -> None:
    op.execute("CREATE TRIGGER frames_enqueue_inserted AFTER INSERT ON frames REFERENCING NEW TABLE AS inserted_frames "
               "FOR EACH STATEMENT EXECUTE FUNCTION frames_enqueue_inserted()")
    op.execute(f"CREATE TRIGGER frames_enqueue_requeued AFTER UPDATE OF status ON frames FOR EACH ROW "
               f"WHEN (OLD.status IN {_DONE} AND NEW.status = 'pending') EXECUTE FUNCTION frames_enqueue_requeued()")


def downgrade() -> None:
    """Back to plain tables: every partition's rows copied into the first ones (frames_p0,
    predictions_p0), which become frames and predictions again."""
    if not _is_partitioned():
        return
    op.execute("LOCK TABLE frames, predictions IN ACCESS EXCLUSIVE MODE")
    op.execute("DROP TRIGGER frames_enqueue_inserted ON frames")
    op.execute("DROP TRIGGER frames_enqueue_requeued ON frames")
    op.execute("DROP TRIGGER frames_deleted ON frames")
    op.execute("DROP FUNCTION frames_deleted()")
    op.execute("DROP TRIGGER predictions_deleted ON predictions")
    op.execute("DROP FUNCTION predictions_deleted()")
    op.execute("DROP TRIGGER frames_id_fixed ON frames")
    op.execute("DROP TRIGGER predictions_id_fixed ON predictions")
    op.execute("DROP FUNCTION ids_are_fixed()")
    for table in _FILLED:
        op.execute(f"DROP TRIGGER {table}_frame_kept ON {table}")
    op.execute("DROP FUNCTION frames_kept_of_referrer()")
    op.execute("DROP INDEX ix_alerts_frame_id_frame_kept")
    for table, _action in _REFERRERS:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT fk_{table}_frame_id_frames, DROP COLUMN frame_kept")

    for table, indexes in (("frames", _FRAME_INDEXES), ("predictions", _PREDICTION_INDEXES)):
        op.execute(f"ALTER TABLE {table}_stream DETACH PARTITION {table}_p0")
        op.execute(f"INSERT INTO {table}_p0 SELECT * FROM {table}")
        op.execute(f"ALTER SEQUENCE {table}_id_seq OWNED BY {table}_p0.id")
        op.execute(f"DROP TABLE {table}")  # the parent and its other partitions
        op.execute(f"ALTER TABLE {table}_p0 RENAME TO {table}")
        for name, _columns in indexes:
            op.execute(f"ALTER INDEX {name}_p0 RENAME TO {name}")
    op.execute("ALTER TABLE frames DROP CONSTRAINT pk_frames_p0, DROP COLUMN kept")
    op.execute("ALTER TABLE frames ADD CONSTRAINT pk_frames PRIMARY KEY (id)")  # (the foreign keys out stayed)
    op.execute("ALTER TABLE frames RENAME CONSTRAINT uq_frames_camera_id_captured_at_p0 TO uq_frames_camera_id_captured_at")
    op.execute("ALTER TABLE predictions DROP CONSTRAINT pk_predictions_p0, "
               "DROP CONSTRAINT uq_predictions_frame_id_model_version_id_p0, DROP COLUMN frame_kept")
    op.execute("ALTER TABLE predictions ADD CONSTRAINT pk_predictions PRIMARY KEY (id), "
               "ADD CONSTRAINT uq_predictions_frame_id_model_version_id UNIQUE (frame_id, model_version_id), "
               "ADD CONSTRAINT fk_predictions_frame_id_frames FOREIGN KEY (frame_id) REFERENCES frames (id) ON DELETE CASCADE")
    for table, action in _REFERRERS:
        on_delete = "" if action == "NO ACTION" else f" ON DELETE {action}"
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT fk_{table}_frame_id_frames FOREIGN KEY (frame_id) "
                   f"REFERENCES frames (id){on_delete}")
    op.execute("ALTER TABLE alert_flags ADD CONSTRAINT fk_alert_flags_frame_id_frames FOREIGN KEY (frame_id) "
               "REFERENCES frames (id) ON DELETE CASCADE, ADD CONSTRAINT fk_alert_flags_prediction_id_predictions "
               "FOREIGN KEY (prediction_id) REFERENCES predictions (id) ON DELETE CASCADE")
    op.execute("ALTER TABLE prediction_heatmaps ADD CONSTRAINT fk_prediction_heatmaps_prediction_id_predictions "
               "FOREIGN KEY (prediction_id) REFERENCES predictions (id) ON DELETE CASCADE")
    op.execute("""
        CREATE OR REPLACE FUNCTION frames_enqueue_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO frame_queue (frame_id) SELECT id FROM inserted_frames WHERE status = 'pending' ON CONFLICT DO NOTHING;
            RETURN NULL;
        END $$""")
    op.execute("""
        CREATE OR REPLACE FUNCTION frames_enqueue_requeued() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO frame_queue (frame_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
            RETURN NULL;
        END $$""")
    _enqueue_triggers()
