"""From the audio callback to the detector's input: a ring buffer that never blocks, and the converter
that makes the device's blocks mono at the model's rate.

`SampleRing` is a bounded single-producer/single-consumer ring: the PortAudio callback copies each
block in (never blocking, never allocating beyond what sounddevice hands it; a block that does not fit
is dropped and counted), the worker thread takes everything out. `Converter` picks a channel or
downmixes, then resamples with soxr's streaming resampler. Imports numpy and soxr only.
"""

from __future__ import annotations

import numpy as np


class SampleRing:
    """A bounded single-producer single-consumer ring of float32 frames (frames, channels).

    `write` (the audio callback) and `read` (the worker) each move only their own counter, and a
    counter is published only after the data it covers is in place, so neither side waits for the
    other. A block that does not fit is dropped whole and counted (`dropped_blocks`, `dropped_frames`):
    newer audio is lost rather than the callback ever blocking."""

    def __init__(self, capacity_frames: int, channels: int):
        self.capacity = int(capacity_frames)
        self.channels = int(channels)
        self._buf = np.zeros((self.capacity, self.channels), dtype=np.float32)
        self._written = 0  # frames ever written (only write() changes it)
        self._read = 0  # frames ever read (only read() changes it)
        self.dropped_blocks = 0
        self.dropped_frames = 0

    def available(self) -> int:
        return self._written - self._read

    def write(self, block: np.ndarray) -> bool:
        """Copy a (frames, channels) block in; False (and counted) if it did not fit."""
        n = len(block)
        if n > self.capacity - (self._written - self._read):
            self.dropped_blocks += 1
            self.dropped_frames += n
            return False
        start = self._written % self.capacity
        first = min(n, self.capacity - start)
        self._buf[start : start + first] = block[:first]
        if first < n:
            self._buf[: n - first] = block[first:]
        self._written += n  # publish after the copy
        return True

    def read(self) -> np.ndarray:
        """Everything written and not yet read, (frames, channels) float32 (a copy; may be empty)."""
        n = self._written - self._read
        start = self._read % self.capacity
        first = min(n, self.capacity - start)
        out = np.concatenate([self._buf[start : start + first], self._buf[: n - first]]) if first < n else self._buf[start : start + n].copy()
        self._read += n  # publish after the copy
        return out


class Converter:
    """Device blocks -> mono float32 at the model's rate: channel pick or downmix, then soxr's
    streaming resampler (its state carries across blocks, so block boundaries leave no seams)."""

    def __init__(self, rate_in: int, rate_out: int, channel: int | None):
        self.rate_in, self.rate_out, self.channel = rate_in, rate_out, channel
        self._resampler = None
        if rate_in != rate_out:
            import soxr

            self._resampler = soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality="HQ")

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """(frames, channels) float32 -> (samples,) float32 at rate_out."""
        if block.shape[1] == 1:
            mono = block[:, 0]
        elif self.channel is None:
            mono = block.mean(axis=1, dtype=np.float32)
        else:
            mono = block[:, self.channel]
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        if self._resampler is None:
            return mono
        return self._resampler.resample_chunk(mono, last=False)
