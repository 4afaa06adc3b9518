"""Datasets: Speech Commands layout with list files, speaker split, _unknown_/_silence_, union of roots,
class weights, the arrays cache, bad input (library and `tinyear data` CLI), and the shared real data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, write_wav

from tinyear.device.errors import TinyearError
from tinyear.host.data import (
    SILENCE,
    SPLITS,
    SYNTH_MANIFEST,
    UNKNOWN,
    default_labels,
    load_dataset,
    speaker_of,
    speaker_split,
)

TINYEAR = str(Path(sys.executable).with_name("tinyear"))
MINI = SHARED_DATA / "speech-commands-mini-train"
PUBLIC_TEST = SHARED_DATA / "speech-commands-v2-test-public"


def _clip(rng, seconds=1.0, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    return (0.2 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def make_tree(root: Path, words=("yes", "no", "up"), others=("bed", "cat"), speakers=12, per_speaker=2,
              lists=False, noise_seconds=20.0, seed=0, suffix=".wav") -> Path:
    """A small Speech Commands-layout tree: <word>/<speaker>_nohash_<n><suffix>, other-word folders,
    _background_noise_/, and optionally validation_list.txt / testing_list.txt (naming .wav files)."""
    rng = np.random.default_rng(seed)
    names = [f"{i:08x}" for i in rng.integers(0, 2**32, speakers)]
    listed = {"validation": [], "test": []}
    for folder in (*words, *others):
        (root / folder).mkdir(parents=True)
        for s, spk in enumerate(names):
            for n in range(per_speaker):
                seconds = 0.6 if n % 2 else 1.0  # some short clips: fit_clip must pad them
                path = write_wav(root / folder / f"{spk}_nohash_{n}{suffix}", _clip(rng, seconds))
                if lists and s % 6 == 0:
                    listed["validation"].append(f"{folder}/{spk}_nohash_{n}.wav")
                elif lists and s % 6 == 1:
                    listed["test"].append(f"{folder}/{spk}_nohash_{n}.wav")
    if noise_seconds:
        (root / "_background_noise_").mkdir()
        write_wav(root / "_background_noise_" / "pink.wav", (0.05 * rng.standard_normal(int(noise_seconds * 16000))).astype(np.float32))
    if lists:
        (root / "validation_list.txt").write_text("\n".join(listed["validation"]) + "\n")
        (root / "testing_list.txt").write_text("\n".join(listed["test"]) + "\n")
    return root


def _run(*args, env=None):
    return subprocess.run([TINYEAR, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def test_speech_commands_tree_with_list_files_loads_as_is(tmp_path):
    root = make_tree(tmp_path / "sc", lists=True, suffix=".flac")  # lists name .wav, files are .flac
    listed = {line: split for split, name in (("validation", "validation_list.txt"), ("test", "testing_list.txt"))
              for line in (root / name).read_text().split()}
    ds = load_dataset(root, ["yes", "no", "up"], cache_dir=tmp_path / "cache")
    assert ds.labels == ["yes", "no", "up", UNKNOWN, SILENCE] == default_labels(["yes", "no", "up"])
    for c in ds.clips:
        if c.path is not None:
            rel = f"{c.path.parent.name}/{c.path.stem}.wav"
            assert c.split == listed.get(rel, "train"), rel
            assert c.source == "real"
    # _unknown_ comes from the non-target folders, spread over both words, as many as an average word.
    for split in SPLITS:
        counts = ds.counts(split)
        mean_word = sum(counts[w] for w in ("yes", "no", "up")) / 3
        pool = sum(1 for f in ("bed", "cat") for p in (root / f).iterdir() if listed.get(f"{f}/{p.stem}.wav", "train") == split)
        assert counts[UNKNOWN] == min(round(mean_word), pool)
        assert counts[SILENCE] == round(mean_word)
    train_unknown_words = {c.word for c in ds.clips_in("train") if c.label == UNKNOWN}
    assert train_unknown_words == {"bed", "cat"}
    x, y = ds.arrays("train", progress=False)
    assert x.shape == (len(ds.clips_in("train")), 16000) and x.dtype == np.float32
    assert y.dtype == np.int64 and set(y) == set(range(5))
    assert np.all(np.abs(x) <= 1.0)


def test_speaker_split_is_stable_and_no_speaker_crosses_splits(tmp_path):
    root = make_tree(tmp_path / "d", speakers=40, per_speaker=2)
    ds = load_dataset(root, ["yes", "no", "up"], cache_dir=tmp_path / "cache")
    by_speaker = defaultdict(set)
    for c in ds.clips:
        if c.path is not None:
            by_speaker[c.speaker].add(c.split)
            assert c.split == speaker_split(c.speaker)
    assert all(len(s) == 1 for s in by_speaker.values())
    assert {next(iter(s)) for s in by_speaker.values()} == set(SPLITS)  # 40 speakers reach all three splits
    # Adding files (a new speaker) never moves existing ones.
    write_wav(root / "yes" / "feedf00d_nohash_0.wav", _clip(np.random.default_rng(1)))
    again = load_dataset(root, ["yes", "no", "up"], cache_dir=tmp_path / "cache")
    old = {c.path: c.split for c in ds.clips if c.path is not None}
    assert all(old[c.path] == c.split for c in again.clips if c.path in old)


def test_caches_go_to_the_user_cache_folder_never_the_dataset(tmp_path, monkeypatch):
    from tinyear.host.featcache import cache_folder

    root = make_tree(tmp_path / "d", speakers=6, per_speaker=1)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    monkeypatch.delenv("TINYEAR_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    ds = load_dataset(root, ["yes", "no", "up"])
    ds.arrays("train", progress=False)
    assert list((tmp_path / "xdg" / "tinyear").glob("*.npy"))  # the waveform cache went there
    assert cache_folder(ds) == tmp_path / "xdg" / "tinyear" / "features"
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # nothing written into the dataset
    monkeypatch.setenv("TINYEAR_CACHE", str(tmp_path / "env"))
    assert cache_folder(ds) == tmp_path / "env" / "features"
    assert cache_folder(ds, tmp_path / "given") == tmp_path / "given" / "features"


def test_speaker_keys():
    assert speaker_of("yes", "0a7c2a8d_nohash_3") == "0a7c2a8d"
    assert speaker_of(UNKNOWN, "bed_0a7c2a8d_nohash_0") == "0a7c2a8d"  # the word prefix is not the speaker
    assert speaker_of("yes", "recording-17") == "recording-17"  # no _nohash_: the file name
    assert speaker_split("0a7c2a8d") == speaker_split("0a7c2a8d")


def test_unknown_folder_and_ratios(tmp_path):
    root = make_tree(tmp_path / "d", others=(), speakers=20)
    (root / UNKNOWN).mkdir()
    rng = np.random.default_rng(3)
    for i in range(30):
        write_wav(root / UNKNOWN / f"{['bed', 'dog', 'wow'][i % 3]}_{i:08x}_nohash_0.wav", _clip(rng))
    ds = load_dataset(root, ["yes", "no", "up"], unknown_ratio=0.5, silence_ratio=2.0, cache_dir=tmp_path / "c")
    train = ds.counts("train")
    mean_word = sum(train[w] for w in ("yes", "no", "up")) / 3
    assert train[UNKNOWN] == round(0.5 * mean_word)
    assert train[SILENCE] == round(2.0 * mean_word)
    assert {c.word for c in ds.clips_in("train") if c.label == UNKNOWN} <= {"bed", "dog", "wow"}
    every = load_dataset(root, ["yes", "no", "up"], unknown_ratio=None, silence_ratio=None, cache_dir=tmp_path / "c")
    assert every.counts()[UNKNOWN] == 30 and every.counts()[SILENCE] == 0


def test_silence_is_cut_from_each_splits_own_noise_at_random_levels(tmp_path):
    root = make_tree(tmp_path / "d", speakers=30, noise_seconds=30.0)
    ds = load_dataset(root, ["yes", "no", "up"], silence_ratio=3.0, cache_dir=tmp_path / "c")
    assert ds.noise_source == "real"
    lengths = {s: sum(len(n) for n in ds.noise_by_split[s]) for s in SPLITS}
    assert lengths == {"train": 24 * 16000, "validation": 3 * 16000, "test": 3 * 16000}
    assert ds.noise[0] is ds.noise_by_split["train"][0]
    x, y = ds.arrays("train", progress=False)
    sil = x[y == ds.labels.index(SILENCE)]
    rms_db = 20 * np.log10(np.sqrt(np.mean(sil.astype(np.float64) ** 2, axis=1)) + 1e-30)
    assert rms_db.min() < -80  # near digital silence is in the mix
    assert -66 < np.median(rms_db) < -24
    assert len(np.unique(np.round(rms_db, 3))) == len(sil)  # every clip at its own level


def test_no_background_recordings_gives_synthetic_noise(tmp_path):
    root = make_tree(tmp_path / "d", noise_seconds=0)
    ds = load_dataset(root, ["yes", "no", "up"], cache_dir=tmp_path / "c")
    assert ds.noise_source == "generated" and len(ds.noise) >= 4
    assert ds.summary()["noise"]["source"] == "generated"
    assert ds.counts("train")[SILENCE] > 0


def test_union_of_roots_and_class_weights(tmp_path):
    real = make_tree(tmp_path / "real", words=("yes", "no"), speakers=20)
    synth = make_tree(tmp_path / "synth", words=("up",), others=(), speakers=10, per_speaker=1, noise_seconds=0, seed=5)
    (synth / SYNTH_MANIFEST).write_text("{}")
    ds = load_dataset([real, synth], ["yes", "no", "up"], cache_dir=tmp_path / "c")
    sources = ds.summary()["sources"]
    assert sources["up"] == {"synthetic": 10}
    assert sources["yes"] == {"real": 40}
    assert ds.noise_source == "real"  # the real root's recordings; the synthetic root had none
    w = ds.class_weights("train")
    counts = np.array(list(ds.counts("train").values()))
    present = counts > 0
    assert np.allclose(w[present] * counts[present], counts.sum() / present.sum())
    assert w[ds.labels.index("up")] > w[ds.labels.index("yes")]  # the thin class weighs more
    sw = ds.sample_weights("train")
    assert sw.shape == (len(ds.clips_in("train")),)
    assert np.allclose(np.bincount(ds.label_index("train"), weights=sw)[present], counts.sum() / present.sum())


def test_deterministic_and_cached(tmp_path):
    root = make_tree(tmp_path / "d")
    a = load_dataset(root, ["yes", "no", "up"], seed=4, cache_dir=tmp_path / "c1")
    b = load_dataset(root, ["yes", "no", "up"], seed=4, cache_dir=tmp_path / "c2")
    assert a.fingerprint() == b.fingerprint()
    xa, ya = a.arrays("train", progress=False)
    xb, yb = b.arrays("train", progress=False)
    assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    cached = list((tmp_path / "c1").glob("*.npy"))
    assert len(cached) == 1 and not list((tmp_path / "c1").glob(".tmp-*"))
    x2, _ = a.arrays("train", progress=False)  # from the cache file
    assert np.array_equal(x2, xa)
    assert load_dataset(root, ["yes", "no", "up"], seed=5).fingerprint() != a.fingerprint()


def test_bad_inputs_library(tmp_path, capsys):
    with pytest.raises(TinyearError, match="no such dataset folder"):
        load_dataset(tmp_path / "nothing")
    root = make_tree(tmp_path / "d")
    with pytest.raises(TinyearError, match=r"has no clips of left, right .*tinyear synth OUT --fill-from"):
        load_dataset(root, ["yes", "left", "right"])
    (root / "bad.wav").write_text("x")  # not in a class folder: ignored
    (root / "yes" / "broken_nohash_0.wav").write_bytes(b"RIFF....garbage")
    (root / "yes" / "empty_nohash_0.wav").write_bytes(b"")
    ds = load_dataset(root, ["yes", "no", "up"], cache_dir=tmp_path / "c")
    err = capsys.readouterr().err
    assert "warning: 2 of " in err and "unreadable; skipped them" in err
    assert len(ds.skipped) == 2 and all(c.path is None or "broken" not in c.path.name for c in ds.clips)
    with pytest.raises(TinyearError, match="2 of .* audio files are unreadable"):
        load_dataset(root, ["yes", "no", "up"], skip_unreadable=False)
    (root / "stop").mkdir()
    with pytest.raises(TinyearError, match="stop: class folder has no audio files"):
        load_dataset(root, ["yes", "no", "up"])


def test_cli_reports_and_bad_inputs(tmp_path):
    root = make_tree(tmp_path / "d")
    env = {**os.environ, "TINYEAR_CACHE": str(tmp_path / "cache")}
    done = _run("data", root, "--words", "yes", "no", "up", "--json", env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["labels"] == ["yes", "no", "up", UNKNOWN, SILENCE]
    assert summary["cache"]["folder"] == str(tmp_path / "cache")  # said where the caches go
    cases = []
    done = _run("data", root, "--words", "yes", "go", env=env)
    cases.append((done, "has no clips of go"))
    (root / "yes" / "broken_nohash_0.wav").write_bytes(b"not audio at all")
    done = _run("data", root, "--words", "yes", "no", "--strict", env=env)
    cases.append((done, "1 of "))
    (root / "left").mkdir()
    done = _run("data", root, "--words", "yes", "no", env=env)
    cases.append((done, "left: class folder has no audio files"))
    for done, text in cases:
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1 and text in lines[0], done.stderr
        assert lines[0].startswith("tinyear: error: ") and "Traceback" not in done.stderr
    (root / "left").rmdir()
    done = _run("data", root, "--words", "yes", "no", env=env)  # skipping is the default, with a count
    assert done.returncode == 0
    assert "warning: 1 of " in done.stderr and "skipped" in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(not MINI.exists(), reason=f"shared data not here: {MINI}")
def test_real_mini_train_loads(tmp_path):
    ds = load_dataset(MINI, cache_dir=tmp_path / "c")
    s = ds.summary()
    assert s["sources"]["yes"] == {"real": 599} and s["sources"]["on"] == {"real": 8} and s["sources"]["off"] == {"real": 7}
    assert s["noise"] == {"source": "real", "recordings": 6, "train_seconds": s["noise"]["train_seconds"]}
    assert 300 < s["noise"]["train_seconds"] < 330  # 80% of about 6.7 minutes
    by_speaker = defaultdict(set)
    for c in ds.clips:
        if c.path is not None:
            by_speaker[c.speaker].add(c.split)
    assert all(len(v) == 1 for v in by_speaker.values())
    assert s["per_split"]["train"][UNKNOWN] > 150 and s["per_split"]["train"][SILENCE] > 300


@pytest.mark.slow
@pytest.mark.skipif(not PUBLIC_TEST.exists(), reason=f"shared data not here: {PUBLIC_TEST}")
def test_public_test_set_loads_as_one_evaluation_split(tmp_path):
    ds = load_dataset(PUBLIC_TEST, only_split="test", unknown_ratio=None, silence_ratio=None, cache_dir=tmp_path / "c")
    counts = ds.counts("test")
    assert sum(counts.values()) == len(ds.clips) > 3000
    assert all(counts[label] > 200 for label in ds.labels)
    assert ds.summary()["sources"][SILENCE] == {"real": counts[SILENCE]}  # its own _silence_ folder, none made
