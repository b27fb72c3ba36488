#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real. Idempotent: does
# nothing when they are all present. Needs root (or sudo) on Debian/Ubuntu.
set -euo pipefail

PACKAGES=(
  ffmpeg            # encodes test footage (H.264) for file and stream sources
  prometheus        # promtool checks and unit-tests the alert rules; a real server scrapes bearwatch
  chromium          # the dashboard end-to-end test (Playwright drives /usr/bin/chromium)
  chromium-driver   # chromium's headless driver pieces, installed with it
  # A real RTSP server on loopback for the ingest tests and bench (tests/ingest/rtsp_server.py,
  # run by the system python3, not the venv):
  python3-gi                   # GObject bindings for the system python3
  gir1.2-gst-rtsp-server-1.0   # gst-rtsp-server's introspection data
  gstreamer1.0-plugins-base    # core elements (filesrc, ...)
  gstreamer1.0-plugins-good    # qtdemux, rtph264pay
  gstreamer1.0-plugins-bad     # h264parse
  gstreamer1.0-plugins-ugly    # completes the usual set for H.264 sources
  gstreamer1.0-libav           # libav decoders
  gstreamer1.0-rtsp            # RTSP support libraries
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing system packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
