"""The command line's rough edges, for real: a bad option shows its command's usage, quoted error text
is cut at a word, Ctrl-C stops the feature workers without a traceback each and says how to resume, a
resumed run says where it resumes, and a command that fails leaves no empty folder behind.

Interrupts are real SIGINTs sent to the process group of a real `tinyear` (what a terminal's Ctrl-C
does), once the run has reached the point under test (its pool workers exist, or its last.pt).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import train_data

ROOT = Path(__file__).resolve().parent.parent


def test_first_line_cuts_at_a_word_boundary():
    from tinyear.device.errors import first_line

    text = "Dynamic control flow is not supported at the moment in strict export mode, please rewrite " * 5
    cut = first_line(RuntimeError(text + "\nsecond line"), 100)
    assert cut.endswith(" ...") and len(cut) <= 104
    assert text.startswith(cut[:-4]) and text[len(cut) - 4] == " "  # the cut falls before a space
    assert first_line(ValueError("short\nmore")) == "short"
    assert first_line(KeyError()) == "KeyError"
    assert first_line("\n\n  a line  \n") == "a line"


def test_a_bad_option_shows_the_commands_own_usage(capsys):
    from tinyear.device.cli import main as device_main
    from tinyear.host.cli import main

    with pytest.raises(SystemExit) as info:
        main(["pipeline", "--quick", "--no-such-flag"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert "usage: tinyear pipeline [-h]" in err and "tinyear pipeline: error: unrecognized arguments: --no-such-flag" in err
    with pytest.raises(SystemExit):
        device_main(["selftest", "x.tinyear", "--nope"])
    err = capsys.readouterr().err
    assert "usage: tinyear-device selftest" in err and "unrecognized arguments: --nope" in err
    with pytest.raises(SystemExit):  # no command: the top-level usage, as before
        main(["--nope"])
    assert "usage: tinyear [-h]" in capsys.readouterr().err


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _sigint_default() -> None:
    """Popen preexec_fn: SIGINT as a terminal's foreground job has it. A test run started in the
    background of a non-interactive shell inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_when(proc: subprocess.Popen, ready, timeout: float = 300, send: bool = True) -> None:
    """SIGINT to the process group (a terminal's Ctrl-C) as soon as `ready()` holds (send=False: only wait)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the run never reached the point to interrupt"
        time.sleep(0.05)
    if send:
        os.killpg(proc.pid, signal.SIGINT)


FEATURES = """
import sys
from tinyear.host.data import load_dataset
from tinyear.host.featcache import build_features
dataset = load_dataset(sys.argv[1], ("low", "high"), quiet=True)
try:
    build_features(dataset, variants=40, jobs=2, cache_dir=sys.argv[2], progress=False)
except KeyboardInterrupt:
    print("parent interrupted", file=sys.stderr)
    sys.exit(130)
print("finished before the interrupt", file=sys.stderr)
"""


@pytest.mark.slow
def test_ctrl_c_stops_the_feature_workers_without_a_traceback_each(tmp_path):
    data = train_data.make_dataset(tmp_path / "data", per_word=40)
    proc = subprocess.Popen([sys.executable, "-c", FEATURES, str(data), str(tmp_path / "cache")], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=_sigint_default)
    _interrupt_when(proc, lambda: len(_children(proc.pid)) >= 2, send=False)  # the pool's two workers are up ...
    # ... but the parent ignores SIGINT while it forks them (featcache._pool_ignoring_sigint): a Ctrl-C
    # then is dropped, as it is meant to be. Interrupt once they are working.
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["parent interrupted"], err  # no ForkPoolWorker-N tracebacks


@pytest.mark.slow
def test_interrupted_training_says_how_to_resume_and_the_resume_says_where(tmp_path):
    data = train_data.make_dataset(tmp_path / "data", per_word=30)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "tinyear.host.cli", "distill", str(data), "--words", "low", "high", "--no-teacher",
           "--student", "dscnn-s", "--epochs", "40", "--patience", "40", "--variants", "1", "--out", str(out)]
    env = {**os.environ, "TINYEAR_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env,
                            preexec_fn=_sigint_default)
    _interrupt_when(proc, lambda: (out / "last.pt").exists())
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "ForkPoolWorker" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last == "tinyear: interrupted: add --resume to the same command to resume (from the last finished epoch)"
    again = subprocess.run([*cmd, "--resume"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "tinyear: resuming from epoch " in again.stderr and "of 40" in again.stderr


@pytest.mark.slow
def test_a_failed_training_or_pipeline_leaves_no_empty_folder(tmp_path):
    data = train_data.make_dataset(tmp_path / "data", per_word=10)
    out = tmp_path / "never"
    done = subprocess.run([sys.executable, "-m", "tinyear.host.cli", "distill", str(data), "--words", "low", "high",
                           "--teacher", str(tmp_path / "no-such-teacher.pt"), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1].startswith("tinyear: error: "), done.stderr
    assert not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run([sys.executable, "-m", "tinyear.host.cli", "pipeline", "--data", str(empty), "--out",
                           str(tmp_path / "pipe")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and "no class folders" in done.stderr.strip().splitlines()[-1], done.stderr
    assert not (tmp_path / "pipe").exists()  # neither the folder nor a stray pipeline.json
