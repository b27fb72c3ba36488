"""Models page additions: each model version's agreement with the rangers per site,
side by side (shadow.agreement over the frames the rangers reviewed), and the HTML
backtest reports `bearwatch backtest` wrote into the reports folder."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.schema import ModelVersion, Site
from shadow.agreement import agreement_of, reviewed_frames_by_pair


@dataclass(frozen=True)
class AgreementRow:
    site: str
    model: str
    model_id: int
    is_rollout: bool  # the site's rollout model (else a challenger scored in shadow)
    reviewed: int
    tp: int
    fp: int
    fn: int
    disputed: int
    precision: float | None
    precision_low: float | None  # 95% lower bound
    recall: float | None
    recall_low: float | None


@dataclass(frozen=True)
class ReportFile:
    name: str
    path: Path
    size_bytes: int
    modified_at: datetime


def model_agreement(session: Session, start: datetime, end: datetime) -> tuple[AgreementRow, ...]:
    """For every (site, model version) with predictions on reviewed frames in [start, end)."""
    by_pair = reviewed_frames_by_pair(session, start, end)
    sites = {s.id: s for s in session.scalars(sa.select(Site))}
    models = dict(session.execute(sa.select(ModelVersion.id, ModelVersion.name)).all())
    rows = []
    for (site_id, model_id), frames in by_pair.items():
        site = sites[site_id]
        report = agreement_of(frames)
        c, p, r = report.confusion, report.precision, report.recall
        rows.append(AgreementRow(
            site=site.name, model=models.get(model_id, str(model_id)), model_id=model_id,
            is_rollout=site.rollout_model_id == model_id, reviewed=c.reviewed, tp=c.tp, fp=c.fp, fn=c.fn,
            disputed=c.disputed, precision=p.value, precision_low=p.ci.low if p.ci else None,
            recall=r.value, recall_low=r.ci.low if r.ci else None,
        ))
    return tuple(sorted(rows, key=lambda a: (a.site, not a.is_rollout, a.model)))


def backtest_reports(reports_dir: Path) -> tuple[ReportFile, ...]:
    """HTML reports in ``reports_dir``, newest first."""
    if not reports_dir.is_dir():
        return ()
    files = []
    for p in reports_dir.glob("*.html"):
        st = p.stat()
        files.append(ReportFile(p.name, p, st.st_size, datetime.fromtimestamp(st.st_mtime).astimezone()))
    return tuple(sorted(files, key=lambda f: f.modified_at, reverse=True))
