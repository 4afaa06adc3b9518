"""The streaming detector: audio chunks in, keyword events out. Pure logic, no audio I/O.

Fed audio of any chunk size at the bundle's sample rate, a `Detector` computes features incrementally
(`features.StreamingFrontend`: each 10 ms frame once, never the whole window again, one call per hop)
into a ring of the last `num_frames` frames, runs the model every hop once the ring is full
(`Model.probabilities`), and hands each score vector to a `DecisionGate`, set by a
`detection.DetectionConfig`: a moving average over `smoothing_ms`, per-class thresholds (the
`labels.NON_KEYWORDS`, `_silence_` and `_unknown_`, never fire), a refractory period per label, and re-arming (a label fires again only after
its smoothed score has dropped below its threshold, so one long word is one event), and the rules a
config may switch on (an `_unknown_` margin, a score held for `min_runs` runs, peak-then-fall, per-class
refractory times; all off by default). Events carry the stream time of the audio that completed the deciding window, in seconds since the start of the stream.

Everything is counted in frames, not in chunks: model runs fall on frame counts N, N + hop, N + 2 hop,
..., so the same audio gives the same events however it is cut (the tests check it). The live listener
(`capture.py`), streaming evaluation (`streameval.py`), `bench` and the soak script all drive this one
class. Imports numpy and the device half only: never torch, tensorflow or `tinyear.host`.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from .backbone import ClipStream
from .bundle import Bundle
from .detection import DetectionConfig
from .features import StreamingFrontend, model_input
from .labels import UNKNOWN


@dataclass(frozen=True)
class Detection:
    """One event: `label` heard, smoothed probability `score`, decided at `time` seconds of stream."""

    time: float
    label: str
    score: float

    def to_dict(self) -> dict:
        return {"time": round(self.time, 3), "label": self.label, "score": round(self.score, 4)}


class DecisionGate:
    """Smoothing, thresholds, refractory period and re-arming over a sequence of score vectors, and the
    rules a `DetectionConfig` may switch on (each off by default, and then the gate is what it was):

    - `unknown_margin`: a keyword's smoothed score must beat the smoothed `_unknown_` score (its highest
      over `unknown_window_ms`) by the margin;
    - `min_runs`: the conditions must hold for that many consecutive runs (N - 1 hops of latency);
    - `peak`: a keyword that may fire waits; when the waiting keyword with the highest peak falls below
      its peak, it fires with its peak score (one hop of latency), and the others waiting drop out (one
      word, one event, the stronger keyword);
    - `per_class_refractory_ms`: a refractory time of each label's own.

    A label's condition is "smoothed score >= its threshold (and the margin holds)"; it re-arms when the
    condition fails. `update(time, probs)` takes the probabilities of one model run (shape (labels,)) at a
    stream time in seconds and returns the Detection it triggers, or None. At most one event per run:
    the keyword with the highest smoothed (peak) score among those that may fire. Numpy on a dozen
    values per run; the gate sees only score vectors at hop times, so it cannot depend on chunk size."""

    def __init__(self, labels: list[str], config: DetectionConfig):
        self.labels = list(labels)
        self.config = config
        self.runs_averaged = runs_spanning(config.smoothing_ms, config.hop_ms)
        self._history: deque = deque(maxlen=self.runs_averaged)
        # Labels that never fire get an unreachable threshold, so the arithmetic below has no special case.
        self.thresholds = np.array([math.inf if lab in config.ignore else config.threshold_for(lab) for lab in self.labels])
        self.refractory_s = np.array([config.refractory_for(lab) / 1000.0 for lab in self.labels])
        self.min_runs = int(config.min_runs)
        self.peak = bool(config.peak)
        use_margin = config.unknown_margin > 0 and UNKNOWN in self.labels
        self.unknown = self.labels.index(UNKNOWN) if use_margin else None
        self._unknown_history: deque = deque(maxlen=runs_spanning(config.unknown_window_ms, config.hop_ms))
        self.reset()

    def reset(self) -> None:
        n = len(self.labels)
        self._history.clear()
        self._unknown_history.clear()
        self._armed = np.ones(n, dtype=bool)
        self._last_fired = np.full(n, -math.inf)
        self._run = np.zeros(n, dtype=np.int64)  # consecutive runs the condition has held
        self._waiting = np.zeros(n, dtype=bool)  # peak rule: may fire, waiting for the score to fall
        self._peak = np.zeros(n)  # peak rule: the highest smoothed score since it started waiting
        self._previous: np.ndarray | None = None

    def smoothed(self) -> np.ndarray:
        """The current moving average, float64 (labels,)."""
        return np.mean(np.stack(self._history), axis=0)

    def update(self, time_s: float, probs: np.ndarray) -> Detection | None:
        probs = np.asarray(probs, dtype=np.float64).reshape(-1)
        if probs.shape[0] != len(self.labels):
            raise ValueError(f"{probs.shape[0]} scores for {len(self.labels)} labels")
        self._history.append(probs)
        score = self.smoothed()  # (labels,)
        above = score >= self.thresholds
        if self.unknown is not None:
            self._unknown_history.append(score[self.unknown])
            above &= score - max(self._unknown_history) >= self.config.unknown_margin - 1e-12
        self._armed |= ~above  # the condition failing re-arms a label
        self._run = np.where(above, self._run + 1, 0)
        # A small epsilon: stream times are sums of hops, and 1.0 - 0.1 * 10 must count as "a second later".
        ready = above & self._armed & (self._run >= self.min_runs) & (time_s - self._last_fired >= self.refractory_s - 1e-9)
        if self.peak:
            # Labels that may fire wait, keeping their peak; the word's event comes when the leader (the
            # highest peak among the waiting) falls: below its peak, or, on its first run, below the run before.
            fresh = ready & ~self._waiting
            previous = self._previous if self._previous is not None else score
            falling = np.where(fresh, score < previous, score < self._peak)
            self._peak = np.where(fresh, score, np.maximum(self._peak, score))
            self._waiting |= fresh
            may_fire = np.zeros_like(self._waiting)
            if self._waiting.any():
                leader = int(np.argmax(np.where(self._waiting, self._peak, -math.inf)))
                may_fire[leader] = bool(falling[leader])
            value = self._peak
        else:
            may_fire, value = ready, score
        self._previous = score
        if not may_fire.any():
            return None
        best = int(np.argmax(np.where(may_fire, value, -math.inf)))
        self._armed[best] = False
        self._last_fired[best] = time_s
        if self.peak:
            # The other keywords waiting on this word drop out and wait for their condition to fail.
            self._armed[self._waiting] = False
            self._waiting[:] = False
        return Detection(time=float(time_s), label=self.labels[best], score=float(value[best]))


def runs_spanning(ms: float, hop_ms: float) -> int:
    """How many model runs a span of `ms` covers, at least the current one: the runs the gate averages
    (smoothing) and the runs whose `_unknown_` scores the margin looks at (its window)."""
    return max(1, round(ms / hop_ms))


class Detector:
    """Keyword events from a stream of mono audio at the bundle's sample rate.

    `push(samples)` takes float32 samples in [-1, 1] (any length, shape (samples,)) and returns the
    Detections they complete. `scorer`, if given, replaces the bundle's model: a function from features
    (num_frames, bins) float32 to probabilities (labels,) (the tests use it; everything else runs the
    model). Counters (`inferences`, `feature_seconds`, `model_seconds`, `samples_seen`) are for `bench`;
    `score_log`, when set to a list, receives each run's (stream time, probabilities) for `sweep.py`."""

    def __init__(self, bundle: Bundle, config: DetectionConfig | None = None, *, model=None, scorer=None,
                 num_threads: int = 1, runtime: str | None = None):
        self.bundle = bundle
        self.config = config or DetectionConfig.from_bundle(bundle)
        self.config.check(bundle)
        fe = self.frontend_config = bundle.frontend
        self.labels = list(bundle.labels)
        self.num_frames, self.num_bins = fe.num_frames, fe.num_mel_bins
        self.hop_frames = round(self.config.hop_ms / fe.hop_ms)
        if scorer is None:
            self.model = model if model is not None else bundle.load_model(num_threads=num_threads, runtime=runtime)
            scorer = self.model.probabilities  # (num_frames, bins) -> (labels,)
        else:
            self.model = model
        self._scorer = scorer
        # A backbone bundle's features are the backbone's embeddings of the last clip of audio (ClipStream);
        # otherwise the shared log-mel frames, each computed once by the frontend, into the ring below.
        self.clips = (ClipStream(bundle.load_backbone(num_threads=num_threads, runtime=runtime), fe,
                                 round(self.config.hop_ms * fe.sample_rate / 1000.0))
                      if bundle.backbone is not None else None)
        self.frontend = StreamingFrontend(fe) if self.clips is None else None
        # Each frame is written twice, at i and i + N, so the last N frames are always one contiguous
        # slice ring[s : s + N] (oldest first) without copying: (2N, bins) float32.
        self._ring = (np.zeros((2 * self.num_frames, self.num_bins), dtype=np.float32) if self.clips is None
                      else np.zeros((0, self.num_bins), dtype=np.float32))
        self.gate = DecisionGate(self.labels, self.config)
        self.time_offset = 0.0
        self.inferences = 0
        self.feature_seconds = 0.0
        self.model_seconds = 0.0
        self._frames = 0
        self._pending: list[np.ndarray] = []  # samples not yet given to the frontend
        self.samples_seen = 0
        self.score_log: list | None = None  # when a list, each run's (time, probabilities) is appended (sweep.py)

    @property
    def stream_seconds(self) -> float:
        """Seconds of audio pushed since the last reset, plus the reset's time offset."""
        return self.time_offset + self.samples_seen / self.frontend_config.sample_rate

    def reset(self, time_offset: float | None = None) -> None:
        """Forget all audio (after a gap, e.g. a reconnected microphone). Event times continue from
        `time_offset` seconds (default: where the stream had got to), so they stay monotonic."""
        self.time_offset = self.stream_seconds if time_offset is None else float(time_offset)
        if self.clips is not None:
            self.clips.reset()
        else:
            self.frontend.reset()
        self.gate.reset()
        self._frames = 0
        self._pending = []
        self.samples_seen = 0

    def window(self) -> np.ndarray:
        """The model input the ring holds now: (num_frames, bins) float32, oldest frame first (a view); a
        plain bundle's only (a backbone bundle keeps audio, in `clips`)."""
        start = self._frames % self.num_frames
        return self._ring[start : start + self.num_frames]

    def _samples_for_next_run(self) -> int:
        """Samples since the reset needed to complete the frame at which the model runs next."""
        if self.clips is not None:
            return self.clips.next_run()
        n, f = self.num_frames, self._frames
        frames = n if f < n else f + self.hop_frames - (f - n) % self.hop_frames
        return (frames - 1) * self.frontend_config.hop_length + self.frontend_config.window_length

    def push(self, samples: np.ndarray) -> list[Detection]:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.samples_seen += len(samples)
        if len(samples):
            self._pending.append(samples)
        # Audio is handed to the frontend once per hop, when it completes the next model input: the
        # same frames (the frontend does not care how audio is cut) for a fifth of the calls a
        # microphone's 20 ms blocks would make.
        if self.samples_seen < self._samples_for_next_run():
            return []
        chunk = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending = []
        events = []
        for end_sample, features in self._runs(chunk):
            t1 = time.perf_counter()
            probs = self._scorer(features)
            self.model_seconds += time.perf_counter() - t1
            self.inferences += 1
            now = self.time_offset + end_sample / self.frontend_config.sample_rate
            if self.score_log is not None:
                self.score_log.append((now, np.asarray(probs, dtype=np.float32).reshape(-1).copy()))
            event = self.gate.update(now, probs)
            if event is not None:
                events.append(event)
        return events

    def _runs(self, chunk: np.ndarray):
        """(end sample since the reset, model input) for each model run `chunk` completes, lazily: a
        frame window is a view of the ring, scored before the next frame overwrites it. Feature time is
        counted in `feature_seconds`."""
        if self.clips is not None:
            t0 = time.perf_counter()
            runs = self.clips.push(chunk)  # the backbone's embeddings of each completed clip
            self.feature_seconds += time.perf_counter() - t0
            yield from runs
            return
        t0 = time.perf_counter()
        frames = self.frontend.push(chunk)  # (k, bins): only the frames these samples complete
        self.feature_seconds += time.perf_counter() - t0
        fe, n = self.frontend_config, self.num_frames
        for frame in frames:
            i = self._frames % n
            self._ring[i] = frame
            self._ring[i + n] = frame
            self._frames += 1
            if self._frames < n or (self._frames - n) % self.hop_frames:
                continue
            # The deciding window ends with the last sample of its newest frame.
            yield (self._frames - 1) * fe.hop_length + fe.window_length, model_input(self.window(), fe)


def detect_array(detector: Detector, waveform: np.ndarray, chunk_samples: int = 1600, progress=None) -> list[Detection]:
    """Run a whole mono waveform (at the bundle's rate) through `detector` in chunks, as if it were live
    but as fast as the CPU allows; return all Detections. `progress(n)` is called with samples done."""
    events = []
    for start in range(0, len(waveform), chunk_samples):
        chunk = waveform[start : start + chunk_samples]
        events.extend(detector.push(chunk))
        if progress is not None:
            progress(len(chunk))
    return events
