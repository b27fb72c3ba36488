"""A real RTSP server on loopback (GStreamer's gst-rtsp-server) for tests and bench.

Runs under the system Python (/usr/bin/python3 with python3-gi), not the venv:
    /usr/bin/python3 rtsp_server.py PORT FOOTAGE [MOUNTS]
Serves H.264 footage made with ffmpeg at rtsp://127.0.0.1:PORT/MOUNT (MOUNTS: comma
separated), without re-encoding. FOOTAGE is an .mp4 or a folder of one-second .mp4
segments; each client gets its own pipeline starting at the segment of the current
second, so like a live camera it shows the current picture, not the clip's first
frame. With --auth=USER:PASS, clients must log in. With --full=CLIP.mp4, /full serves
that whole clip from its start (for clients that stay connected, like a persistent reader).
With --live=FPS, /live is a camera that never ends: a ball moving with the wall clock, encoded as
they are made (x264, FPS frames a second, a key frame every second), for clients that
stay connected for longer than any clip.
Prints "ready" once listening.
"""

import sys
import time
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402 - only after gi.require_version


def permit(factory: GstRtspServer.RTSPMediaFactory, auth: str | None) -> None:
    """With --auth=USER:PASS, only USER may use the mount."""
    if auth:
        user = auth.split(":", 1)[0]
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role(user, "media.factory.access", True)
        permissions.add_permission_for_role(user, "media.factory.construct", True)
        factory.set_permissions(permissions)


def live_camera(fps: int) -> GstRtspServer.RTSPMediaFactory:
    """A live camera: a ball moving with the wall clock (each client sees where it is now),
    encoded as it is made, ``fps`` frames a second, a key frame every second."""
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        "( videotestsrc is-live=true pattern=ball animation-mode=wall-time background-color=0xff3a5f2b"
        f" ! video/x-raw,width=320,height=240,framerate={fps}/1"
        f" ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} bitrate=400"
        " ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(False)
    return factory


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    auth = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--auth=")), None)
    full = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--full=")), None)
    live = next((int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--live=")), None)
    port, footage = args[0], Path(args[1])
    segments = sorted(footage.glob("*.mp4")) if footage.is_dir() else [footage]
    mounts = args[2].split(",") if len(args) > 2 else ["cam"]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factories = []

    def launch() -> str:
        clip = segments[int(time.time()) % len(segments)]
        return f"( filesrc location={clip} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"

    def on_client(*_args: object) -> None:
        for f in factories:
            f.set_launch(launch())

    server.connect("client-connected", on_client)
    for mount in mounts:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch())
        factory.set_shared(False)
        factories.append(factory)
        permit(factory, auth)
        server.get_mount_points().add_factory(f"/{mount}", factory)
    if full:
        whole = GstRtspServer.RTSPMediaFactory()
        whole.set_launch(f"( filesrc location={full} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )")
        permit(whole, auth)
        server.get_mount_points().add_factory("/full", whole)
    if live:
        camera = live_camera(live)
        permit(camera, auth)
        server.get_mount_points().add_factory("/live", camera)
    if auth:
        user, password = auth.split(":", 1)
        authn = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", user)
        authn.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(authn)
    if server.attach(None) == 0:
        print("cannot listen", flush=True)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
