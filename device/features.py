"""The shared feature frontend: log-mel energies, computed the same way on the workstation and the device.

This module is the contract between the two halves of tinyear. The host imports it to make training and
calibration features, the device runs it on the microphone, and a bundle records `fingerprint()` so a
device refuses a model that was trained on other features. Every number that shapes a feature lives in
`FrontendConfig`; `FRONTEND_VERSION` changes whenever the arithmetic below changes, even if no number
in the config does.

Two ways in, one set of numbers out: `log_mel(waveform)` for a whole signal, and `StreamingFrontend`,
whose `push(samples)` returns the frames those samples complete. Both call the same `_frames_to_log_mel`
on each frame, and that function's arithmetic does not depend on how many frames it is given at once
(a sparse, row-by-row sum over each mel filter's bins instead of a BLAS matrix product, whose summation
order changes with the batch size), so streaming and batch agree bit for bit however the audio is cut
into chunks.

One optional stage works on a whole model window instead of a frame: level normalisation
(`FrontendConfig.level_norm_db`, off in a bare config, so older bundles keep their numbers; the
training commands turn it on at 30 dB by default, and a bundle carries its setting; `model_input`). A microphone 30 dB quieter or 10 dB
hotter than the training data shifts every log-mel value of a window by the same amount (a gain g
adds 2 ln g), so the stage subtracts that shift: it moves the window's loudest value to
`LEVEL_TARGET` (the median loudest value of a Speech Commands word clip), by at most
`level_norm_db` dB either way. A room's noise is lifted too (at 30 dB, to about the level of speech),
so the model tells noise from a word by its shape, not its loudness; digital silence stays far below
any sound. It is a function of the window's values alone, with no state carried from earlier
audio, so a clip, a streamed window and a training variant get the same bits from the same frames;
it costs one max and one subtraction per model run. Why not PCEN (the TFLite Micro frontend's PCAN):
its gain follows the audio before the window, so a streamed window would differ from the same second
cut out as a clip, which is exactly what training sees. `clip_features` applies the stage, and so does
every path that hands a window to a model (the detector, the feature cache, teachers).

Only numpy, the standard library and `fileio` (for the fingerprint's hash): it must never import torch,
tensorflow or `tinyear.host`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np

from .fileio import sha256_bytes

# Bump whenever the numerics change (window shape, mel formula, log, dtype), even with an unchanged config.
# A reordering of float64 sums that moves results by at most one float32 ulp (far below any int8 input
# step) is not a change of numerics; the golden test's 1e-5 tolerance holds it to that.
FRONTEND_VERSION = 1
LEVEL_NORM_MAX_DB = 60.0  # the most a window's level may be moved (`FrontendConfig.level_norm_db`)


@dataclass(frozen=True, kw_only=True)
class FrontendConfig:
    """Every number that shapes a feature. Frames are causal: frame k covers samples
    [k * hop_length, k * hop_length + window_length), with no centring or padding."""

    sample_rate: int = 16000
    """Sampling rate of the audio features are computed from, in Hz. Other rates are resampled to it."""

    window_ms: float = 25.0
    """Length of one analysis window (periodic Hann), in milliseconds (400 samples at 16 kHz)."""

    hop_ms: float = 10.0
    """Step between the starts of consecutive windows, in milliseconds (160 samples at 16 kHz)."""

    fft_size: int = 512
    """Length of the real FFT, in samples; the window is zero-padded to it. 257 power bins at 512."""

    num_mel_bins: int = 40
    """Number of triangular mel filters, i.e. feature values per frame."""

    lower_hz: float = 20.0
    """Lower edge of the lowest mel filter, in Hz."""

    upper_hz: float = 7600.0
    """Upper edge of the highest mel filter, in Hz; at most sample_rate / 2."""

    log_floor: float = 1e-6
    """Added to each mel energy before the natural log, in units of squared full-scale amplitude
    (a waveform in [-1, 1]). Sets the value of digital silence: log(1e-6) = -13.8."""

    clip_ms: float = 1000.0
    """Length of the audio the model sees at once, in milliseconds (98 frames at the defaults)."""

    level_norm_db: float = 0.0
    """Level normalisation of each model window (`model_input`): the largest gain, in dB either way,
    applied to bring the window's loudest log-mel value to LEVEL_TARGET. 0 turns the stage off (the
    default, and what every bundle made before the stage computes). 30 makes a microphone 30 dB quiet
    or hot look nominal to the model."""

    def __post_init__(self) -> None:
        problems = []
        for name in ("window_ms", "hop_ms", "clip_ms"):
            samples = getattr(self, name) * self.sample_rate / 1000.0
            if samples <= 0 or abs(samples - round(samples)) > 1e-9:
                problems.append(f"{name}={getattr(self, name)} is not a whole number of samples at {self.sample_rate} Hz")
        if self.sample_rate <= 0:
            problems.append("sample_rate must be positive")
        if self.fft_size < self.window_ms * self.sample_rate / 1000.0:
            problems.append(f"fft_size={self.fft_size} is shorter than the window")
        if not 0 <= self.lower_hz < self.upper_hz <= self.sample_rate / 2:
            problems.append(f"need 0 <= lower_hz < upper_hz <= {self.sample_rate / 2} Hz")
        if self.num_mel_bins < 1:
            problems.append("num_mel_bins must be at least 1")
        if not self.log_floor > 0:
            problems.append("log_floor must be positive")
        if self.clip_ms < self.window_ms:
            problems.append("clip_ms must be at least one window long")
        if not 0.0 <= self.level_norm_db <= LEVEL_NORM_MAX_DB:
            problems.append(f"level_norm_db must be between 0 (off) and {LEVEL_NORM_MAX_DB:g} dB")
        if problems:
            raise ValueError("invalid FrontendConfig: " + "; ".join(problems))

    @property
    def window_length(self) -> int:
        """Window length in samples."""
        return round(self.window_ms * self.sample_rate / 1000.0)

    @property
    def hop_length(self) -> int:
        """Hop length in samples."""
        return round(self.hop_ms * self.sample_rate / 1000.0)

    @property
    def clip_samples(self) -> int:
        """Samples in one model input clip."""
        return round(self.clip_ms * self.sample_rate / 1000.0)

    @property
    def num_frames(self) -> int:
        """Frames in one model input clip (98 at the defaults)."""
        return num_frames(self.clip_samples, self)

    @property
    def feature_shape(self) -> tuple[int, int]:
        """(frames, bins) of one model input."""
        return (self.num_frames, self.num_mel_bins)

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        # Fields added after version 1 are left out while at their "off" value, so the configs (and
        # fingerprints) of every bundle made before them are unchanged and older devices still read them.
        for name, off in _OPTIONAL_OFF.items():
            if values[name] == off:
                del values[name]
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "FrontendConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown frontend fields {unknown}: made by a newer tinyear?")
        return cls(**values)


_OPTIONAL_OFF = {"level_norm_db": 0.0}

DEFAULT_CONFIG = FrontendConfig()

LEVEL_TARGET = 5.5
"""Where level normalisation puts a window's loudest log-mel value: the median loudest value of the word
clips in speech-commands-mini-train's validation split (5.4 over all clips, 5.2-6.4 by word; digital
silence is -13.8, a quiet room about -1). Part of the frontend's arithmetic: changing it changes
FRONTEND_VERSION."""


def fingerprint(config: FrontendConfig = DEFAULT_CONFIG) -> str:
    """A short hash of the config and FRONTEND_VERSION: equal fingerprints mean identical features."""
    blob = json.dumps({"version": FRONTEND_VERSION, "config": config.to_dict()}, sort_keys=True)
    return f"logmel-v{FRONTEND_VERSION}-" + sha256_bytes(blob.encode())[:16]


def num_frames(num_samples: int, config: FrontendConfig = DEFAULT_CONFIG) -> int:
    """Complete frames in `num_samples` samples (0 if shorter than one window)."""
    if num_samples < config.window_length:
        return 0
    return 1 + (num_samples - config.window_length) // config.hop_length


def _hz_to_mel(hz):
    # HTK / O'Shaughnessy formula, the one Kaldi and TensorFlow's mel matrix use.
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(config: FrontendConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Triangular filters, shape (num_mel_bins, fft_size // 2 + 1), float64, peak 1 (no area norm).

    Filter m rises linearly from edge m to edge m + 1 and falls to edge m + 2, where the
    num_mel_bins + 2 edges are equally spaced on the mel scale between lower_hz and upper_hz and the
    triangle is evaluated at each FFT bin's centre frequency."""
    bin_hz = np.arange(config.fft_size // 2 + 1) * config.sample_rate / config.fft_size
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(config.lower_hz), _hz_to_mel(config.upper_hz), config.num_mel_bins + 2))
    left, centre, right = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bin_hz[None, :] - left) / (centre - left)
    falling = (right - bin_hz[None, :]) / (right - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


class _Tables:
    """Window and filterbank for one config, computed once per config and shared."""

    _cache: dict = {}

    def __init__(self, config: FrontendConfig):
        n = config.window_length
        self.window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)  # periodic Hann, float64
        self.mel = mel_filterbank(config)  # (mel, fft_bins)
        # The filterbank is ~95% zeros: keep each filter's non-zero bins, flattened filter after
        # filter, and where each filter starts. 468 products a frame instead of 10,280 at the defaults.
        bins = [np.flatnonzero(row) for row in self.mel]
        self.bins = np.concatenate(bins)  # (nonzeros,) FFT bin of each weight
        self.weights = np.concatenate([row[b] for row, b in zip(self.mel, bins)])  # (nonzeros,)
        self.starts = np.cumsum([0] + [len(b) for b in bins[:-1]])  # (mel,) first weight of each filter
        if any(len(b) == 0 for b in bins):
            raise ValueError("a mel filter covers no FFT bin: use fewer mel bins or a larger fft_size")

    @classmethod
    def get(cls, config: FrontendConfig) -> "_Tables":
        tables = cls._cache.get(config)
        if tables is None:
            tables = cls._cache[config] = cls(config)
        return tables


