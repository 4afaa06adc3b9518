"""The streaming detector: incremental features equal batch features, events do not depend on how the
audio is chunked, and smoothing, thresholds, refractory period and re-arming do what they say.

The decision logic is tested with scripted score sequences (a `scorer` in place of the model, so each
case states its scores); chunking invariance and feature equality run the real int8 tone model."""

from __future__ import annotations

import numpy as np
import pytest

from tinyear.device.bundle import Bundle, read_bundle
from tinyear.device.detection import default_detection
from tinyear.device.detector import DecisionGate, DetectionConfig, Detector, detect_array
from tinyear.device.errors import TinyearError
from tinyear.device.features import DEFAULT_CONFIG, FrontendConfig, clip_features, log_mel, model_input

pytestmark = pytest.mark.device

SR = DEFAULT_CONFIG.sample_rate
LABELS = ["yes", "no", "_unknown_", "_silence_"]


def fake_bundle(labels=LABELS, **detection) -> Bundle:
    """A bundle object for a detector whose scores come from a scorer: no model is ever loaded."""
    return Bundle(model_bytes=b"unused", labels=list(labels), frontend=DEFAULT_CONFIG,
                  detection=default_detection(**detection))


def run_gate(scores, labels=LABELS, hop_s=0.1, **config):
    """Feed one score vector per hop into a DecisionGate; return [(time, label, score)]."""
    gate = DecisionGate(labels, DetectionConfig(**{"hop_ms": hop_s * 1000, **config}))
    out = []
    for i, probs in enumerate(scores):
        event = gate.update(round((i + 1) * hop_s, 6), np.asarray(probs, dtype=np.float64))
        if event is not None:
            out.append((round(event.time, 3), event.label, round(event.score, 4)))
    return out


def vec(yes=0.0, no=0.0, unknown=0.0):
    return [yes, no, unknown, max(0.0, 1.0 - yes - no - unknown)]


# -- smoothing -------------------------------------------------------------------------------------------


def test_a_one_run_spike_is_smoothed_away_but_not_without_smoothing():
    scores = [vec()] * 3 + [vec(yes=0.9)] + [vec()] * 3
    assert run_gate(scores, threshold=0.5, smoothing_ms=300) == []
    assert run_gate(scores, threshold=0.5, smoothing_ms=0) == [(0.4, "yes", 0.9)]


def test_smoothed_score_is_the_mean_of_the_last_runs():
    # 300 ms at a 100 ms hop: the mean of the last three runs. It reaches 0.6 at the third 0.6.
    scores = [vec()] * 2 + [vec(yes=0.6)] * 4
    assert run_gate(scores, threshold=0.55, smoothing_ms=300) == [(0.5, "yes", 0.6)]
    # 200 ms: two runs, so it fires one hop earlier.
    assert run_gate(scores, threshold=0.55, smoothing_ms=200) == [(0.4, "yes", 0.6)]


# -- thresholds ------------------------------------------------------------------------------------------


def test_per_class_thresholds_and_non_keywords():
    scores = [vec(yes=0.8)] * 3 + [vec()] * 3 + [vec(no=0.8)] * 3 + [vec()] * 3 + [vec(unknown=1.0)] * 5
    got = run_gate(scores, threshold=0.5, smoothing_ms=0, per_class_threshold={"yes": 0.9})
    assert got == [(0.7, "no", 0.8)]  # yes stays under its own 0.9; _unknown_ never fires
    silence = run_gate([[0, 0, 0, 1.0]] * 20, threshold=0.1, smoothing_ms=0)
    assert silence == []


def test_threshold_flag_replaces_per_class_thresholds():
    bundle = fake_bundle(threshold=0.8, per_class_threshold={"yes": 0.95})
    assert DetectionConfig.from_bundle(bundle).threshold_for("yes") == 0.95
    assert DetectionConfig.from_bundle(bundle).threshold_for("no") == 0.8
    forced = DetectionConfig.from_bundle(bundle, threshold=0.6)
    assert forced.threshold_for("yes") == forced.threshold_for("no") == 0.6


