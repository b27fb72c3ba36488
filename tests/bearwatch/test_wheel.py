"""A wheel of bearwatch works outside the checkout (issue 14): it ships its migration
scripts, so an installed bearwatch can `init` a database and validate a park file.

The wheel is built once per module from a copy of the working tree (so no build/ or
egg-info is written into the checkout) and installed into a bare folder that goes first
on PYTHONPATH, ahead of the venv's editable install; the commands run from an empty folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from bearwatch.db import make_engine
from bearwatch.schema import Base

REPO = Path(__file__).resolve().parents[2]
TOP_PACKAGES = ("bearwatch", "dashboard", "inference", "ingest", "shadow")
# Not part of the wheel: leaving them out keeps the copy small and the build honest.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*cache*", ".hypothesis",
    "bearwatch-data", "tests", "docs", "bench",
)
PARK = "sites:\n  - name: north\n    cameras:\n      - {name: gate, source: 'folder:///srv/footage/north'}\n"
# Where the imported bearwatch lives, where it finds its migrations and their head. (Alembic
# is asked for the folder: before issue 14 bearwatch.migrations had no script_location().)
WHERE = (
    "import bearwatch; from bearwatch.migrations import alembic_config, head_revision; "
    "from alembic.script import ScriptDirectory; print(bearwatch.__file__); "
    "print(ScriptDirectory.from_config(alembic_config()).dir); print(head_revision())"
)


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding nothing but the installed wheel."""
    work = tmp_path_factory.mktemp("wheel")
    shutil.copytree(REPO, work / "src", ignore=NOT_SOURCES)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(work / "src")], cwd=work)
    (wheel,) = (work / "dist").glob("bearwatch-*.whl")
    _run([*pip, "install", "--no-deps", "--no-index", "--target", str(work / "site"), str(wheel)], cwd=work)
    return work / "site"


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_the_wheel_ships_every_package_file_and_the_migrations(site: Path) -> None:
    # pyproject.toml lists the packages by hand; this catches a package folder left off.
    shipped = _files(site)
    for top in TOP_PACKAGES:
        missing = {top / f for f in _files(REPO / top)} - shipped
        assert not missing, f"not in the wheel: {sorted(map(str, missing))}"
    missing = {Path("bearwatch/_migrations") / f for f in _files(REPO / "alembic")} - shipped
    assert not missing, f"migrations not in the wheel: {sorted(map(str, missing))}"
    assert not (site / "alembic").exists(), "a top-level alembic folder would shadow the alembic library"


def test_the_installed_wheel_inits_a_database_and_validates_a_park_file(
    site: Path, database_url: str, tmp_path: Path
) -> None:
    empty = tmp_path / "cwd"
    empty.mkdir()
    python_path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    env = {
        **os.environ,
        "PYTHONPATH": python_path,
        "BEARWATCH_DATABASE_URL": database_url,
        "BEARWATCH_DATA_DIR": str(tmp_path / "data"),
    }

    # (a) the copy under test is the installed one, migrations included, not the checkout
    module_file, scripts, head = _run([sys.executable, "-c", WHERE], cwd=empty, env=env).stdout.split()
    assert Path(module_file).is_relative_to(site), module_file
    assert Path(scripts) == site / "bearwatch" / "_migrations", scripts

    # (b) init creates the whole schema, at the head revision
    _run([sys.executable, "-m", "bearwatch", "init"], cwd=empty, env=env)
    assert list(empty.iterdir()) == [], "init wrote into the working directory"
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == head
        assert set(Base.metadata.tables) <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()

    # (c) the installed console script validates a park file
    park = tmp_path / "park.yaml"
    park.write_text(PARK, encoding="utf-8")
    done = _run([str(site / "bin" / "bearwatch"), "config", "validate", str(park)], cwd=empty, env=env)
    assert "ok (1 sites, 1 cameras, 0 models)" in done.stdout
