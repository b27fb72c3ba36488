"""Prometheus metrics of the shadow part. The site label is the site id (as in ingest and the
alert rules), a channel is labelled by its name; never URLs."""

from typing import Any

import sqlalchemy as sa
from prometheus_client import Counter, Gauge
from sqlalchemy.orm import Session

# Operations: alerts, deliveries, the outbox, verdicts.
ALERTS = Counter(
    "bearwatch_alerts_total", "Alerts entering a status (pending, queued, sent, suppressed, dead)",
    ["site", "stage", "status"],
)
DELIVERIES = Counter(
    "bearwatch_alert_deliveries_total", "Delivery attempts per channel (delivered, retry, dead)",
    ["channel", "outcome"],
)
OUTBOX_DEPTH = Gauge("bearwatch_alert_outbox_depth", "Alert deliveries waiting to be delivered")
VERDICTS = Counter("bearwatch_verdicts_total", "Ranger verdicts recorded", ["site", "verdict"])
ESCALATIONS = Counter(
    "bearwatch_held_alert_escalations_total",
    "Held alerts no ranger decided in time, sent to the channels unverified (mode: notify, send)", ["site", "mode"],
)

# Measurements: the guard, drift, the alert-rate ratio.
GUARD_DEMOTIONS = Counter(
    "bearwatch_guard_demotions_total", "Sites the guard demoted to manual, by cause",
    ["site", "cause"],  # cause: alert_rate, drift, model_file, cameras_dark
)
GUARD_FAILURES = Counter("bearwatch_guard_failures_total", "Guard checks of a site that failed (the other sites were checked)",
                         ["site"])
DRIFT_CHECKS = Counter("bearwatch_drift_checks_total", "Drift checks stored, by whether they alarmed", ["site", "alarm"])
DRIFT_ALARM = Gauge("bearwatch_drift_alarm", "1 when the site's last drift check raised an alarm", ["site"])
DRIFT_KEPT_IGNORED = Counter(
    "bearwatch_drift_kept_ignored_total",
    "Kept drift windows or hours ignored (another format, an unreadable payload): read from the frames again",
)
ALERT_RATE_RATIO = Gauge(
    "bearwatch_alert_rate_ratio",
    "Alert-episode rate since the site left manual over its manual baseline (last guard run; shadow.episodes)", ["site"],
)
ALERT_RATE_BREACH = Gauge(
    "bearwatch_alert_rate_breach",
    "1 when the alert-rate ratio is significantly outside the site's band at the last guard run", ["site"],
)

# The shadow loop's jobs (shadow.loop), by name in the label ``task`` (``job`` is
# Prometheus's own target label: a metric's ``job`` would be renamed ``exported_job``): a
# lane that has not finished a pass for too long shows as an old last success or an old
# running-since (deploy/prometheus: BearwatchShadowJobBehind).
JOB_LAST_SUCCESS = Gauge(
    "bearwatch_shadow_job_last_success_timestamp_seconds", "When the shadow-loop job last finished without error", ["task"],
)
JOB_RUNNING_SINCE = Gauge(
    "bearwatch_shadow_job_running_since_timestamp_seconds", "When the shadow-loop job's run in flight started; 0: idle",
    ["task"],
)
JOB_SECONDS = Gauge("bearwatch_shadow_job_last_duration_seconds", "How long the job's last successful run took", ["task"])
JOB_FAILURES = Counter("bearwatch_shadow_job_failures_total", "Shadow-loop job runs that failed (retried when next due)",
                       ["task"])


# Counters of things written to the database move only when the write commits: a
# transaction that rolls back (a lost race, a lock timeout, a crash) must not count.
_ON_COMMIT = "bearwatch_counts_on_commit"


def count_on_commit(session: Session, counter: Any) -> None:
    """``counter.inc()`` once ``session``'s current transaction commits (a labelled child)."""
    session.info.setdefault(_ON_COMMIT, []).append(counter)


@sa.event.listens_for(Session, "after_commit")
def _count_committed(session: Session) -> None:
    for counter in session.info.pop(_ON_COMMIT, []):
        counter.inc()


@sa.event.listens_for(Session, "after_rollback")
def _drop_rolled_back(session: Session) -> None:
    session.info.pop(_ON_COMMIT, None)
