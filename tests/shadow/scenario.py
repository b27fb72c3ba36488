"""Shared set-up for the scenario tests: a simulated site on a real database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bearwatch.park_file import Thresholds

START = datetime(2026, 5, 1, tzinfo=timezone.utc)
DAY = timedelta(days=1)

# Small numbers so a scenario runs in seconds (two cameras, a frame every 15 minutes): the
# cooldown joins consecutive frames into one alert, and every unflagged frame is audited
# (as on the demo's meadow), so a week's ~40 visits can show a sighting recall of 0.8 (24
# clean sightings do at a full audit; at half, 46 would be needed: shadow.gates.sightings_to_pass).
SMALL = Thresholds(
    min_reviewed=100, min_confirmed_bears=20, min_recall_lower=0.8, min_precision_lower=0.5,
    min_alerts_reviewed=30, max_missed_bears=8, alert_cooldown_s=900, audit_rate=1.0, audit_near_rate=1.0,
)
# The same with half of the unflagged frames audited: some frames stay unreviewed (what
# retention may delete) and misses are found by follow-ups or reported outside the audit.
SAMPLED = SMALL.model_copy(update={"audit_rate": 0.5, "audit_near_rate": 0.5})
