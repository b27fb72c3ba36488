"""The database schema: the contract between ingest, inference, shadow and the dashboard.

Every part reads and writes these rows; no part calls into another's process. Unique
keys make at-least-once work idempotent (one prediction per frame and model version,
one verdict per frame and reviewer, one alert per idempotency key).
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timestamps are always UTC-aware in Python; stored naive UTC so SQLite and
    PostgreSQL compare them the same way."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use UTC-aware times")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Stage(str, enum.Enum):
    MANUAL = "manual"
    LIMITED = "limited"
    EXPANDED = "expanded"


class CameraHealth(str, enum.Enum):
    UNKNOWN = "unknown"
    ONLINE = "online"
    DEGRADED = "degraded"
    OFFLINE = "offline"
    DISABLED = "disabled"


class FrameStatus(str, enum.Enum):
    PENDING = "pending"  # waiting to be scored (frame_queue holds its lease, if claimed)
    # Written by bearwatch before migration 0013, which moved such frames back to pending
    # (the claim lives in frame_queue now); kept so the stored enum stays readable.
    CLAIMED = "claimed"
    SCORED = "scored"
    FAILED = "failed"  # gave up after repeated errors; last_error says why


class ModelRole(str, enum.Enum):
    ROLLOUT = "rollout"  # the model a site's stage applies to
    CHALLENGER = "challenger"  # scores in shadow only
    RETIRED = "retired"


class Verdict(str, enum.Enum):
    CONFIRM = "confirm"  # the model's flag is a bear
    DISMISS = "dismiss"  # the model's flag is not a bear
    MISSED = "missed"  # a bear the model did not flag


class ReviewReason(str, enum.Enum):
    """Why a frame was before the ranger who decided it (design.md section 5)."""

    FLAGGED = "flagged"  # the rollout model flagged it: every flag is reviewed
    HELD_ALERT = "held_alert"  # a limited-stage alert waiting for a ranger
    AUDIT = "audit"  # the designed audit sample of unflagged frames
    FOLLOW_UP = "follow_up"  # next to a bear the audit found: completes that sighting
    MISSED_REPORT = "missed_report"  # a bear a ranger happened to see: real, but not a random sample


class AlertStatus(str, enum.Enum):
    PENDING = "pending"  # limited stage: held until a ranger confirms
    QUEUED = "queued"  # in the outbox, to be delivered
    SENT = "sent"
    SUPPRESSED = "suppressed"  # dismissed by a ranger
    DEAD = "dead"  # delivery gave up after N attempts
    EXPIRED = "expired"  # held, then confirmed after its frame was stale: recorded, never sent


class AlertSource(str, enum.Enum):
    MODEL = "model"  # made from the rollout model's flag
    RANGER = "ranger"  # a ranger's sighting: a confirm where flags send nothing, or a MISSED report


class FlagOutcome(str, enum.Enum):
    """What the alert processor did with one flagged prediction (shadow.alerts)."""

    ALERT = "alert"  # a new alert
    MERGED = "merged"  # attached to an alert at the same camera within the cooldown
    NO_ALERT = "no_alert"  # manual stage, or outside the limited trial's scope/window
    STALE = "stale"  # older than the processor's horizon when first seen


class ChannelKind(str, enum.Enum):
    WEBHOOK = "webhook"
    LOG = "log"  # writes alerts to the log; for demos
    EMAIL = "email"  # SMTP; the url is an smtp:// or smtps:// target (bearwatch.smtp_url)


class WebhookFormat(str, enum.Enum):
    """The body a webhook channel POSTs (shadow.webhook_formats; docs/operations.md)."""

    BEARWATCH = "bearwatch"  # the full JSON payload
    SLACK = "slack"  # Slack incoming webhook: {"text": ...}
    HOMEASSISTANT = "homeassistant"  # Home Assistant webhook trigger: flat fields to template on


class DeliveryStatus(str, enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"  # gave up after the maximum number of attempts


class Role(str, enum.Enum):
    RANGER = "ranger"
    OPS = "ops"
    ADMIN = "admin"


def _enum(cls: type[enum.Enum]) -> sa.Enum:
    # Stored as plain strings (no native enum type) so batch migrations on SQLite and
    # new members on PostgreSQL need no type surgery.
    return sa.Enum(
        cls, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]
    )


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: sa.JSON(), list[str]: sa.JSON()}


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    stage: Mapped[Stage] = mapped_column(_enum(Stage), default=Stage.MANUAL)
    stage_since: Mapped[datetime] = mapped_column(default=utcnow)
    rollout_model_id: Mapped[int | None] = mapped_column(sa.ForeignKey("model_versions.id"))
    trial_start: Mapped[datetime | None]
    trial_end: Mapped[datetime | None]
    # Limited-stage scope: camera ids and hours of day (UTC); empty means all.
    trial_scope: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Per-site overrides of the gate and guard thresholds (design.md section 5).
    thresholds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The drift reference window chosen by ops; unset: the latest manual period.
    drift_reference_start: Mapped[datetime | None]
    drift_reference_end: Mapped[datetime | None]
    # The site's clock (IANA name) for pages, CLI lines and alerts (bearwatch.localtime).
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC", server_default="UTC")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    cameras: Mapped[list[Camera]] = relationship(back_populates="site")
    rollout_model: Mapped[ModelVersion | None] = relationship()


class Camera(Base):
    __tablename__ = "cameras"
    __table_args__ = (sa.UniqueConstraint("site_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    # May hold ${ENV} placeholders for credentials; never shown unredacted.
    source: Mapped[str] = mapped_column(sa.String(1000))
    interval_s: Mapped[float] = mapped_column(default=5.0)
    enabled: Mapped[bool] = mapped_column(default=True)
    health: Mapped[CameraHealth] = mapped_column(_enum(CameraHealth), default=CameraHealth.UNKNOWN)
    last_frame_at: Mapped[datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.String(1000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Which `bearwatch ingest` process samples this camera, and until when (heartbeat).
    lease_owner: Mapped[str | None] = mapped_column(sa.String(100))
    lease_until: Mapped[datetime | None]

    site: Mapped[Site] = relationship(back_populates="cameras")


class CameraHealthEvent(Base):
    """One row per camera health transition (feeds drift views and the rollout guard)."""

    __tablename__ = "camera_health_events"
    __table_args__ = (sa.Index("ix_camera_health_events_camera_id_at", "camera_id", "at"),)

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    camera_id: Mapped[int] = mapped_column(sa.ForeignKey("cameras.id", ondelete="CASCADE"))
    from_health: Mapped[CameraHealth] = mapped_column(_enum(CameraHealth))
    to_health: Mapped[CameraHealth] = mapped_column(_enum(CameraHealth))
    reason: Mapped[str] = mapped_column(sa.String(1000))
    at: Mapped[datetime] = mapped_column(default=utcnow)


# Pages of frames are filled to this percentage on PostgreSQL (migration 0013). A frame
# is updated once, with its result, and a batch's results update whole pages of
# consecutive frames in one transaction, which cannot prune its own old versions: the
# update is HOT only if the page has room for a new version of each of its rows. At 50%
# it has (0 non-HOT updates per frame, also under a long transaction; 70%: about half
# non-HOT, 100%: nearly all; docs/benchmarks.md "Dead tuples per frame").
FRAMES_FILLFACTOR = 50
# The frames that may be in any site's audit sample whose stratum rates are at most
# AUDIT_INDEX_RATE (the default's highest, audit_near_rate): the id hash of
# shadow.alert_rules.audit_hash below audit_threshold(AUDIT_INDEX_RATE). A partial index
# holds them (a tenth of the frames), so the review queue reads only those (migration 0016).
AUDIT_INDEX_RATE = 0.10
AUDIT_INDEX_PREDICATE = "(id * 2654435761) % 4294967296 < 429496730"
# The same frames' unflagged predictions (PostgreSQL): the audit sample's scores without
# reading the rows (migration 0016).
AUDIT_PREDICTION_PREDICATE = "NOT flagged AND (frame_id * 2654435761) % 4294967296 < 429496730"


class Frame(Base):
    __tablename__ = "frames"
    __table_args__ = (
        sa.UniqueConstraint("camera_id", "captured_at"),
        sa.Index("ix_frames_captured_at", "captured_at"),
        # The review queue's audit sample (shadow.review_queue, migration 0016): the frames
        # whose id hash is below the audit threshold of AUDIT_INDEX_RATE, by capture time.
        # (id, camera_id and is_night with it on PostgreSQL: counted without reading the rows)
        sa.Index("ix_frames_audit_captured_at", "captured_at", sqlite_where=sa.text(AUDIT_INDEX_PREDICATE),
                 postgresql_where=sa.text(AUDIT_INDEX_PREDICATE), postgresql_include=["id", "camera_id", "is_night"]),
        {"postgresql_with": {"fillfactor": FRAMES_FILLFACTOR}},
    )
    # The inference queue is frame_queue (the claims churn there); a frame is updated
    # once, with its result (status, last_error). No index of frames holds either column
    # (nor may one, a partial index's predicate included), so on PostgreSQL that update
    # is HOT: no new entry in every index, no dead tuple left for vacuum.

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    camera_id: Mapped[int] = mapped_column(sa.ForeignKey("cameras.id", ondelete="CASCADE"))
    captured_at: Mapped[datetime]
    path: Mapped[str] = mapped_column(sa.String(500))  # relative to the frame store root
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size_bytes: Mapped[int]
    width: Mapped[int]
    height: Mapped[int]
    brightness: Mapped[float | None]
    contrast: Mapped[float | None]
    sharpness: Mapped[float | None]
    is_night: Mapped[bool | None]
    change_score: Mapped[float | None]
    status: Mapped[FrameStatus] = mapped_column(_enum(FrameStatus), default=FrameStatus.PENDING)
    last_error: Mapped[str | None] = mapped_column(sa.String(1000))  # why it failed for good
    # Set by the sweeper when the JPEG is gone but a decision or alert refers to the row.
    file_missing_at: Mapped[datetime | None]

    camera: Mapped[Camera] = relationship()
    predictions: Mapped[list[Prediction]] = relationship(back_populates="frame")

    # (camera_id, captured_at) is also the dashboard's per-camera time-window index:
    # the unique constraint above creates it.


class FrameQueueEntry(Base):
    """A frame waiting to be scored, and its lease while an inference worker holds it
    (inference.queue). Database triggers (migration 0013) add every frame inserted
    pending, whoever inserts it, and one set back to pending after it was scored or
    failed; the queue deletes the entry when the frame is scored or fails for good."""

    __tablename__ = "frame_queue"

    frame_id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        sa.ForeignKey("frames.id", ondelete="CASCADE"), primary_key=True, autoincrement=False,
    )
    claim_token: Mapped[str | None] = mapped_column(sa.String(36))
    claimed_by: Mapped[str | None] = mapped_column(sa.String(100))  # host:pid of the worker
    claimed_until: Mapped[datetime | None]  # unset: not claimed; past: the lease ran out
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")  # claims, released ones not counted
    last_error: Mapped[str | None] = mapped_column(sa.String(1000))  # of the last attempt, retried


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (sa.UniqueConstraint("name", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    path: Mapped[str] = mapped_column(sa.String(1000))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    classes: Mapped[list[str]] = mapped_column()
    positive_classes: Mapped[list[str]] = mapped_column()
    threshold: Mapped[float] = mapped_column(default=0.5)
    role: Mapped[ModelRole] = mapped_column(_enum(ModelRole), default=ModelRole.ROLLOUT)
    # Embedding statistics of reference images, for the out-of-domain score (inference.ood).
    ood_reference: Mapped[bytes | None] = mapped_column(sa.LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (
        sa.UniqueConstraint("frame_id", "model_version_id"),
        sa.Index("ix_predictions_model_version_id_flagged", "model_version_id", "flagged"),
        # The flag processor's read of new flags (about 1% of predictions): shadow.flag_cursor.
        sa.Index("ix_predictions_flagged_id", "id", sqlite_where=sa.text("flagged = 1"), postgresql_where=sa.text("flagged")),
        # The review queue's flagged frames, newest scored first (migration 0016): a flag is
        # scored after its frame was captured, so the newest flags by capture time are among
        # the newest by scoring time (shadow.review_queue).
        sa.Index("ix_predictions_flagged_scored_at", "scored_at", sqlite_where=sa.text("flagged = 1"),
                 postgresql_where=sa.text("flagged")),
        sa.Index("ix_predictions_audit_frame_id", "frame_id", "model_version_id",
                 postgresql_where=sa.text(AUDIT_PREDICTION_PREDICATE), postgresql_include=["positive_score", "id"],
                 sqlite_where=sa.text("flagged = 0 AND (frame_id * 2654435761) % 4294967296 < 429496730")),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    frame_id: Mapped[int] = mapped_column(sa.ForeignKey("frames.id", ondelete="CASCADE"))
    model_version_id: Mapped[int] = mapped_column(sa.ForeignKey("model_versions.id"))
    probabilities: Mapped[dict[str, Any]] = mapped_column()  # class name -> probability
    positive_score: Mapped[float]
    flagged: Mapped[bool]
    ood_score: Mapped[float | None]
    embedding: Mapped[bytes | None] = mapped_column(sa.LargeBinary)  # float16, penultimate layer
    scored_at: Mapped[datetime] = mapped_column(default=utcnow)

    frame: Mapped[Frame] = relationship(back_populates="predictions")
    model_version: Mapped[ModelVersion] = relationship()


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    role: Mapped[Role] = mapped_column(_enum(Role))
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A disabled user cannot log in or act; the row stays, since verdicts cite it.
    disabled_at: Mapped[datetime | None]
    # Bumped on a password change or disable: dashboard sessions opened before it end.
    session_epoch: Mapped[int] = mapped_column(default=0, server_default="0")
    # The user's own dashboard choices (review site filter, theme), kept across logins.
    preferences: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")


class LoginFailures(Base):
    """Failed logins per throttle key (a name, a client address, or both), kept in the
    database so no client can clear them and every dashboard process sees them."""

    __tablename__ = "login_failures"
    __table_args__ = (sa.Index("ix_login_failures_last_failed_at", "last_failed_at"),)

    key: Mapped[str] = mapped_column(sa.String(400), primary_key=True)
    failures: Mapped[int]
    last_failed_at: Mapped[datetime]
    blocked_until: Mapped[datetime]


class Decision(Base):
    __tablename__ = "decisions"
    __table_args__ = (
        sa.UniqueConstraint("frame_id", "reviewer_id"),
        sa.Index("ix_decisions_decided_at", "decided_at"),
        # the misses the audit found, by decision time: the review queue's follow-ups start from them
        sa.Index("ix_decisions_missed_decided_at", "decided_at", sqlite_where=sa.text("verdict = 'missed'"),
                 postgresql_where=sa.text("verdict = 'missed'")),
        # a ranger's own verdicts: the review queue leaves those frames out
        sa.Index("ix_decisions_reviewer_id_frame_id", "reviewer_id", "frame_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    frame_id: Mapped[int] = mapped_column(sa.ForeignKey("frames.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    verdict: Mapped[Verdict] = mapped_column(_enum(Verdict))
    note: Mapped[str | None] = mapped_column(sa.String(2000))
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The review design at the time of the verdict: why the frame was in the queue, its
    # audit stratum, and the probability the design had of showing it (None: unknown).
    # Rows from before migration 0008 got them from the audit rate then in force
    # (design_derived true).
    review_reason: Mapped[ReviewReason | None] = mapped_column(_enum(ReviewReason))
    audit_stratum: Mapped[str | None] = mapped_column(sa.String(16))
    inclusion_prob: Mapped[float | None] = mapped_column()
    design_derived: Mapped[bool] = mapped_column(default=False)


# The frames whose verdicts may need another look (shadow.second_looks): a lone verdict
# against the site's rollout model's flag as the summary last saw it (or unknown: no
# rollout prediction then), or two that disagree: frame_votes.may_need_look. A partial
# index holds only those, so the review queue never reads settled verdicts (migration 0018).
# ix_frame_votes_bears_camera_id_captured_at's: the frames with a bear vote (shadow.alert_rates.bear_frames).
FRAME_VOTES_BEAR_PREDICATE = "bears > 0"
FRAME_VOTES_LOOK_PREDICATE = "votes = 2 AND bears = 1 OR votes = 1 AND (model_flag IS NULL OR model_flag <> (bears = 1))"


class FrameVotes(Base):
    """The verdicts on a frame, summed: one row per decided frame, kept by database
    triggers on decisions (any writer, any number of rows at once) and on sites and
    cameras (the flag of the rollout model that now counts), in the writer's transaction
    (migration 0018). Goes with its frame."""

    __tablename__ = "frame_votes"
    __table_args__ = (
        # The frames that may need another look, by capture time (the queue's second looks).
        sa.Index("ix_frame_votes_look_captured_at", "captured_at", sqlite_where=sa.text("may_need_look = 1"),
                 postgresql_where=sa.text("may_need_look"), postgresql_include=["frame_id", "camera_id", "votes", "bears"]),
        # The frames with a bear vote, by camera and capture time (a baseline's bear frames:
        # shadow.alert_rates.bear_frames; migration 0020).
        sa.Index("ix_frame_votes_bears_camera_id_captured_at", "camera_id", "captured_at",
                 sqlite_where=sa.text(FRAME_VOTES_BEAR_PREDICATE), postgresql_where=sa.text(FRAME_VOTES_BEAR_PREDICATE)),
    )

    frame_id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        sa.ForeignKey("frames.id", ondelete="CASCADE"), primary_key=True, autoincrement=False,
    )
    camera_id: Mapped[int]  # the frame's, copied: the queue filters by site in the index
    captured_at: Mapped[datetime]  # the frame's
    votes: Mapped[int]  # verdicts
    bears: Mapped[int]  # of which say bear (shadow.truth.BEAR_VERDICTS)
    # The site's rollout model's flag on the frame when last summed (None: no rollout prediction then).
    model_flag: Mapped[bool | None]
    # FRAME_VOTES_LOOK_PREDICATE, stored: a column, so the planner knows how few rows are true.
    may_need_look: Mapped[bool] = mapped_column(sa.Computed(FRAME_VOTES_LOOK_PREDICATE, persisted=True))


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        sa.Index("ix_alerts_site_id_created_at", "site_id", "created_at"),
        sa.Index("ix_alerts_status_next_attempt_at", "status", "next_attempt_at"),
        # The review queue's pending alerts and the camera cooldown lookup.
        sa.Index("ix_alerts_site_id_status_created_at", "site_id", "status", "created_at"),
        sa.Index("ix_alerts_camera_id_last_flag_at", "camera_id", "last_flag_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id", ondelete="CASCADE"))
    camera_id: Mapped[int] = mapped_column(sa.ForeignKey("cameras.id", ondelete="CASCADE"))
    frame_id: Mapped[int] = mapped_column(sa.ForeignKey("frames.id"))
    model_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("model_versions.id"))
    stage: Mapped[Stage] = mapped_column(_enum(Stage))
    status: Mapped[AlertStatus] = mapped_column(_enum(AlertStatus))
    idempotency_key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.String(1000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    source: Mapped[AlertSource] = mapped_column(_enum(AlertSource), default=AlertSource.MODEL)
    # The verdict that created, released or suppressed it (undo reverts exactly that).
    decision_id: Mapped[int | None] = mapped_column(sa.ForeignKey("decisions.id", ondelete="SET NULL"))
    # Repeated flags of the same animal within the cooldown attach here instead of alerting again.
    flag_count: Mapped[int] = mapped_column(default=1)
    last_flag_at: Mapped[datetime | None]
    # A held alert nobody decided in time went to the channels unverified (shadow.escalation).
    escalated_at: Mapped[datetime | None]


class AlertFlag(Base):
    """One row per flagged rollout prediction the alert processor has handled: the
    processed marker (unique prediction) and the frame -> alert link."""

    __tablename__ = "alert_flags"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    prediction_id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), sa.ForeignKey("predictions.id", ondelete="CASCADE"),
        unique=True,
    )
    frame_id: Mapped[int] = mapped_column(sa.ForeignKey("frames.id", ondelete="CASCADE"), index=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id", ondelete="CASCADE"))
    alert_id: Mapped[int | None] = mapped_column(sa.ForeignKey("alerts.id", ondelete="SET NULL"), index=True)
    stage: Mapped[Stage] = mapped_column(_enum(Stage))
    outcome: Mapped[FlagOutcome] = mapped_column(_enum(FlagOutcome))
    processed_at: Mapped[datetime] = mapped_column(default=utcnow)


class AlertChannel(Base):
    """Where alerts go: a webhook (JSON POST in ``format``), e-mail or the log. ``sites`` empty means all sites."""

    __tablename__ = "alert_channels"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    kind: Mapped[ChannelKind] = mapped_column(_enum(ChannelKind))
    url: Mapped[str | None] = mapped_column(sa.String(1000))  # may carry a token: shown redacted
    format: Mapped[WebhookFormat] = mapped_column(
        _enum(WebhookFormat), default=WebhookFormat.BEARWATCH, server_default=WebhookFormat.BEARWATCH.value
    )
    sites: Mapped[list[str]] = mapped_column(default=list)
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AlertDelivery(Base):
    """The outbox: each channel gets each alert exactly once (unique alert, channel)."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("alert_id", "channel_id"),
        sa.Index("ix_alert_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(sa.ForeignKey("alerts.id", ondelete="CASCADE"))
    channel_id: Mapped[int] = mapped_column(sa.ForeignKey("alert_channels.id", ondelete="CASCADE"))
    status: Mapped[DeliveryStatus] = mapped_column(_enum(DeliveryStatus), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_until: Mapped[datetime | None]  # a sender holds it until then
    last_error: Mapped[str | None] = mapped_column(sa.String(1000))
    delivered_at: Mapped[datetime | None]


class StageChange(Base):
    """The rollout ledger: one row per stage change, never updated."""

    __tablename__ = "stage_changes"
    __table_args__ = (sa.Index("ix_stage_changes_site_id_changed_at", "site_id", "changed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id", ondelete="CASCADE"))
    from_stage: Mapped[Stage | None] = mapped_column(_enum(Stage))
    to_stage: Mapped[Stage] = mapped_column(_enum(Stage))
    actor: Mapped[str] = mapped_column(sa.String(100))  # a user name, or "guard"
    reason: Mapped[str] = mapped_column(sa.String(2000))
    model_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("model_versions.id"))
    thresholds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProcessState(str, enum.Enum):
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"  # the supervisor gave up restarting it


class Heartbeat(Base):
    """Each bearwatch process's liveness and progress, for the supervisor's stuck
    check and `bearwatch status`; one row per process (part, host, pid)."""

    __tablename__ = "heartbeats"
    __table_args__ = (sa.UniqueConstraint("part", "host", "pid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    part: Mapped[str] = mapped_column(sa.String(50))  # ingest, inference, shadow, dashboard
    host: Mapped[str] = mapped_column(sa.String(255))
    pid: Mapped[int]
    state: Mapped[ProcessState] = mapped_column(_enum(ProcessState), default=ProcessState.RUNNING)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(default=utcnow)  # alive
    progress_at: Mapped[datetime] = mapped_column(default=utcnow)  # last unit of work done
    waiting: Mapped[int] = mapped_column(default=0)  # work it sees waiting
    detail: Mapped[str | None] = mapped_column(sa.String(1000))


class ShadowCursor(Base):
    """How far a shadow-loop job has read an append-only table, so that each pass reads
    only what is new instead of the whole history. Every row with id <= ``position`` is
    handled; ``candidate`` is the highest id seen at ``candidate_at`` and becomes the
    position once it is older than the job's settle time (rows whose transaction was
    still open when the candidate was taken have committed by then)."""

    __tablename__ = "shadow_cursors"

    name: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    position: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    candidate: Mapped[int | None] = mapped_column(sa.BigInteger)
    candidate_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DriftEvent(Base):
    """One drift check of a site: the windows compared, every metric's numbers, and
    whether it raised an alarm (shadow.drift). Never updated."""

    __tablename__ = "drift_events"
    __table_args__ = (sa.Index("ix_drift_events_site_id_created_at", "site_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id", ondelete="CASCADE"))
    model_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("model_versions.id"))
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    reference_start: Mapped[datetime]
    reference_end: Mapped[datetime]
    # metric name -> {value, reference, statistic, p_value, threshold, alarm, ...}
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    thresholds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    alarm: Mapped[bool] = mapped_column(default=False)
    detail: Mapped[str] = mapped_column(sa.String(2000), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DashboardSession(Base):
    """A password login to the dashboard (bearwatch.logins). The browser holds a signed
    cookie with a random token; the row holds only the token's sha256. The login ends when
    it is revoked (logout, idle tab), when the user's session_epoch moves on (password
    change, disable), when it has been idle or has lasted past the dashboard's limits, or
    with the user (removed: cascade)."""

    __tablename__ = "dashboard_sessions"
    __table_args__ = (sa.Index("ix_dashboard_sessions_user_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    epoch: Mapped[int]  # the user's session_epoch at login
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)  # refreshed at most once a minute
    revoked_at: Mapped[datetime | None]
    client_address: Mapped[str] = mapped_column(sa.String(150))  # as the login throttle saw it


class PredictionHeatmap(Base):
    """Where the model looked in a frame it flagged: a class-activation map (Grad-CAM on
    a feature map of the learner's body) stored as a small grid of uint8 cells,
    row-major, 255 the strongest (inference.heatmap). Only flagged predictions get one;
    it goes with its prediction (and so with its frame)."""

    __tablename__ = "prediction_heatmaps"

    prediction_id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        sa.ForeignKey("predictions.id", ondelete="CASCADE"), primary_key=True, autoincrement=False,
    )
    method: Mapped[str] = mapped_column(sa.String(16))  # "grad-cam"
    grid_rows: Mapped[int]
    grid_cols: Mapped[int]
    cells: Mapped[bytes] = mapped_column(sa.LargeBinary)  # grid_rows * grid_cols uint8
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DriftKeptWindow(Base):
    """What a drift pass read and a later one reads again instead of the frames: a closed
    reference window (kind "closed") or a closed clock hour of a current window (kind
    "hour"), its counts and sample as numpy arrays (np.save, no pickle) in ``payload``
    (shadow.drift_windows). ``key``: a digest of what the read depends on (kind, site,
    model, span, seed, sample sizes, the site's streaming cameras then); ``format``: the
    payload's layout, a row of another is ignored. Written and pruned by the drift pass;
    goes with its site (migration 0019)."""

    __tablename__ = "drift_kept_windows"
    __table_args__ = (sa.Index("ix_drift_kept_windows_window_end", "window_end"),)  # retention of the hours

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)  # sha256 hex
    kind: Mapped[str] = mapped_column(sa.String(8))
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id", ondelete="CASCADE"))
    model_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("model_versions.id", ondelete="CASCADE"))
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    format: Mapped[int]
    payload: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CameraHour(Base):
    """A closed clock hour of a camera with usable frames (shadow.periods.usable_frame):
    how many, and how many of them night frames. The alert-rate exposures (the guard's
    and the gates' camera-hours, shadow.alert_rates) read closed hours from here, so a
    restarted process does not read a baseline's frames again, and frame retention does
    not take a baseline's hours away with its frames. Written by the shadow loop's
    rollup (shadow.camera_hours) up to its cursor (``shadow_cursors`` "camera_hours");
    goes with its camera (migration 0021)."""

    __tablename__ = "camera_hours"

    camera_id: Mapped[int] = mapped_column(sa.ForeignKey("cameras.id", ondelete="CASCADE"), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)  # the hour's start (UTC)
    frames: Mapped[int]
    night_frames: Mapped[int]
