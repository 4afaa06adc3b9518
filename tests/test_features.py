"""The shared frontend: streaming equals batch, golden vectors, an independent cross-check, the config."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from tinyear.device.features import (
    DEFAULT_CONFIG,
    FRONTEND_VERSION,
    LEVEL_TARGET,
    FrontendConfig,
    StreamingFrontend,
    clip_features,
    fingerprint,
    fit_clip,
    log_mel,
    mel_filterbank,
    model_input,
    num_frames,
)

pytestmark = pytest.mark.device
GOLDEN = Path(__file__).parent / "golden"


def _signal(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sr = DEFAULT_CONFIG.sample_rate
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 523 * t) + 0.05 * rng.standard_normal(len(t))
    x[len(x) // 3 : len(x) // 2] = 0.0  # digital silence in the middle: the log floor path
    return x.astype(np.float32)


def _stream(x: np.ndarray, sizes) -> np.ndarray:
    frontend = StreamingFrontend()
    out, i = [], 0
    for size in sizes:
        out.append(frontend.push(x[i : i + size]))
        i += size
        if i >= len(x):
            break
    out.append(frontend.push(x[i:]))
    return np.concatenate(out)


def test_default_shape_and_dtype():
    feats = log_mel(_signal(1.0))
    assert feats.shape == (98, 40) == DEFAULT_CONFIG.feature_shape
    assert feats.dtype == np.float32
    assert np.isfinite(feats).all()
    # digital silence sits exactly on the log floor
    assert feats[40:50].min() == pytest.approx(np.log(DEFAULT_CONFIG.log_floor), abs=1e-5)


@pytest.mark.parametrize("seed", range(24))
def test_streaming_equals_batch_for_random_chunkings(seed):
    x = _signal(1.3, seed)
    batch = log_mel(x)
    rng = np.random.default_rng(seed)
    kind = seed % 4
    if kind == 0:
        sizes = rng.integers(1, 400, size=10_000)  # shorter than a window
    elif kind == 1:
        sizes = rng.integers(100, 4000, size=1_000)  # around a hop to a quarter second
    elif kind == 2:
        sizes = rng.integers(16_000, 30_000, size=10)  # longer than a clip
    else:
        sizes = rng.choice([0, 1, 159, 160, 161, 399, 400, 401, 16_001], size=5_000)  # edges, empty pushes
    streamed = _stream(x, sizes)
    assert streamed.shape == batch.shape
    assert np.abs(streamed - batch).max() <= 1e-6
    assert np.array_equal(streamed, batch), "streaming should be bit-identical to batch"


def test_streaming_one_sample_at_a_time():
    x = _signal(0.4, 99)
    assert np.array_equal(_stream(x, [1] * len(x)), log_mel(x))


def test_streaming_reset_starts_a_new_signal():
    x, y = _signal(0.5, 1), _signal(0.5, 2)
    frontend = StreamingFrontend()
    frontend.push(x[:1234])
    frontend.reset()
    assert frontend.frames_emitted == 0
    assert np.array_equal(frontend.push(y), log_mel(y))


def test_golden_vectors():
    """Pins the numerics: a tiny 16-bit WAV and the features it must give (tests/golden, made by
    scripts/make_golden.py). 1e-5 leaves room for another CPU's FFT rounding, not for a change."""
    import soundfile as sf

    meta = json.loads((GOLDEN / "tones.json").read_text())
    assert meta["frontend_version"] == FRONTEND_VERSION
    assert meta["fingerprint"] == fingerprint(), "frontend changed: bump FRONTEND_VERSION and regenerate goldens"
    wave, sr = sf.read(GOLDEN / "tones.wav", dtype="float32")
    assert sr == DEFAULT_CONFIG.sample_rate
    expected = np.load(GOLDEN / "tones_logmel.npy")
    assert np.abs(log_mel(wave) - expected).max() <= 1e-5


@pytest.mark.slow  # importing librosa (numba) takes 10-25 s
def test_cross_check_against_librosa():
    """An independent implementation: librosa's HTK mel spectrogram (no filter normalisation, periodic
    Hann, power 2). librosa frames are n_fft long with the window centred inside, so padding the signal
    by (n_fft - window) / 2 on each side puts its windows on exactly our samples. Tolerance: 1e-4 in
    log units (float32 rounding of the result is ~1e-6)."""
    librosa = pytest.importorskip("librosa", reason="librosa is in the test extra")
    c = DEFAULT_CONFIG
    x = _signal(1.0, 5)
    pad = (c.fft_size - c.window_length) // 2
    mel = librosa.feature.melspectrogram(
        y=np.pad(x.astype(np.float64), pad), sr=c.sample_rate, n_fft=c.fft_size, hop_length=c.hop_length,
        win_length=c.window_length, window="hann", center=False, power=2.0, n_mels=c.num_mel_bins,
        fmin=c.lower_hz, fmax=c.upper_hz, htk=True, norm=None,
    )
    reference = np.log(mel.T + c.log_floor)
    ours = log_mel(x)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < 1e-4


def test_mel_filterbank_shape_and_coverage():
    fb = mel_filterbank()
    assert fb.shape == (40, 257)
    assert (fb >= 0).all() and fb.max() <= 1.0
    assert (fb.max(axis=1) > 0.5).all(), "every filter catches at least one FFT bin near its peak"
    hz = np.arange(257) * 16000 / 512
    assert fb[:, hz < 20].sum() == 0 and fb[:, hz > 7600].sum() == 0


