"""Operating points from one pass of the model: record the score vectors of a stream once, then replay
any thresholds and smoothing over them offline.

`record_scores` runs the real `Detector` over a waveform (the same frontend, model and hop as `listen`)
and keeps every model run's probabilities and stream time in a `ScoreTrace`. Everything after that is
arithmetic on the trace, no model: `smooth` is the gate's moving average (`detector.DecisionGate`,
which averages the runs it has, so the first runs of a stream average fewer), `label_events` the gate's
threshold, re-arming, refractory, sustain (`min_runs`) and peak-then-fall rules for one label
(`label_condition` adds the `_unknown_` margin), `label_table` the hits and false accepts of
each keyword at each threshold of a grid, and `curve` recall against false accepts per hour for one
threshold shared by all keywords (the detection curve `classify --stream --curve` writes). `replay`
runs the exact `DecisionGate` (one event per run across labels) over a trace, to confirm a chosen
operating point. Labels are treated one by one in the tables: the gate's "at most one event per model
run" couples them only when two keywords cross their thresholds in the same 100 ms, which `replay`
accounts for. Device half: numpy only.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, replace

import numpy as np

from .detection import DetectionConfig
from .detector import Detection, DecisionGate, detect_array, runs_spanning
from .labels import UNKNOWN
from .streameval import MATCH_AFTER_END_S, score_events

# Thresholds tried by the sweeps: coarse where detectors are loose, fine near 1 where quiet ones live.
THRESHOLD_GRID = tuple(round(float(t), 4) for t in np.concatenate(
    [np.arange(0.10, 0.80, 0.05), np.arange(0.80, 0.95, 0.01), np.arange(0.95, 0.999, 0.005), [0.999]]))


@dataclass
class ScoreTrace:
    """The model's probabilities at every run over one stream: `times` (runs,) seconds, `probs`
    (runs, labels) float32, as `Detector` computed them with `hop_ms` between runs."""

    labels: list
    times: np.ndarray
    probs: np.ndarray
    hop_ms: float
    duration_s: float


def record_scores(detector, waveform: np.ndarray, *, progress=None) -> ScoreTrace:
    """Run `detector` (a fresh `Detector`) over a mono waveform at its bundle's rate, in 100 ms blocks,
    and return every run's scores. The detector's own events are ignored."""
    log: list = []
    detector.score_log = log
    try:
        detect_array(detector, waveform, chunk_samples=detector.frontend_config.sample_rate // 10, progress=progress)
    finally:
        detector.score_log = None
    times = np.array([t for t, _ in log], dtype=np.float64)
    probs = np.stack([p for _, p in log]).astype(np.float32) if log else np.zeros((0, len(detector.labels)), np.float32)
    return ScoreTrace(list(detector.labels), times, probs, float(detector.config.hop_ms),
                      len(waveform) / detector.frontend_config.sample_rate)


def smooth(probs: np.ndarray, runs_averaged: int) -> np.ndarray:
    """The gate's moving average: at run i, the mean of runs max(0, i - k + 1) .. i. (runs, labels) float64."""
    p = np.asarray(probs, dtype=np.float64)
    k = max(1, int(runs_averaged))
    c = np.concatenate([np.zeros((1, p.shape[1])), np.cumsum(p, axis=0)])
    i = np.arange(1, len(p) + 1)
    lo = np.maximum(0, i - k)
    return (c[i] - c[lo]) / (i - lo)[:, None]


def windowed_max(values: np.ndarray, runs: int) -> np.ndarray:
    """At run i, the highest of values[max(0, i - runs + 1) .. i] (the gate's `_unknown_` window). (runs,)"""
    v = np.asarray(values, dtype=np.float64)
    out = v.copy()
    for k in range(1, max(1, int(runs))):
        out[k:] = np.maximum(out[k:], v[:-k])
    return out


def unknown_scores(trace: ScoreTrace, s: np.ndarray, config: DetectionConfig) -> np.ndarray | None:
    """The `_unknown_` score the margin rule compares with at each run: its highest smoothed value over
    the gate's window (runs,), or None when the rule is off (or the model has no `_unknown_`)."""
    if not (config.unknown_margin > 0 and UNKNOWN in trace.labels):
        return None
    return windowed_max(s[:, trace.labels.index(UNKNOWN)], runs_spanning(config.unknown_window_ms, config.hop_ms))


def label_condition(score: np.ndarray, threshold: float, unknown: np.ndarray | None, margin: float) -> np.ndarray:
    """The gate's per-run condition for one label: smoothed `score` (runs,) at or above `threshold` and,
    with `unknown` (`unknown_scores`), above it by at least `margin`. (runs,) bool"""
    cond = score >= threshold
    if unknown is not None:
        cond &= score - unknown >= margin - 1e-12
    return cond


def label_events(times: np.ndarray, score: np.ndarray, threshold: float, refractory_s: float, *,
                 condition: np.ndarray | None = None, min_runs: int = 1, peak: bool = False) -> np.ndarray:
    """Indices of the runs at which one label fires, by the gate's rules for that label alone: its
    condition (`condition`, default score >= `threshold`) held for `min_runs` runs in a row, armed (the
    condition failed since it last fired) and at least `refractory_s` after its last event; with `peak`,
    at the first run from there on whose score is below the one before (the gate's peak-then-fall)."""
    cond = score >= threshold if condition is None else condition
    idx = np.flatnonzero(cond)
    falls = np.flatnonzero(score[1:] < score[:-1]) + 1 if peak else None
    fired, armed, last, prev, run, until = [], True, -math.inf, -2, 0, -1
    for i in idx.tolist():
        if i <= until:
            prev = i  # waiting for the fall, or fired there: the label is not armed again before a gap
            continue
        if i != prev + 1:
            armed, run = True, 0  # the condition failed at run i - 1
        prev = i
        run += 1
        if not (armed and run >= min_runs and times[i] - last >= refractory_s - 1e-9):
            continue
        f = i
        if peak:
            k = int(np.searchsorted(falls, i))
            if k == len(falls):
                break  # the stream ends before the score falls
            f = int(falls[k])
        fired.append(f)
        armed, last, until, prev = False, times[f], f, max(prev, f)
    return np.array(fired, dtype=np.int64)


