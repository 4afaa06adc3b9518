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
}
# The default hop: the bundle's, but never slower than this (a slower hop adds latency for no gain).
MAX_DEFAULT_HOP_MS = 100.0


def default_detection(**overrides) -> dict:
    """A fresh copy of `DEFAULT_DETECTION` (its per-class dict not shared) with `overrides` applied."""
    return {**DEFAULT_DETECTION, "per_class_threshold": dict(DEFAULT_DETECTION["per_class_threshold"]), **overrides}


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

    ignore: tuple = NON_KEYWORDS
    """Labels that never fire."""

    def threshold_for(self, label: str) -> float:
        return float(self.per_class_threshold.get(label, self.threshold))

    @classmethod
    def from_bundle(cls, bundle, *, threshold: float | None = None, smoothing_ms: float | None = None,
                    refractory_ms: float | None = None, hop_ms: float | None = None) -> "DetectionConfig":
        """The bundle's detection defaults, with any argument that is not None overriding them.
        A `threshold` given here replaces the per-class thresholds too: the user asked for that value."""
        d = bundle.detection
        per_class = {} if threshold is not None else {k: float(v) for k, v in d.get("per_class_threshold", {}).items()}
        config = cls(
            threshold=float(d["threshold"] if threshold is None else threshold),
            per_class_threshold=per_class,
            smoothing_ms=float(d["smoothing_ms"] if smoothing_ms is None else smoothing_ms),
            refractory_ms=float(d["refractory_ms"] if refractory_ms is None else refractory_ms),
            hop_ms=float(min(float(d["hop_ms"]), MAX_DEFAULT_HOP_MS) if hop_ms is None else hop_ms),
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
        if self.smoothing_ms < 0 or self.refractory_ms < 0:
            raise TinyearError("smoothing and refractory times must be 0 or more milliseconds")

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "per_class_threshold": dict(self.per_class_threshold),
                "smoothing_ms": self.smoothing_ms, "refractory_ms": self.refractory_ms, "hop_ms": self.hop_ms}
