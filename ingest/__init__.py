"""ingest: camera sources, frame sampling on a schedule, the frame store, camera health."""
