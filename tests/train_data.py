"""A tiny keyword dataset on disk for the training tests: tones a model can learn in a few epochs.

Words `low` (300-600 Hz) and `high` (2-4 kHz) tone bursts, `_unknown_` chirps, and a
`_background_noise_/` recording, in the Speech Commands layout that `tinyear.host.data` reads. Each
clip has its own speaker key (`s<i>_nohash_0.wav`), so the speaker split spreads clips over train,
validation and test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
WORDS = ("low", "high")


def _burst(freq_lo: float, freq_hi: float, rng: np.random.Generator, chirp: bool = False) -> np.ndarray:
    n = int(rng.uniform(0.3, 0.6) * SR)
    t = np.arange(n) / SR
    f0 = rng.uniform(freq_lo, freq_hi)
    phase = 2 * np.pi * (f0 * t + (rng.uniform(-1, 1) * 2000 * t**2 if chirp else 0.0))
    x = np.sin(phase) * np.hanning(n) * rng.uniform(0.1, 0.5)
    out = np.zeros(SR)
    start = int(rng.integers(0, SR - n))
    out[start : start + n] = x
    return (out + rng.standard_normal(SR) * 0.003).astype(np.float32)


def make_dataset(root: Path, per_word: int = 40, seed: int = 0) -> Path:
    """Write the dataset under `root` (created); return it."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    kinds = {"low": (300, 600, False), "high": (2000, 4000, False), "_unknown_": (700, 1800, True)}
    i = 0
    for folder, (lo, hi, chirp) in kinds.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for _ in range(per_word):
            sf.write(str(root / folder / f"s{i:04d}_nohash_0.wav"), _burst(lo, hi, rng, chirp), SR, subtype="PCM_16")
            i += 1
    (root / "_background_noise_").mkdir(exist_ok=True)
    noise = (rng.standard_normal(20 * SR) * 0.05).astype(np.float32)
    sf.write(str(root / "_background_noise_" / "white.wav"), noise, SR, subtype="PCM_16")
    return root
