"""The shell scripts `tinyear deploy` runs on the device, and how it reads what they print.

The device folder (default `~/tinyear`) after a deploy:

    DIR/current.tinyear    the bundle in use (the service's path; replaced by an atomic rename)
    DIR/previous.tinyear   the one before it
    DIR/venv -> envs/KEY   the environment in use (a symlink, swapped atomically)
    DIR/envs/KEY/          one virtual environment per (device wheel, runtime, Python); the current one
                           and the previous one are kept, complete ones hold `.tinyear-complete`
    DIR/wheels/            dependency wheels copied from a --wheelhouse (a cache: uploaded once)
    DIR/deploy.json        what is deployed: bundle, model sha256, environment, runtime, versions, time

Everything new goes into `DIR/.staging-XXXXXX` (and a new `envs/KEY`) first; only a verified deploy is
switched in (`SWITCH`), and `ABORT` removes exactly what this deploy added, so a failure at any step
leaves the device as it was. `ROLLBACK` swaps the current and previous bundles (`tinyear deploy
--rollback`). `DIR/.deploy-lock` keeps two deploys apart. The scripts are plain POSIX sh run by
`sh -s` (Pi OS: dash, GNU coreutils); their arguments arrive as "$1", "$2", ...

Standard library only.
"""

from __future__ import annotations

import json

# The Python probe must run on any Python 3 (an old one is what it is there to find): no f-strings.
PROBE_PY = r"""
import sys, sysconfig, platform, struct
print("python_version=%d.%d.%d" % tuple(sys.version_info[:3]))
print("python_executable=%s" % sys.executable)
print("python_platform=%s" % sysconfig.get_platform())
print("python_bits=%d" % (struct.calcsize("P") * 8))
print("libc=%s" % "-".join(platform.libc_ver()))
try:
    import venv, ensurepip
    print("venv=1")
except Exception:
    print("venv=0")
"""

# $1 python, $2 folder (may start with ~), $3 the Python probe. Prints key=value lines.
PROBE = r"""
PY=$1; DIR=$2
case $PY in "~/"*) PY=$HOME/${PY#"~/"} ;; esac
case $DIR in "~") DIR=$HOME ;; "~/"*) DIR=$HOME/${DIR#"~/"} ;; esac
echo "dir=$DIR"
echo "user=$(id -un)"
echo "uid=$(id -u)"
echo "kernel_machine=$(uname -m)"
if [ -d /run/systemd/system ]; then echo "systemd=1"; else echo "systemd=0"; fi
echo "pid1=$(cat /proc/1/comm 2>/dev/null || echo unknown)"
d=$DIR; while [ ! -d "$d" ]; do d=$(dirname "$d"); done
echo "free_kb=$(df -Pk "$d" 2>/dev/null | awk 'NR==2 {print $4}')"
if [ -w "$d" ]; then echo "writable=1"; else echo "writable=0"; fi
echo "nearest=$d"
if [ -d "$DIR" ]; then echo "dir_exists=1"; fi
if [ -d "$DIR/envs" ]; then echo "envs_dir=1"; fi
if [ -f "$DIR/deploy.json" ]; then printf 'state='; tr -d '\n' < "$DIR/deploy.json"; echo; fi
if [ -f "$DIR/previous.tinyear" ]; then echo "previous=1"; fi
if [ -e "$DIR/.deploy-lock" ]; then echo "locked=$(cat "$DIR/.deploy-lock/owner" 2>/dev/null || echo unknown)"; fi
for f in "$DIR"/wheels/*.whl; do if [ -f "$f" ]; then echo "cached=$(basename "$f") $(wc -c < "$f")"; fi; done
for e in "$DIR"/envs/*; do if [ -f "$e/.tinyear-complete" ]; then echo "env=$(basename "$e")"; fi; done
if command -v "$PY" >/dev/null 2>&1; then
  "$PY" -c "$3" 2>/dev/null || echo "python_broken=1"
else
  echo "python_missing=1"
fi
"""

