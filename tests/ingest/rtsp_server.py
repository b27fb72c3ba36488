"""A real RTSP server on loopback (GStreamer's gst-rtsp-server) for tests and bench.

Runs under the system Python (/usr/bin/python3 with python3-gi), not the venv:
    /usr/bin/python3 rtsp_server.py PORT FOOTAGE [MOUNTS]
Serves H.264 footage made with ffmpeg at rtsp://127.0.0.1:PORT/MOUNT (MOUNTS: comma
separated), without re-encoding. FOOTAGE is an .mp4 or a folder of one-second .mp4
segments; each client gets its own pipeline starting at the segment of the current
second, so like a live camera it shows the current picture, not the clip's first
frame. With --auth=USER:PASS, clients must log in. With --full=CLIP.mp4, /full serves
that whole clip from its start (for clients that stay connected, like a persistent reader).
Prints "ready" once listening.
"""

import sys
import time
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402 - only after gi.require_version


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    auth = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--auth=")), None)
    full = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--full=")), None)
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
        if auth:
            user, password = auth.split(":", 1)
            permissions = GstRtspServer.RTSPPermissions()
            permissions.add_permission_for_role(user, "media.factory.access", True)
            permissions.add_permission_for_role(user, "media.factory.construct", True)
            factory.set_permissions(permissions)
        server.get_mount_points().add_factory(f"/{mount}", factory)
    if full:
        whole = GstRtspServer.RTSPMediaFactory()
        whole.set_launch(f"( filesrc location={full} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )")
        server.get_mount_points().add_factory("/full", whole)
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
