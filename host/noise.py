"""Synthetic background noise: coloured noise and mains hum, for when no real noise recordings exist.

`tinyear synth` writes these into `_background_noise_/` of a synthetic dataset, and `load_dataset` falls
back to them when a dataset has no background recordings at all, so `_silence_` and noise augmentation
always have something to work with. Real recordings (a kitchen, a fan, a street) are better: pass them
when you have them. Everything is deterministic for a given numpy Generator. Imports numpy and scipy.fft only
(no torch, nothing from `tinyear.host`).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

# name -> spectral slope in dB per octave of the noise's power (white 0, pink -3, brown -6, blue +3).
COLOURS = {"white": 0.0, "pink": -3.0, "brown": -6.0, "blue": 3.0}
KINDS = (*COLOURS, "hum", "fan")


def coloured_noise(num_samples: int, slope_db_per_octave: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise whose power spectrum falls by `slope_db_per_octave` per octave, float32 (samples,),
    normalised to RMS 0.1 (-20 dBFS). Shaped in the frequency domain (one FFT), not by a filter recursion."""
    spectrum = scipy.fft.rfft(rng.standard_normal(num_samples, dtype=np.float32))  # (samples // 2 + 1,) complex64
    if slope_db_per_octave != 0.0:
        freqs = np.arange(len(spectrum), dtype=np.float32)
        freqs[0] = 1.0  # keep DC finite; it is removed below
        spectrum *= freqs ** np.float32(slope_db_per_octave / (20.0 * np.log10(2.0)))  # amplitude: half the power slope
    spectrum[0] = 0.0
    x = scipy.fft.irfft(spectrum, n=num_samples).astype(np.float64)
    return (0.1 * x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


def hum(num_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum (50 or 60 Hz and harmonics with random levels and phases) over faint pink noise,
    float32 (samples,) at RMS 0.1."""
    base = rng.choice([50.0, 60.0])
    # One period of the hum, tiled: 50 and 60 Hz divide 16 kHz (and most rates) into whole samples.
    period = int(round(sample_rate / base))
    t = np.arange(period) / sample_rate
    cycle = np.zeros(period)
    for k in range(1, 8):
        cycle += rng.uniform(0.05, 1.0) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi))
    x = np.resize(cycle, num_samples)
    x = x / (np.sqrt(np.mean(x**2)) + 1e-12) + 0.3 * coloured_noise(num_samples, -3.0, rng) / 0.1
    return (0.1 * x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


def fan(num_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A fan or air-conditioner: brown-ish noise with a slow amplitude wobble and a blade-rate tone,
    float32 (samples,) at RMS 0.1."""
    t = np.arange(num_samples) / sample_rate
    x = coloured_noise(num_samples, -4.5, rng).astype(np.float64)
    x *= 1.0 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.2, 2.0) * t)
    x += 0.02 * np.sin(2 * np.pi * rng.uniform(80, 300) * t)
    return (0.1 * x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


def make_noise(kind: str, num_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One synthetic background recording of `kind` (one of KINDS), float32 (samples,) at RMS 0.1."""
    if kind in COLOURS:
        return coloured_noise(num_samples, COLOURS[kind], rng)
    if kind == "hum":
        return hum(num_samples, sample_rate, rng)
    if kind == "fan":
        return fan(num_samples, sample_rate, rng)
    raise ValueError(f"unknown noise kind {kind!r}; choose from {', '.join(KINDS)}")


def noise_bank(seconds: float, sample_rate: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """One recording of each kind in KINDS, `seconds` long: [(kind, float32 (samples,)), ...]."""
    rng = np.random.default_rng([seed, 0x6E6F6973])
    n = int(round(seconds * sample_rate))
    return [(kind, make_noise(kind, n, sample_rate, rng)) for kind in KINDS]
