"""Training-time augmentation: what makes a model trained on clean or synthetic clips hold up on a real
microphone in a real room.

On waveforms, `Augmenter(config, noise)(wave, rng)` applies, each switchable in `AugmentConfig` and
each with its own probability: speed perturbation (tape-style resampling, which moves tempo and pitch
together, as Kaldi's speed perturbation does; soxr does the resampling), time shift, room reverb
(convolution with a synthetic impulse response: exponentially decaying noise with a random RT60 and
a direct-to-reverberant ratio, from a bank built once), a random microphone/channel colouring (EQ),
background noise at a sampled SNR, and gain.
On features, `spec_augment(features, config, generator)` masks random time and frequency bands
(SpecAugment, Park et al. 2019) on a torch batch.

Cost is the point: the trainer calls this for thousands of clips per epoch on two cores. Impulse
responses are drawn from a precomputed bank, convolution is one FFT pair, resampling is soxr's
quick setting, and everything else is a handful of vector operations (see `benchmark_augmenter`).
Imports numpy, scipy.fft and soxr; torch only inside `spec_augment`. Never imports `tinyear.host` modules.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import scipy.fft


# The switches that change waveforms (SpecAugment works on features, on the fly).
WAVEFORM_SWITCHES = ("noise", "shift", "gain", "reverb", "speed", "eq", "clipping")
ON_THE_FLY = {"spec_augment", "time_masks", "time_mask_frames", "freq_masks", "freq_mask_bins"}
"""The AugmentConfig fields applied to features at training time, not to the cached waveforms."""


@dataclass(frozen=True, kw_only=True)
class AugmentConfig:
    """Every switch and range of the augmentation. All switches off is the identity."""

    noise: bool = True
    """Mix in a random stretch of a background recording."""
    noise_prob: float = 0.8
    """Probability that a clip gets background noise."""
    snr_db: tuple[float, float] = (0.0, 25.0)
    """Signal-to-noise ratio range, dB, drawn uniformly; the signal power is the clip's mean power."""

    shift: bool = True
    """Move the clip in time, filling with zeros (no wrap-around: a word cut at the edge stays cut)."""
    shift_ms: float = 100.0
    """Largest shift either way, milliseconds, drawn uniformly."""

    gain: bool = True
    """Scale the whole clip (microphone and speaking level); the result is clipped to [-1, 1]."""
    gain_db: tuple[float, float] = (-12.0, 6.0)
    """Gain range, dB, drawn uniformly."""

    clipping: bool = False
    """Drive a share of clips into the rails, as a hot microphone or a shouting speaker does: after the
    gain, the clip is scaled so that its peak lies `clip_drive_db` above full scale, then clipped to
    [-1, 1]. A random gain alone rarely clips (speech peaks sit well below full scale)."""
    clip_prob: float = 0.2
    """Probability that a clip is driven into clipping."""
    clip_drive_db: tuple[float, float] = (3.0, 20.0)
    """How far above full scale the clip's peak is driven, dB, drawn uniformly."""

    reverb: bool = True
    """Convolve with a synthetic room impulse response (length preserved, level preserved)."""
    reverb_prob: float = 0.3
    """Probability that a clip is reverberated."""
    rt60_s: tuple[float, float] = (0.1, 0.7)
    """Reverberation time range of the bank's impulse responses, seconds (time to decay by 60 dB)."""
    drr_db: tuple[float, float] = (-3.0, 12.0)
    """Direct-to-reverberant energy ratio range of the impulse responses, dB (low = far from the mic)."""
    reverb_bank: int = 64
    """Number of impulse responses built once and drawn from."""

    speed: bool = True
    """Resample by a random factor: the word gets faster and higher, or slower and lower."""
    speed_prob: float = 0.5
    """Probability that a clip is speed-perturbed."""
    speed_range: tuple[float, float] = (0.88, 1.12)
    """Speed factor range (1.1 = 10% faster and 10% higher), drawn uniformly."""

    eq: bool = False
    """Colour the clip with a random smooth frequency response (microphones, phones, laptop speakers,
    rooms): gains drawn at `eq_bands` log-spaced frequencies from 80 Hz to Nyquist, interpolated over
    log frequency, applied by FFT; the clip's RMS is kept."""
    eq_prob: float = 0.5
    """Probability that a clip is coloured."""
    eq_db: float = 10.0
    """Largest gain either way at each band point, dB."""
    eq_bands: int = 6
    """Band points of the random response."""

    spec_augment: bool = True
    """Mask time and frequency bands of the features (spec_augment)."""
    time_masks: int = 2
    """Time masks per example."""
    time_mask_frames: int = 10
    """Widest time mask, frames (10 ms each)."""
    freq_masks: int = 2
    """Frequency masks per example."""
    freq_mask_bins: int = 5
    """Widest frequency mask, mel bins."""

    def __post_init__(self) -> None:
        for name in ("noise_prob", "reverb_prob", "speed_prob", "eq_prob", "clip_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        for name in ("snr_db", "gain_db", "rt60_s", "drr_db", "speed_range", "clip_drive_db"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: lower end {lo} above upper end {hi}")
        if self.rt60_s[0] <= 0 or self.speed_range[0] <= 0:
            raise ValueError("rt60_s and speed_range must be positive")
        if self.eq_bands < 2 or self.eq_db < 0:
            raise ValueError("eq_bands must be at least 2 and eq_db >= 0")
        if min(self.shift_ms, self.time_masks, self.time_mask_frames, self.freq_masks, self.freq_mask_bins) < 0:
            raise ValueError("shift_ms and mask counts/widths must be >= 0")
        if self.reverb_bank < 1:
            raise ValueError("reverb_bank must be at least 1")

    @classmethod
    def off(cls, **on) -> "AugmentConfig":
        """Every switch off, except those passed (e.g. `AugmentConfig.off(noise=True)`)."""
        switches = dict.fromkeys((*WAVEFORM_SWITCHES, "spec_augment"), False)
        return cls(**{**switches, **on})


