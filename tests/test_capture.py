"""The pieces of the live listener that need no sound device: the callback's ring buffer (order,
wrap-around, overflow counting), the converter (channel pick, downmix, soxr streaming resampling
without seams) and the --exec hook runner (environment, order, never blocking). The whole listener
runs through real PortAudio in tests/test_listen_pulse.py."""

from __future__ import annotations

import numpy as np
import pytest

from tinyear.device.ring import Converter, SampleRing
from tinyear.device.detector import Detection
from tinyear.device.hooks import HookRunner

pytestmark = pytest.mark.device


def test_ring_keeps_order_across_wraparound():
    ring = SampleRing(capacity_frames=100, channels=2)
    data = np.arange(2 * 1000, dtype=np.float32).reshape(1000, 2)
    out, pos = [], 0
    rng = np.random.default_rng(0)
    while pos < len(data):
        n = int(rng.integers(1, 40))
        assert ring.write(data[pos : pos + n])
        pos += n
        if rng.uniform() < 0.7:
            out.append(ring.read())
    out.append(ring.read())
    np.testing.assert_array_equal(np.concatenate(out), data)
    assert ring.dropped_blocks == 0 and ring.available() == 0


def test_ring_drops_whole_blocks_when_full_and_counts_them():
    ring = SampleRing(capacity_frames=100, channels=1)
    assert ring.write(np.ones((60, 1), np.float32))
    assert not ring.write(np.full((60, 1), 2, np.float32))  # does not fit: dropped, not partially written
    assert ring.write(np.full((40, 1), 3, np.float32))
    assert (ring.dropped_blocks, ring.dropped_frames) == (1, 60)
    got = ring.read()[:, 0]
    np.testing.assert_array_equal(got, np.r_[np.ones(60), np.full(40, 3)])
    assert ring.read().shape == (0, 1)


def test_converter_picks_a_channel_or_downmixes():
    block = np.stack([np.full(480, 0.2, np.float32), np.full(480, -0.6, np.float32)], axis=1)
    np.testing.assert_allclose(Converter(16000, 16000, None)(block), -0.2, atol=1e-7)
    np.testing.assert_array_equal(Converter(16000, 16000, 1)(block), block[:, 1])
    np.testing.assert_array_equal(Converter(16000, 16000, None)(block[:, :1]), block[:, 0])


@pytest.mark.parametrize("rate_in", [48000, 44100])
def test_streaming_resampler_has_no_seams(rate_in):
    """Blocks of any size through the streaming resampler give the signal soxr makes in one go, and a
    1 kHz tone stays a 1 kHz tone at 16 kHz."""
    import soxr

    t = np.arange(rate_in * 2) / rate_in
    x = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    convert = Converter(rate_in, 16000, None)
    rng = np.random.default_rng(1)
    cuts = np.cumsum(rng.integers(1, 3000, 200))
    pieces = [convert(chunk[:, None]) for chunk in np.split(x, cuts[cuts < len(x)])]
    y = np.concatenate(pieces)
    whole = soxr.resample(x, rate_in, 16000, quality="HQ")
    # The stream holds back its filter's look-ahead (about 12 ms) until more audio comes; what it has
    # given out matches the one-shot result sample for sample.
    assert 0 <= len(whole) - len(y) <= 400
    np.testing.assert_allclose(y, whole[: len(y)], atol=1e-4)
    spectrum = np.abs(np.fft.rfft(y[2000:18000]))
    assert abs(int(np.argmax(spectrum)) - 1000) <= 1  # 16000-point FFT at 16 kHz: 1 Hz bins


def test_hooks_get_the_detection_in_their_environment(tmp_path):
    log = tmp_path / "log.txt"
    hooks = HookRunner(f'echo "$TINYEAR_LABEL $TINYEAR_SCORE $TINYEAR_TIME" >> {log}')
    hooks.submit(Detection(1.25, "yes", 0.9))
    hooks.submit(Detection(3.5, "no", 0.812345))
    hooks.close()
    assert log.read_text().splitlines() == ["yes 0.9000 1.250", "no 0.8123 3.500"]
    assert (hooks.ran, hooks.failed, hooks.skipped) == (2, 0, 0)


def test_slow_hooks_never_block_and_are_counted(tmp_path):
    go = tmp_path / "go"
    messages = []
    # The command waits until the test says go: if submit waited for it, this test would hang.
    hooks = HookRunner(f'while [ ! -e {go} ]; do sleep 0.01; done', max_pending=2, log=messages.append)
    for i in range(10):
        hooks.submit(Detection(float(i), "yes", 0.9))
    assert hooks.ran == 0 and hooks.skipped in (7, 8)  # 2 queued (+1 already taken by the hook thread)
    go.touch()
    hooks.close(timeout=10)
    assert hooks.ran + hooks.skipped == 10
    assert len(messages) == 1 and "slower than the detections" in messages[0]


def test_failing_hook_is_reported_and_the_next_still_runs(tmp_path):
    messages = []
    hooks = HookRunner('test "$TINYEAR_LABEL" = yes', log=messages.append)
    hooks.submit(Detection(1.0, "no", 0.9))
    hooks.submit(Detection(2.0, "yes", 0.9))
    hooks.close()
    assert (hooks.ran, hooks.failed) == (2, 1)
    assert messages == ["tinyear-device: --exec command exited with status 1 for no at 1.00 s"]
