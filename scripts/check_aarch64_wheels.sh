#!/usr/bin/env bash
# Check that every dependency of tinyear's device half resolves to a prebuilt aarch64 wheel for the
# Pythons of Raspberry Pi OS: Bookworm (Python 3.11, glibc 2.36) and Trixie (Python 3.13, glibc 2.41).
# A Pi has no compiler to fall back on, so "no wheel" means "does not install".
#
# Resolves with pip's own resolver for the target (pip download --only-binary=:all: --platform ...
# --python-version ...), for each runtime the deploy can choose:
#   device  = the `device` extra (numpy, soundfile, soxr, sounddevice, ai-edge-litert)  on 3.11 and 3.13
#   tflite  = the `tflite` extra (tflite-runtime 2.14, numpy<2)                          on 3.11 (no wheels past it)
# pip's --platform takes the exact tags it is given, so every manylinux tag up to the OS's glibc is
# listed (manylinux2014 = manylinux_2_17).
#
# usage: scripts/check_aarch64_wheels.sh [--keep DIR]
#   --keep DIR   keep the downloaded wheels in DIR/<python>-<extra>/ (a --wheelhouse for an offline Pi)
# Prints one line per wheel and a verdict per (Python, extra); exit status 1 if any does not resolve.
# Needs: a pip that reaches PyPI. Runs in about a minute (downloads ~100 MB).
set -u -o pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
KEEP=""
if [ "${1:-}" = "--keep" ]; then KEEP="${2:?--keep needs a folder}"; fi

# The device dependencies, read from pyproject.toml (one source of truth), without the runtimes.
read_extra() {
  "$PY" - "$ROOT/pyproject.toml" "$1" <<'EOF'
import sys, tomllib
extras = tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]
print("\n".join(extras[sys.argv[2]]))
EOF
}

platform_args() {  # $1: newest glibc minor of the OS
  local args=(--platform manylinux2014_aarch64 --platform linux_aarch64)
  for minor in $(seq 17 "$1"); do args+=(--platform "manylinux_2_${minor}_aarch64"); done
  printf '%s\n' "${args[@]}"
}

status=0
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "# scripts/check_aarch64_wheels.sh on $(date -u +%Y-%m-%d), pip $("$PY" -m pip --version | cut -d' ' -f2)"
for combo in "3.11 36 device Bookworm" "3.13 41 device Trixie" "3.11 36 tflite Bookworm"; do
  set -- $combo
  version=$1 glibc=$2 extra=$3 os=$4
  dest="$work/$version-$extra"
  [ -n "$KEEP" ] && dest="$KEEP/$version-$extra"
  mkdir -p "$dest"
  mapfile -t reqs < <(read_extra "$extra")
  mapfile -t plats < <(platform_args "$glibc")
  echo "## Pi OS $os: Python $version, glibc 2.$glibc, aarch64, extra '$extra': ${reqs[*]}"
  if log=$("$PY" -m pip download --disable-pip-version-check -q --only-binary=:all: --python-version "$version" \
        "${plats[@]}" -d "$dest" "${reqs[@]}" 2>&1); then
    for whl in "$dest"/*.whl; do echo "  $(basename "$whl")"; done
    # Every file is a wheel (no sdist slipped through) and no wheel is x86-only.
    if ls "$dest" | grep -v '\.whl$' >/dev/null || ls "$dest" | grep -E 'x86_64|win|macosx' >/dev/null; then
      echo "  FAIL: a file that is not an aarch64 or pure-Python wheel"; status=1
    else
      echo "  OK: $(ls "$dest"/*.whl | wc -l) wheels, all aarch64 or pure Python"
    fi
  else
    echo "$log" | grep -v '^WARNING: Location' | tail -n 3 | sed 's/^/  /'
    echo "  FAIL: does not resolve to wheels"; status=1
  fi
done
exit $status
