"""Plain query functions behind the dashboard pages, one module per page.

Each takes a SQLAlchemy ``Session`` (and ``now`` where time matters) and returns frozen
dataclasses in tuples; no Streamlit here, so they are tested and benchmarked directly.
"""

from dashboard.queries.frames import ScoredFrame, latest_scored_frames, site_names

__all__ = ["ScoredFrame", "latest_scored_frames", "site_names"]