def test_fingerprint_tracks_every_field_and_version():
    base = fingerprint()
    assert base == fingerprint(FrontendConfig())
    assert base.startswith(f"logmel-v{FRONTEND_VERSION}-")
    changes = {"sample_rate": 20000, "window_ms": 30.0, "hop_ms": 20.0, "fft_size": 1024, "num_mel_bins": 32,
               "lower_hz": 60.0, "upper_hz": 4000.0, "log_floor": 1e-5, "clip_ms": 1500.0, "level_norm_db": 30.0}
    assert set(changes) == {f.name for f in dataclasses.fields(FrontendConfig)}
    seen = {base}
    for name, value in changes.items():
        fp = fingerprint(dataclasses.replace(DEFAULT_CONFIG, **{name: value}))
        assert fp not in seen, name
        seen.add(fp)


@pytest.mark.parametrize("bad", [{"window_ms": 25.03}, {"fft_size": 256}, {"upper_hz": 9000.0}, {"num_mel_bins": 0},
                                 {"log_floor": 0.0}, {"clip_ms": 10.0}, {"level_norm_db": -1.0},
                                 {"level_norm_db": 61.0}])
def test_config_rejects_inconsistent_numbers(bad):
    with pytest.raises(ValueError, match="invalid FrontendConfig"):
        FrontendConfig(**bad)


def test_config_round_trip_and_unknown_fields():
    assert FrontendConfig.from_dict(DEFAULT_CONFIG.to_dict()) == DEFAULT_CONFIG
    with pytest.raises(ValueError, match="unknown frontend fields"):
        FrontendConfig.from_dict({**DEFAULT_CONFIG.to_dict(), "dither": 1.0})


def test_num_frames():
    assert num_frames(399) == 0 and num_frames(400) == 1 and num_frames(559) == 1 and num_frames(560) == 2
    assert num_frames(16000) == 98
    assert log_mel(np.zeros(100, np.float32)).shape == (0, 40)


def test_fit_clip_pads_short_clips_around_the_middle():
    x = np.ones(6000, np.float32)
    y = fit_clip(x)
    assert len(y) == 16000
    assert y[:5000].sum() == 0 and y[11000:].sum() == 0 and y[5000:11000].sum() == 6000


def test_fit_clip_keeps_the_loudest_window_of_long_clips():
    x = np.zeros(40000, np.float32)
    x[25000:26000] = 1.0  # a "word" well past the first second
    y = fit_clip(x)
    assert len(y) == 16000 and y.sum() == 1000
    assert clip_features(x).shape == (98, 40)


def test_log_mel_rejects_multichannel():
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((16000, 2), np.float32))


# -- level normalisation -----------------------------------------------------------------------------------

LEVEL = FrontendConfig(level_norm_db=30.0)


def test_level_stage_off_keeps_every_old_config_and_fingerprint():
    """Off (the default), the stage is not in the config dict, so bundles made before it keep their
    fingerprint (this one is the shipped bundle's) and older devices still read new default bundles."""
    assert "level_norm_db" not in DEFAULT_CONFIG.to_dict()
    assert fingerprint() == "logmel-v1-14bf7a73e98fd199"
    window = clip_features(_signal(1.0))
    assert model_input(window) is window
    assert LEVEL.to_dict()["level_norm_db"] == 30.0
    assert FrontendConfig.from_dict(LEVEL.to_dict()) == LEVEL and fingerprint(LEVEL) != fingerprint()


@pytest.mark.parametrize("gain_db", [-30.0, -20.0, -6.0, 6.0, 10.0])
def test_level_stage_undoes_a_gain_up_to_its_limit(gain_db):
    """A gain shifts every log-mel value by the same amount (away from the log floor); the stage puts the
    loudest value at LEVEL_TARGET, so the window the model sees is the same at any level within 30 dB."""
    sr = DEFAULT_CONFIG.sample_rate
    t = np.arange(sr) / sr
    word = (0.2 * np.sin(2 * np.pi * 300 * t) * np.hanning(sr) + 0.01 * np.random.default_rng(1).standard_normal(sr))
    word = word.astype(np.float32)
    nominal = clip_features(word, LEVEL)
    scaled = clip_features((word * 10 ** (gain_db / 20)).astype(np.float32), LEVEL)
    assert nominal.max() == pytest.approx(LEVEL_TARGET) and scaled.max() == pytest.approx(LEVEL_TARGET)
    diff = np.abs(scaled - nominal)
    # float32 rounding of the shift, and noise cells that a -30 dB gain brings near the log floor
    assert np.median(diff) < (0.02 if gain_db < -20 else 2e-3) and diff.mean() < (0.05 if gain_db < -20 else 0.005)
    plain = clip_features((word * 10 ** (gain_db / 20)).astype(np.float32))
    assert abs(float(np.median(plain - clip_features(word))) - gain_db * np.log(10) / 10) < 0.02  # what it undid


def test_level_stage_lifts_a_quiet_window_by_at_most_its_limit():
    quiet = (1e-4 * np.random.default_rng(2).standard_normal(DEFAULT_CONFIG.clip_samples)).astype(np.float32)
    raw = clip_features(quiet)
    lifted = clip_features(quiet, LEVEL)
    np.testing.assert_allclose(lifted - raw, 30 * np.log(10) / 10, rtol=1e-5)
    assert lifted.max() < LEVEL_TARGET
    silence = clip_features(np.zeros(DEFAULT_CONFIG.clip_samples, np.float32), LEVEL)
    assert silence.max() < np.log(DEFAULT_CONFIG.log_floor) + 7.0  # digital silence stays far below any sound


def test_level_stage_works_on_batches_like_one_window_at_a_time():
    windows = np.stack([clip_features(_signal(1.0, seed) * g) for seed, g in ((0, 1.0), (1, 0.01), (2, 3.0))])
    batch = model_input(windows, LEVEL)
    for k in range(len(windows)):
        np.testing.assert_array_equal(batch[k], model_input(windows[k], LEVEL))
