"""Session-wide demo assets (footage, the tiny export, the demo model): where they go and
how one of several test processes makes each once. `python -m tests.assets FOLDER` trains
the demo model there under the same lock (conftest starts it in the background)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from filelock import FileLock

T = TypeVar("T")


def asset_dir(root: Path, name: str) -> Path:
    """``root/assets/name``, made if missing; ``root`` is the test processes' shared temp folder."""
    folder = root / "assets" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def made_once(folder: Path, make: Callable[[], T]) -> T:
    """Run ``make`` holding a lock beside ``folder``: the first process builds, the others wait
    and then find the finished files (every builder skips what already exists)."""
    with FileLock(str(folder) + ".lock"):
        return make()


if __name__ == "__main__":
    from bearwatch.demo.model import ensure_demo_model

    folder = Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    made_once(folder, lambda: ensure_demo_model(folder))
