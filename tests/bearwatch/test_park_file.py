"""The park file: strict validation with every problem located."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bearwatch.errors import ConfigError
from bearwatch.park_file import check_config_text, load_config

GOOD = """\
sites:
  - name: north
    thresholds:
      min_reviewed: 200
    cameras:
      - name: trailhead
        source: rtsp://${CAM_USER}:${CAM_PASS}@10.0.0.5/stream
        interval: 5
models: []
"""

BAD = """\
sites:
  - name: north
    cameras:
      - name: trailhead
        source: rtsp://10.0.0.5/stream
        interval: -3
        colour: red
"""


def test_good_file_loads_with_defaults_filled_in() -> None:
    config, problems = check_config_text(GOOD)
    assert problems == []
    assert config is not None
    site = config.sites[0]
    assert site.thresholds.min_reviewed == 200
    assert site.thresholds.min_recall_lower == 0.90  # design.md default kept
    assert site.cameras[0].interval == 5


def test_unknown_key_and_bad_value_are_both_named_with_lines() -> None:
    config, problems = check_config_text(BAD)
    assert config is None
    by_where = {p.where: p for p in problems}
    assert by_where["sites[0].cameras[0].colour"].message == "unknown key"
    assert by_where["sites[0].cameras[0].colour"].line == 7
    assert "greater than 0" in by_where["sites[0].cameras[0].interval"].message
    assert by_where["sites[0].cameras[0].interval"].line == 6


def test_duplicate_camera_names_and_yaml_errors_are_reported() -> None:
    dupes = "sites:\n  - name: a\n    cameras:\n      - {name: c, source: x}\n      - {name: c, source: y}\n"
    _, problems = check_config_text(dupes)
    assert any("unique" in p.message and "c" in p.message for p in problems)
    _, problems = check_config_text("sites: [unclosed\n")
    assert problems and "not valid YAML" in problems[0].message and problems[0].line == 2


def test_load_config_raises_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "park.yaml"
    path.write_text(BAD)
    with pytest.raises(ConfigError, match="colour: unknown key"):
        load_config(path)


def test_cli_validate_names_both_problems_and_exits_non_zero(tmp_path: Path) -> None:
    path = tmp_path / "park.yaml"
    path.write_text(BAD)
    result = subprocess.run(
        [sys.executable, "-m", "bearwatch", "config", "validate", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "sites[0].cameras[0].colour: unknown key" in result.stderr
    assert "sites[0].cameras[0].interval" in result.stderr
    path.write_text(GOOD)
    result = subprocess.run(
        [sys.executable, "-m", "bearwatch", "config", "validate", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "ok (1 sites, 1 cameras" in result.stdout


def test_a_park_file_that_would_be_costly_to_parse_is_refused_before_parsing() -> None:
    """Billion laughs (nested aliases) and a huge file are refused at once, with a reason."""
    import time

    laughs = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for level in "bcdefghi":
        prev = chr(ord(level) - 1)
        laughs += f"{level}: &{level} [{', '.join(['*' + prev] * 9)}]\n"
    started = time.process_time()
    config, problems = check_config_text(laughs)
    assert config is None and "more than 20 YAML aliases" in problems[0].message and problems[0].line == 4  # the 21st alias
    huge = "sites:\n" + "".join(f"  - name: s{i}\n" for i in range(120_000))
    config, problems = check_config_text(huge)
    assert config is None and "at most 1,048,576" in problems[0].message
    assert time.process_time() - started < 5  # refused before parsing, not after minutes


def test_duplicate_keys_and_an_inconsistent_guard_band_are_named_with_lines() -> None:
    dupes = "sites:\n  - name: north\n    thresholds:\n      audit_rate: 0.5\n      audit_rate: 0.05\n"
    config, problems = check_config_text(dupes)
    assert config is None
    assert [(p.where, p.line, p.message) for p in problems] == [
        ("sites[0].thresholds.audit_rate", 5, "duplicate key (first on line 4)")]
    band = "sites:\n  - name: north\n    thresholds:\n      alert_ratio_low: 3\n      alert_ratio_high: 1\n"
    config, problems = check_config_text(band)
    assert config is None and problems[0].where == "sites[0].thresholds" and problems[0].line == 3
    assert "alert-rate band must hold 1" in problems[0].message
