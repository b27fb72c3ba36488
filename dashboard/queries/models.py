"""Registered model versions for the Models page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.schema import ModelRole, ModelVersion, Site


@dataclass(frozen=True)
class ModelRow:
    model_id: int
    name: str
    role: ModelRole
    threshold: float
    classes: tuple[str, ...]
    positive_classes: tuple[str, ...]
    sha256_short: str
    path: str
    created_at: datetime
    rollout_sites: tuple[str, ...]  # sites whose rollout model this is


def models_overview(session: Session) -> tuple[ModelRow, ...]:
    sites: dict[int | None, list[str]] = {}  # keyed as the nullable column is typed; the query leaves out NULL
    for model_id, site in session.execute(
        sa.select(Site.rollout_model_id, Site.name).where(Site.rollout_model_id.is_not(None)).order_by(Site.name)
    ):
        sites.setdefault(model_id, []).append(site)
    models = session.execute(
        sa.select(ModelVersion.id, ModelVersion.name, ModelVersion.role, ModelVersion.threshold, ModelVersion.classes,
                  ModelVersion.positive_classes, ModelVersion.sha256, ModelVersion.path, ModelVersion.created_at)
        .order_by(ModelVersion.name, ModelVersion.created_at.desc())
    )
    return tuple(
        ModelRow(model_id=m.id, name=m.name, role=m.role, threshold=m.threshold, classes=tuple(m.classes),
                 positive_classes=tuple(m.positive_classes), sha256_short=m.sha256[:12], path=m.path,
                 created_at=m.created_at, rollout_sites=tuple(sites.get(m.id, ())))
        for m in models
    )
