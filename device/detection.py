"""Detection settings: how a stream of score vectors becomes keyword events, and their defaults.

`DEFAULT_DETECTION` is the one home of the defaults: a bundle exported without calibrated values gets
them, a bundle read from disk is completed with them, and `DetectionConfig`'s fields default to them.
`DetectionConfig.from_bundle` takes a bundle's values with the user's overrides and checks that they
can run with the bundle's frontend. Standard library only: a bundle comes in as an argument (any object with `.detection` and `.frontend`,
in practice a `tinyear.device.bundle.Bundle`), never through an import.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import TinyearError
from .labels import NON_KEYWORDS

DEFAULT_DETECTION = {
    "threshold": 0.8,  # smoothed probability a keyword must reach
    "per_class_threshold": {},  # label -> threshold, overrides "threshold"
    "smoothing_ms": 300,  # moving average over this much of the score history
    "refractory_ms": 1000,  # after a detection, that label is quiet this long
    "hop_ms": 100,  # how often the model runs while listening
    # Rules that are off at these values (the gate then behaves exactly as before they existed):
    "unknown_margin": 0.0,  # a keyword fires only if its smoothed score beats _unknown_'s by this much (0: off)
    "unknown_window_ms": 0,  # ... _unknown_'s highest smoothed score over this much history (0: the current run)
    "min_runs": 1,  # the smoothed score must hold for this many consecutive runs (1: fire at once)
    "peak": False,  # wait for the smoothed score to fall and fire then, at its peak (one hop later)
    "per_class_refractory_ms": {},  # label -> refractory_ms for that label, overrides "refractory_ms"
}
# The default hop: the bundle's, but never slower than this (a slower hop adds latency for no gain).
MAX_DEFAULT_HOP_MS = 100.0


def default_detection(**overrides) -> dict:
    """A fresh copy of `DEFAULT_DETECTION` (its per-class dict not shared) with `overrides` applied."""
    return {**DEFAULT_DETECTION, "per_class_threshold": dict(DEFAULT_DETECTION["per_class_threshold"]),
            "per_class_refractory_ms": dict(DEFAULT_DETECTION["per_class_refractory_ms"]), **overrides}


@dataclass(frozen=True)
class DetectionConfig:
    """How scores become events. Times in milliseconds; thresholds are smoothed probabilities in (0, 1]."""

    threshold: float = float(DEFAULT_DETECTION["threshold"])
    """Smoothed probability a keyword must reach, for labels without their own threshold."""

    per_class_threshold: dict = field(default_factory=dict)
    """label -> threshold; overrides `threshold` for that label."""

    smoothing_ms: float = float(DEFAULT_DETECTION["smoothing_ms"])
    """Scores are averaged over the model runs of this much time (at least the latest run)."""

    refractory_ms: float = float(DEFAULT_DETECTION["refractory_ms"])
    """After a label fires, it stays quiet this long (stream time)."""

    hop_ms: float = float(DEFAULT_DETECTION["hop_ms"])
    """The model runs every hop_ms of audio; a multiple of the frontend's frame hop."""

    unknown_margin: float = float(DEFAULT_DETECTION["unknown_margin"])
    """Open-set rule: a keyword may fire only while its smoothed score exceeds the smoothed `_unknown_`
    score by at least this much (0: off, and a bundle without `_unknown_` ignores it)."""

    unknown_window_ms: float = float(DEFAULT_DETECTION["unknown_window_ms"])
    """The `_unknown_` score the margin is taken against is its highest smoothed value over the runs of
    this much history (0: the current run only), so a word the model called "other" a moment ago is
    not taken for a keyword at its one keyword-like instant."""

    min_runs: int = int(DEFAULT_DETECTION["min_runs"])
    """Sustain: a keyword's conditions must hold for this many consecutive runs before it fires
    (1: at the first run; each more adds one hop of latency)."""

    peak: bool = bool(DEFAULT_DETECTION["peak"])
    """Peak-then-fall: a keyword that may fire waits until its smoothed score falls, then fires with
    its peak score (one hop of latency); while several wait, the one with the highest peak decides, and
    when it fires the others are dropped, so one word gives one event even when two keywords cross."""

    per_class_refractory_ms: dict = field(default_factory=dict)
    """label -> refractory time; overrides `refractory_ms` for that label."""

    ignore: tuple = NON_KEYWORDS
    """Labels that never fire."""

    def threshold_for(self, label: str) -> float:
        return float(self.per_class_threshold.get(label, self.threshold))

    def refractory_for(self, label: str) -> float:
        return float(self.per_class_refractory_ms.get(label, self.refractory_ms))

    def rules(self) -> dict:
        """The settings beyond thresholds and smoothing, as `to_dict` writes them."""
        return {"unknown_margin": self.unknown_margin, "unknown_window_ms": self.unknown_window_ms,
                "min_runs": self.min_runs, "peak": self.peak,
                "per_class_refractory_ms": dict(self.per_class_refractory_ms)}

    @classmethod
    def from_bundle(cls, bundle, *, threshold: float | None = None, smoothing_ms: float | None = None,
                    refractory_ms: float | None = None, hop_ms: float | None = None,
                    unknown_margin: float | None = None, unknown_window_ms: float | None = None,
                    min_runs: int | None = None, peak: bool | None = None) -> "DetectionConfig":
        """The bundle's detection defaults, with any argument that is not None overriding them.
        A `threshold` given here replaces the per-class thresholds too, and a `refractory_ms` the
        per-class refractory times: the user asked for that value. A bundle written before a setting
        existed gets its default (`DEFAULT_DETECTION`), which is the old behaviour."""
        d = {**DEFAULT_DETECTION, **bundle.detection}
        per_refractory = ({} if refractory_ms is not None else
                          {k: float(v) for k, v in (d.get("per_class_refractory_ms") or {}).items()})
        per_class = {} if threshold is not None else {k: float(v) for k, v in d.get("per_class_threshold", {}).items()}
        config = cls(
            threshold=float(d["threshold"] if threshold is None else threshold),
            per_class_threshold=per_class,
            smoothing_ms=float(d["smoothing_ms"] if smoothing_ms is None else smoothing_ms),
            refractory_ms=float(d["refractory_ms"] if refractory_ms is None else refractory_ms),
            hop_ms=float(min(float(d["hop_ms"]), MAX_DEFAULT_HOP_MS) if hop_ms is None else hop_ms),
            unknown_margin=float(d["unknown_margin"] if unknown_margin is None else unknown_margin),
            unknown_window_ms=float(d["unknown_window_ms"] if unknown_window_ms is None else unknown_window_ms),
            min_runs=d["min_runs"] if min_runs is None else min_runs,  # checked below: a whole number
            peak=bool(d["peak"] if peak is None else peak),
            per_class_refractory_ms=per_refractory,
        )
        config.check(bundle)
        return config

    def check(self, bundle) -> None:
        """Raise TinyearError (one line) if these settings cannot run with this bundle's frontend."""
        fe = bundle.frontend
        frames = self.hop_ms / fe.hop_ms
        if not self.hop_ms > 0 or abs(frames - round(frames)) > 1e-6:
            raise TinyearError(f"hop {self.hop_ms:g} ms is not a whole number of {fe.hop_ms:g} ms feature frames; "
                               f"use a multiple of {fe.hop_ms:g} (e.g. --hop 100)")
        if self.hop_ms > fe.clip_ms:
            raise TinyearError(f"hop {self.hop_ms:g} ms is longer than the model's {fe.clip_ms:g} ms window, so audio "
                               "would be skipped; use a smaller --hop")
        for label, value in [("default", self.threshold), *self.per_class_threshold.items()]:
            if not 0.0 < value <= 1.0:
                raise TinyearError(f"threshold {value} for {label} is outside (0, 1]; give a probability such as 0.8")
        if self.smoothing_ms < 0 or self.refractory_ms < 0 or any(v < 0 for v in self.per_class_refractory_ms.values()):
            raise TinyearError("smoothing and refractory times must be 0 or more milliseconds")
        if not 0.0 <= self.unknown_margin < 1.0 or self.unknown_window_ms < 0:
            raise TinyearError(f"unknown margin {self.unknown_margin} must be in [0, 1) and its window 0 or more "
                               "milliseconds; e.g. --unknown-margin 0.1")
        if not isinstance(self.min_runs, (int, float)) or int(self.min_runs) != self.min_runs or self.min_runs < 1:
            raise TinyearError(f"min runs {self.min_runs}: give a whole number of model runs, 1 or more (1 = fire at once)")

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "per_class_threshold": dict(self.per_class_threshold),
                "smoothing_ms": self.smoothing_ms, "refractory_ms": self.refractory_ms, "hop_ms": self.hop_ms,
                **self.rules()}


def describe_rules(r: dict) -> str:
    """The rules beyond thresholds and smoothing that a settings dict (`to_dict`, a bundle's) switches on, in a few words."""
    parts = []
    if r.get("unknown_margin", 0) > 0:
        parts.append(f"_unknown_ margin {r['unknown_margin']:g}" +
                     (f" over {r['unknown_window_ms']:g} ms" if r.get("unknown_window_ms", 0) > 0 else ""))
    if r.get("min_runs", 1) > 1:
        parts.append(f"{r['min_runs']} runs in a row")
    if r.get("peak"):
        parts.append("peak-then-fall")
    if r.get("per_class_refractory_ms"):
        parts.append("refractory " + ", ".join(f"{k} {v:g} ms" for k, v in r["per_class_refractory_ms"].items()))
    return ", ".join(parts) or "no extra rules"
