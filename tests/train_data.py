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


ENERGY_TEACHER = ("import torch\n"
                  "class E(torch.nn.Module):\n"
                  "    def forward(self, w):\n"
                  "        e = (w ** 2).mean(dim=1, keepdim=True)\n"
                  "        return torch.cat([e, -e, torch.zeros_like(e)], dim=1) * 100\n"
                  "def make():\n    return E(), ['low', 'high', '_unknown_']\n")


def waveform_teacher_on_variant(tones: Path, tmp_path: Path, **extra_variants):
    """A waveform teacher (logits from each clip's energy, as a `file.py:make` factory) run by
    `teacher_outputs` over the features of `tones` with one augmented variant and the extra variants
    asked for (`mix_variants=1`, `window_variants=1`): (its cached outputs for variant 1, the same
    teacher on variant 1's waveforms computed here)."""
    import numpy as np

    from tinyear.host.augment import AugmentConfig
    from tinyear.host.data import load_dataset
    from tinyear.host.featcache import build_features, teacher_outputs
    from tinyear.host.teachers import load_teacher

    factory = tmp_path / "energy.py"
    factory.write_text(ENERGY_TEACHER)
    dataset = load_dataset([tones], list(WORDS), quiet=True)
    f = build_features(dataset, variants=1, augment=AugmentConfig(), cache_dir=tmp_path, progress=False, jobs=1,
                       **extra_variants)
    teacher = load_teacher(f"{factory}:make")
    out = teacher_outputs(f, teacher, progress=False)
    n = f.train.shape[1]
    assert out.shape == (2, n, 3)
    return out[1], teacher(f.variant_waves(np.arange(n), np.ones(n, int))).numpy()
