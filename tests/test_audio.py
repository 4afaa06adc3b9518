"""Reading audio: every format and rate soundfile handles, channels, and one-line errors for bad files."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tinyear.device.audio import load_audio, to_mono
from tinyear.device.errors import AudioError

pytestmark = pytest.mark.device


def _tone(rate: int, seconds: float = 0.5, hz: float = 1000.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    x = 0.5 * np.sin(2 * np.pi * hz * t)
    return np.stack([x * (c + 1) / channels for c in range(channels)], axis=1) if channels > 1 else x


def _peak_hz(x: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


@pytest.mark.parametrize(
    "ext,subtype",
    [("wav", "PCM_U8"), ("wav", "PCM_16"), ("wav", "PCM_24"), ("wav", "PCM_32"), ("wav", "FLOAT"), ("wav", "DOUBLE"),
     ("flac", "PCM_16"), ("flac", "PCM_24"), ("ogg", "VORBIS")],
)
def test_formats(tmp_path, ext, subtype):
    path = tmp_path / f"tone.{ext}"
    sf.write(path, _tone(16000), 16000, subtype=subtype)
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 8000) <= 1  # vorbis may differ by a sample at the edges
    assert abs(_peak_hz(x) - 1000.0) < 5
    assert 0.4 < np.abs(x).max() < 0.6


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 32000, 44100, 48000, 96000])
def test_any_rate_is_resampled(tmp_path, rate):
    path = tmp_path / "tone.wav"
    sf.write(path, _tone(rate, hz=700.0), rate, subtype="PCM_16")
    x = load_audio(path, 16000)
    assert abs(len(x) - 8000) <= 2
    assert abs(_peak_hz(x) - 700.0) < 5
    # a maintained resampler keeps the level (a 700 Hz tone is far from every band edge)
    assert np.abs(x[1000:-1000]).max() == pytest.approx(0.5, abs=0.02)


def test_stereo_downmix_and_channel_choice(tmp_path):
    path = tmp_path / "stereo.wav"
    sf.write(path, _tone(16000, channels=2), 16000, subtype="FLOAT")  # left 0.5 x tone, right 1.0 x tone
    mix, left, right = load_audio(path), load_audio(path, channel=0), load_audio(path, channel=1)
    assert np.abs(left).max() == pytest.approx(0.25, abs=1e-3)
    assert np.abs(right).max() == pytest.approx(0.5, abs=1e-3)
    assert np.allclose(mix, (left + right) / 2, atol=1e-6)
    with pytest.raises(AudioError, match="channel 2 requested but it has 2 channels"):
        load_audio(path, channel=2)


def test_six_channels(tmp_path):
    path = tmp_path / "six.wav"
    sf.write(path, _tone(48000, channels=6), 48000, subtype="PCM_16")
    assert load_audio(path).shape == (8000,)
    assert load_audio(path, channel=5).shape == (8000,)


def test_mono_channel_request():
    with pytest.raises(AudioError, match="mono"):
        to_mono(np.zeros(10, np.float32), channel=1)


def _write_nan(path, value):
    x = _tone(16000).astype(np.float32)
    x[100:110] = value
    sf.write(path, x, 16000, subtype="FLOAT")


def _write_all_nan(path):
    sf.write(path, np.full(1600, np.nan, np.float32), 16000, subtype="FLOAT")


BAD_FILES = {
    "missing": (None, "no such file"),
    "empty": (lambda p: p.write_bytes(b""), "empty"),
    "corrupt": (lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)), "not readable as audio"),
    "header_only": (lambda p: sf.write(p, np.zeros((0,), np.float32), 16000), "contains no samples"),
    "nan": (lambda p: _write_nan(p, np.nan), "10 of 8000 samples are NaN or infinite"),
    "inf": (lambda p: _write_nan(p, np.inf), "NaN or infinite"),
    "all_nan": (_write_all_nan, "all samples are NaN or infinite"),
    "text": (lambda p: p.write_text("hello, I am not a wav\n"), "not readable as audio"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_give_one_clear_error(tmp_path, case):
    make, message = BAD_FILES[case]
    path = tmp_path / f"{case}.wav"
    if make:
        make(path)
    with pytest.raises(AudioError, match=message) as info:
        load_audio(path)
    text = str(info.value)
    assert str(path) in text and "\n" not in text


def test_folder_is_not_a_file(tmp_path):
    with pytest.raises(AudioError, match="is a folder"):
        load_audio(tmp_path)
