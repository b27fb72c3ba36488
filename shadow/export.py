"""A training set from ranger verdicts, in fastai's parent_label layout:
DIR/<label>/<frame id>.jpg plus DIR/manifest.csv. Misses (bears the model did not flag)
and false alarms (dismissed flags) are in it: they are what the next model must learn.

Labels: a confirm or a missed report means the positive class, a dismiss the other class;
names come from the site's rollout model (positive class; the other class of a two-class
model), else 'bear' / 'not_bear'. Frames whose rangers disagree are left out and listed.
"""

from __future__ import annotations

import csv
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.errors import BearwatchError
from bearwatch.schema import Camera, Decision, Frame, ModelVersion, Prediction, Site, Verdict

POSITIVE_DEFAULT, NEGATIVE_DEFAULT = "bear", "not_bear"
MANIFEST_FIELDS = ["path", "label", "frame_id", "site", "camera", "captured_at", "kind", "verdicts", "model_score", "model_flagged"]


@dataclass
class ExportReport:
    written: int = 0
    per_label: Counter[str] = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)
    manifest: Path | None = None


def label_names(model: ModelVersion | None) -> tuple[str, str]:
    """(positive, negative) folder names for a site's rollout model."""
    if model is None or not model.positive_classes:
        return POSITIVE_DEFAULT, NEGATIVE_DEFAULT
    positive = model.positive_classes[0]
    others = [c for c in model.classes if c not in model.positive_classes]
    return positive, others[0] if len(others) == 1 else NEGATIVE_DEFAULT


def frame_label(verdicts: list[Verdict], flagged: bool) -> tuple[bool | None, str]:
    """(is a bear, kind) from the verdicts on one frame; None when rangers disagree."""
    positive = {v for v in verdicts if v in (Verdict.CONFIRM, Verdict.MISSED)}
    negative = {v for v in verdicts if v is Verdict.DISMISS}
    if positive and negative:
        return None, "disagreement"
    if positive:
        return True, "bear_flagged" if flagged else "missed"
    return False, "false_alarm" if flagged else "no_bear"


def _reviewed(query: sa.Select, site: str | None) -> sa.Select:
    query = (
        query.join(Frame, Frame.id == Decision.frame_id)
        .join(Camera, Camera.id == Frame.camera_id)
        .join(Site, Site.id == Camera.site_id)
    )
    return query if site is None else query.where(Site.name == site)


def count_reviewed(session: Session, site: str | None = None) -> int:
    """How many frames export_dataset will go through (those with a verdict)."""
    return session.scalar(_reviewed(sa.select(sa.func.count(sa.distinct(Decision.frame_id))), site)) or 0


def _no_progress(_n: int) -> None:
    pass


def export_dataset(
    session: Session, frames_dir: Path, out_dir: Path, *, site: str | None = None, force: bool = False,
    progress: Callable[[int], None] = _no_progress,
) -> ExportReport:
    """Write each reviewed frame under its label; ``progress(1)`` after each frame."""
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise BearwatchError(f"{out_dir} is not empty; choose an empty directory or pass --force to write into it")
    query = _reviewed(sa.select(Decision.frame_id, Decision.verdict, Frame, Camera.name, Site), site).order_by(
        Decision.frame_id, Decision.id
    )
    verdicts: dict[int, list[Verdict]] = defaultdict(list)
    info: dict[int, tuple[Frame, str, Site]] = {}
    for frame_id, verdict, frame, camera, s in session.execute(query):
        verdicts[frame_id].append(verdict)
        info[frame_id] = (frame, camera, s)
    models: dict[int, ModelVersion | None] = {}
    report = ExportReport()
    out_dir.mkdir(parents=True, exist_ok=True)
    report.manifest = out_dir / "manifest.csv"
    with report.manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        for frame_id, frame_verdicts in verdicts.items():
            progress(1)
            frame, camera, s = info[frame_id]
            key = s.rollout_model_id or 0
            if key not in models:
                models[key] = session.get(ModelVersion, key) if key else None
            positive, negative = label_names(models[key])
            prediction = session.scalar(sa.select(Prediction).where(
                Prediction.frame_id == frame_id, Prediction.model_version_id == s.rollout_model_id)) if s.rollout_model_id else None
            flagged = bool(prediction is not None and prediction.flagged)
            is_bear, kind = frame_label(frame_verdicts, flagged)
            if is_bear is None:
                report.skipped.append(f"frame {frame_id}: rangers disagree ({', '.join(v.value for v in frame_verdicts)})")
                continue
            source = frames_dir / frame.path
            if not source.is_file():
                report.skipped.append(f"frame {frame_id}: its file {frame.path} is missing from the frame store")
                continue
            label = positive if is_bear else negative
            target = out_dir / label / f"{frame_id}{source.suffix or '.jpg'}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            writer.writerow({
                "path": target.relative_to(out_dir).as_posix(), "label": label, "frame_id": frame_id, "site": s.name,
                "camera": camera, "captured_at": frame.captured_at.isoformat(), "kind": kind,
                "verdicts": ";".join(v.value for v in frame_verdicts),
                "model_score": "" if prediction is None else f"{prediction.positive_score:.6f}", "model_flagged": flagged,
            })
            report.written += 1
            report.per_label[label] += 1
    return report
