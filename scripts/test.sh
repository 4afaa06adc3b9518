#!/usr/bin/env bash
# Set up everything and run all tests:   scripts/test.sh [pytest args...]
#
# 1. the workstation environment (.venv, host + test extras) runs the whole suite, end-to-end tests
#    included; it also builds the tiny test models the next two steps use;
# 2. a device-only environment (.venv-device: device extra, no torch) runs the device tests;
# 3. a tflite-runtime environment (.venv-tflite: numpy<2, tflite-runtime) runs them again,
#    so both interpreters are proven, not assumed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export TINYEAR_TEST_ARTIFACTS="$ROOT/.test-artifacts"
step() { printf '\n\033[1m== %s ==\033[0m\n' "$*" >&2; }
start=$(date +%s)

step "workstation environment: all tests"
scripts/setup.sh host
.venv/bin/python -m pytest "$@"

step "device-only environment (no torch): device tests"
scripts/setup.sh device
.venv-device/bin/python -m pytest -m device -p no:cacheprovider "$@"
.venv-device/bin/python - <<'PY'
import importlib.util, sys
assert importlib.util.find_spec("torch") is None, "the device environment must not have torch"
from tinyear.device.runtime import find_interpreter
print("device environment runtime:", find_interpreter()[1])
PY

step "tflite-runtime environment (numpy<2): device tests"
scripts/setup.sh tflite
.venv-tflite/bin/python -m pytest -m device -p no:cacheprovider "$@"
.venv-tflite/bin/python - <<'PY'
import numpy
from tinyear.device.runtime import find_interpreter
name = find_interpreter()[1]
assert name == "tflite-runtime", name
print("tflite environment runtime:", name, "numpy", numpy.__version__)
PY

step "all tests passed in $(( $(date +%s) - start )) s"
