"""Operating points from one pass of the model: record the score vectors of a stream once, then replay
any thresholds and smoothing over them offline.

`record_scores` runs the real `Detector` over a waveform (the same frontend, model and hop as `listen`)
and keeps every model run's probabilities and stream time in a `ScoreTrace`. Everything after that is
arithmetic on the trace, no model: `smooth` is the gate's moving average (`detector.DecisionGate`,
which averages the runs it has, so the first runs of a stream average fewer), `label_events` the gate's
threshold, re-arming and refractory rules for one label, `label_table` the hits and false accepts of
each keyword at each threshold of a grid, and `curve` recall against false accepts per hour for one
threshold shared by all keywords (the detection curve `classify --stream --curve` writes). `replay`
runs the exact `DecisionGate` (one event per run across labels) over a trace, to confirm a chosen
operating point. Labels are treated one by one in the tables: the gate's "at most one event per model
run" couples them only when two keywords cross their thresholds in the same 100 ms, which `replay`
accounts for. Device half: numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .detection import DetectionConfig
from .detector import Detection, DecisionGate, detect_array
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


def runs_averaged(smoothing_ms: float, hop_ms: float) -> int:
    return max(1, round(smoothing_ms / hop_ms))


def label_events(times: np.ndarray, score: np.ndarray, threshold: float, refractory_s: float) -> np.ndarray:
    """Indices of the runs at which one label fires: at or above `threshold`, armed (its score fell below
    the threshold since it last fired) and at least `refractory_s` after its last event."""
    idx = np.flatnonzero(score >= threshold)
    fired, armed, last, prev = [], True, -math.inf, -2
    for i in idx.tolist():
        if i != prev + 1:
            armed = True  # the score was below the threshold at run i - 1
        prev = i
        if armed and times[i] - last >= refractory_s - 1e-9:
            fired.append(i)
            armed, last = False, times[i]
    return np.array(fired, dtype=np.int64)


def _match(event_times, starts, ends, after_s: float = MATCH_AFTER_END_S) -> int:
    """Hits of one label's event times against its words (the rule of `streameval.score_events`)."""
    used = np.zeros(len(starts), dtype=bool)
    hits = 0
    for t in event_times:
        ok = np.flatnonzero(~used & (starts <= t) & (t <= ends + after_s))
        if len(ok):
            used[ok[0]] = True
            hits += 1
    return hits


def label_table(trace: ScoreTrace, truth, keywords, *, smoothing_ms: float, refractory_ms: float,
                thresholds=THRESHOLD_GRID) -> dict:
    """{label: {"words": n, "rows": [(threshold, hits, false_accepts), ...]}} for each keyword."""
    s = smooth(trace.probs, runs_averaged(smoothing_ms, trace.hop_ms))
    table = {}
    for label in keywords:
        j = trace.labels.index(label)
        words = sorted((w for w in truth if w.label == label), key=lambda w: w.start)
        starts = np.array([w.start for w in words])
        ends = np.array([w.end for w in words])
        rows = []
        for th in thresholds:
            fired = trace.times[label_events(trace.times, s[:, j], th, refractory_ms / 1000.0)]
            hits = _match(fired, starts, ends)
            rows.append((float(th), hits, len(fired) - hits))
        table[label] = {"words": len(words), "rows": rows}
    return table


def curve(trace: ScoreTrace, truth, keywords, *, smoothing_ms: float, refractory_ms: float,
          thresholds=THRESHOLD_GRID) -> list[dict]:
    """Recall and false accepts per hour at each threshold, one threshold for every keyword: the real
    `DecisionGate` replayed over the recorded trace at each threshold (no model run), scored by
    `score_events`, so each row is exactly what the live detector would score there. (`label_table`'s
    per-label view is a fast approximation for choosing per-class thresholds; it does not know that
    the gate fires one label at a time.)"""
    hours = trace.duration_s / 3600.0
    out = []
    for th in thresholds:
        config = DetectionConfig(threshold=float(th), smoothing_ms=smoothing_ms, refractory_ms=refractory_ms,
                                 hop_ms=trace.hop_ms)
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
