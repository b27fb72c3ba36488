"""Ingest metrics (prometheus_client). Labels are site and camera ids, never URLs.

A worker exports the per-camera gauges only for the cameras it holds now:
:func:`forget_camera` removes them when a camera is handed to another worker, disabled
or released, so a stale ``bearwatch_camera_up`` never outlives the lease."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SLOTS = Counter(
    "bearwatch_ingest_slots_total",
    "Camera sampling slots by outcome (stored, failed, empty, black, grey, frozen, wrong_size, too_large, outside_folder, no_new, backoff, lease_lost, no_database, missed)",
    ["site", "camera", "outcome"],
)
FRAMES_CAPTURED = Counter(
    "bearwatch_frames_captured_total", "Frames stored (file and row): the slots whose outcome was stored", ["site", "camera"],
)
CAPTURE_SECONDS = Histogram(
    "bearwatch_capture_duration_seconds",
    "Time to take one frame from a camera (open, read, release), by site",
    ["site"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
CAMERA_UP = Gauge(
    "bearwatch_camera_up", "1 when the camera's last sample was stored, else 0 (cameras this worker holds)", ["site", "camera"]
)
LAST_FRAME = Gauge(
    "bearwatch_camera_last_frame_timestamp_seconds", "Unix time of the camera's last stored frame", ["site", "camera"]
)
SLOTS_MISSED = Counter(
    "bearwatch_ingest_slots_missed_total",
    "Slots with no sample (outcome missed in bearwatch_ingest_slots_total), by why: capture_slower_than_interval "
    "(the previous sample still ran and its capture got a frame: the camera is slower than its interval), "
    "capture_failing (the previous sample still ran and its capture failed: a stalled or dead camera), "
    "late (the scheduler ran the slot too late: the worker is overloaded)",
    ["site", "camera", "reason"],
)
PERSISTENT_READER = Gauge(
    "bearwatch_camera_persistent_reader",
    "1 when the camera is sampled by a persistent reader (its open-grab-release took about its interval), "
    "0 when opened per sample (cameras this worker holds)",
    ["site", "camera"],
)
RECONNECTS = Counter(
    "bearwatch_camera_reconnects_total", "Attempts to reach a camera again after a failed sample", ["site", "camera"]
)


def forget_camera(site: str, camera: str) -> None:
    """Stop exporting the camera's gauges (this worker no longer holds it); counters stay."""
    for gauge in (CAMERA_UP, LAST_FRAME, PERSISTENT_READER):
        try:
            gauge.remove(site, camera)
        except KeyError:  # never set (no sample yet)
            pass
