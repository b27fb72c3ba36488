"""Synthetic demo footage and a demo model trained on it."""