def _frames_to_log_mel(frames: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """(n, window_length) float64 samples -> (n, num_mel_bins) float32 log-mel.

    Row i of the result depends on row i of the input alone, with the same operations in the same
    order whatever n is: this is what makes streaming equal to batch."""
    tables = _Tables.get(config)
    spectrum = np.fft.rfft(frames * tables.window, n=config.fft_size)  # (n, fft_bins) complex128
    power = spectrum.real**2 + spectrum.imag**2  # (n, fft_bins)
    terms = np.take(power, tables.bins, axis=1)  # (n, nonzeros)
    terms *= tables.weights
    # Sum each filter's terms in bin order, row by row: unlike a BLAS product, whose summation order
    # changes with the number of rows, this gives the same bits for a frame alone or in a batch.
    mel = np.add.reduceat(terms, tables.starts, axis=1)  # (n, mel)
    return np.log(mel + config.log_floor).astype(np.float32)


def log_mel(waveform: np.ndarray, config: FrontendConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Batch features: a mono waveform in [-1, 1] at config.sample_rate, shape (samples,) ->
    float32 (frames, num_mel_bins), frames = num_frames(samples). Trailing samples that do not fill a
    window are ignored (the streaming frontend keeps them for the next push)."""
    x = np.asarray(waveform)
    if x.ndim != 1:
        raise ValueError(f"log_mel expects a mono waveform of shape (samples,), got shape {x.shape}")
    n = num_frames(len(x), config)
    if n == 0:
        return np.zeros((0, config.num_mel_bins), dtype=np.float32)
    x = x.astype(np.float64, copy=False)
    frames = np.lib.stride_tricks.sliding_window_view(x, config.window_length)[:: config.hop_length][:n]
    return _frames_to_log_mel(frames, config)


def model_input(window: np.ndarray, config: FrontendConfig = DEFAULT_CONFIG) -> np.ndarray:
    """The model's input from one window of frames, (num_frames, bins) float32 (or a batch of them,
    (..., num_frames, bins)): the window itself when level normalisation is off, else the window shifted
    so that its loudest value sits at LEVEL_TARGET, by at most config.level_norm_db dB (see the module
    docstring). Same bits for the same frames, whoever calls it."""
    if config.level_norm_db == 0.0:
        return window
    x = np.asarray(window, dtype=np.float32)
    limit = np.float32(config.level_norm_db * np.log(10.0) / 10.0)  # dB of power -> natural-log units
    loudest = x.max(axis=(-2, -1), keepdims=True)
    shift = np.clip(loudest - np.float32(LEVEL_TARGET), -limit, limit).astype(np.float32)
    return (x - shift).astype(np.float32, copy=False)


def fit_clip(waveform: np.ndarray, config: FrontendConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Make a mono waveform exactly one model clip long (config.clip_samples), as float32.

    The documented decision for clips that are not one clip long:
    - shorter: zero-padded equally on both sides, so the word sits in the middle as in training;
    - longer: the clip-long window with the most energy (searched at hop resolution) is kept, which
      is where a single word is. To find several words in a long recording, stream it instead
      (`tinyear-device classify --stream`)."""
    x = np.asarray(waveform, dtype=np.float32)
    target = config.clip_samples
    if len(x) == target:
        return x
    if len(x) < target:
        pad = target - len(x)
        return np.pad(x, (pad // 2, pad - pad // 2))
    energy = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    starts = np.arange(0, len(x) - target + 1, config.hop_length)
    best = int(starts[np.argmax(energy[starts + target] - energy[starts])])
    return x[best : best + target].copy()


def clip_features(waveform: np.ndarray, config: FrontendConfig = DEFAULT_CONFIG) -> np.ndarray:
    """One model input: fit_clip, log_mel, then model_input, float32 (num_frames, num_mel_bins)."""
    return model_input(log_mel(fit_clip(waveform, config), config), config)


class StreamingFrontend:
    """Incremental log-mel: feed audio in chunks of any size, get each frame once, as soon as it is
    complete. The frames equal `log_mel` of the concatenated audio, bit for bit.

    Keeps only the last window_length - hop_length samples between pushes, so the cost per pushed
    second is the cost of the frames it completes, never a recomputation of a whole window of audio."""

    def __init__(self, config: FrontendConfig = DEFAULT_CONFIG):
        self.config = config
        self._pending = np.zeros(0, dtype=np.float64)  # samples not yet consumed by a complete frame
        self.frames_emitted = 0

    def reset(self) -> None:
        """Forget all audio; the next push starts a new signal at frame 0."""
        self._pending = np.zeros(0, dtype=np.float64)
        self.frames_emitted = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Append mono samples (any length, including 0); return float32 (k, num_mel_bins) for the
        k >= 0 frames that these samples complete."""
        chunk = np.asarray(samples, dtype=np.float64).reshape(-1)
        buffered = np.concatenate([self._pending, chunk]) if len(self._pending) else chunk
        k = num_frames(len(buffered), self.config)
        if k == 0:
            self._pending = buffered.copy() if buffered is chunk else buffered
            return np.zeros((0, self.config.num_mel_bins), dtype=np.float32)
        hop, win = self.config.hop_length, self.config.window_length
        step = buffered.strides[0]
        # (k, win) view of overlapping windows; as_strided is several times cheaper than
        # sliding_window_view on the one-frame pushes a live microphone makes.
        frames = np.lib.stride_tricks.as_strided(buffered, shape=(k, win), strides=(hop * step, step), writeable=False)
        out = _frames_to_log_mel(frames, self.config)
        self._pending = buffered[k * hop :].copy()
        self.frames_emitted += k
        return out
