"""The model registry: registering a fastai export and loading it back safely.

``load_learner`` unpickles code, so registering a file is an admin act and only
trusted files may be registered. A registered file whose sha256 no longer matches
is refused at load. The file is read once and the learner unpickled from the very bytes
that were hashed: hashing the path and opening it again to load would let a file swapped
in between run unverified.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.errors import ModelError
from bearwatch.progress import quiet
from bearwatch.schema import ModelRole, ModelVersion
from inference.model_versions import refuse_registered
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


@dataclass(frozen=True)
class ModelFile:
    """A model export's bytes, read once, and their sha256."""

    path: Path
    data: bytes
    sha256: str


def read_model_file(path: Path) -> ModelFile:
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ModelError(f"model file {path} does not exist") from None
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    return ModelFile(path, data, hashlib.sha256(data).hexdigest())


def unpickle_learner(model: ModelFile) -> Any:
    """The fastai Learner in ``model.data``: from those bytes, never from the path again."""
    from fastai.learner import load_learner  # heavy import, only where a model is loaded

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fastai/torch deprecation chatter on unpickling
        try:
            return load_learner(io.BytesIO(model.data), cpu=True)  # torch.load reads a file object
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is the file's fault
            raise ModelError(f"cannot load {model.path} as a fastai export: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class Export:
    """A fastai export loaded from its bytes, with its classes and the positive ones."""

    file: ModelFile
    learner: Any  # fastai Learner
    classes: list[str]
    positive: list[str]


def load_export(path: Path, positive: Sequence[str] | None = None) -> Export:
    """Read the export at ``path`` once, unpickle the learner from those bytes and check
    the positive classes against its vocabulary (none given: ``bear``, when it has that class)."""
    model = read_model_file(path)
    learner = unpickle_learner(model)
    classes = [str(c) for c in learner.dls.vocab]
    wanted = list(positive) if positive else (["bear"] if "bear" in classes else [])
    unknown = [c for c in wanted if c not in classes]
    if not wanted or unknown:
        raise ModelError(
            f"positive class(es) {', '.join(unknown) or '(none given)'} not in the model's classes: {', '.join(classes)}"
        )
    return Export(model, learner, classes, wanted)


@dataclass(frozen=True)
class PreparedModel:
    """A model export read and checked outside any transaction: loading it (and fitting
    the out-of-domain reference) takes seconds to minutes, and a write transaction holds
    the database's write lock (SQLite) for as long as it runs."""

    name: str
    path: Path
    sha256: str
    classes: list[str]
    positive: list[str]
    threshold: float
    role: ModelRole
    ood_reference: bytes | None


def prepare_model(
    path: Path,
    *,
    name: str,
    positive: list[str],
    threshold: float = 0.5,
    role: ModelRole = ModelRole.ROLLOUT,
    reference_dir: Path | None = None,
    echo: Callable[[str], None] = quiet,
) -> PreparedModel:
    """Load the export once, check the positive classes, hash it; with ``reference_dir``
    (images like the training data), fit the out-of-domain reference. ``echo`` gets
    progress lines (a large export or reference folder takes a while)."""
    path = path.resolve()
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    if not 0.0 <= threshold <= 1.0:
        raise ModelError(f"threshold must be between 0 and 1, got {threshold}")
    echo(f"loading {path.name} ({path.stat().st_size / 1e6:.0f} MB)")
    export = load_export(path, positive)
    reference = fit_model_reference(export.learner, reference_dir, echo=echo) if reference_dir is not None else None
    return PreparedModel(name, path, export.file.sha256, export.classes, export.positive, threshold, role,
                         reference.to_bytes() if reference else None)


def add_model(session: Session, prepared: PreparedModel) -> ModelVersion:
    """Store a prepared model version (quick: the write transaction's part)."""
    refuse_registered(session, prepared.name, prepared.sha256)
    version = ModelVersion(
        name=prepared.name, path=str(prepared.path), sha256=prepared.sha256, classes=prepared.classes,
        positive_classes=prepared.positive, threshold=prepared.threshold, role=prepared.role,
        ood_reference=prepared.ood_reference,
    )
    session.add(version)
    session.flush()
    return version


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
    """prepare_model and add_model in one, for callers with no other writer to keep
    waiting (tests, benchmarks): the CLI prepares before its transaction."""
    prepared = prepare_model(path, name=name, positive=positive, threshold=threshold, role=role,
                             reference_dir=reference_dir)
    return add_model(session, prepared)


def load_model(version: ModelVersion) -> LoadedModel:
    """Load a registered version, refusing a file that changed since registration."""
    path = Path(version.path)
    if not path.is_file():
        raise ModelError(f"model {version.name} (id {version.id}): file {path} is missing")
    model = read_model_file(path)
    if model.sha256 != version.sha256:
        raise ModelError(
            f"model {version.name} (id {version.id}): {path} changed since it was registered "
            "(sha256 mismatch); register the new file as a new version"
        )
    learner = unpickle_learner(model)
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
