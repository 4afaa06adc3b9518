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
#   scripts/install_pi.sh --service MODEL.tinyear [--venv DIR]
#       the same, then the listener on MODEL as a systemd service: the unit tinyear deploy --service
#       installs (host/deploy/tinyear-listen.service), rendered for this venv and bundle, as a user unit
#       (a system unit when run as root), enabled and started.
#
# Options: --venv DIR, --prepare-only, --service MODEL, --runtime ai-edge-litert|tflite-runtime,
# --dry-run (print the commands, run nothing), --python PATH (default python3). Needs sudo for apt-get,
# usermod, loginctl.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$HOME/tinyear-venv"
PREPARE_ONLY=0
DRY=0
RUNTIME=auto
PY=python3
SERVICE_BUNDLE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) VENV="${2:?--venv needs a folder}"; shift 2 ;;
    --prepare-only) PREPARE_ONLY=1; shift ;;
    --service) SERVICE_BUNDLE="${2:?--service needs the bundle to listen with}"; shift 2 ;;
    --runtime) RUNTIME="${2:?--runtime needs ai-edge-litert or tflite-runtime}"; shift 2 ;;
    --python) PY="${2:?--python needs a path}"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
  [ -z "$SERVICE_BUNDLE" ] || die "--service installs the listener from the venv this script makes; drop --prepare-only (or use tinyear deploy --service)"
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

# 5. with --service: the listener as a systemd service, from the one unit file (rendered by the same
#    code as tinyear deploy --service, from the package just installed).
if [ -n "$SERVICE_BUNDLE" ]; then
  [ -f "$SERVICE_BUNDLE" ] || [ "$DRY" = 1 ] || die "$SERVICE_BUNDLE: no such bundle"
  BUNDLE_ABS="$(cd "$(dirname "$SERVICE_BUNDLE")" 2>/dev/null && pwd || dirname "$SERVICE_BUNDLE")/$(basename "$SERVICE_BUNDLE")"
  if [ "$USER_NAME" = root ]; then SCOPE=system; UNIT_DIR=/etc/systemd/system; CTL=(systemctl)
  else SCOPE=user; UNIT_DIR="$HOME/.config/systemd/user"; CTL=(systemctl --user); fi
  UNIT="$UNIT_DIR/tinyear-listen.service"
  RENDER=("$VENV/bin/python" -m tinyear.host.deploy.service --scope "$SCOPE" --user "$USER_NAME" --venv "$VENV"
          --bundle "$BUNDLE_ABS" --dir "$(dirname "$BUNDLE_ABS")")
  run mkdir -p "$UNIT_DIR"
  echo "+ ${RENDER[*]} > $UNIT"
  if [ "$DRY" = 0 ]; then
    TMP_UNIT="$(mktemp "$UNIT_DIR/.tinyear-listen.XXXXXX")"
    "${RENDER[@]}" > "$TMP_UNIT" && chmod 644 "$TMP_UNIT" && mv "$TMP_UNIT" "$UNIT" || { rm -f "$TMP_UNIT"; die "could not write $UNIT"; }
  fi
  run "${CTL[@]}" daemon-reload
  run "${CTL[@]}" enable --now tinyear-listen
  say "service: $UNIT; its events: journalctl $([ "$SCOPE" = user ] && echo --user) -u tinyear-listen -o cat -f"
fi
