#!/usr/bin/env bash
# The main job on a fresh machine:   scripts/run.sh [tinyear pipeline options...]
#
# Sets up the workstation environment (.venv; Debian packages when root or with sudo; the backbone
# extra when pyopen-wakeword has a wheel for this machine, else it says so and goes on), then runs
# `tinyear pipeline` on the embedded default: synthetic keyword speech (no download), an int8 head over
# the speech_embedding backbone (without the extra, or with --ship student: teacher, distilled student
# and baseline), export with verification, calibration, evaluation, report. Results go to
# runs/default (report.md, keywords.tinyear); rerunning resumes. Options pass through, e.g.
#   scripts/run.sh --quick --out runs/quick
#   scripts/run.sh --data ../shared/data/speech-commands-mini-train --out runs/real
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
scripts/setup.sh host
args=("$@")
printf '%s\n' "${args[@]}" | grep -qx -- '--out' || args=(--out runs/default "${args[@]}")
.venv/bin/tinyear pipeline "${args[@]}"