def test_only_the_best_keyword_fires_in_one_run():
    assert run_gate([vec(yes=0.45, no=0.55)], threshold=0.4, smoothing_ms=0) == [(0.1, "no", 0.55)]


# -- refractory period and re-arming ---------------------------------------------------------------------


def test_refractory_period_keeps_a_label_quiet():
    # yes pulses above threshold every other run: without a refractory period every pulse fires;
    # with 1000 ms, the next one that may fire is the first pulse at least a second later.
    pulses = [vec(yes=0.9) if i % 2 == 0 else vec() for i in range(30)]
    assert len(run_gate(pulses, threshold=0.5, smoothing_ms=0, refractory_ms=0)) == 15
    got = run_gate(pulses, threshold=0.5, smoothing_ms=0, refractory_ms=1000)
    times = [t for t, _, _ in got]
    assert times == [0.1, 1.1, 2.1]
    # The refractory period is per label: no may fire right after yes.
    mixed = [vec(yes=0.9), vec(), vec(no=0.9), vec()]
    assert [l for _, l, _ in run_gate(mixed, threshold=0.5, smoothing_ms=0, refractory_ms=1000)] == ["yes", "no"]


def test_a_long_word_fires_once_until_the_score_drops():
    # Above threshold for 3 s (longer than the refractory period): one event; after a dip, again.
    scores = [vec(yes=0.9)] * 30 + [vec()] + [vec(yes=0.9)] * 3
    got = run_gate(scores, threshold=0.5, smoothing_ms=0, refractory_ms=1000)
    assert [t for t, _, _ in got] == [0.1, 3.2]


# -- configuration errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, words", [
    ({"hop_ms": 25}, "multiple of 10"),
    ({"hop_ms": 2000}, "longer than the model's 1000 ms window"),
])
def test_unusable_settings_are_one_line_errors(kwargs, words):
    with pytest.raises(TinyearError, match=words):
        DetectionConfig.from_bundle(fake_bundle(), **kwargs)


def test_default_hop_is_at_most_100_ms():
    assert DetectionConfig.from_bundle(fake_bundle(hop_ms=300)).hop_ms == 100
    assert DetectionConfig.from_bundle(fake_bundle(hop_ms=50)).hop_ms == 50
    assert DetectionConfig.from_bundle(fake_bundle(hop_ms=300), hop_ms=200).hop_ms == 200


def test_bad_threshold_in_bundle_is_refused():
    with pytest.raises(TinyearError, match="outside"):
        DetectionConfig.from_bundle(fake_bundle(per_class_threshold={"yes": 1.5}))


# -- the detector over audio ---------------------------------------------------------------------------


class Recorder:
    """A scorer that keeps every window it was given and scores by a fixed rule."""

    def __init__(self, labels):
        self.windows = []
        self.n = len(labels)

    def __call__(self, window):
        self.windows.append(window.copy())
        level = float(window[-10:].max())  # a loud recent frame -> "yes"
        p = 1.0 / (1.0 + np.exp(-(level + 5.0)))
        return np.array([p, 0.0, 0.0, 1.0 - p])[: self.n]


def test_features_are_incremental_and_equal_batch_features():
    rng = np.random.default_rng(3)
    audio = (rng.standard_normal(3 * SR) * 0.05).astype(np.float32)
    audio[SR : SR + 4000] += np.sin(np.arange(4000) * 0.3).astype(np.float32)
    recorder = Recorder(LABELS)
    detector = Detector(fake_bundle(hop_ms=50), scorer=recorder)
    cuts = np.sort(rng.choice(len(audio), 60, replace=False))
    for chunk in np.split(audio, cuts):
        detector.push(chunk)
    batch = log_mel(audio)  # (frames, bins) of the whole signal
    n = DEFAULT_CONFIG.num_frames
    assert len(recorder.windows) == 1 + (len(batch) - n) // 5
    for k, window in enumerate(recorder.windows):
        end = n + 5 * k
        np.testing.assert_array_equal(window, batch[end - n : end])
    # Incremental: the frontend computed each frame once (up to the last model run), not a window per hop.
    assert n + 5 * (len(recorder.windows) - 1) <= detector.frontend.frames_emitted <= len(batch)


