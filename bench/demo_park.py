"""The demo park for the dashboard benches and the README's screenshots: `bearwatch demo` itself.

`bearwatch demo` builds its park in a data dir (footage, the demo model, two live sites,
`meadow` with three weeks of simulated history) and runs it; everything it makes once is
cached there, so the second start takes seconds. The slow part of a first start is training
the demo model (about a minute on a quiet 2-core machine, far longer on a loaded one): when
the data dir has no model yet, one already trained is copied in from the first of
``bearwatch-data/demo/model`` (what `make demo` left) and ``$BEARWATCH_TEST_ASSETS/demo-model``
(what the tests left) that has one.

    with running_demo(data_dir, dashboard_port=None) as demo:   # the demo, live
        ...  demo.env is the environment of a bearwatch process on the demo's database
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bearwatch.db import make_engine, session_factory, write_transaction  # noqa: E402
from bearwatch.demo.model import DEMO_MODEL_NAME, TRAIN_DIR_NAME  # noqa: E402
from bearwatch.schema import Camera, Frame, Role, User, utcnow  # noqa: E402
from bearwatch.users import add_user, set_password  # noqa: E402

DEFAULT_DATA_DIR = REPO / "bearwatch-data" / "bench-demo"  # under the demo's own (git-ignored) data dir
PASSWORD = "bench password 1"
ROLE_USERS = {Role.RANGER: "bench-ranger", Role.OPS: "bench-ops", Role.ADMIN: "bench-admin"}


@dataclass(frozen=True)
class Demo:
    data_dir: Path
    env: dict[str, str]  # BEARWATCH_DATA_DIR (and _DATABASE_URL when given) for bearwatch processes
    dashboard_url: str | None  # the demo's own dashboard, when it serves one


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed_model(data_dir: Path) -> None:
    """Copy an already trained demo model (and its training images, the drift reference)
    into ``data_dir`` when it has none, so that the demo does not train one."""
    target = data_dir / "demo" / "model"
    if (target / DEMO_MODEL_NAME).exists():
        return
    candidates = [REPO / "bearwatch-data" / "demo" / "model"]
    if os.environ.get("BEARWATCH_TEST_ASSETS"):
        candidates.append(Path(os.environ["BEARWATCH_TEST_ASSETS"]) / "demo-model")
    for source in candidates:
        if (source / DEMO_MODEL_NAME).exists() and (source / TRAIN_DIR_NAME).is_dir() and source != target:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source / TRAIN_DIR_NAME, target / TRAIN_DIR_NAME, dirs_exist_ok=True)
            shutil.copy(source / DEMO_MODEL_NAME, target / DEMO_MODEL_NAME)
            print(f"demo model copied from {source}", file=sys.stderr)
            return
    print("no trained demo model to copy: the demo trains one (minutes)", file=sys.stderr)


def database_url(env: dict[str, str]) -> str:
    return env.get("BEARWATCH_DATABASE_URL") or f"sqlite:///{Path(env['BEARWATCH_DATA_DIR']) / 'bearwatch.db'}"


def live_frames(url: str, since_s: float) -> int:
    """Frames the live (enabled) cameras captured in the last ``since_s`` seconds."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(
                sa.select(sa.func.count()).select_from(Frame).join(Camera, Camera.id == Frame.camera_id)
                .where(Camera.enabled.is_(True), Frame.captured_at >= utcnow() - timedelta(seconds=since_s))
            ) or 0)
    except sa.exc.OperationalError:  # no database or no tables yet: the demo is still building it
        return 0
    finally:
        engine.dispose()


def add_role_users(url: str, users: dict[Role, str] = ROLE_USERS) -> None:
    """One user per role (bench-ranger, bench-ops, bench-admin), password PASSWORD (set
    again if they exist)."""
    engine = make_engine(url)
    try:
        with write_transaction(session_factory(engine)) as session:  # the running demo writes too
            for role, name in users.items():
                if session.scalar(sa.select(User.id).where(User.name == name)) is None:
                    add_user(session, name, role, PASSWORD)
                else:
                    set_password(session, name, PASSWORD)
    finally:
        engine.dispose()


def wait_healthy(url: str, proc: subprocess.Popen[bytes], deadline: float, failure: str) -> None:
    """Until Streamlit's health check at ``url`` answers ok; SystemExit(``failure``) if the
    process ends or ``deadline`` (time.monotonic) passes first."""
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.read() == b"ok":
                    return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(failure) from None
            time.sleep(0.3)


@contextmanager
def running_demo(data_dir: Path, *, database_url_: str | None = None, dashboard_port: int | None = None,
                 timeout_s: float = 3600) -> Iterator[Demo]:
    """Run `bearwatch demo` on ``data_dir`` (the dashboard too when ``dashboard_port`` is
    given) and yield once its live cameras have frames from the last 20 s, scored or not;
    stop it (SIGINT, as Ctrl-C) on exit. Its log goes to ``data_dir/bench-demo.log``."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    seed_model(data_dir)
    env = {"BEARWATCH_DATA_DIR": str(data_dir)}
    if database_url_:
        env["BEARWATCH_DATABASE_URL"] = database_url_
    full_env = {**os.environ, **env}
    if not database_url_:
        full_env.pop("BEARWATCH_DATABASE_URL", None)  # the demo's embedded SQLite default
    args = [sys.executable, "-m", "bearwatch", "demo"]
    url = None
    if dashboard_port is None:
        args.append("--no-dashboard")
    else:
        full_env["BEARWATCH_DASHBOARD_PORT"] = str(dashboard_port)
        full_env["BEARWATCH_DASHBOARD_ADDRESS"] = "127.0.0.1"
        url = f"http://127.0.0.1:{dashboard_port}"
    log = (data_dir / "bench-demo.log").open("a")
    print(f"starting the demo on {data_dir} (log: {log.name}) ...", file=sys.stderr)
    # SIGINT back to its default in the demo: a bench started in the background (`cmd &`)
    # has it ignored, which the demo would inherit, and then it would not stop on it.
    proc = subprocess.Popen(args, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + timeout_s
        while live_frames(database_url(env), 20) < 4:
            if proc.poll() is not None:
                raise SystemExit(f"the demo stopped (exit {proc.returncode}); see {log.name}")
            if time.monotonic() > deadline:
                raise SystemExit(f"the demo had no live frames after {timeout_s:.0f} s; see {log.name}")
            time.sleep(1)
        if url is not None:
            wait_healthy(url, proc, deadline, f"the demo's dashboard did not start; see {log.name}")
        print("the demo is live", file=sys.stderr)
        yield Demo(data_dir, env, url)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
