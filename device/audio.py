"""Reading audio files into the frontend's format: mono float32 in [-1, 1] at the model's sample rate.

Any file soundfile (libsndfile) reads: WAV of 8/16/24/32-bit integers or floats, FLAC, OGG/Vorbis and
the rest, at any sample rate and channel count. Resampling uses soxr (the SoX resampler), never
interpolation written here. Everything that makes a file unusable becomes one `AudioError` line that
names the file, says what is wrong and what to do. Imports numpy, soundfile and soxr only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import AudioError


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample float32 audio, shape (samples,) or (samples, channels), with soxr's high quality filter."""
    if rate_in == rate_out:
        return np.asarray(x, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(x, dtype=np.float32), rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


def to_mono(x: np.ndarray, channel: int | None = None, *, source: str = "audio") -> np.ndarray:
    """(samples,) or (samples, channels) -> (samples,). channel=None averages all channels (downmix);
    a number picks that channel (0-based)."""
    x = np.asarray(x)
    if x.ndim == 1:
        if channel not in (None, 0):
            raise AudioError(f"{source}: channel {channel} requested but the audio is mono; drop --channel")
        return x
    if channel is None:
        return x.mean(axis=1, dtype=np.float64).astype(np.float32)
    if not 0 <= channel < x.shape[1]:
        raise AudioError(f"{source}: channel {channel} requested but it has {x.shape[1]} channels (0..{x.shape[1] - 1})")
    return np.ascontiguousarray(x[:, channel])


def check_finite(x: np.ndarray, *, source: str = "audio") -> None:
    """Refuse NaN or infinite samples: they would silently turn every feature into NaN."""
    bad = ~np.isfinite(x)
    if bad.any():
        n = int(bad.sum())
        what = "all samples are" if n == x.size else f"{n} of {x.size} samples are"
        raise AudioError(f"{source}: {what} NaN or infinite; re-export or re-record the file")


def load_audio(path: str | Path, sample_rate: int = 16000, *, channel: int | None = None) -> np.ndarray:
    """Read a sound file as mono float32 at `sample_rate` Hz, shape (samples,).

    Multi-channel files are averaged unless `channel` picks one. Raises AudioError, one line naming the
    file, for a missing, unreadable, corrupt or empty file and for NaN/Inf samples."""
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        reason = str(exc).split("\n")[0]
        if path.stat().st_size == 0:
            reason = "the file is empty (0 bytes)"
        raise AudioError(f"{path}: not readable as audio ({reason}); convert it to WAV or FLAC") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no samples (empty audio); record or export it again")
    check_finite(data, source=str(path))
    mono = to_mono(data if data.shape[1] > 1 else data[:, 0], channel, source=str(path))
    return resample(mono, rate, sample_rate)
