"""Classifying whole clips with a bundle: audio in, one probability per label out.

`Classifier` pairs a verified bundle with its loaded model and the features the bundle names (the
shared frontend, or the backbone a backbone bundle carries), so the only way to get scores is through
the features the model was trained on. Clips that are not exactly
one model window long are fitted by `features.fit_clip` (centred padding, or the loudest window).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .audio import check_finite, load_audio
from .bundle import Bundle, read_bundle


class Classifier:
    """A bundle ready to classify clips."""

    def __init__(self, bundle: Bundle | str | Path, *, num_threads: int = 1, runtime: str | None = None):
        self.bundle = bundle if isinstance(bundle, Bundle) else read_bundle(bundle)
        self.model = self.bundle.load_model(num_threads=num_threads, runtime=runtime)
        self.labels = self.bundle.labels
        self._features = self.bundle.featurizer(num_threads=num_threads, runtime=runtime)

    def features(self, waveform: np.ndarray) -> np.ndarray:
        """Mono float32 waveform at the bundle's sample rate -> one model input: (frames, bins), or a
        backbone bundle's (windows, dim)."""
        check_finite(np.asarray(waveform))
        return self._features(waveform)

    def scores_from_features(self, features: np.ndarray) -> np.ndarray:
        """(frames, bins) or (batch, frames, bins) -> probabilities over labels, float32."""
        return self.model.probabilities(features)

    def scores(self, waveform: np.ndarray) -> np.ndarray:
        """Probabilities over `labels` for a mono waveform at the bundle's sample rate."""
        return self.scores_from_features(self.features(waveform))

    def classify_file(self, path: str | Path, *, channel: int | None = None) -> np.ndarray:
        """Probabilities over `labels` for an audio file (any format, rate, channels)."""
        return self.scores(load_audio(path, self.bundle.sample_rate, channel=channel))

    def top(self, probs: np.ndarray, k: int = 1) -> list[tuple[str, float]]:
        """The k most probable (label, probability) pairs, best first."""
        order = np.argsort(-np.asarray(probs), kind="stable")[:k]
        return [(self.labels[i], float(probs[i])) for i in order]