def test_level_normalised_windows_equal_the_clip_features_of_the_same_second():
    """With the frontend's level stage on, what the model gets from the stream is bit for bit what
    `clip_features` (training, calibration, evaluation) makes of the same second cut out as a clip."""
    config = FrontendConfig(level_norm_db=30.0)
    rng = np.random.default_rng(4)
    audio = (rng.standard_normal(3 * SR) * 0.002).astype(np.float32)
    audio[SR : SR + 4000] += 0.01 * np.sin(np.arange(4000) * 0.3).astype(np.float32)  # a quiet "word"
    bundle = Bundle(model_bytes=b"unused", labels=list(LABELS), frontend=config, detection=default_detection(hop_ms=100))
    recorder = Recorder(LABELS)
    detector = Detector(bundle, scorer=recorder)
    for chunk in np.split(audio, np.sort(rng.choice(len(audio), 40, replace=False))):
        detector.push(chunk)
    hop, win = config.hop_length, config.window_length
    assert len(recorder.windows) > 10
    for k, window in enumerate(recorder.windows):
        end_frame = config.num_frames + 10 * k  # 100 ms hops of 10 ms frames
        start = (end_frame - config.num_frames) * hop
        clip = audio[start : start + (config.num_frames - 1) * hop + win]
        np.testing.assert_array_equal(window, model_input(log_mel(clip, config), config))
        if k == 0:
            np.testing.assert_array_equal(window, clip_features(audio[:config.clip_samples], config))


def test_event_times_are_stream_seconds_and_survive_reset():
    recorder = Recorder(LABELS)
    detector = Detector(fake_bundle(threshold=0.5, smoothing_ms=0, refractory_ms=0, hop_ms=100), scorer=recorder)
    loud = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(2 * SR) / SR)).astype(np.float32)
    events = detect_array(detector, loud)
    end_first = ((DEFAULT_CONFIG.num_frames - 1) * DEFAULT_CONFIG.hop_length + DEFAULT_CONFIG.window_length) / SR
    assert events[0].time == pytest.approx(end_first)  # the first window ends at 0.995 s
    detector.reset(time_offset=10.0)
    again = detect_array(detector, loud)
    assert again[0].time == pytest.approx(10.0 + end_first)


def test_no_window_runs_before_the_ring_is_full():
    recorder = Recorder(LABELS)
    detector = Detector(fake_bundle(), scorer=recorder)
    detector.push(np.zeros(15000, dtype=np.float32))
    assert recorder.windows == []


def tone_stream(rng, seconds=12):
    """Tones of the conftest's classifier with gaps: something for the real model to react to."""
    import tiny_model

    x = (rng.standard_normal(seconds * SR) * 0.003).astype(np.float32)
    for i, label in enumerate(["low", "high", "noise", "low", "high"]):
        clip = tiny_model.make_clip(label, rng)
        start = SR + i * 2 * SR
        x[start : start + len(clip)] += clip
    return x