# $1 folder, $2 who is deploying. Creates the folder (if new), the lock and a staging folder.
BEGIN = r"""
DIR=$1
created=0
if [ ! -d "$DIR" ]; then mkdir -p "$DIR" || exit 3; created=1; fi
echo "created=$created"
if ! mkdir "$DIR/.deploy-lock" 2>/dev/null; then echo "locked=$(cat "$DIR/.deploy-lock/owner" 2>/dev/null)"; exit 4; fi
echo "$2" > "$DIR/.deploy-lock/owner"
STAGE=$(mktemp -d "$DIR/.staging-XXXXXX") || exit 5
echo "stage=$STAGE"
"""

# $1 folder, $2 env key, $3 python, $4 staging folder, $5 device wheel file name, $6 extra,
# $7 offline (1: --no-index, dependencies only from the staging folder and the wheel cache).
ENV = r"""
DIR=$1; KEY=$2; PY=$3; STAGE=$4; WHEEL=$5; EXTRA=$6; OFFLINE=$7
case $PY in "~/"*) PY=$HOME/${PY#"~/"} ;; esac
ENVDIR="$DIR/envs/$KEY"
mkdir -p "$DIR/envs" || exit 3
rm -rf "$ENVDIR"
if ! "$PY" -m venv "$ENVDIR" > "$STAGE/venv.log" 2>&1; then
  tail -n 3 "$STAGE/venv.log" >&2; rm -rf "$ENVDIR"; exit 10
fi
set -- --disable-pip-version-check --no-input --no-cache-dir --retries 1 --timeout 20 --find-links "$STAGE"
if [ -d "$DIR/wheels" ]; then set -- "$@" --find-links "$DIR/wheels"; fi
if [ "$OFFLINE" = 1 ]; then set -- "$@" --no-index; fi
if ! "$ENVDIR/bin/python" -m pip install "$@" "$STAGE/$WHEEL[$EXTRA]" > "$STAGE/pip.log" 2>&1; then
  { grep -E 'No matching distribution|Could not find a version|depends on|No space left|ERROR' "$STAGE/pip.log" || tail -n 4 "$STAGE/pip.log"; } | tail -n 6 >&2
  rm -rf "$ENVDIR"; exit 11
fi
touch "$ENVDIR/.tinyear-complete"
du -sk "$ENVDIR" | awk '{print "env_kb=" $1}'
"""

# $1 tinyear-device of the environment to verify with, $2 bundle.
VERIFY = r"""
exec "$1" selftest "$2" --json
"""

# $1 folder, $2 staging folder, $3 env key, $4 previous env key (kept; may be empty), $5 state JSON.
# The state is written first (a failure there changes nothing); then renames, each atomic.
SWITCH = r"""
set -e
DIR=$1; STAGE=$2; KEY=$3; PREV=$4
cd "$DIR"
printf '%s\n' "$5" > .deploy.json.new
mkdir -p wheels
for f in "$STAGE"/*.whl; do
  case $(basename "$f") in tinyear-*) ;; *) if [ -f "$f" ]; then mv -f "$f" wheels/; fi ;; esac
done
if [ -f current.tinyear ]; then ln -f current.tinyear .previous.tinyear.new && mv -f .previous.tinyear.new previous.tinyear; fi
ln -sfn "envs/$KEY" .venv.new && mv -Tf .venv.new venv
mv -f "$STAGE/bundle.tinyear" current.tinyear
mv -f .deploy.json.new deploy.json
for e in envs/*; do
  n=$(basename "$e"); if [ "$n" != "$KEY" ] && [ "$n" != "$PREV" ] && [ -d "$e" ]; then rm -rf "$e"; fi
done
"""

