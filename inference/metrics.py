"""Prometheus metrics of the inference worker."""

from prometheus_client import Counter, Gauge, Histogram

FRAMES_SCORED = Counter("bearwatch_frames_scored_total", "Frames scored, by model", ["model"])
SCORING_FAILURES = Counter(
    "bearwatch_inference_failures_total", "Frames or models that could not be used", ["reason"]
)
BATCH_SIZE = Histogram(
    "bearwatch_inference_batch_size", "Frames per scored batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
)
BATCH_SECONDS = Histogram(
    "bearwatch_inference_batch_seconds", "Claim-to-commit time of one batch",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
QUEUE_DEPTH = Gauge("bearwatch_inference_queue_depth", "Frames waiting to be scored")
OLDEST_UNSCORED_AGE = Gauge(
    "bearwatch_inference_oldest_unscored_age_seconds", "Age of the oldest frame waiting to be scored"
)
