"""Synthetic speech: layout and file format, bit-identical output for a seed, speaker split without leaks,
atomic writes, fill_missing over real data (a test-made tree and the shared mini-train), CLI bad input."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SHARED_DATA
from test_data import make_tree

from tinyear.device.errors import TinyearError
from tinyear.host import synth as synth_module
from tinyear.host.data import SILENCE, SYNTH_MANIFEST, UNKNOWN, load_dataset
from tinyear.host.fill import fill_missing
from tinyear.host.synth import plan, synthesize
from tinyear.host.tts import ESPEAK_ACCENTS, resolve_engines

TINYEAR = str(Path(sys.executable).with_name("tinyear"))
MINI = SHARED_DATA / "speech-commands-mini-train"


def _digest(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """2 words x 4 clips + 4 unknown, rendered with 2 processes."""
    out = tmp_path_factory.mktemp("synth") / "tiny"
    synthesize(out, ["yes", "stop"], per_word=4, unknown=4, seed=7, jobs=2, progress=False)
    return out


def test_layout_format_and_manifest(tiny):
    assert [p.name for p in tiny.parent.iterdir()] == ["tiny"]  # no staging folder left
    manifest = json.loads((tiny / SYNTH_MANIFEST).read_text())
    assert manifest["clips"] == {"_unknown_": 4, "stop": 4, "yes": 4}
    assert manifest["request"]["seed"] == 7 and "espeak-ng" in manifest["engines"]
    assert sorted(p.name for p in tiny.iterdir()) == ["_background_noise_", UNKNOWN, "stop", SYNTH_MANIFEST, "yes"]
    for p in (tiny / "yes").iterdir():
        assert re.fullmatch(r"[0-9a-f]{8}_nohash_\d+\.wav", p.name)
        info = sf.info(str(p))
        assert (info.samplerate, info.frames, info.channels, info.subtype) == (16000, 16000, 1, "PCM_16")
        x, _ = sf.read(str(p))
        assert 0.005 < np.sqrt(np.mean(x**2)) < 0.3  # a spoken word, not silence, not clipping
    for p in (tiny / UNKNOWN).iterdir():
        word = p.name.split("_")[0]
        assert re.fullmatch(r"[a-z]+_[0-9a-f]{8}_nohash_\d+\.wav", p.name) and word not in ("yes", "stop")
    assert len(list((tiny / "_background_noise_").iterdir())) >= 4
    ds = load_dataset(tiny, ["yes", "stop"], cache_dir=tiny.parent / "cache")
    assert {c.source for c in ds.clips if c.path is not None} == {"synthetic"}
    assert ds.noise_source == "synthetic"  # the synthetic recordings it wrote to _background_noise_
    assert ds.counts()[SILENCE] > 0


def test_same_seed_gives_identical_files_whatever_the_process_count(tiny, tmp_path):
    again = tmp_path / "again"
    synthesize(again, ["yes", "stop"], per_word=4, unknown=4, seed=7, jobs=1, progress=False)
    assert _digest(again) == _digest(tiny)
    other = tmp_path / "other"
    synthesize(other, ["yes", "stop"], per_word=4, unknown=4, seed=8, jobs=2, progress=False)
    assert _digest(other) != _digest(tiny)


def test_plan_spreads_speakers_and_the_speaker_split_has_no_leak():
    jobs = plan(["yes", "no", "up"], per_word=300, unknown=300, seed=0, engines=resolve_engines())
    speakers = {j.speaker.key for j in jobs}
    assert len(speakers) > 300  # hundreds of voices, not a handful
    assert len({j.speaker.voice.split("+")[0] for j in jobs if j.speaker.engine == "espeak-ng"}) == len(ESPEAK_ACCENTS)
    unknown_words = {j.text.rstrip(".!?") for j in jobs if j.rel.startswith(UNKNOWN)}
    assert len(unknown_words) > 50 and not unknown_words & {"yes", "no", "up"}
    # Names carry the speaker; the loader's split keys on it, so one voice never crosses splits.
    from tinyear.host.data import speaker_of, speaker_split

    by_speaker = defaultdict(set)
    for j in jobs:
        folder, name = j.rel.split("/")
        key = speaker_of(folder, name[:-4])
        assert key == j.speaker.key
        by_speaker[key].add(speaker_split(key))
    assert all(len(s) == 1 for s in by_speaker.values())
    assert len(jobs) == len({j.rel for j in jobs})  # no two clips share a file name


def test_existing_output_reused_refused_or_replaced(tiny, tmp_path):
    before = _digest(tiny)
    synthesize(tiny, ["yes", "stop"], per_word=4, unknown=4, seed=7, jobs=2, progress=False)  # same request
    assert _digest(tiny) == before
    with pytest.raises(TinyearError, match="made with other settings.*--force"):
        synthesize(tiny, ["yes", "stop"], per_word=5, unknown=4, seed=7, progress=False)
    target = tmp_path / "replace"
    synthesize(target, ["go"], per_word=2, unknown=0, seed=1, progress=False)
    synthesize(target, ["up"], per_word=2, unknown=0, seed=1, progress=False, force=True)
    assert (target / "up").is_dir() and not (target / "go").exists()
    assert not list(tmp_path.glob(".replace.*"))  # neither the staging folder nor the old dataset is left
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(TinyearError, match="exists and is not a tinyear synthetic dataset"):
        synthesize(tmp_path / "mine", ["go"], per_word=1, progress=False)


def test_interrupted_run_never_looks_complete(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synth_module.make_clip

    def failing(job):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(synth_module, "make_clip", failing)
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        synthesize(out, ["yes"], per_word=5, unknown=0, seed=0, jobs=1, progress=False)
    assert not out.exists()
    assert not list(tmp_path.glob(".cut.*"))  # the interrupted staging folder is removed
    monkeypatch.setattr(synth_module, "make_clip", real)
    (tmp_path / ".cut.999999999.x.part").mkdir()  # a killed run's (its process is gone): swept
    synthesize(out, ["yes"], per_word=5, unknown=0, seed=0, jobs=1, progress=False)  # starts over cleanly
    assert len(list((out / "yes").iterdir())) == 5 and not list(tmp_path.glob(".cut.*"))


def test_fill_missing_synthesizes_only_what_is_thin_and_says_so(tmp_path):
    real = make_tree(tmp_path / "real", words=("yes", "no"), others=("bed",), speakers=10, per_speaker=2)
    for p in list((real / "no").iterdir())[3:]:
        p.unlink()  # "no" is thin: 3 real clips
    lines = []
    ds = fill_missing(real, tmp_path / "fill", ["yes", "no", "up"], min_per_word=10, per_word=6,
                      unknown_ratio=1.0, seed=0, jobs=2, progress=False, report=lines.append,
                      cache_dir=tmp_path / "c")
    text = "\n".join(lines)
    assert "filled no: 3 real + 6 synthetic" in text and "filled up: 0 real + 6 synthetic" in text
    assert "filled yes" not in text
    assert "_silence_ cut from the real background recordings" in text
    manifest = json.loads((tmp_path / "fill" / SYNTH_MANIFEST).read_text())
    assert manifest["clips"].get("yes") is None and manifest["clips"]["no"] == 6
    assert manifest["fill_from"] == [str(real)] and "_background_noise_" not in os.listdir(tmp_path / "fill")
    sources = ds.summary()["sources"]
    assert sources["yes"] == {"real": 20} and sources["no"] == {"real": 3, "synthetic": 6}
    assert sources["up"] == {"synthetic": 6}
    assert ds.roots == [real, tmp_path / "fill"]


def test_fill_missing_mixes_synthetic_clips_into_every_word_when_asked(tmp_path):
    real = make_tree(tmp_path / "real", words=("yes", "no"), others=("bed",), speakers=10, per_speaker=2)
    for p in list((real / "no").iterdir())[3:]:
        p.unlink()  # "no" is thin: 3 real clips
    lines = []
    ds = fill_missing(real, tmp_path / "fill", ["yes", "no"], min_per_word=10, per_word=6, mix_per_word=4,
                      unknown_ratio=0.0, seed=0, jobs=2, progress=False, report=lines.append,
                      cache_dir=tmp_path / "c")
    text = "\n".join(lines)
    assert "filled no: 3 real + 6 synthetic" in text and "mixed in 4 synthetic clips of each of yes" in text
    sources = ds.summary()["sources"]
    # every word now has synthetic clips, so sounding synthetic no longer tells which word it is
    assert sources["yes"] == {"real": 20, "synthetic": 4} and sources["no"] == {"real": 3, "synthetic": 6}


@pytest.mark.slow
@pytest.mark.skipif(not MINI.exists(), reason=f"shared data not here: {MINI}")
def test_fill_missing_on_the_real_mini_train(tmp_path):
    lines = []
    ds = fill_missing(MINI, tmp_path / "fill", min_per_word=100, per_word=12, unknown_ratio=0.4, seed=0,
                      progress=False, report=lines.append, cache_dir=tmp_path / "c")
    text = "\n".join(lines)
    assert "filled on: 8 real + 12 synthetic" in text and "filled off: 7 real + 12 synthetic" in text
    assert "filled _unknown_" not in text  # 260 real clips already exceed 0.4 x an average word
    s = ds.summary()
    assert s["sources"]["on"] == {"real": 8, "synthetic": 12} and s["sources"]["yes"] == {"real": 599}
    assert s["noise"]["source"] == "real" and s["noise"]["recordings"] == 6


def _run(*args, env=None):
    return subprocess.run([TINYEAR, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def _one_error_line(done, text):
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and lines[0].startswith("tinyear: error: ") and text in lines[0], done.stderr


def test_cli_writes_a_dataset_and_reports_json(tmp_path):
    out = tmp_path / "cli"
    done = _run("synth", out, "--words", "go", "--per-word", "3", "--unknown", "2", "--seed", "3", "--jobs", "2",
                "--json", env={**os.environ, "TINYEAR_CACHE": str(tmp_path / "c")})
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["labels"] == ["go", UNKNOWN, SILENCE]
    assert summary["sources"]["go"] == {"synthetic": 3}
    assert "synthesizing" in done.stderr  # the progress bar


def test_cli_without_espeak_says_how_to_install(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    done = _run("synth", tmp_path / "x", "--per-word", "1", env={**os.environ, "PATH": str(empty)})
    _one_error_line(done, "apt-get install espeak-ng")
    assert not (tmp_path / "x").exists()


def test_cli_read_only_output_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root ignores mode bits; an immutable folder refuses even root
        if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
            pytest.skip("cannot make a read-only folder here (chattr +i failed and we are root)")
    else:
        locked.chmod(0o555)
    try:
        done = _run("synth", locked / "out", "--words", "go", "--per-word", "1")
        _one_error_line(done, f"cannot write to {locked}")
        assert "choose a writable folder" in done.stderr
        assert not any(locked.iterdir())
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(locked)], check=False)
        else:
            locked.chmod(0o755)


def test_cli_bad_words_and_existing_output(tmp_path):
    _one_error_line(_run("synth", tmp_path / "a", "--words", "_x", "--per-word", "1"), "cannot be a folder name")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "file.txt").write_text("mine")
    _one_error_line(_run("synth", tmp_path / "b", "--per-word", "1"), "is not a tinyear synthetic dataset")
    _one_error_line(_run("synth", tmp_path / "c", "--fill-from", tmp_path / "missing"), "no such dataset folder")
