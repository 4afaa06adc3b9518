"""Validation streams (tinyear.host.streams) from a folder of tone "words": the split they come from,
determinism, what goes in, the one-line errors; and the one-pass sweep (tinyear.device.sweep) agreeing
with the live detector on the real int8 tone model."""

from __future__ import annotations

import numpy as np
import pytest

from stream_model import tone_bundle, tone_dataset  # noqa: F401  (tone_bundle is a fixture)
from tinyear.device.errors import TinyearError
from tinyear.device.streameval import read_truth, score_events
from tinyear.host import streams
from tinyear.host.data.speakers import speaker_split

WORDS = ["low", "high"]


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return tone_dataset(tmp_path_factory.mktemp("tones") / "data")


def test_pools_hold_only_the_validation_split(tones):
    pools, noise, source, sr = streams.split_pools([tones], WORDS, "validation")
    assert sr == 16000 and source == "real" and noise
    for kind in ("keyword", "distractor", "other"):
        assert pools[kind], kind
        assert all(speaker_split(c.speaker) == "validation" for c in pools[kind]), kind
    assert {c.path.parent.name for c in pools["distractor"]} == {"_unknown_"}
    assert {c.path.parent.name for c in pools["other"]} == {"chatter"}
    train, _, _, _ = streams.split_pools([tones], WORDS, "train")
    assert not {c.path for c in train["keyword"]} & {c.path for c in pools["keyword"]}


def test_stream_is_deterministic_by_seed_and_mixes_every_kind(tones):
    a = streams.build_stream([tones], WORDS, minutes=2, seed=3)
    b = streams.build_stream([tones], WORDS, minutes=2, seed=3)
    c = streams.build_stream([tones], WORDS, minutes=2, seed=4)
    assert np.array_equal(a.waveform, b.waveform) and a.truth == b.truth
    assert not np.array_equal(a.waveform, c.waveform)
    assert a.duration_s == pytest.approx(120.0)
    assert set(a.counts) == {"keyword", "distractor", "other"} and all(a.counts.values())
    labels = {w.label for w in a.truth}
    assert labels <= {"low", "high", "_unknown_"} and {"low", "high", "_unknown_"} <= labels
    gaps = np.diff([w.start for w in a.truth])
    assert gaps.min() >= 2.5 - 1e-3 and gaps.max() <= 5.0 + 1e-3
    assert np.abs(a.waveform).max() <= 1.0
    # words are louder than the background around them: SNR 5-30 dB
    sr = a.sample_rate
    for w in a.truth[:10]:
        word = a.waveform[int(w.start * sr) : int(w.end * sr)]
        gap = a.waveform[int((w.end + 0.3) * sr) : int((w.end + 0.8) * sr)]
        assert np.sqrt(np.mean(word ** 2)) > 1.3 * np.sqrt(np.mean(gap ** 2))


def test_stream_writes_wav_and_truth(tones, tmp_path):
    s = streams.build_stream([tones], WORDS, minutes=1, seed=0)
    wav, csv = s.write(tmp_path / "v.wav")
    assert csv == tmp_path / "v.csv"
    assert [(round(w.start, 3), w.label) for w in read_truth(csv)] == [(round(w.start, 3), w.label) for w in s.truth]
    import soundfile as sf

    assert sf.info(str(wav)).frames == len(s.waveform)


def test_too_small_a_split_is_one_line_naming_what_ran_out(tones):
    with pytest.raises(TinyearError) as err:
        streams.build_stream([tones], WORDS, minutes=600)
    message = str(err.value)
    assert "\n" not in message and "too few for a 600-minute stream" in message and "--minutes" in message
    fitted = streams.build_stream([tones], WORDS, minutes=600, fit=True)  # the pipeline's choice: what fits
    assert 3 * 60 <= fitted.duration_s < 600 * 60


def test_refusals(tones, tmp_path):
    with pytest.raises(TinyearError, match="no keyword clips"):
        streams.build_stream([tones], ["nothere"], minutes=1)
    with pytest.raises(TinyearError, match="positive length"):
        streams.build_stream([tones], WORDS, minutes=0)
    test_set = tmp_path / "speech-commands-test"
    test_set.mkdir()
    with pytest.raises(TinyearError, match="looks like a test set"):
        streams.refuse_test_sets([test_set])


@pytest.mark.slow
def test_one_pass_sweep_matches_the_live_detector(tone_bundle, tones):
    """The recorded trace replayed at any threshold gives exactly the live detector's events and
    scores, so one model pass serves every threshold."""
    from tinyear.device.bundle import read_bundle
    from tinyear.device.detection import DetectionConfig
    from tinyear.device.detector import Detector, detect_array
    from dataclasses import replace

    from tinyear.device.sweep import curve, record_scores, replay

    bundle = read_bundle(tone_bundle)
    s = streams.build_stream([tones], WORDS, minutes=2, seed=1)
    base = DetectionConfig.from_bundle(bundle)
    trace = record_scores(Detector(bundle, base), s.waveform)
    assert len(trace.times) == trace.probs.shape[0] > 1000 and np.all(np.diff(trace.times) > 0)
    rows = {r["threshold"]: r for r in curve(trace, s.truth, WORDS, smoothing_ms=base.smoothing_ms,
                                              refractory_ms=base.refractory_ms)}
    for th in (0.3, 0.6, 0.9):
        config = DetectionConfig(threshold=th, smoothing_ms=base.smoothing_ms, refractory_ms=base.refractory_ms,
                                 hop_ms=base.hop_ms, per_class_threshold={"high": min(1.0, th + 0.05)})
        live = detect_array(Detector(bundle, config), s.waveform, chunk_samples=777)
        assert [(e.time, e.label) for e in replay(trace, config)] == [(e.time, e.label) for e in live]
        # and with the rules beyond thresholds on: the replay is still the live gate, event for event
        for rules in (dict(unknown_margin=0.1, unknown_window_ms=300, min_runs=2), dict(peak=True, min_runs=3),
                      dict(peak=True, per_class_refractory_ms={"high": 300})):
            ruled = replace(config, **rules)
            live = detect_array(Detector(bundle, ruled), s.waveform, chunk_samples=1601)
            assert [(e.time, e.label, e.score) for e in replay(trace, ruled)] == [(e.time, e.label, e.score) for e in live]
        if th in rows:  # one shared threshold: the curve's row is the live detector's score
            live = detect_array(Detector(bundle, DetectionConfig(threshold=th, smoothing_ms=base.smoothing_ms,
                                                                  refractory_ms=base.refractory_ms, hop_ms=base.hop_ms)),
                                s.waveform)
            scored = score_events(live, s.truth, keywords=WORDS, duration_s=s.duration_s)
            assert (rows[th]["hits"], rows[th]["false_accepts"]) == (scored["hits"], scored["false_accepts"])