def test_events_do_not_depend_on_chunking(tiny_bundles):
    bundle = read_bundle(tiny_bundles["int8"])
    audio = tone_stream(np.random.default_rng(11))
    config = DetectionConfig.from_bundle(bundle, threshold=0.5, smoothing_ms=200, refractory_ms=500, hop_ms=50)

    def run(chunks):
        detector = Detector(bundle, config)
        scores = []
        inner = detector._scorer
        detector._scorer = lambda w: scores.append(inner(w)) or scores[-1]
        events = []
        for chunk in chunks:
            events.extend(detector.push(chunk))
        return events, np.stack(scores)

    whole, whole_scores = run([audio])
    assert len(whole) >= 3, "the tone stream should trigger the tone model"
    rng = np.random.default_rng(5)
    for sizes in ([160] * (len(audio) // 160 + 1), [1] * 50 + [333] * 600, list(rng.integers(1, 7000, 200))):
        cuts = np.cumsum(sizes)
        chunks = np.split(audio, cuts[cuts < len(audio)])
        events, scores = run(chunks)
        assert events == whole
        np.testing.assert_array_equal(scores, whole_scores)


# -- the rules beyond thresholds: _unknown_ margin, sustain, peak-then-fall, per-class refractory --------


def test_margin_blocks_a_keyword_that_unknown_shadows():
    # yes at 0.5 passes its threshold 0.4, but _unknown_ is at 0.45: only 0.05 behind.
    shadowed = [vec()] * 2 + [vec(yes=0.5, unknown=0.45)] * 3 + [vec()] * 3
    assert run_gate(shadowed, threshold=0.4, smoothing_ms=0) == [(0.3, "yes", 0.5)]
    assert run_gate(shadowed, threshold=0.4, smoothing_ms=0, unknown_margin=0.1) == []
    clear = [vec()] * 2 + [vec(yes=0.6, unknown=0.3)] * 3 + [vec()] * 3
    assert run_gate(clear, threshold=0.4, smoothing_ms=0, unknown_margin=0.1) == [(0.3, "yes", 0.6)]
    # With a window, _unknown_'s recent high counts: "other word" a moment ago keeps yes quiet.
    other_then_yes = [vec(unknown=0.9)] * 3 + [vec(yes=0.8, unknown=0.1)] * 2 + [vec()] * 10
    assert run_gate(other_then_yes, threshold=0.5, smoothing_ms=0, unknown_margin=0.1) == [(0.4, "yes", 0.8)]
    assert run_gate(other_then_yes, threshold=0.5, smoothing_ms=0, unknown_margin=0.1, unknown_window_ms=300) == []
    # A model without _unknown_ ignores the margin.
    no_unknown = [[0.0, 0.0, 1.0]] + [[0.5, 0.0, 0.5]] * 2
    assert run_gate(no_unknown, labels=["yes", "no", "_silence_"], threshold=0.4, smoothing_ms=0,
                    unknown_margin=0.3) == [(0.2, "yes", 0.5)]


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_min_runs_delays_by_exactly_n_minus_1_hops(n):
    scores = [vec()] * 3 + [vec(yes=0.9)] * 8 + [vec()] * 3
    got = run_gate(scores, threshold=0.5, smoothing_ms=0, min_runs=n)
    assert got == [(round(0.4 + 0.1 * (n - 1), 3), "yes", 0.9)]
    # A blip shorter than n runs never fires.
    blip = [vec()] * 3 + [vec(yes=0.9)] * (n - 1) + [vec()] * 5
    assert run_gate(blip, threshold=0.5, smoothing_ms=0, min_runs=n) == []


def test_peak_then_fall_fires_one_hop_after_the_peak_with_the_peak_score():
    rise_fall = [vec()] * 2 + [vec(yes=y) for y in (0.6, 0.8, 0.95, 0.7, 0.4)] + [vec()] * 3
    assert run_gate(rise_fall, threshold=0.5, smoothing_ms=0) == [(0.3, "yes", 0.6)]
    assert run_gate(rise_fall, threshold=0.5, smoothing_ms=0, peak=True) == [(0.6, "yes", 0.95)]
    # A flat top waits for the fall; a score still high at the end of the stream has not fired yet.
    assert run_gate([vec(yes=0.9)] * 5 + [vec(yes=0.2)], threshold=0.5, smoothing_ms=0, peak=True) == [(0.6, "yes", 0.9)]
    assert run_gate([vec(yes=0.9)] * 5, threshold=0.5, smoothing_ms=0, peak=True) == []
    # Two keywords cross on one word: today both fire; with the peak rule, the stronger one, once, when
    # it falls (no falls first, but yes, the leader, is still rising then).
    word = [vec(no=0.5), vec(yes=0.45, no=0.5), vec(yes=0.9, no=0.05), vec(yes=0.5), vec()] + [vec()] * 3
    assert [l for _, l, _ in run_gate(word, threshold=0.4, smoothing_ms=0)] == ["no", "yes"]
    assert run_gate(word, threshold=0.4, smoothing_ms=0, peak=True) == [(0.4, "yes", 0.9)]


def test_per_class_refractory_times():
    pulses = [vec(yes=0.9, no=0.0) if i % 2 == 0 else vec(no=0.9) for i in range(30)]
    got = run_gate(pulses, threshold=0.5, smoothing_ms=0, refractory_ms=1000, per_class_refractory_ms={"no": 2000})
    assert [t for t, l, _ in got if l == "yes"] == [0.1, 1.1, 2.1]
    assert [t for t, l, _ in got if l == "no"] == [0.2, 2.2]
    bundle = fake_bundle(per_class_refractory_ms={"no": 2000})
    assert DetectionConfig.from_bundle(bundle).refractory_for("no") == 2000
    assert DetectionConfig.from_bundle(bundle, refractory_ms=500).refractory_for("no") == 500  # the flag wins


@pytest.mark.parametrize("kwargs, words", [
    ({"unknown_margin": 1.5}, "unknown margin"),
    ({"min_runs": 0}, "min runs"),
    ({"min_runs": 1.5}, "min runs"),
])
def test_unusable_rules_are_one_line_errors(kwargs, words):
    with pytest.raises(TinyearError, match=words):
        DetectionConfig.from_bundle(fake_bundle(), **kwargs)


class OldGate:
    """The decision gate as it was before the rules were added (moving average, thresholds, re-arm,
    refractory), kept here as the reference the defaults must reproduce exactly."""

    def __init__(self, labels, config):
        import math
        from collections import deque

        self.labels, self.config = labels, config
        self.history = deque(maxlen=max(1, round(config.smoothing_ms / config.hop_ms)))
        self.th = np.array([math.inf if lab in config.ignore else config.threshold_for(lab) for lab in labels])
        self.armed = np.ones(len(labels), dtype=bool)
        self.last = np.full(len(labels), -math.inf)

    def update(self, t, probs):
        self.history.append(np.asarray(probs, dtype=np.float64))
        score = np.mean(np.stack(self.history), axis=0)
        above = score >= self.th
        self.armed |= ~above
        may = above & self.armed & (t - self.last >= self.config.refractory_ms / 1000.0 - 1e-9)
        if not may.any():
            return None
        best = int(np.argmax(np.where(may, score, -np.inf)))
        self.armed[best], self.last[best] = False, t
        return (t, self.labels[best], float(score[best]))


def random_scores(rng, runs=3000):
    """Score sequences with words: bursts of one label over a background, as a model gives."""
    p = rng.dirichlet(np.ones(4) * 0.3, size=runs) * 0.3
    for start in rng.integers(0, runs - 12, runs // 15):
        p[start : start + rng.integers(2, 12), rng.integers(0, 3)] += rng.uniform(0.3, 1.5)
    return p / p.sum(axis=1, keepdims=True)


def test_defaults_are_the_gate_as_it_was():
    assert DetectionConfig().rules() == {"unknown_margin": 0.0, "unknown_window_ms": 0.0, "min_runs": 1, "peak": False,
                                         "per_class_refractory_ms": {}}
    rng = np.random.default_rng(0)
    for th, sm, rf in [(0.5, 300, 1000), (0.3, 0, 0), (0.8, 500, 300), (0.6, 200, 2000)]:
        scores = random_scores(rng)
        config = DetectionConfig.from_bundle(fake_bundle(threshold=th, smoothing_ms=sm, refractory_ms=rf,
                                                         per_class_threshold={"no": min(1.0, th + 0.1)}))
        gate, old = DecisionGate(LABELS, config), OldGate(LABELS, config)
        new_events, old_events = [], []
        for i, p in enumerate(scores):
            t = round((i + 1) * 0.1, 6)
            e = gate.update(t, p)
            new_events += [(e.time, e.label, e.score)] if e else []
            o = old.update(t, p)
            old_events += [o] if o else []
        assert len(old_events) > 20 and new_events == old_events


RULES = [dict(unknown_margin=0.1), dict(unknown_margin=0.3, unknown_window_ms=500), dict(min_runs=2),
         dict(min_runs=3, peak=True), dict(peak=True), dict(unknown_margin=0.1, min_runs=2, peak=True),
         dict(per_class_refractory_ms={"yes": 300})]


@pytest.mark.parametrize("rules", RULES)
def test_sweep_tables_replay_the_gate_rules_label_by_label(rules):
    """With one keyword the gate has no cross-label coupling, so the sweep's per-label events (what
    calibrate tabulates) must be exactly the gate's."""
    from tinyear.device.sweep import ScoreTrace, label_condition, label_events, replay, smooth, unknown_scores

    labels = ["yes", "_unknown_", "_silence_"]
    rng = np.random.default_rng(1)
    p = random_scores(rng)[:, [0, 2, 3]]
    p = p / p.sum(axis=1, keepdims=True)
    times = np.round(np.arange(1, len(p) + 1) * 0.1, 6)
    trace = ScoreTrace(labels, times, p.astype(np.float32), 100.0, len(p) * 0.1)
    for th, sm in [(0.4, 300), (0.6, 0), (0.8, 500)]:
        config = DetectionConfig(threshold=th, smoothing_ms=sm, refractory_ms=1000, **rules)
        live = [round(e.time, 6) for e in replay(trace, config)]
        s = smooth(trace.probs, max(1, round(sm / 100)))
        cond = label_condition(s[:, 0], th, unknown_scores(trace, s, config), config.unknown_margin)
        fired = label_events(times, s[:, 0], th, config.refractory_for("yes") / 1000, condition=cond,
                             min_runs=config.min_runs, peak=config.peak)
        assert len(live) > 10 and [round(float(t), 6) for t in times[fired]] == live


@pytest.mark.parametrize("rules", [dict(unknown_margin=0.2, unknown_window_ms=300, min_runs=2, peak=True), dict(peak=True)])
def test_rules_do_not_depend_on_chunking(rules):
    """The rules see only score vectors at hop times: the same audio, however it is cut, gives the same
    events through a Detector with a scorer."""
    rng = np.random.default_rng(7)
    audio = (rng.standard_normal(8 * SR) * 0.01).astype(np.float32)
    for k in range(6):
        start = SR // 2 + k * SR + int(rng.integers(0, 4000))
        n = int(rng.integers(2000, 9000))
        audio[start : start + n] += (rng.uniform(0.2, 0.8) * np.sin(np.arange(n) * (0.1 + 0.05 * k))).astype(np.float32)

    def scorer(window):
        # background frames average about -2.9 here, the tones -2 to 0: a recent tone -> yes, an old one -> _unknown_
        yes = 1.0 / (1.0 + np.exp(-4.0 * (float(window[-20:].mean()) + 2.3)))
        unknown = 0.8 / (1.0 + np.exp(-4.0 * (float(window[:20].mean()) + 2.3))) * (1 - yes)
        return np.array([yes, 0.0, unknown, 1.0 - yes - unknown])

    bundle = fake_bundle(threshold=0.5, smoothing_ms=200, refractory_ms=500, hop_ms=50, **rules)

    def run(sizes):
        cuts = np.cumsum(sizes)
        events = []
        detector = Detector(bundle, scorer=scorer)
        for chunk in np.split(audio, cuts[cuts < len(audio)]):
            events.extend(detector.push(chunk))
        return events

    whole = run([len(audio)])
    assert len(whole) >= 3
    for sizes in ([160] * (len(audio) // 160 + 1), [1] * 50 + [333] * 400, list(rng.integers(1, 7000, 100))):
        assert run(sizes) == whole


def test_listen_flags_set_the_rules_and_default_to_the_bundles():
    import argparse

    from tinyear.device.commands._options import add_detection_options, detection_config

    parser = argparse.ArgumentParser()
    add_detection_options(parser)
    bundle = fake_bundle(min_runs=2, unknown_margin=0.1)
    assert detection_config(bundle, parser.parse_args([])).rules()["min_runs"] == 2
    config = detection_config(bundle, parser.parse_args(["--min-runs", "3", "--peak", "--unknown-margin", "0.2",
                                                         "--unknown-window", "400"]))
    assert config.rules() == {"unknown_margin": 0.2, "unknown_window_ms": 400.0, "min_runs": 3, "peak": True,
                              "per_class_refractory_ms": {}}
    assert detection_config(fake_bundle(peak=True), parser.parse_args(["--no-peak"])).peak is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--min-runs", "0"])
