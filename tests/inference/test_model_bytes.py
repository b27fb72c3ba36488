"""The model bytes that are hashed are the bytes that are unpickled (issue 15 item 12).

Hashing the path and then opening it again to load lets a file swapped in between run
unverified code. Here the swap is real: an audit hook replaces the model file with a
pickle that records that it ran, at the moment the model file is opened a second time."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import ModelVersion
from inference.registry import load_model, read_model_file, register_model, unpickle_learner

RAN_UNVERIFIED: list[str] = []


def _ran_unverified() -> None:
    RAN_UNVERIFIED.append("the swapped-in file's code ran")


class _Payload:
    """Unpickling this calls _ran_unverified, as a hostile model file would call anything."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _ran_unverified, ()


# The audit hook stays installed for the whole test session (hooks cannot be removed); it
# does nothing unless a test arms it with the path to watch.
_ARMED: dict[str, Any] = {}


def _swap_on_reopen(event: str, args: tuple[Any, ...]) -> None:
    if event != "open" or not _ARMED or not isinstance(args[0], str | bytes | os.PathLike):
        return
    if os.fsdecode(args[0]) != _ARMED["path"]:
        return
    _ARMED["opens"] += 1
    if _ARMED["opens"] == 2:  # the file was read once already: now it is replaced
        os.replace(_ARMED["hostile"], _ARMED["path"])


sys.addaudithook(_swap_on_reopen)


@pytest.fixture
def swap_armed(tmp_path: Path, model_export_path: Path) -> Any:
    """A copy of the demo model that turns into a hostile pickle if it is opened twice."""
    model = tmp_path / "model.pkl"
    shutil.copy(model_export_path, model)
    hostile = tmp_path / "hostile.pkl"

    def arm() -> None:
        hostile.write_bytes(pickle.dumps(_Payload()))
        _ARMED.update(path=str(model), hostile=str(hostile), opens=0)

    RAN_UNVERIFIED.clear()
    yield model, arm
    _ARMED.clear()


def test_the_bytes_in_hand_are_loaded_whatever_the_file_holds_now(tmp_path: Path, model_export_path: Path) -> None:
    model = tmp_path / "model.pkl"
    shutil.copy(model_export_path, model)
    original = model.read_bytes()
    read = read_model_file(model)
    model.write_bytes(pickle.dumps(_Payload()))  # replaced after it was read
    RAN_UNVERIFIED.clear()
    learner = unpickle_learner(read)
    assert read.sha256 == hashlib.sha256(original).hexdigest()
    assert [str(c) for c in learner.dls.vocab] == ["bear", "deer", "empty"]
    assert RAN_UNVERIFIED == []


def test_register_and_load_hash_what_they_unpickle(factory: sessionmaker[Session], swap_armed: Any) -> None:
    model, arm = swap_armed
    digest = hashlib.sha256(model.read_bytes()).hexdigest()

    arm()
    try:
        with factory.begin() as session:
            version_id = register_model(session, model, name="m", positive=["bear"]).id
    finally:  # the hostile file also fails to load, but what matters is that its code ran
        assert RAN_UNVERIFIED == [], "registration unpickled a file other than the one it hashed"
    with factory() as session:
        version = session.get(ModelVersion, version_id)
        assert version is not None and version.sha256 == digest
        arm()
        try:
            loaded = load_model(version)
        finally:
            assert RAN_UNVERIFIED == [], "the worker's load unpickled a file other than the one it verified"
    assert loaded.classes == ("bear", "deer", "empty")
