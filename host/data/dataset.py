"""`Dataset`: the labelled clips of one or more roots, with their background noise, and the arrays a
model trains on (fixed-length waveforms, cached: `wavecache`). Made by `load_dataset`. Imports numpy,
tqdm (for the progress bar) and `tinyear.device`; never torch.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyear.device.audio import load_audio
from tinyear.device.errors import AudioError, TinyearError
from tinyear.device.features import DEFAULT_CONFIG, FrontendConfig, fingerprint as frontend_fingerprint, fit_clip

from ..cache import key as cache_key
from ..progress import bar as progress_bar
from . import wavecache
from .layout import SPLITS, WORDS, Clip, check_split, file_size
from .silence import silence_waveform


@dataclass
class Dataset:
    """Labelled clips of one or more roots, with their background noise; see `tinyear.host.data`."""

    root: Path
    labels: list[str]
    clips: list[Clip]
    noise: list[np.ndarray]  # train part of each background recording, float32 (samples,) at sample_rate
    roots: list[Path] = field(default_factory=list)
    words: tuple[str, ...] = WORDS
    sample_rate: int = 16000
    noise_by_split: dict = field(default_factory=dict)  # split -> list of float32 (samples,)
    noise_source: str = "real"  # "real" recordings | "synthetic" (a synthetic root's) | "generated" (none found)
    noise_files: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # unreadable files, "path: reason"
    cache_dir: Path | None = None
    _fingerprint: str | None = None

    def clips_in(self, split: str) -> list[Clip]:
        """The clips of one split ("train", "validation" or "test"), in a fixed order."""
        check_split(split)
        return [c for c in self.clips if c.split == split]

    def label_index(self, split: str) -> np.ndarray:
        """(N,) int64 label indices of `clips_in(split)`, without loading any audio."""
        index = {label: i for i, label in enumerate(self.labels)}
        return np.array([index[c.label] for c in self.clips_in(split)], dtype=np.int64)

    def counts(self, split: str | None = None) -> dict[str, int]:
        """Clips per label in one split (or all splits), every label present (0 when none)."""
        counter = Counter(c.label for c in self.clips if split is None or c.split == split)
        return {label: counter.get(label, 0) for label in self.labels}

    def class_weights(self, split: str = "train") -> np.ndarray:
        """(num_labels,) float32 inverse-frequency weights for a weighted loss: N / (K * count), where K
        is the number of labels present; 0 for a label with no clips. Equal classes give all ones."""
        counts = np.array(list(self.counts(split).values()), dtype=np.float64)
        present = counts > 0
        weights = np.zeros_like(counts)
        weights[present] = counts.sum() / (present.sum() * counts[present])
        return weights.astype(np.float32)

    def sample_weights(self, split: str = "train") -> np.ndarray:
        """(N,) float64 per-clip weights (its class weight) for torch's WeightedRandomSampler, in the
        order of clips_in(split): every class is then drawn equally often."""
        return self.class_weights(split).astype(np.float64)[self.label_index(split)]

    def fingerprint(self) -> str:
        """A short hash of what the dataset is (clip names, sizes, labels, splits, parameters), not of
        where it lies: the same files moved elsewhere give the same fingerprint."""
        if self._fingerprint is None:
            self._fingerprint = "data-" + cache_key(self._identity())[:16]
        return self._fingerprint

    def _identity(self) -> dict:
        clips = []
        for c in self.clips:
            if c.path is None:
                clips.append([c.label, c.split, c.noise_clip, c.noise_offset, round(c.noise_rms_db, 6)])
            else:
                rel = c.path.relative_to(self.roots[c.root]).as_posix()
                clips.append([c.root, rel, file_size(c.path), c.label, c.split])
        return {"labels": self.labels, "params": self.params, "clips": clips, "noise": self.noise_files,
                "noise_source": self.noise_source, "sample_rate": self.sample_rate}

    def summary(self) -> dict:
        """What was loaded, for people and run records: roots, fingerprint, clips per split and label,
        where each label's clips come from (real / synthetic / noise), noise, skipped files."""
        per_split = {s: self.counts(s) for s in SPLITS}
        sources: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for c in self.clips:
            sources[c.label][c.source] += 1
        return {
            "roots": [str(r) for r in self.roots],
            "fingerprint": self.fingerprint(),
            "labels": list(self.labels),
            "clips": len(self.clips),
            "per_split": per_split,
            "sources": {label: dict(sources[label]) for label in self.labels},
            "noise": {"source": self.noise_source, "recordings": len(self.noise),
                      "train_seconds": round(sum(len(n) for n in self.noise) / self.sample_rate, 1)},
            "skipped_unreadable": len(self.skipped),
            "params": dict(self.params),
        }

    def arrays(self, split: str, config: FrontendConfig = DEFAULT_CONFIG, *, progress: bool = True):
        """All clips of `split` as model-ready waveforms: (N, config.clip_samples) float32 (`fit_clip`
        applied; silence cut from noise) and (N,) int64 label indices into `labels`.

        Deterministic. Cached on disk the first time (`wavecache`); later calls read the cache."""
        check_split(split)
        if config.sample_rate != self.sample_rate:
            raise TinyearError(f"the dataset was loaded at {self.sample_rate} Hz but the frontend wants "
                               f"{config.sample_rate} Hz; load it with sample_rate={config.sample_rate}")
        clips = self.clips_in(split)
        y = self.label_index(split)
        path = wavecache.cache_path(self.cache_dir, self.fingerprint(), split, frontend_fingerprint(config), clips)
        x = wavecache.load(path, (len(clips), config.clip_samples))
        if x is not None:
            return x, y
        x = np.zeros((len(clips), config.clip_samples), dtype=np.float32)
        with progress_bar(len(clips), f"reading {split} clips", enabled=progress, at_least=200) as bar:
            for i, clip in enumerate(clips):
                x[i] = self.waveform(clip, config)
                bar.update(1)
        wavecache.save(path, x)
        return x, y

    def waveform(self, clip: Clip, config: FrontendConfig = DEFAULT_CONFIG) -> np.ndarray:
        """One clip as float32 (config.clip_samples,), as arrays() computes it."""
        if clip.path is None:
            return silence_waveform(self.noise_by_split[clip.split][clip.noise_clip], clip, config.clip_samples)
        try:
            return fit_clip(load_audio(clip.path, config.sample_rate), config)
        except AudioError as exc:
            raise TinyearError(f"{exc} (it was readable when the dataset was loaded; reload it)") from None
