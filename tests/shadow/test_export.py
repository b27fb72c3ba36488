"""`bearwatch export-dataset`: reviewed frames in fastai's parent_label layout, read back by fastai."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Role, Stage, Verdict
from shadow.export import frame_label
from shadow.verdicts import submit_verdict
from tests.conftest import run_cli
from tests.shadow.helpers import add_frame, add_user, at, make_park, write_jpeg


@pytest.mark.parametrize(
    ("verdicts", "flagged", "expected"),
    [
        ([Verdict.CONFIRM], True, (True, "bear_flagged")),
        ([Verdict.DISMISS], True, (False, "false_alarm")),
        ([Verdict.MISSED], False, (True, "missed")),
        ([Verdict.DISMISS], False, (False, "no_bear")),
        ([Verdict.CONFIRM, Verdict.CONFIRM], True, (True, "bear_flagged")),
        ([Verdict.CONFIRM, Verdict.DISMISS], True, (None, "disagreement")),
    ],
)
def test_frame_label(verdicts: list[Verdict], flagged: bool, expected: tuple[bool | None, str]) -> None:
    assert frame_label(verdicts, flagged) == expected


def test_export_reads_back_with_fastai(cli_db: sessionmaker[Session], data_env: dict[str, str], tmp_path: Path) -> None:
    from fastai.vision.all import ImageDataLoaders, Resize, get_image_files, parent_label

    frames_dir = Path(data_env["BEARWATCH_DATA_DIR"]) / "frames"
    park = make_park(cli_db, stage=Stage.MANUAL)
    ana, ben = add_user(cli_db, "ana", Role.RANGER), add_user(cli_db, "ben", Role.RANGER)
    kinds = {"hit": (0.9, Verdict.CONFIRM), "false_alarm": (0.8, Verdict.DISMISS), "missed": (0.1, Verdict.MISSED),
             "quiet": (0.05, Verdict.DISMISS)}
    expected: dict[int, str] = {}
    for i, (kind, (score, verdict)) in enumerate(list(kinds.items()) * 2):
        rel = f"{park.site_id}/{park.cameras[0]}/{kind}-{i}.jpg"
        write_jpeg(frames_dir / rel, seed=i)
        frame = add_frame(cli_db, park.cameras[0], at(i), model_id=park.model_id, score=score, path=rel)
        submit_verdict(cli_db, frame, ana, verdict, at(100 + i))
        expected[frame] = "bear" if verdict in (Verdict.CONFIRM, Verdict.MISSED) else "not_bear"
    disputed = add_frame(cli_db, park.cameras[1], at(50), model_id=park.model_id, score=0.7, path="x/disputed.jpg")
    write_jpeg(frames_dir / "x/disputed.jpg", seed=99)
    submit_verdict(cli_db, disputed, ana, Verdict.CONFIRM, at(200))
    submit_verdict(cli_db, disputed, ben, Verdict.DISMISS, at(201))
    unreviewed = add_frame(cli_db, park.cameras[1], at(60), model_id=park.model_id, score=0.9)

    out = tmp_path / "dataset"
    result = run_cli("export-dataset", str(out), "--site", "north", env=data_env)
    assert result.returncode == 0, result.stderr
    assert "exported 8 frames" in result.stdout and "bear 4, not_bear 4" in result.stdout
    assert f"frame {disputed}: rangers disagree" in result.stderr
    # 9 reviewed frames (one disputed, skipped); output is a pipe: progress as a line, no bar.
    assert "exporting reviewed frames: 9/9 frames (100%), elapsed " in result.stderr

    files = get_image_files(out)
    assert {int(f.stem): parent_label(f) for f in files} == expected
    assert unreviewed not in {int(f.stem) for f in files}
    with (out / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["kind"] for r in rows) == sorted(["bear_flagged", "false_alarm", "missed", "no_bear"] * 2)
    assert all((out / r["path"]).is_file() and r["path"].startswith(r["label"] + "/") for r in rows)

    dls = ImageDataLoaders.from_folder(out, valid_pct=0.25, seed=0, item_tfms=Resize(32), bs=2, num_workers=0)
    assert sorted(dls.vocab) == ["bear", "not_bear"]
    assert len(dls.train_ds) + len(dls.valid_ds) == 8

    again = run_cli("export-dataset", str(out), env=data_env)
    assert again.returncode == 2 and "not empty" in again.stderr and "--force" in again.stderr
    assert run_cli("export-dataset", str(out), "--force", env=data_env).returncode == 0
