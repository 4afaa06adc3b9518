#!/usr/bin/env bash
# Set up a tinyear environment on Debian, Ubuntu or Raspberry Pi OS.
#
#   scripts/setup.sh [host|device|tflite] [VENV]
#
#   host    (default) the workstation: training, export, tests      -> .venv
#           (and, best effort, the backbone extra: the speech_embedding teacher)
#   device  only what a Pi needs to listen (no torch), plus tests    -> .venv-device
#   tflite  like device, with tflite-runtime and numpy<2             -> .venv-tflite
#
# Installs the Debian packages it needs when run as root or with passwordless sudo (otherwise it
# lists the missing ones and goes on), creates the virtual environment and installs the project into
# it with the extras of that role. Safe to run again: it only adds what is missing.
set -euo pipefail

ROLE=${1:-host}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case "$ROLE" in
  host)   VENV=${2:-$ROOT/.venv};        EXTRAS="host,tensorflow,test" ;;
  device) VENV=${2:-$ROOT/.venv-device}; EXTRAS="device,test" ;;
  tflite) VENV=${2:-$ROOT/.venv-tflite}; EXTRAS="tflite,test" ;;
  *) echo "setup.sh: unknown role '$ROLE' (host, device or tflite)" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}
say() { printf '\033[1m[setup %s]\033[0m %s\n' "$ROLE" "$*" >&2; }

# -- Debian packages ---------------------------------------------------------------------------------
# espeak-ng, flite: synthetic speech (more voices with both); libportaudio2: microphones (sounddevice); libsndfile1: audio files;
# pulseaudio + utils + ALSA's pulse plugin: the virtual microphone the tests play words into;
# openssh-server: the deploy tests' sshd; sox: test audio tools; python3-venv: venvs on stock Debian;
# debootstrap + qemu-user-static: the arm64 (Pi OS-like) userland the device half is proven in.
APT_PACKAGES=(espeak-ng flite libportaudio2 libsndfile1 pulseaudio pulseaudio-utils libasound2-plugins alsa-utils
              openssh-server openssh-client sox python3-venv debootstrap qemu-user-static)
missing=()
if command -v dpkg-query >/dev/null; then
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo -n true 2>/dev/null && SUDO="sudo -n"
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "not root and no passwordless sudo: please install ${missing[*]} (apt-get install ...)"
  fi
fi

# -- virtual environment -------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
say "installing tinyear[$EXTRAS] into $VENV"
if [ "$ROLE" = host ]; then
  # Editable: the workstation runs the code in this checkout. torch is pinned to 2.13.0 (CPU build).
  "$VENV/bin/python" -m pip install -q -e "$ROOT[$EXTRAS]"
  # Best effort, apart: the backbone extra's wheel exists only for some platforms (manylinux_2_35
  # x86-64/aarch64, Windows); without it the pipeline says so and uses the built-in CNN teacher.
  if "$VENV/bin/python" -m pip install -q -e "$ROOT[backbone]"; then
    say "installed tinyear[backbone] (speech_embedding teacher)"
  else
    say "could not install tinyear[backbone] (pyopen-wakeword has no wheel here?): continuing without the speech_embedding teacher"
  fi
else
  # A regular install, as on a Pi: proves the packaged device half works without this checkout.
  "$VENV/bin/python" -m pip install -q --force-reinstall --no-deps "$ROOT"
  "$VENV/bin/python" -m pip install -q "$ROOT[$EXTRAS]"
fi
say "ready: $VENV ($("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])'))"