def waveform_augment_settings(config: AugmentConfig) -> dict:
    """The AugmentConfig fields that change waveforms (what a cache of augmented clips is keyed by),
    without SpecAugment's (`featcache`, `backbone.augmented_embeddings`)."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in ON_THE_FLY}
    if not config.clipping:  # added later: while off it changes nothing, so old cache keys stay valid
        for k in ("clipping", "clip_prob", "clip_drive_db"):
            settings.pop(k)
    return settings


def impulse_response(rt60_s: float, drr_db: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response, float32 (samples,), as long as the decay to -40 dB (the rest is
    below what 16-bit speech under background noise lets anyone hear, and costs FFT length).

    A unit direct path at sample 0 and a diffuse tail of Gaussian noise whose amplitude decays as
    exp(-6.91 t / rt60) (60 dB of energy over rt60), starting 1-5 ms after it (early reflections),
    scaled so the direct energy over the tail energy equals drr_db."""
    n = max(2, int(rt60_s * 40.0 / 60.0 * sample_rate))
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.91 * t / rt60_s)
    tail[: int(rng.uniform(0.001, 0.005) * sample_rate)] = 0.0
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / (np.sum(tail**2) + 1e-12))
    tail[0] = 1.0
    return tail.astype(np.float32)


class Augmenter:
    """Random waveform augmentation with one config and one set of noise recordings.

    `noise`: background recordings, float32 (samples,) at `sample_rate` (e.g. `Dataset.noise`); with
    none, the noise step is skipped. Picklable, so DataLoader workers can each hold one."""

    def __init__(self, config: AugmentConfig, noise=(), sample_rate: int = 16000, *, seed: int = 0):
        self.config = config
        self.sample_rate = sample_rate
        self.noise = [np.asarray(n, dtype=np.float32) for n in noise if len(n) > 0]
        self._noise_power = [float(np.mean(n.astype(np.float64) ** 2)) for n in self.noise]
        self._irs: list[np.ndarray] = []
        self._ir_ffts: dict = {}
        self._eq_basis: dict = {}
        if config.reverb:
            rng = np.random.default_rng([seed, 0x5256])
            for _ in range(config.reverb_bank):
                self._irs.append(impulse_response(rng.uniform(*config.rt60_s), rng.uniform(*config.drr_db),
                                                  sample_rate, rng))

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One augmented copy of a mono clip: float32 (samples,) -> float32 (samples,), same length."""
        c = self.config
        x = np.asarray(wave, dtype=np.float32)
        if c.speed and rng.random() < c.speed_prob:
            x = self._speed(x, float(rng.uniform(*c.speed_range)))
        if c.shift and c.shift_ms > 0:
            x = self._shift(x, int(round(rng.uniform(-1.0, 1.0) * c.shift_ms * self.sample_rate / 1000.0)))
        if c.reverb and self._irs and rng.random() < c.reverb_prob:
            x = self._reverb(x, int(rng.integers(len(self._irs))))
        if c.eq and rng.random() < c.eq_prob:
            x = self._eq(x, rng.uniform(-c.eq_db, c.eq_db, c.eq_bands))
        if c.noise and self.noise and rng.random() < c.noise_prob:
            x = self._add_noise(x, float(rng.uniform(*c.snr_db)), rng)
        if c.gain:
            x = np.clip(x * np.float32(10.0 ** (rng.uniform(*c.gain_db) / 20.0)), -1.0, 1.0)
        if c.clipping and rng.random() < c.clip_prob:
            peak = float(np.max(np.abs(x))) if len(x) else 0.0
            drive = float(rng.uniform(*c.clip_drive_db))
            if peak > 0.0:
                x = np.clip(x * np.float32(10.0 ** (drive / 20.0) / peak), -1.0, 1.0)
        return x.astype(np.float32, copy=False)

    def batch(self, waves: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(B, samples) float32 -> (B, samples) float32, each row augmented independently."""
        return np.stack([self(w, rng) for w in waves]) if len(waves) else np.asarray(waves, dtype=np.float32)

    def _speed(self, x: np.ndarray, factor: float) -> np.ndarray:
        """Play `factor` times faster (resample to rate/factor), then centre-crop or zero-pad to length."""
        import soxr

        y = soxr.resample(x, self.sample_rate, self.sample_rate / factor, quality="QQ")
        return _fit_length(y, len(x))

    @staticmethod
    def _shift(x: np.ndarray, samples: int) -> np.ndarray:
        """Delay by `samples` (negative: advance), zero-filled, same length."""
        if samples == 0:
            return x
        y = np.zeros_like(x)
        if samples > 0:
            y[samples:] = x[: len(x) - samples]
        else:
            y[:samples] = x[-samples:]
        return y

    def _reverb(self, x: np.ndarray, index: int) -> np.ndarray:
        """Convolve with bank IR `index` (FFT), keep the first len(x) samples, restore the input's RMS."""
        n = len(x)
        ir = self._irs[index]
        size = scipy.fft.next_fast_len(n + len(ir) - 1, real=True)
        key = (index, size)
        spectrum = self._ir_ffts.get(key)
        if spectrum is None:
            spectrum = self._ir_ffts[key] = scipy.fft.rfft(ir, size)  # complex64: ir is float32
        y = scipy.fft.irfft(scipy.fft.rfft(x, size) * spectrum, size)[:n]  # float32 FFTs: half the cost
        power_in, power_out = float(np.dot(x, x)), float(np.dot(y, y))
        if power_out > 0:
            y *= np.sqrt(power_in / power_out)
        return y.astype(np.float32)

    def _eq(self, x: np.ndarray, gains_db: np.ndarray) -> np.ndarray:
        """Multiply the spectrum by a smooth curve through gains_db (dB at log-spaced points), keep RMS."""
        n, bands = len(x), len(gains_db)
        basis = self._eq_basis.get((n, bands))
        if basis is None:
            # (n // 2 + 1, bands) float32: linear interpolation over log frequency, as a matrix, so that a
            # curve costs one small matrix-vector product and one float32 exp.
            log_f = np.log(np.maximum(np.fft.rfftfreq(n, 1.0 / self.sample_rate), 1.0))
            points = np.log(np.geomspace(80.0, self.sample_rate / 2.0, bands))
            basis = np.stack([np.interp(log_f, points, np.eye(bands)[k]) for k in range(bands)], axis=1)
            basis = self._eq_basis[(n, bands)] = basis.astype(np.float32)
        curve = np.exp(basis @ (np.asarray(gains_db, dtype=np.float32) * np.float32(np.log(10.0) / 20.0)))
        y = scipy.fft.irfft(scipy.fft.rfft(x) * curve, n)
        power_in, power_out = float(np.dot(x, x)), float(np.dot(y, y))
        if power_out > 0:
            y *= np.float32(np.sqrt(power_in / power_out))
        return y.astype(np.float32, copy=False)

    def _add_noise(self, x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
        """Add a random stretch of a random recording so that power(x) / power(noise) = snr_db. A silent
        clip (power 0) gets the noise at its recorded level, since no SNR can be met."""
        j = int(rng.integers(len(self.noise)))
        rec = self.noise[j]
        n = len(x)
        if len(rec) >= n:
            start = int(rng.integers(len(rec) - n + 1))
            piece = rec[start : start + n]
        else:
            piece = np.resize(rec, n)  # a recording shorter than a clip repeats
        p_noise = float(np.dot(piece, piece)) / n
        p_signal = float(np.dot(x, x)) / n
        if p_noise <= 0:
            return x
        if p_signal <= 1e-12:
            return x + piece
        scale = np.sqrt(p_signal / (p_noise * 10.0 ** (snr_db / 10.0)))
        return x + np.float32(scale) * piece


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    if len(y) == n:
        return y
    if len(y) > n:
        start = (len(y) - n) // 2
        return y[start : start + n]
    pad = n - len(y)
    return np.pad(y, (pad // 2, pad - pad // 2))


def spec_augment(features, config: AugmentConfig, generator=None):
    """SpecAugment masks on a batch of log-mel features: (B, frames, bins) torch.Tensor -> a new tensor
    of the same shape where `time_masks` bands of up to `time_mask_frames` frames and `freq_masks` bands
    of up to `freq_mask_bins` bins are set to each example's mean (not 0: in raw log-mel, 0 is a loud
    sound and the floor is digital silence, so the mean is the neutral value). `generator`: a
    torch.Generator for repeatable masks. Identity when config.spec_augment is off."""
    import torch

    if not config.spec_augment or features.numel() == 0:
        return features
    b, frames, bins = features.shape
    device = features.device
    mask = torch.zeros(b, frames, bins, dtype=torch.bool, device=device)

    def bands(count: int, widest: int, length: int) -> torch.Tensor:
        # (B, length) bool: True inside any of `count` random bands of width 0..widest.
        if count == 0 or widest == 0:
            return torch.zeros(b, length, dtype=torch.bool, device=device)
        width = torch.randint(0, widest + 1, (b, count, 1), generator=generator).to(device)  # (B, count, 1)
        start = (torch.rand(b, count, 1, generator=generator).to(device) * (length - width + 1)).long()
        pos = torch.arange(length, device=device).view(1, 1, length)  # (1, 1, length)
        return ((pos >= start) & (pos < start + width)).any(dim=1)  # (B, length)

    mask |= bands(config.time_masks, min(config.time_mask_frames, frames), frames)[:, :, None]  # (B, frames, 1)
    mask |= bands(config.freq_masks, min(config.freq_mask_bins, bins), bins)[:, None, :]  # (B, 1, bins)
    mean = features.mean(dim=(1, 2), keepdim=True)  # (B, 1, 1)
    return torch.where(mask, mean.expand_as(features), features)


def benchmark_augmenter(augmenter: Augmenter, waves: np.ndarray, repeats: int = 1, seed: int = 0) -> float:
    """Mean wall time per clip, in milliseconds, of augmenting `waves` (B, samples) `repeats` times."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(repeats):
        for w in waves:
            augmenter(w, rng)
    return (time.perf_counter() - start) * 1000.0 / (repeats * len(waves))


def _main() -> None:
    """`python -m tinyear.host.augment [DATASET]`: milliseconds per clip, all switches on and each alone,
    on 1-second clips (DATASET's validation split when given, else synthetic test clips), as JSON."""
    import json
    import sys

    rng = np.random.default_rng(0)
    if len(sys.argv) > 1:
        from .data import load_dataset

        dataset = load_dataset(sys.argv[1], allow_missing=True, quiet=True)
        waves, noise = dataset.arrays("validation", progress=False)[0][:300], dataset.noise
    else:
        waves = (0.1 * rng.standard_normal((300, 16000))).astype(np.float32)
        noise = [(0.1 * rng.standard_normal(60 * 16000)).astype(np.float32)]
    results = {}
    configs = {"all": AugmentConfig(), **{k: AugmentConfig.off(**{k: True}) for k in
                                           ("noise", "shift", "gain", "reverb", "speed", "eq")}}
    for name, config in configs.items():
        augmenter = Augmenter(config, noise)
        benchmark_augmenter(augmenter, waves[:50])  # warm-up: builds the cached IR spectra
        results[name] = round(benchmark_augmenter(augmenter, waves, repeats=3), 4)
    print(json.dumps({"ms_per_clip": results, "clips": len(waves), "command": " ".join(["python -m tinyear.host.augment", *sys.argv[1:]])}))


if __name__ == "__main__":
    _main()
