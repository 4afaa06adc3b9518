"""Background noise and `_silence_` clips: the recordings cut into per-split parts, the silence clips
drawn from them, and the waveform of such a clip.

Each background recording is cut by time into train / validation / test stretches in the split
proportions, so no stretch of noise crosses splits; a dataset without recordings gets synthetic
coloured noise and hum (`tinyear.host.noise`) instead. A generated `_silence_` clip is a second of one
split's noise at a random offset, scaled to a random level: most at ordinary room levels, a fraction
near digital silence (a muted or very quiet microphone), which a model must also call silence rather
than guess a word from the quantisation floor. Imports numpy and `tinyear.device`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tinyear.device.audio import load_audio
from tinyear.device.errors import AudioError, TinyearError

from .layout import BACKGROUND, SILENCE, SPLITS, Clip, file_size

# Levels of generated `_silence_` clips, RMS in dBFS (see the module docstring).
SILENCE_RMS_DB = (-65.0, -25.0)
NEAR_SILENCE_RMS_DB = (-110.0, -85.0)
NEAR_SILENCE_FRACTION = 0.1
GENERATED_SECONDS = 60.0  # of each kind of synthetic noise, when a dataset has no recordings


def load_noise(noise_paths: list[tuple[int, Path]], roots: list[Path], root_sources: list[str], sample_rate: int,
               seed: int, only_split, val_pct: float, test_pct: float):
    """Background recordings cut by time into per-split parts: ({split: [float32 (samples,)]}, names, source)
    where source is "real" if any recording comes from a real root, "synthetic" if all come from
    synthetic roots, "generated" if there were none and coloured noise and hum stand in."""
    recordings, names, sources = [], [], set()
    for r, path in noise_paths:
        try:
            recordings.append(load_audio(path, sample_rate))
            names.append([r, path.relative_to(roots[r]).as_posix(), file_size(path)])
            sources.add(root_sources[r])
        except AudioError as exc:
            print(f"tinyear: warning: background recording skipped: {exc}", file=sys.stderr)
    source = "real" if "real" in sources else "synthetic"
    if not recordings:
        from ..noise import noise_bank

        recordings = [x for _, x in noise_bank(GENERATED_SECONDS, sample_rate, seed)]
        names, source = [["generated", kind, int(GENERATED_SECONDS)] for kind, _ in noise_bank(0.001, sample_rate, seed)], "generated"
    by_split = {s: [] for s in SPLITS}
    for x in recordings:
        if only_split is not None:
            by_split[only_split].append(x)
            continue
        # train | validation | test as consecutive stretches of each recording, in those proportions.
        a = int(len(x) * (100.0 - val_pct - test_pct) / 100.0)
        b = int(len(x) * (100.0 - test_pct) / 100.0)
        for split, part in (("train", x[:a]), ("validation", x[a:b]), ("test", x[b:])):
            if len(part) >= sample_rate // 10:
                by_split[split].append(part)
    return by_split, names, source


def silence_clips(n: int, split: str, noise: list[np.ndarray], rng: np.random.Generator) -> list[Clip]:
    """n generated `_silence_` clips of `split`, drawn from that split's noise parts."""
    if n == 0:
        return []
    if not noise:
        raise TinyearError(f"no background noise long enough for the {split} split's _silence_ clips; add "
                           f"longer recordings to {BACKGROUND}/")
    clips = []
    for _ in range(n):
        j = int(rng.integers(len(noise)))
        offset = int(rng.integers(len(noise[j])))
        lo, hi = NEAR_SILENCE_RMS_DB if rng.random() < NEAR_SILENCE_FRACTION else SILENCE_RMS_DB
        clips.append(Clip(path=None, label=SILENCE, split=split, source="noise", speaker=f"noise{j}",
                          word=SILENCE, noise_clip=j, noise_offset=offset, noise_rms_db=float(rng.uniform(lo, hi))))
    return clips


def silence_waveform(noise: np.ndarray, clip: Clip, samples: int) -> np.ndarray:
    """The float32 (samples,) waveform of a generated silence clip: its stretch of `noise` (wrapping
    round), at its level."""
    piece = np.take(noise, np.arange(clip.noise_offset, clip.noise_offset + samples), mode="wrap")
    rms = float(np.sqrt(np.mean(piece.astype(np.float64) ** 2)))
    gain = 10.0 ** (clip.noise_rms_db / 20.0) / max(rms, 1e-12)
    return np.clip(piece * gain, -1.0, 1.0).astype(np.float32)
