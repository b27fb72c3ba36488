"""Models page additions: each model version's agreement with the rangers per site, side
by side, and the HTML backtest reports `bearwatch backtest` wrote into the reports folder.

Per (site, model version) the figures come first in the rollout's unit, the *sighting*
(shadow.sighting_evidence.site_sightings, what the gates read: sighting recall and alert
precision with their 95% anytime-valid bounds, caught and missed sightings), then frame
level as a secondary view (shadow.agreement over the frames the rangers reviewed, Wilson
bounds; frames of one sighting are not independent, so those intervals are too narrow).

Statements: the pairs come from one query over the window's reviewed frames
(``reviewed_frames_by_pair``); sites and model versions are read once (so
``site_sightings`` finds its model in the session); then ``site_sightings`` per pair
issues 4 (the site's cameras, the flagged-or-reviewed frames, the scored counts, the
ledger's audit rates): 3 + 4 x pairs in all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.schema import ModelVersion, Site
from shadow.agreement import agreement_of, reviewed_frames_by_pair
from shadow.sighting_evidence import site_sightings
from shadow.sightings import Estimate


@dataclass(frozen=True)
class SightingFigures:
    """A model at a site in sightings (shadow.sightings.SightingReport)."""

    recall: Estimate  # sighting recall, Horvitz-Thompson over the audit design
    precision: Estimate  # alert precision
    caught: int  # sightings the model alerted on
    misses_found: int  # missed sightings the audit design found
    misses_reported: int  # missed sightings rangers reported outside the audit
    recall_ceiling: float | None  # caught / (caught + every miss): the recall can be no higher
    alerts: int  # the model's (would-be) alerts: flags grouped by the cooldown
    bear_alerts: int
    false_alerts: int
    unreviewed_alerts: int
    audited_frames: int  # unflagged frames reviewed through the audit design
    derived_design: int  # verdicts whose inclusion probability was derived, not stored
    min_inclusion: float  # the thinnest audit stratum in force


@dataclass(frozen=True)
class AgreementRow:
    site: str
    model: str
    model_id: int
    is_rollout: bool  # the site's rollout model (else a challenger scored in shadow)
    # frame level (secondary view)
    reviewed: int
    tp: int
    fp: int
    fn: int
    disputed: int
    precision: float | None
    precision_low: float | None  # 95% Wilson lower bound
    recall: float | None
    recall_low: float | None
    # sighting level (the unit of the rollout decisions); None: the site has no cameras
    sightings: SightingFigures | None = None


@dataclass(frozen=True)
class ReportFile:
    name: str
    path: Path
    size_bytes: int
    modified_at: datetime


def sighting_figures(session: Session, site: Site, model_id: int, start: datetime, end: datetime) -> SightingFigures | None:
    evidence = site_sightings(session, site, start, end, model_version_id=model_id, count_scored=False)
    if evidence is None:
        return None
    r = evidence.report
    return SightingFigures(
        recall=r.recall, precision=r.precision, caught=r.caught, misses_found=len(r.misses_found),
        misses_reported=len(r.misses_reported), recall_ceiling=r.recall_ceiling, alerts=len(r.alerts),
        bear_alerts=r.bear_alerts, false_alerts=r.false_alerts, unreviewed_alerts=r.unreviewed_alerts,
        audited_frames=evidence.audited_frames, derived_design=evidence.derived_design, min_inclusion=r.min_inclusion,
    )


def model_agreement(session: Session, start: datetime, end: datetime) -> tuple[AgreementRow, ...]:
    """For every (site, model version) with predictions on reviewed frames in [start, end)."""
    by_pair = reviewed_frames_by_pair(session, start, end)
    sites = {s.id: s for s in session.scalars(sa.select(Site))}
    # Entities, held for the loop: site_sightings' session.get() finds them in the identity map.
    versions = {m.id: m for m in session.scalars(sa.select(ModelVersion))}
    rows = []
    for (site_id, model_id), frames in by_pair.items():
        site = sites[site_id]
        report = agreement_of(frames)
        c, p, r = report.confusion, report.precision, report.recall
        rows.append(AgreementRow(
            site=site.name, model=versions[model_id].name if model_id in versions else str(model_id), model_id=model_id,
            is_rollout=site.rollout_model_id == model_id, reviewed=c.reviewed, tp=c.tp, fp=c.fp, fn=c.fn,
            disputed=c.disputed, precision=p.value, precision_low=p.ci.low if p.ci else None,
            recall=r.value, recall_low=r.ci.low if r.ci else None,
            sightings=sighting_figures(session, site, model_id, start, end),
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
