"""Prometheus metrics of the shadow part (labels are site and channel ids, never names or URLs)."""

from prometheus_client import Counter, Gauge

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

# Measurements: the guard, drift, the alert-rate ratio.
GUARD_DEMOTIONS = Counter(
    "bearwatch_guard_demotions_total", "Sites the guard demoted to manual, by cause",
    ["site", "cause"],  # cause: alert_rate, drift, model_file, cameras_dark
)
DRIFT_CHECKS = Counter("bearwatch_drift_checks_total", "Drift checks stored, by whether they alarmed", ["site", "alarm"])
DRIFT_ALARM = Gauge("bearwatch_drift_alarm", "1 when the site's last drift check raised an alarm", ["site"])
ALERT_RATE_RATIO = Gauge(
    "bearwatch_alert_rate_ratio", "Alert rate since the site left manual over its manual baseline (last guard run)", ["site"]
)
ALERT_RATE_BREACH = Gauge(
    "bearwatch_alert_rate_breach",
    "1 when the alert-rate ratio is significantly outside the site's band at the last guard run", ["site"],
)
