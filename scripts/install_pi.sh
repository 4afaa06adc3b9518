#!/usr/bin/env bash
# Prepare a Raspberry Pi (Pi OS Bookworm: Python 3.11, or Trixie: Python 3.13; 64-bit) for tinyear.
#
# Two uses:
#   scripts/install_pi.sh --prepare-only
#       only what `tinyear deploy` needs on the Pi: the apt packages (Python venv support, PortAudio,
#       libsndfile, ALSA tools), the user in the `audio` group, and lingering so that a user service
#       starts at boot. Then deploy from the workstation: tinyear deploy MODEL.tinyear --to pi@HOST --service
#   scripts/install_pi.sh [--venv DIR]            (from a clone of tinyear on the Pi)
#       the same, plus a virtual environment with tinyear's device half installed from this checkout
#       (`pip install '.[device]'`, or '.[tflite]' where only tflite-runtime has wheels), default DIR
#       ~/tinyear-venv; then: ~/tinyear-venv/bin/tinyear-device listen MODEL.tinyear
#
# Options: --venv DIR, --prepare-only, --runtime ai-edge-litert|tflite-runtime, --dry-run (print the
# commands, run nothing), --python PATH (default python3). Needs sudo for apt-get, usermod, loginctl.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$HOME/tinyear-venv"
PREPARE_ONLY=0
DRY=0
RUNTIME=auto
PY=python3
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) VENV="${2:?--venv needs a folder}"; shift 2 ;;
    --prepare-only) PREPARE_ONLY=1; shift ;;
    --runtime) RUNTIME="${2:?--runtime needs ai-edge-litert or tflite-runtime}"; shift 2 ;;
    --python) PY="${2:?--python needs a path}"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install_pi.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

run() { echo "+ $*"; if [ "$DRY" = 0 ]; then "$@"; fi; }
say() { echo "install_pi.sh: $*"; }
die() { echo "install_pi.sh: error: $*" >&2; exit 1; }
SUDO=""; if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

# -- what this Pi is ------------------------------------------------------------------------------------
if [ -r /etc/os-release ]; then . /etc/os-release; fi
say "system: ${PRETTY_NAME:-unknown}, kernel $(uname -m)"
# 1. apt packages: venv support (Debian splits ensurepip out), PortAudio for sounddevice, libsndfile
#    (soundfile's wheel bundles one; the system's is the fallback), ALSA tools to find the microphone.
run $SUDO apt-get update
run $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
  python3 python3-venv python3-pip libportaudio2 libsndfile1 alsa-utils
command -v "$PY" >/dev/null || [ "$DRY" = 1 ] || die "$PY not found after installing python3"
read -r PYVER PYPLAT < <("$PY" -c 'import sys, sysconfig; print("%d.%d" % sys.version_info[:2], sysconfig.get_platform())' 2>/dev/null || echo "0.0 unknown")
MACHINE="${PYPLAT#linux-}"
say "python: $PYVER on $MACHINE"
# The Python floor is pyproject.toml's requires-python (its one home). Without a checkout beside this
# script (copied alone for --prepare-only) it is not checked here: tinyear deploy checks it.
FLOOR="$(sed -n 's/^requires-python *= *">= *\([0-9]*\.[0-9]*\)".*/\1/p' "$REPO/pyproject.toml" 2>/dev/null || true)"
if [ -n "$FLOOR" ] && [ "$DRY" = 0 ] && ! "$PY" -c "import sys; sys.exit(sys.version_info[:2] < tuple(map(int, '$FLOOR'.split('.'))))"; then
  die "Python $PYVER is older than the $FLOOR tinyear needs: use Pi OS Bookworm (3.11) or Trixie (3.13), or pass --python"
fi

# 2. the user can use the microphone, and a user service (tinyear deploy --service) starts at boot.
USER_NAME="$(id -un)"
if [ "$USER_NAME" != root ]; then
  run $SUDO usermod -aG audio "$USER_NAME"
  run $SUDO loginctl enable-linger "$USER_NAME" || say "could not enable lingering: the user service starts at login, not at boot"
fi
if [ "$PREPARE_ONLY" = 1 ]; then
  say "ready for: tinyear deploy MODEL.tinyear --to $USER_NAME@$(hostname).local --service   (on the workstation)"
  exit 0
fi

# 3. the runtime: ai-edge-litert has wheels for Python 3.10-3.13 on aarch64; tflite-runtime 2.14 for
#    <= 3.11, also on 32-bit armv7l (see docs/DEPLOY.md, scripts/check_aarch64_wheels.sh).
if [ "$RUNTIME" = auto ]; then
  case "$MACHINE" in
    aarch64|x86_64) RUNTIME=ai-edge-litert ;;
    armv7l) case "$PYVER" in 3.10|3.11) RUNTIME=tflite-runtime ;; *) die "no TFLite runtime has wheels for Python $PYVER on 32-bit armv7l: install the 64-bit Pi OS" ;; esac ;;
    *) [ "$DRY" = 1 ] || die "no TFLite runtime has wheels for $MACHINE" ;;
  esac
fi
EXTRA=device; [ "$RUNTIME" = tflite-runtime ] && EXTRA=tflite
[ -f "$REPO/pyproject.toml" ] || die "$REPO is not a tinyear checkout; use --prepare-only and tinyear deploy instead"

# 4. the virtual environment and the device half (no torch: the device extra is numpy, soundfile, soxr,
#    sounddevice and the runtime, all prebuilt aarch64 wheels).
run "$PY" -m venv "$VENV"
run "$VENV/bin/python" -m pip install --disable-pip-version-check -U pip
run "$VENV/bin/python" -m pip install --disable-pip-version-check "$REPO[$EXTRA]"
run "$VENV/bin/tinyear-device" --version
say "installed: $VENV/bin/tinyear-device ($RUNTIME). Try: $VENV/bin/tinyear-device devices; then"
say "  $VENV/bin/tinyear-device listen MODEL.tinyear"