# $1 folder, $2 state JSON. `tinyear deploy --rollback`: swap current.tinyear and previous.tinyear under
# the lock (exit 4: locked), each step an atomic rename: the old current is kept as a hard link first.
ROLLBACK = r"""
DIR=$1
cd "$DIR" || exit 3
if ! mkdir .deploy-lock 2>/dev/null; then echo "locked=$(cat .deploy-lock/owner 2>/dev/null)"; exit 4; fi
echo "rollback" > .deploy-lock/owner
fail() { rm -f .deploy.json.new; rm -rf .deploy-lock; echo "$1" >&2; exit 5; }
printf '%s\n' "$2" > .deploy.json.new || fail "cannot write deploy.json"
ln -f current.tinyear .previous.tinyear.new || fail "cannot link current.tinyear"
mv -f previous.tinyear current.tinyear || { rm -f .previous.tinyear.new; fail "cannot rename previous.tinyear"; }
mv -f .previous.tinyear.new previous.tinyear || fail "cannot rename the old current bundle (kept as .previous.tinyear.new)"
mv -f .deploy.json.new deploy.json || fail "cannot replace deploy.json"
rm -rf .deploy-lock
"""

# $1 folder, $2 staging folder (or ""), $3 1 if this deploy created the folder, $4 env key this deploy
# built (or ""), $5 1 if this deploy created DIR/envs, $6 1 to release the lock. Undoes what a deploy added.
ABORT = r"""
DIR=$1; STAGE=$2; CREATED=$3; NEWENV=$4; NEWENVS=$5
if [ "$CREATED" = 1 ]; then rm -rf "$DIR"; exit 0; fi
if [ -n "$NEWENV" ]; then rm -rf "$DIR/envs/$NEWENV"; fi
if [ "$NEWENVS" = 1 ]; then rmdir "$DIR/envs" 2>/dev/null; fi
if [ -n "$STAGE" ]; then rm -rf "$STAGE"; fi
if [ "$6" = 1 ]; then rm -rf "$DIR/.deploy-lock"; fi
exit 0
"""

# $1 scope (user|system), $2 unit text, $3 1 to install the unit (else only restart an installed one).
SERVICE = r"""
SCOPE=$1; NAME=tinyear-listen.service
if [ "$SCOPE" = system ]; then UDIR=/etc/systemd/system; else UDIR=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user; fi
sc() { if [ "$SCOPE" = system ]; then systemctl "$@"; else systemctl --user "$@"; fi; }
if [ "$3" = 1 ]; then
  mkdir -p "$UDIR" || exit 3
  printf '%s\n' "$2" > "$UDIR/.$NAME.new" && mv -f "$UDIR/.$NAME.new" "$UDIR/$NAME" || exit 3
fi
echo "unit=$UDIR/$NAME"
if [ ! -d /run/systemd/system ]; then
  echo "started=0"; echo "reason=systemd is not running on the device (PID 1 is $(cat /proc/1/comm 2>/dev/null))"; exit 0
fi
if [ "$SCOPE" = user ]; then loginctl enable-linger "$(id -un)" >/dev/null 2>&1 || echo "linger=0"; fi
if ! out=$( { sc daemon-reload && sc enable "$NAME" && sc restart "$NAME"; } 2>&1 ); then
  echo "started=0"; echo "reason=systemctl failed: $(printf '%s' "$out" | tail -n 1)"; exit 0
fi
sleep 2
if sc is-active --quiet "$NAME"; then echo "started=1"; else
  echo "started=0"; echo "reason=the service stopped after starting: $(sc status "$NAME" 2>&1 | tail -n 1)"
fi
"""


def parse_lines(text: str) -> dict:
    """key=value lines -> dict; keys that repeat (cached, env) collect into lists; `state` is JSON."""
    out: dict = {"cached": {}, "env": []}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "cached":
            name, _, size = value.rpartition(" ")
            out["cached"][name] = int(size) if size.isdigit() else -1
        elif key == "env":
            out["env"].append(value)
        elif key == "state":
            try:
                out["state"] = json.loads(value)
            except ValueError:
                out["state"] = None  # damaged: treated as "no previous deploy" for the environment
        else:
            out[key] = value
    return out