def _match(event_times, starts, ends, after_s: float = MATCH_AFTER_END_S) -> int:
    """Hits of one label's event times against its words (the rule of `streameval.score_events`: each
    event takes the first unused word whose span, plus `after_s`, holds it)."""
    used = [False] * len(starts)
    starts, limits = list(map(float, starts)), [float(e) + after_s for e in ends]
    hits = 0
    for t in map(float, event_times):
        for k in range(bisect.bisect_right(starts, t)):  # words starting at or before t, in order
            if not used[k] and t <= limits[k]:
                used[k] = True
                hits += 1
                break
    return hits


def label_table(trace: ScoreTrace, truth, keywords, *, smoothing_ms: float, refractory_ms: float,
                thresholds=THRESHOLD_GRID, rules: DetectionConfig | None = None) -> dict:
    """{label: {"words": n, "rows": [(threshold, hits, false_accepts), ...]}} for each keyword. `rules`:
    a DetectionConfig whose margin, min_runs, peak and per-class refractory times apply (its thresholds
    and smoothing are ignored); default none of them."""
    rules = rules or DetectionConfig(hop_ms=trace.hop_ms, refractory_ms=refractory_ms)
    rules = replace(rules, hop_ms=trace.hop_ms, refractory_ms=refractory_ms)
    s = smooth(trace.probs, runs_spanning(smoothing_ms, trace.hop_ms))
    unknown = unknown_scores(trace, s, rules)
    table = {}
    for label in keywords:
        j = trace.labels.index(label)
        words = sorted((w for w in truth if w.label == label), key=lambda w: w.start)
        starts = np.array([w.start for w in words])
        ends = np.array([w.end for w in words])
        score = np.ascontiguousarray(s[:, j])
        margin_ok = label_condition(score, -math.inf, unknown, rules.unknown_margin)  # the same at every threshold
        rows = []
        for th in thresholds:
            fired = trace.times[label_events(trace.times, score, th, rules.refractory_for(label) / 1000.0,
                                             condition=(score >= th) & margin_ok, min_runs=rules.min_runs, peak=rules.peak)]
            hits = _match(fired, starts, ends)
            rows.append((float(th), hits, len(fired) - hits))
        table[label] = {"words": len(words), "rows": rows}
    return table


def curve(trace: ScoreTrace, truth, keywords, *, smoothing_ms: float, refractory_ms: float,
          thresholds=THRESHOLD_GRID, rules: DetectionConfig | None = None) -> list[dict]:
    """Recall and false accepts per hour at each threshold, one threshold for every keyword: the real
    `DecisionGate` replayed over the recorded trace at each threshold (no model run), scored by
    `score_events`, so each row is exactly what the live detector would score there. `rules`: a
    DetectionConfig whose margin, min_runs, peak and per-class refractory times the gate uses (default
    none). (`label_table`'s per-label view is a fast approximation for choosing per-class thresholds;
    it does not know that the gate fires one label at a time.)"""
    hours = trace.duration_s / 3600.0
    base = rules or DetectionConfig()
    out = []
    for th in thresholds:
        config = replace(base, threshold=float(th), per_class_threshold={}, smoothing_ms=smoothing_ms,
                         refractory_ms=refractory_ms, hop_ms=trace.hop_ms)
        scored = replay_scored(trace, config, truth, keywords)
        hits, fa, words = scored["hits"], scored["false_accepts"], scored["keywords"]
        out.append({"threshold": float(th), "recall": round(hits / words, 4) if words else None,
                    "false_accepts_per_hour": round(fa / hours, 2) if hours > 0 else None,
                    "hits": hits, "keywords": words, "false_accepts": fa})
    return out


def replay(trace: ScoreTrace, config: DetectionConfig) -> list[Detection]:
    """The events the real `DecisionGate` gives over a recorded trace with `config`."""
    gate = DecisionGate(trace.labels, config)
    events = []
    for t, p in zip(trace.times, trace.probs):
        event = gate.update(float(t), p)
        if event is not None:
            events.append(event)
    return events


def replay_scored(trace: ScoreTrace, config: DetectionConfig, truth, keywords) -> dict:
    """`score_events` of `replay`: the operating point of `config` on the trace's stream."""
    return score_events(replay(trace, config), truth, keywords=keywords, duration_s=trace.duration_s)


def write_curve_csv(path, rows: list[dict], *, model: str = "") -> None:
    """The curve as CSV (model, threshold, recall, false_accepts_per_hour, hits, keywords, false_accepts),
    written atomically."""
    import csv
    import io

    from .fileio import atomic_write_text

    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(["model", "threshold", "recall", "false_accepts_per_hour", "hits", "keywords", "false_accepts"])
    for r in rows:
        out.writerow([r.get("model", model), f"{r['threshold']:g}", r["recall"], r["false_accepts_per_hour"],
                      r["hits"], r["keywords"], r["false_accepts"]])
    atomic_write_text(path, buf.getvalue())
