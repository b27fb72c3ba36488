"""Real servers on loopback and generated pictures for the ingest tests."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Camera, CameraHealthEvent, Frame, Site
from ingest.cameras import add_camera
from shadow.sites import add_site


def make_camera(factory: sessionmaker[Session], source: str, name: str = "cam", interval_s: float = 5.0, site: str = "north") -> int:
    with factory.begin() as session:
        row = session.scalar(sa.select(Site).where(Site.name == site)) or add_site(session, site, actor="test")
        return add_camera(session, row, name, source, interval_s=interval_s).id


def camera(factory: sessionmaker[Session], camera_id: int) -> Camera:
    with factory() as session:
        row = session.get(Camera, camera_id)
        assert row is not None
        return row


def frames_of(factory: sessionmaker[Session], camera_id: int) -> list[Frame]:
    with factory() as session:
        return list(session.scalars(sa.select(Frame).where(Frame.camera_id == camera_id).order_by(Frame.captured_at)))


def health_events(factory: sessionmaker[Session], camera_id: int) -> list[tuple[str, str]]:
    with factory() as session:
        rows = session.scalars(
            sa.select(CameraHealthEvent).where(CameraHealthEvent.camera_id == camera_id).order_by(CameraHealthEvent.id)
        )
        return [(e.from_health.value, e.to_health.value) for e in rows]


def scene(seed: int, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A textured colour picture, different for each seed."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    return cv2.resize(small, size, interpolation=cv2.INTER_LINEAR)


def jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def write_folder(folder: Path, pictures: list[tuple[datetime, bytes]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for when, data in pictures:
        (folder / f"cam_{when:%Y%m%dT%H%M%S}Z.jpg").write_bytes(data)


def poll(predicate: Callable[[], bool], timeout_s: float, every_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return predicate()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _CameraHandler(BaseHTTPRequestHandler):
    """CameraHTTP's answers; each camera serves a subclass with ``camera`` set."""

    camera: CameraHTTP

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.camera.requests.append(self.path)
        if self.path.startswith("/private/") and not self._authorized():
            return
        if self.path.endswith("snap.jpg"):
            self._snapshot()
        elif self.path.startswith("/trickle"):
            self._trickle()
        elif self.path.startswith("/mjpeg"):
            self._mjpeg()
        else:
            self.send_response(404)
            self.end_headers()

    def _authorized(self) -> bool:
        """Basic auth with the camera's user and password; a 401 answer when it is not."""
        import base64

        expected = "Basic " + base64.b64encode(f"{self.camera.user}:{self.camera.password}".encode()).decode()
        if self.headers.get("Authorization") == expected:
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="cam"')
        self.end_headers()
        return False

    def _snapshot(self) -> None:
        body = self.camera.picture
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _trickle(self) -> None:
        """A byte at a time: no socket timeout fires."""
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        try:
            for _ in range(200):
                self.wfile.write(b"\xff")
                self.wfile.flush()
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _mjpeg(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        try:
            for _ in range(50):
                body = self.camera.picture
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                self.wfile.write(f"Content-Length: {len(body)}\r\n\r\n".encode() + body + b"\r\n")
                self.wfile.flush()
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass


class CameraHTTP:
    """A loopback HTTP camera: /snap.jpg (one JPEG), /mjpeg (multipart stream),
    /private/snap.jpg behind basic auth, /trickle (a JPEG sent a byte every 0.1 s). ``picture`` is what the camera sees now."""

    def __init__(self, user: str = "ranger", password: str = "hunter2", tls: ssl.SSLContext | None = None) -> None:
        self.picture = jpeg(scene(1))
        self.requests: list[str] = []
        self.user, self.password = user, password
        handler = type("Handler", (_CameraHandler,), {"camera": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.scheme = "http"
        if tls is not None:  # HTTPS: the TLS handshake happens on accept
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> CameraHTTP:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and then says nothing (a stalled camera)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()
