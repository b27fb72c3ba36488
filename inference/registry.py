"""The model registry: registering a fastai export and loading it back safely.

``load_learner`` unpickles code, so registering a file is an admin act and only
trusted files may be registered. A registered file whose sha256 no longer matches
is refused at load.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.errors import AlreadyExists, ModelError
from bearwatch.files import sha256_file
from bearwatch.schema import ModelRole, ModelVersion
from inference.ood import OodReference
from inference.reference import fit_model_reference


@dataclass(frozen=True)
class LoadedModel:
    """A registered model version in memory, ready to score."""

    version_id: int
    name: str
    classes: tuple[str, ...]
    positive_classes: tuple[str, ...]
    threshold: float
    learner: Any  # fastai Learner
    reference: OodReference | None  # for the out-of-domain score; None: not fitted


def _load_learner(path: Path) -> Any:
    from fastai.learner import load_learner  # heavy import, only where a model is loaded

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fastai/torch deprecation chatter on unpickling
        try:
            return load_learner(path, cpu=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is the file's fault
            raise ModelError(f"cannot load {path} as a fastai export: {type(exc).__name__}: {exc}") from None


def register_model(
    session: Session,
    path: Path,
    *,
    name: str,
    positive: list[str],
    threshold: float = 0.5,
    role: ModelRole = ModelRole.ROLLOUT,
    reference_dir: Path | None = None,
) -> ModelVersion:
    """Load the export once, check the positive classes, store hash and classes; with
    ``reference_dir`` (images like the training data), fit the out-of-domain reference."""
    path = path.resolve()
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    if not 0.0 <= threshold <= 1.0:
        raise ModelError(f"threshold must be between 0 and 1, got {threshold}")
    digest = sha256_file(path)
    existing = session.scalar(
        sa.select(ModelVersion).where(ModelVersion.name == name, ModelVersion.sha256 == digest)
    )
    if existing is not None:
        raise AlreadyExists(f"model {name!r} with this file is already registered (id {existing.id})")
    learner = _load_learner(path)
    classes = [str(c) for c in learner.dls.vocab]
    unknown = [c for c in positive if c not in classes]
    if unknown:
        raise ModelError(
            f"positive class(es) {', '.join(unknown)} not in the model's classes: {', '.join(classes)}"
        )
    reference = fit_model_reference(learner, reference_dir) if reference_dir is not None else None
    version = ModelVersion(
        name=name, path=str(path), sha256=digest, classes=classes,
        positive_classes=list(positive), threshold=threshold, role=role,
        ood_reference=reference.to_bytes() if reference else None,
    )
    session.add(version)
    session.flush()
    return version


def load_model(version: ModelVersion) -> LoadedModel:
    """Load a registered version, refusing a file that changed since registration."""
    path = Path(version.path)
    if not path.is_file():
        raise ModelError(f"model {version.name} (id {version.id}): file {path} is missing")
    if sha256_file(path) != version.sha256:
        raise ModelError(
            f"model {version.name} (id {version.id}): {path} changed since it was registered "
            "(sha256 mismatch); register the new file as a new version"
        )
    learner = _load_learner(path)
    return LoadedModel(
        version_id=version.id, name=version.name, classes=tuple(version.classes),
        positive_classes=tuple(version.positive_classes), threshold=version.threshold,
        learner=learner,
        reference=OodReference.from_bytes(version.ood_reference) if version.ood_reference else None,
    )


def active_versions(session: Session) -> list[ModelVersion]:
    return list(
        session.scalars(
            sa.select(ModelVersion).where(ModelVersion.role != ModelRole.RETIRED).order_by(ModelVersion.id)
        )
    )
