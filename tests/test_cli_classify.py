"""`tinyear-device classify` and `info` as a user runs them: real files, real bundles, subprocesses."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import tiny_model

pytestmark = pytest.mark.device


def cli(*args):
    return subprocess.run([sys.executable, "-m", "tinyear.device.cli", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """One file per class, in different formats, rates and channel counts."""
    out = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(42)
    low = tiny_model.make_clip("low", rng, 1.0)
    high = tiny_model.make_clip("high", rng, 0.6)
    noise = tiny_model.make_clip("noise", rng, 2.5)
    import soxr

    sf.write(out / "low.flac", soxr.resample(low, 16000, 44100), 44100, subtype="PCM_24")
    sf.write(out / "high.wav", np.stack([high, high], axis=1), 16000, subtype="PCM_16")
    sf.write(out / "noise.ogg", noise, 16000, subtype="VORBIS")
    return {"low": out / "low.flac", "high": out / "high.wav", "noise": out / "noise.ogg"}


@pytest.mark.parametrize("kind", ["int8", "float"])
def test_classify_text(tiny_bundles, clips, kind):
    proc = cli("classify", tiny_bundles[kind], *clips.values())
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3
    for line, (label, path) in zip(lines, clips.items()):
        name, rest = line.split("\t")
        assert name == str(path)
        assert rest.split()[0] == label
    assert proc.stderr == ""  # LiteRT's INFO chatter is kept off the terminal


def test_classify_json_and_top(tiny_bundles, clips):
    proc = cli("classify", tiny_bundles["int8"], clips["low"], "--json", "--top", "3")
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    assert row["file"] == str(clips["low"]) and row["label"] == "low" and 0 < row["score"] <= 1
    assert [t["label"] for t in row["top"]][0] == "low" and len(row["top"]) == 3
    assert abs(sum(t["score"] for t in row["top"]) - 1) < 1e-3


def test_bad_file_among_good_ones(tiny_bundles, clips, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not really")
    proc = cli("classify", tiny_bundles["int8"], clips["low"], bad, clips["high"])
    assert proc.returncode == 1
    assert [l.split("\t")[0] for l in proc.stdout.splitlines()] == [str(clips["low"]), str(clips["high"])]
    assert "Traceback" not in proc.stderr
    assert f"error: {bad}: not readable as audio" in proc.stderr
    assert "1 of 3 files could not be classified" in proc.stderr


def test_bad_bundle_is_one_line(tmp_path, clips):
    bad = tmp_path / "x.tinyear"
    bad.write_bytes(b"nothing")
    proc = cli("classify", bad, clips["low"])
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "not a tinyear bundle" in proc.stderr


def test_channel_option(tiny_bundles, clips):
    assert cli("classify", tiny_bundles["int8"], clips["high"], "--channel", "1").returncode == 0
    proc = cli("classify", tiny_bundles["int8"], clips["high"], "--channel", "2")
    assert proc.returncode == 1 and "channel 2 requested but it has 2 channels" in proc.stderr


def test_usage_errors_exit_2():
    proc = cli("classify")
    assert proc.returncode == 2 and "usage:" in proc.stderr
    assert cli("classify", "a.tinyear", "b.wav", "--top", "0").returncode == 2


def test_info(tiny_bundles):
    proc = cli("info", tiny_bundles["int8"])
    assert proc.returncode == 0, proc.stderr
    assert "verified" in proc.stdout and "low, high, noise" in proc.stdout and "self-test" in proc.stdout
    info = json.loads(cli("info", tiny_bundles["int8"], "--json").stdout)
    assert info["labels"] == ["low", "high", "noise"] and info["input"]["dtype"] == "int8"


def test_help_teaches():
    top = cli("--help")
    assert top.returncode == 0 and "classify" in top.stdout and "examples:" in top.stdout
    sub = cli("classify", "--help")
    assert sub.returncode == 0 and "--top" in sub.stdout and "examples:" in sub.stdout


def test_bench_json(tiny_bundles):
    proc = cli("bench", tiny_bundles["int8"], "--seconds", "3", "--inferences", "20", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["runtime"] and report["hop_ms"] == 100.0
    assert 0 < report["inference_ms"]["p50"] <= report["inference_ms"]["p99"]
    assert report["detector"]["inferences"] == 21  # 3 s at 100 ms hops, after the first full 1 s window
    assert report["features"]["recompute_ms_per_hop"] > report["features"]["incremental_ms_per_hop"] > 0
