"""Augmentation: each switch off is the identity, each on does what it says (SNR met, shift, gain range,
reverb keeps length and level, speed moves frequency), SpecAugment masks, determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tinyear.host.augment import AugmentConfig, Augmenter, impulse_response, spec_augment

RATE = 16000


def tone(freq=440.0, seconds=1.0, level=0.3):
    t = np.arange(int(seconds * RATE)) / RATE
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def word_like(rng, seconds=1.0):
    """A 0.4 s burst of harmonic sound in the middle of a second of near silence."""
    x = np.zeros(int(seconds * RATE), dtype=np.float32)
    t = np.arange(int(0.4 * RATE)) / RATE
    burst = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 540, 1200), 1)) * np.hanning(len(t))
    x[RATE // 2 - len(t) // 2 : RATE // 2 - len(t) // 2 + len(t)] = 0.2 * burst
    return x + (0.001 * rng.standard_normal(len(x))).astype(np.float32)


@pytest.fixture(scope="module")
def noise():
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(5 * RATE)).astype(np.float32), (0.05 * rng.standard_normal(3 * RATE)).astype(np.float32)]


SWITCHES = {"noise": dict(noise_prob=1.0), "shift": {}, "gain": {}, "reverb": dict(reverb_prob=1.0),
            "speed": dict(speed_prob=1.0), "eq": dict(eq_prob=1.0)}


def test_all_off_is_identity(noise):
    x = word_like(np.random.default_rng(1))
    aug = Augmenter(AugmentConfig.off(), noise)
    y = aug(x, np.random.default_rng(2))
    assert np.array_equal(y, x) and y.dtype == np.float32


@pytest.mark.parametrize("switch", sorted(SWITCHES))
def test_each_switch_alone_changes_the_clip_and_off_removes_it(switch, noise):
    x = word_like(np.random.default_rng(1))
    on = Augmenter(AugmentConfig.off(**{switch: True}, **SWITCHES[switch]), noise)
    changed = [not np.array_equal(on(x, np.random.default_rng(s)), x) for s in range(5)]
    assert sum(changed) >= 4  # a shift or speed draw can land on zero/one, rarely
    # The full config with this one switch off never applies it: e.g. reverb off -> no IR bank is built.
    full = dataclasses.replace(AugmentConfig(), **{switch: False})
    assert Augmenter(full, noise).config.__dict__[switch] is False
    if switch == "reverb":
        assert Augmenter(full, noise)._irs == []


def test_noise_is_mixed_at_the_sampled_snr(noise):
    x = word_like(np.random.default_rng(3))
    for snr in (0.0, 10.0, 25.0):
        aug = Augmenter(AugmentConfig.off(noise=True, noise_prob=1.0, snr_db=(snr, snr)), noise)
        y = aug(x, np.random.default_rng(4))
        added = (y - x).astype(np.float64)
        achieved = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(added**2))
        assert abs(achieved - snr) < 0.05, (snr, achieved)
    silent = np.zeros(RATE, dtype=np.float32)  # no SNR can be met: the noise comes at its own level
    y = Augmenter(AugmentConfig.off(noise=True, noise_prob=1.0), noise)(silent, np.random.default_rng(0))
    assert 0.04 < np.sqrt(np.mean(y**2)) < 0.11


def test_shift_moves_the_clip_with_zero_fill(noise):
    x = word_like(np.random.default_rng(5))
    aug = Augmenter(AugmentConfig.off(shift=True, shift_ms=100.0), noise)
    for seed in range(5):
        y = aug(x, np.random.default_rng(seed))
        lags = [k for k in range(-1600, 1601) if np.array_equal(y, Augmenter._shift(x, k))]
        assert lags, "output is not a shifted copy of the input"


def test_gain_stays_in_range(noise):
    x = tone(level=0.01)
    aug = Augmenter(AugmentConfig.off(gain=True, gain_db=(-12.0, 6.0)), noise)
    for seed in range(20):
        y = aug(x, np.random.default_rng(seed))
        db = 20 * np.log10(np.max(np.abs(y)) / np.max(np.abs(x)))
        assert -12.01 <= db <= 6.01
    loud = Augmenter(AugmentConfig.off(gain=True, gain_db=(20.0, 20.0)), noise)(tone(level=0.9), np.random.default_rng(0))
    assert np.max(np.abs(loud)) <= 1.0  # clipped, never above full scale


def test_clipping_drives_the_peak_into_the_rails_and_off_changes_nothing(noise):
    from tinyear.host.augment import waveform_augment_settings

    x = word_like(np.random.default_rng(3))
    on = Augmenter(AugmentConfig.off(gain=True, gain_db=(0.0, 0.0), clipping=True, clip_prob=1.0,
                                     clip_drive_db=(12.0, 12.0)), noise)
    y = on(x, np.random.default_rng(0))
    assert np.max(np.abs(y)) == 1.0 and np.mean(np.abs(y) == 1.0) > 0.01  # a share of samples sit on the rails
    assert np.corrcoef(x, y)[0, 1] > 0.5  # the same sound, distorted
    # off (the default): bit-identical to an augmenter without the switch, and not part of the cache key
    base = AugmentConfig()
    assert not base.clipping and "clip_prob" not in waveform_augment_settings(base)
    assert "clip_prob" in waveform_augment_settings(dataclasses.replace(base, clipping=True))
    plain = Augmenter(AugmentConfig.off(gain=True), noise)(x, np.random.default_rng(5))
    same = Augmenter(AugmentConfig.off(gain=True, clip_prob=1.0), noise)(x, np.random.default_rng(5))
    assert np.array_equal(plain, same)
    with pytest.raises(ValueError, match="clip_prob"):
        AugmentConfig(clip_prob=1.5)


def test_reverb_keeps_length_and_level_and_smears_in_time(noise):
    x = word_like(np.random.default_rng(6))
    aug = Augmenter(AugmentConfig.off(reverb=True, reverb_prob=1.0, rt60_s=(0.5, 0.6), drr_db=(0.0, 0.0)), noise)
    y = aug(x, np.random.default_rng(0))
    assert y.shape == x.shape and not np.allclose(y, x)
    assert np.isclose(np.sum(y.astype(np.float64) ** 2), np.sum(x.astype(np.float64) ** 2), rtol=1e-3)
    after = slice(RATE // 2 + 3300, RATE // 2 + 5000)  # just after the burst ends: the reverberant tail
    assert np.sum(y[after] ** 2) > 20 * np.sum(x[after] ** 2)
    ir = impulse_response(0.4, 6.0, RATE, np.random.default_rng(0))
    assert ir[0] == 1.0
    tail = ir[1:].astype(np.float64)
    assert np.isclose(10 * np.log10(1.0 / np.sum(tail**2)), 6.0, atol=0.01)  # the direct-to-reverberant ratio
    q = len(tail) // 4
    assert np.sum(tail[:q] ** 2) > 100 * np.sum(tail[-q:] ** 2)  # it decays


def test_speed_moves_frequency_and_keeps_length(noise):
    x = tone(500.0)
    aug = Augmenter(AugmentConfig.off(speed=True, speed_prob=1.0, speed_range=(1.1, 1.1)), noise)
    y = aug(x, np.random.default_rng(0))
    assert y.shape == x.shape
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert abs(np.argmax(spectrum) * RATE / len(y) - 550.0) < 3.0


def test_same_rng_same_result_and_batch(noise):
    x = np.stack([word_like(np.random.default_rng(s)) for s in range(3)])
    aug = Augmenter(AugmentConfig(), noise)
    a = aug.batch(x, np.random.default_rng(9))
    b = aug.batch(x, np.random.default_rng(9))
    assert a.shape == x.shape and a.dtype == np.float32 and np.array_equal(a, b)
    assert np.all(np.isfinite(a)) and np.max(np.abs(a)) <= 1.0


def test_spec_augment_masks_with_the_mean():
    torch = pytest.importorskip("torch")
    feats = torch.randn(8, 98, 40) * 3 - 5
    cfg = AugmentConfig(time_masks=2, time_mask_frames=10, freq_masks=2, freq_mask_bins=5)
    out = spec_augment(feats, cfg, torch.Generator().manual_seed(0))
    again = spec_augment(feats, cfg, torch.Generator().manual_seed(0))
    assert out.shape == feats.shape and torch.equal(out, again)
    changed = out != feats
    assert changed.any()
    mean = feats.mean(dim=(1, 2))
    for i in range(8):
        assert torch.allclose(out[i][changed[i]], mean[i].expand(int(changed[i].sum())))
        cols = changed[i].all(dim=0).sum()  # fully masked frequency bins
        rows = changed[i].all(dim=1).sum()  # fully masked frames
        assert cols <= 10 and rows <= 20
    assert torch.equal(spec_augment(feats, AugmentConfig.off(), None), feats)


def test_config_is_checked():
    with pytest.raises(ValueError):
        AugmentConfig(noise_prob=1.5)
    with pytest.raises(ValueError):
        AugmentConfig(snr_db=(20.0, 10.0))


def test_eq_colours_the_spectrum_and_keeps_level(noise):
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(RATE)).astype(np.float32)
    aug = Augmenter(AugmentConfig.off(eq=True, eq_prob=1.0, eq_db=10.0), noise)
    y = aug._eq(x, np.array([10.0, 10.0, 10.0, -10.0, -10.0, -10.0]))  # loud lows, quiet highs
    assert y.shape == x.shape and np.isclose(np.sum(y.astype(np.float64) ** 2), np.sum(x.astype(np.float64) ** 2), rtol=1e-3)
    f = np.fft.rfftfreq(RATE, 1 / RATE)
    px, py = np.abs(np.fft.rfft(x)) ** 2, np.abs(np.fft.rfft(y)) ** 2
    low, high = (f > 100) & (f < 400), (f > 4000) & (f < 7000)
    tilt = 10 * np.log10(py[low].sum() / px[low].sum()) - 10 * np.log10(py[high].sum() / px[high].sum())
    assert tilt > 15  # about 20 dB between the two ends
