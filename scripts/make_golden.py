#!/usr/bin/env python3
"""Regenerate the frontend's golden vectors (tests/golden/). Run only when FRONTEND_VERSION changes.

The input is a tiny WAV made from a fixed recipe (a 440 Hz + 2.5 kHz tone pair, a chirp and seeded
noise, 0.3 s at 16 kHz, 16-bit), so the test reads exactly the bytes a user's file would give. The
output is its log-mel features from `tinyear.device.features.log_mel`, stored as float32 .npy along with
the frontend fingerprint they were made with.
"""

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from tinyear.device.features import DEFAULT_CONFIG, FRONTEND_VERSION, fingerprint, log_mel

OUT = Path(__file__).resolve().parent.parent / "tests" / "golden"


def recipe() -> np.ndarray:
    sr = DEFAULT_CONFIG.sample_rate
    t = np.arange(int(0.3 * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 2500 * t)
    x += 0.2 * np.sin(2 * np.pi * (200 + 6000 * t) * t) * (t > 0.15)
    x += 0.02 * np.random.default_rng(1234).standard_normal(len(t))
    return x


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    sf.write(OUT / "tones.wav", recipe(), DEFAULT_CONFIG.sample_rate, subtype="PCM_16")
    wave, _ = sf.read(OUT / "tones.wav", dtype="float32")
    feats = log_mel(wave)
    np.save(OUT / "tones_logmel.npy", feats)
    (OUT / "tones.json").write_text(json.dumps({"fingerprint": fingerprint(), "frontend_version": FRONTEND_VERSION,
                                                "shape": list(feats.shape)}, indent=1) + "\n")
    print(f"wrote {OUT}: features {feats.shape}, fingerprint {fingerprint()}")


if __name__ == "__main__":
    main()
