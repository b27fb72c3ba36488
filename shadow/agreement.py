"""How well the model agrees with the rangers: confusion matrix, precision and recall
with Wilson intervals, the misses, and inter-ranger kappa (design.md sections 2 and 5).

Truth of a reviewed frame (the rangers' verdicts are the ground truth):
- each verdict says "bear" (CONFIRM, MISSED) or "not bear" (DISMISS), whatever the model
  did: a DISMISS on an unflagged audit frame is a true negative, a MISSED report on an
  unflagged frame a false negative, a CONFIRM on a flagged frame a true positive;
- when every reviewer of the frame says the same, that is its truth;
- when reviewers disagree the frame is *disputed*: it is left out of the confusion
  matrix (counted and listed separately) and shows up in the inter-ranger kappa.
The model's answer is its prediction's ``flagged`` for the model asked about (the
site's rollout model by default). Frames without a prediction of that model are skipped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.schema import Camera, Decision, Frame, Prediction, Site, Verdict
from shadow.stats import Interval, cohen_kappa, wilson_interval
from shadow.truth import Truth, says_bear, truth_of


@dataclass(frozen=True)
class ReviewedFrame:
    frame_id: int
    camera_id: int
    captured_at: datetime
    flagged: bool
    positive_score: float
    verdicts: tuple[tuple[int, Verdict], ...]  # (reviewer id, verdict), in decision order


@dataclass(frozen=True)
class Confusion:
    tp: int  # flagged, bear
    fp: int  # flagged, not bear
    fn: int  # not flagged, bear (a miss)
    tn: int  # not flagged, not bear
    disputed: int  # rangers disagree: not counted above

    @property
    def reviewed(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def bears(self) -> int:
        return self.tp + self.fn


@dataclass(frozen=True)
class Rate:
    """A proportion with its Wilson 95% interval (None values: nothing to measure)."""

    successes: int
    n: int
    value: float | None
    ci: Interval | None


def rate(successes: int, n: int) -> Rate:
    return Rate(successes, n, successes / n if n else None, wilson_interval(successes, n))


@dataclass(frozen=True)
class AgreementReport:
    confusion: Confusion
    precision: Rate  # tp / (tp + fp)
    recall: Rate  # tp / (tp + fn)
    misses: tuple[ReviewedFrame, ...]  # the false negatives, oldest first
    disputed: tuple[ReviewedFrame, ...]
    kappa: float | None  # between the first two reviewers, on frames with two or more
    kappa_frames: int


def agreement_of(frames: Iterable[ReviewedFrame]) -> AgreementReport:
    """The pure part: the confusion matrix and its rates from reviewed frames."""
    tp = fp = fn = tn = 0
    misses: list[ReviewedFrame] = []
    disputed: list[ReviewedFrame] = []
    first: list[bool] = []
    second: list[bool] = []
    for frame in sorted(frames, key=lambda f: (f.captured_at, f.frame_id)):
        if len(frame.verdicts) >= 2:
            first.append(says_bear(frame.verdicts[0][1]))
            second.append(says_bear(frame.verdicts[1][1]))
        truth = truth_of(frame.verdicts)
        if truth is Truth.DISPUTED:
            disputed.append(frame)
        elif truth is Truth.BEAR:
            if frame.flagged:
                tp += 1
            else:
                fn += 1
                misses.append(frame)
        elif frame.flagged:
            fp += 1
        else:
            tn += 1
    return AgreementReport(
        confusion=Confusion(tp, fp, fn, tn, len(disputed)),
        precision=rate(tp, tp + fp),
        recall=rate(tp, tp + fn),
        misses=tuple(misses),
        disputed=tuple(disputed),
        kappa=cohen_kappa(first, second),
        kappa_frames=len(first),
    )


def _reviewed_rows(start: datetime, end: datetime) -> sa.Select:
    """(site id, model version id, then the columns ``_reviewed`` reads) of every verdict
    on a frame captured in [start, end) that has a prediction, ordered by frame, then verdict."""
    return (
        sa.select(
            Camera.site_id, Prediction.model_version_id, Frame.id, Frame.camera_id, Frame.captured_at,
            Prediction.flagged, Prediction.positive_score, Decision.reviewer_id, Decision.verdict,
        )
        .join(Camera, Camera.id == Frame.camera_id)
        .join(Decision, Decision.frame_id == Frame.id)
        .join(Prediction, Prediction.frame_id == Frame.id)
        .where(Frame.captured_at >= start, Frame.captured_at < end)
        .order_by(Frame.id, Decision.decided_at, Decision.id)
    )


def reviewed_frames(
    session: Session, site: Site, model_version_id: int, start: datetime, end: datetime
) -> list[ReviewedFrame]:
    """Frames of ``site`` captured in [start, end) with at least one verdict and a
    prediction of ``model_version_id``."""
    rows = session.execute(
        _reviewed_rows(start, end).where(Camera.site_id == site.id, Prediction.model_version_id == model_version_id)
    ).all()
    return _reviewed([row[2:] for row in rows])


def reviewed_frames_by_pair(session: Session, start: datetime, end: datetime) -> dict[tuple[int, int], list[ReviewedFrame]]:
    """``reviewed_frames`` of every (site id, model version id) with predictions on frames
    reviewed in [start, end), in one query: one per pair reads the window's frames again
    for each pair (1.5 s for 20 sites at 1M frames on PostgreSQL)."""
    by_pair: dict[tuple[int, int], list[Any]] = defaultdict(list)
    for site_id, model_id, *row in session.execute(_reviewed_rows(start, end)):
        by_pair[(site_id, model_id)].append(row)
    return {pair: _reviewed(pair_rows) for pair, pair_rows in by_pair.items()}


def _reviewed(rows: Sequence[Any]) -> list[ReviewedFrame]:
    """Rows of (frame id, camera id, captured at, flagged, score, reviewer id, verdict),
    ordered by frame and then verdict, as one ReviewedFrame per frame."""
    head: dict[int, tuple[int, datetime, bool, float]] = {}
    verdicts: dict[int, list[tuple[int, Verdict]]] = defaultdict(list)
    for frame_id, camera_id, captured_at, flagged, score, reviewer_id, verdict in rows:
        head[frame_id] = (camera_id, captured_at, bool(flagged), float(score))
        verdicts[frame_id].append((reviewer_id, verdict))
    return [
        ReviewedFrame(fid, cam, at, flagged, score, tuple(verdicts[fid]))
        for fid, (cam, at, flagged, score) in head.items()
    ]


def site_agreement(
    session: Session, site: Site, start: datetime, end: datetime, model_version_id: int | None = None
) -> AgreementReport | None:
    """Agreement of ``model_version_id`` (default: the site's rollout model) with the
    rangers over [start, end); None when the site has no rollout model."""
    model_id = model_version_id if model_version_id is not None else site.rollout_model_id
    if model_id is None:
        return None
    return agreement_of(reviewed_frames(session, site, model_id, start, end))
