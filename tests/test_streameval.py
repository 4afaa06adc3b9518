"""Streaming evaluation: truth files, scoring, and `classify --stream` end to end on a stream built by
scripts/make_stream.py from a folder of tone "words" (the stream-trained tone model finds them all)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from stream_model import SR, tone_bundle, tone_burst  # noqa: F401  (tone_bundle is a fixture)
from tinyear.device.cli import main as device_main
from tinyear.device.detector import Detection
from tinyear.device.errors import TinyearError
from tinyear.device.streameval import TruthWord, read_truth, score_events

from conftest import ROOT, write_wav

pytestmark = pytest.mark.device


def load_make_stream():
    spec = importlib.util.spec_from_file_location("make_stream", ROOT / "scripts" / "make_stream.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- truth files -----------------------------------------------------------------------------------------


def test_truth_file_with_and_without_header(tmp_path):
    a = tmp_path / "a.csv"
    a.write_text("start,end,label\n1.5,2.0,yes\n\n0.2,0.7,_unknown_\n")
    b = tmp_path / "b.csv"
    b.write_text("0.2, 0.7, _unknown_\n1.5,2.0,yes\n")
    assert read_truth(a) == read_truth(b) == [TruthWord(0.2, 0.7, "_unknown_"), TruthWord(1.5, 2.0, "yes")]


@pytest.mark.parametrize("text, words", [
    ("1.0,2.0\n", "row 1 has 2 column"),
    ("start,end,label\n1.0,abc,yes\n", "row 2: '1.0' or 'abc' is not a number"),
    ("2.0,1.0,yes\n", "row 1: need 0 <= start < end"),
    ("-1,1.0,yes\n", "need 0 <= start < end"),
    ("1.0,2.0,\n", "row 1 has an empty label"),
    ("1.0,nan,yes\n", "need 0 <= start < end"),
])
def test_malformed_truth_is_one_line_error(tmp_path, text, words):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(TinyearError, match=words) as info:
        read_truth(path)
    assert "\n" not in str(info.value)


def test_missing_truth_file(tmp_path):
    with pytest.raises(TinyearError, match="no such truth file"):
        read_truth(tmp_path / "nope.csv")


# -- scoring ---------------------------------------------------------------------------------------------


def test_scoring_hits_misses_false_accepts_and_latency():
    truth = [TruthWord(1.0, 1.5, "yes"), TruthWord(5.0, 5.4, "no"), TruthWord(9.0, 9.6, "yes"),
             TruthWord(13.0, 13.5, "_unknown_"), TruthWord(17.0, 17.5, "yes")]
    events = [
        Detection(1.7, "yes", 0.9),  # hit, 200 ms after the end
        Detection(2.8, "yes", 0.9),  # a second event for the same word: false accept
        Detection(5.3, "no", 0.9),  # hit, before the end (-100 ms)
        Detection(9.9, "no", 0.9),  # wrong label during "yes": false accept (and "yes" is missed)
        Detection(13.6, "yes", 0.9),  # on an other-word: false accept
        Detection(17.6 + 1.5, "yes", 0.9),  # 1.6 s after the end: too late, false accept
    ]
    r = score_events(events, truth, keywords=["yes", "no"], duration_s=1800.0)
    assert (r["keywords"], r["hits"], r["misses"], r["false_accepts"]) == (4, 2, 2, 4)
    assert r["recall"] == 0.5
    assert r["false_accepts_per_hour"] == 8.0
    assert r["latency_ms"]["p50"] == pytest.approx(50.0)
    assert r["per_label"]["yes"] == {"words": 3, "hits": 1, "false_accepts": 3}


def test_scoring_with_no_keywords_and_no_events():
    r = score_events([], [TruthWord(1, 2, "_unknown_")], keywords=["yes"], duration_s=60)
    assert (r["keywords"], r["hits"], r["false_accepts"], r["recall"], r["latency_ms"]) == (0, 0, 0, None, None)


# -- end to end: make_stream.py -> classify --stream --truth ---------------------------------------------


@pytest.fixture(scope="module")
def tone_stream_files(tmp_path_factory):
    """A dataset folder of tone clips (low/, high/, _background_noise_/) and a 2-minute stream from it."""
    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    for label in ("low", "high"):
        (root / label).mkdir()
        for i in range(6):
            clip = np.zeros(SR, dtype=np.float32)
            burst = tone_burst(label, rng)
            start = int(rng.integers(1000, SR - len(burst) - 1000))
            clip[start : start + len(burst)] = burst
            write_wav(root / label / f"{label}_{i}.wav", clip)
    (root / "_background_noise_").mkdir()
    write_wav(root / "_background_noise_" / "white.wav", (rng.standard_normal(20 * SR) * 0.1).astype(np.float32))
    make_stream = load_make_stream()
    out = root / "stream.wav"
    assert make_stream.main([str(root), str(out), "--minutes", "2", "--seed", "3", "--unknown", "0",
                             "--noise-level", "-60", "-50"]) == 0
    return out, out.with_suffix(".csv")


def test_make_stream_is_reproducible_and_levels_hold(tone_stream_files, tmp_path):
    import soundfile as sf

    wav, csv_path = tone_stream_files
    make_stream = load_make_stream()
    again = tmp_path / "again.wav"
    assert make_stream.main([str(wav.parent), str(again), "--minutes", "2", "--seed", "3", "--unknown", "0",
                             "--noise-level", "-60", "-50"]) == 0
    assert again.read_bytes() == wav.read_bytes()
    assert again.with_suffix(".csv").read_text() == csv_path.read_text()
    x, rate = sf.read(str(wav), dtype="float32")
    truth = read_truth(csv_path)
    assert rate == SR and len(x) == 2 * 60 * SR and len(truth) >= 20
    onsets = np.array([w.start for w in truth])
    assert np.all(np.diff(onsets) >= 2.5 - 1e-3) and np.all(np.diff(onsets) <= 5.0 + 1e-3)
    for w in truth[:5]:
        level = 10 * np.log10(np.mean(x[int(w.start * SR) : int(w.end * SR)].astype(np.float64) ** 2))
        assert -26.5 <= level <= -11.5


def test_stream_classify_finds_every_word(tone_bundle, tone_stream_files, capsys):
    wav, csv_path = tone_stream_files
    assert device_main(["classify", "--stream", str(tone_bundle), str(wav), "--truth", str(csv_path), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    report = lines[-1]
    assert report["type"] == "report"
    detections = [l for l in lines if l["type"] == "detection"]
    assert report["keywords"] == len(read_truth(csv_path)) == len(detections)
    assert report["hits"] == report["keywords"] and report["false_accepts"] == 0
    assert -1000 < report["latency_ms"]["p50"] < 1500
    # The text form says the same.
    assert device_main(["classify", "--stream", str(tone_bundle), str(wav), "--truth", str(csv_path)]) == 0
    text = capsys.readouterr().out
    assert f"hits {report['hits']} of {report['keywords']} keywords" in text and "false accepts 0" in text


@pytest.mark.parametrize("case", ["bad truth", "unreadable stream", "no stream file", "two files", "truth without stream"])
def test_stream_bad_input_is_one_line_and_exit_1(tone_bundle, tone_stream_files, tmp_path, capsys, case):
    wav, csv_path = tone_stream_files
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("start,end,label\n1.0,0.5,low\n")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF....not audio at all")
    argv = {
        "bad truth": ["--stream", str(tone_bundle), str(wav), "--truth", str(bad_csv)],
        "unreadable stream": ["--stream", str(tone_bundle), str(junk)],
        "no stream file": ["--stream", str(tone_bundle), str(tmp_path / "missing.wav")],
        "two files": ["--stream", str(tone_bundle), str(wav), str(wav)],
        "truth without stream": [str(tone_bundle), str(wav), "--truth", str(csv_path)],
    }[case]
    assert device_main(["classify", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("tinyear-device: error: ") and "\n" not in err and "Traceback" not in err
