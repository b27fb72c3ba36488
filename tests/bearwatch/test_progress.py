"""Long work reports progress as lines (issue 16 item 14): logs and pipes get no bar."""

from __future__ import annotations

from pathlib import Path

from bearwatch.demo.model import train_demo_model
from bearwatch.humanize import duration_text
from bearwatch.progress import ProgressLog


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_at_intervals_with_an_estimate_of_the_time_left() -> None:
    clock, lines = FakeClock(), []
    log = ProgressLog("replaying frames", 400, unit="frames", echo=lines.append, every_s=10, clock=clock)
    for _ in range(4):
        clock.now += 3  # 50 frames every 3 s
        log.advance(50)
    assert lines == ["replaying frames: 200/400 frames (50%), elapsed 12 s, about 12 s left"]  # the first step past 10 s
    lines.clear()
    clock = FakeClock()
    log = ProgressLog("training", 1000, unit="batches", echo=lines.append, every_s=10, clock=clock)
    clock.now += 60
    log.advance(250)
    clock.now += 5
    log.advance(10)  # within the interval: no line
    log.finish()
    log.finish()  # once
    assert lines == [
        "training: 250/1000 batches (25%), elapsed 1 min, about 3 min left",
        "training: 260/1000 batches (26%), elapsed 1 min, stopped",
    ]


def test_durations_read_as_people_say_them() -> None:
    assert [duration_text(s) for s in (0, 45, 60, 150, 7200, 9000, 86_400 * 3 + 3600 * 4)] == [
        "0 s", "45 s", "1 min", "2 min", "2 h", "2 h 30 min", "3 d 4 h"
    ]


def test_training_the_demo_model_reports_images_epochs_losses_and_the_end(tmp_path: Path) -> None:
    lines: list[str] = []
    train_demo_model(tmp_path / "m.pkl", per_class=8, epochs=2, image_size=32, echo=lines.append)
    assert lines[0].startswith("rendering training images: 24/24 images (100%)") and lines[0].endswith(", done")
    epochs = [line for line in lines if " done, train_loss " in line]
    assert [e.split(" done,")[0] for e in epochs] == [
        "training the demo model: epoch 1/2", "training the demo model: epoch 2/2"
    ]
    assert all("valid_loss" in e and "accuracy" in e for e in epochs)
    assert lines[-1].startswith("training the demo model: ") and lines[-1].endswith(", done")
