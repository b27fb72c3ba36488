#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real. Idempotent: does
# nothing when they are all present. Needs root (or sudo) on Debian/Ubuntu.
set -euo pipefail

PACKAGES=(
  ffmpeg            # encodes test footage (H.264) for file and stream sources
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
