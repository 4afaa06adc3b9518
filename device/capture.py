"""Live audio capture: microphones as they are, into the streaming detector, surviving their hiccups.

A PortAudio input stream (through sounddevice) whose callback does nothing but copy the block into a
bounded single-producer/single-consumer ring (`SampleRing`): it never blocks and never allocates a
Python object per block beyond what sounddevice hands it; when the ring is full the new block is
dropped and counted. A worker thread drains the ring, picks a channel or downmixes, resamples to the
model's rate with soxr's streaming resampler, and feeds the `Detector`. The main thread supervises:
when the stream ends on its own (a USB microphone pulled out, the sound server gone) or stops
delivering audio, it reports one line and reopens the device with backoff; Ctrl-C and SIGTERM end it.

Devices are asked, not assumed: the rate is the first of 16000, 48000, 44100 Hz and the device's
default that `sd.check_input_settings` accepts (or the one the user forces), the channel count two
(when the device has them) or as many as the requested channel needs.

PortAudio's ALSA backend and ALSA itself print C-level diagnostics straight to file descriptor 2
("ALSA lib pcm.c: ...", "Expression '...' failed in 'src/hostapi/alsa/pa_linux_alsa.c'") while probing
devices and when a stream dies; `NativeNoiseFilter` keeps those lines out of the listener's output.

Imports numpy, soxr and sounddevice (lazily, with an install hint); never torch or `tinyear.host`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import TinyearError
from .fileio import quiet_fd

PREFERRED_RATES = (16000, 48000, 44100)
_NOISE_PREFIXES = (b"ALSA lib ", b"Expression '", b"PaAlsa", b"Cannot connect to server", b"jack server",
                   b"JackShmReadWritePtr", b"Jack: ")


def import_sounddevice():
    """sounddevice, or a TinyearError saying what to install (it needs the PortAudio library)."""
    try:
        with quiet_fd():
            import sounddevice
    except OSError as exc:  # sounddevice raises OSError when libportaudio is missing
        raise TinyearError(f"PortAudio is not installed ({exc}); on Debian / Raspberry Pi OS: sudo apt install libportaudio2") from None
    except ImportError:
        raise TinyearError("sounddevice is not installed; pip install 'tinyear[device]' (or pip install sounddevice)") from None
    return sounddevice


class NativeNoiseFilter:
    """For the life of a listener: route file descriptor 2 through a pipe and drop the lines that
    PortAudio/ALSA/JACK print from their own threads (prefixes in `_NOISE_PREFIXES`); every other line,
    ours included, goes on to the real stderr unchanged."""

    def __init__(self):
        self._saved = None
        self._thread = None
        self.dropped = 0

    def __enter__(self):
        try:
            sys.stderr.flush()
            self._saved = os.dup(2)
            read_end, write_end = os.pipe()
        except OSError:  # no stderr (a daemon): nothing to filter
            self._saved = None
            return self
        os.dup2(write_end, 2)
        os.close(write_end)
        self._thread = threading.Thread(target=self._pump, args=(read_end,), name="stderr-filter", daemon=True)
        self._thread.start()
        return self

    def _pump(self, read_end: int) -> None:
        buf = b""
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while True:
                data = pipe.read(4096)
                if not data:
                    break
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    self._forward(line + b"\n")
        if buf:
            self._forward(buf)

    def _forward(self, line: bytes) -> None:
        if line.lstrip().startswith(_NOISE_PREFIXES) or not line.strip():
            self.dropped += 1
            return
        with contextlib.suppress(OSError):
            os.write(self._saved, line)

    def __exit__(self, *exc):
        if self._saved is None:
            return False
        sys.stderr.flush()
        os.dup2(self._saved, 2)  # closes the pipe's last write end we hold: the pump sees EOF
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        os.close(self._saved)
        return False


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


@dataclass
class InputChoice:
    """The device and settings a stream is opened with."""

    index: int
    name: str
    hostapi: str
    rate: int
    channels: int  # channels opened
    channel: int | None  # the one used, or None for the average of all opened

    def describe(self) -> str:
        if self.channels == 1:
            use = "1 channel"
        elif self.channel is None:
            use = f"{self.channels} channels downmixed"
        else:
            use = f"channel {self.channel} of {self.channels}"
        return f"'{self.name}' ({self.hostapi}) at {self.rate} Hz, {use}"


def list_inputs(sd=None) -> list[dict]:
    """Every device that can record: index, name, hostapi, default_samplerate (Hz),
    max_input_channels, supported_rates (those of 16000/44100/48000 it accepts), is_default."""
    sd = sd or import_sounddevice()
    with quiet_fd():
        devices = sd.query_devices()
        try:
            default_in = sd.default.device[0]
            if default_in is None or default_in < 0:
                default_in = sd.query_devices(kind="input")["index"]
        except Exception:  # no default input at all
            default_in = -1
        rows = []
        for dev in devices:
            if dev["max_input_channels"] < 1:
                continue
            rows.append({
                "index": dev["index"], "name": dev["name"], "hostapi": sd.query_hostapis(dev["hostapi"])["name"],
                "default_samplerate": int(dev["default_samplerate"]), "max_input_channels": dev["max_input_channels"],
                "supported_rates": [r for r in sorted((16000, 44100, 48000)) if _accepts(sd, dev["index"], r, 1)],
                "is_default": dev["index"] == default_in,
            })
    return rows


def _accepts(sd, index: int, rate: int, channels: int) -> bool:
    try:
        sd.check_input_settings(device=index, samplerate=rate, channels=channels, dtype="float32")
        return True
    except Exception:  # PortAudioError or ValueError: this combination is not supported
        return False


def find_input(spec: str | int | None, sd=None) -> dict:
    """The input device `spec` names: None for the default input, an index, an exact name, or a unique
    part of a name (case-insensitive). TinyearError naming the choices when none (or several) match."""
    sd = sd or import_sounddevice()
    inputs = list_inputs(sd)
    hint = "run tinyear-device devices to list them"
    if not inputs:
        raise TinyearError("no audio input devices found (is a microphone connected, is the sound server running?); " + hint)
    if spec is None or spec == "":
        default = [d for d in inputs if d["is_default"]]
        return default[0] if default else inputs[0]
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        for d in inputs:
            if d["index"] == index:
                return d
        raise TinyearError(f"--input {index}: no input device has that index; {hint}")
    exact = [d for d in inputs if d["name"].lower() == text.lower()]
    if exact:
        return exact[0]
    partial = [d for d in inputs if text.lower() in d["name"].lower()]
    if len(partial) == 1:
        return partial[0]
    if partial:
        names = ", ".join(f"{d['index']}: {d['name']}" for d in partial)
        raise TinyearError(f"--input {text!r} matches several devices ({names}); give the index or the full name")
    raise TinyearError(f"--input {text!r}: no input device has that name; {hint}")


def choose_settings(device: dict, channel: int | None, target_rate: int, force_rate: int | None = None, sd=None) -> InputChoice:
    """Ask the device which rate and channel count to open it with (see the module docstring)."""
    sd = sd or import_sounddevice()
    max_channels = int(device["max_input_channels"])
    if max_channels < 1:
        raise TinyearError(f"input '{device['name']}' cannot record (it has no input channels); pick another with --input")
    if channel is not None and not 0 <= channel < max_channels:
        raise TinyearError(f"--channel {channel}: input '{device['name']}' has {max_channels} channel(s) (0..{max_channels - 1}); pick one of those, or leave --channel out to average them")
    # At least two channels when the device has them: opened with one, a stereo source comes downmixed
    # (ALSA's pulse plugin does that), so "channel 0" would not be the left channel.
    channels = max(channel + 1 if channel is not None else 0, min(max_channels, 2))
    rates = [force_rate] if force_rate else list(dict.fromkeys([target_rate, *PREFERRED_RATES, int(device["default_samplerate"])]))
    with quiet_fd():
        for rate in rates:
            if _accepts(sd, device["index"], rate, channels):
                return InputChoice(index=device["index"], name=device["name"], hostapi=device["hostapi"], rate=int(rate),
                                   channels=channels, channel=channel if channels > 1 else None)
    tried = ", ".join(str(r) for r in rates)
    raise TinyearError(f"input '{device['name']}' cannot record {channels} channel(s) at {tried} Hz; "
                       "pick another device with --input (tinyear-device devices lists them)")


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


@dataclass
class ListenStats:
    """What the summary line reports."""

    started: float = field(default_factory=time.monotonic)
    cpu_started: float = field(default_factory=time.process_time)
    detections: int = 0
    overflows: int = 0  # PortAudio input-overflow flags plus blocks the ring had to drop
    dropped_frames: int = 0
    reconnects: int = 0
    audio_seconds: float = 0.0

    def to_dict(self) -> dict:
        run = time.monotonic() - self.started
        cpu = time.process_time() - self.cpu_started
        return {"run_seconds": round(run, 2), "audio_seconds": round(self.audio_seconds, 2), "detections": self.detections,
                "overflows": self.overflows, "dropped_frames": self.dropped_frames, "reconnects": self.reconnects,
                "cpu_seconds": round(cpu, 3), "cpu_percent": round(100.0 * cpu / run, 2) if run > 0 else 0.0}


class _Source:
    """One open stream and the ring its callback fills."""

    def __init__(self, sd, choice: InputChoice, block_ms: float, ring_seconds: float):
        self.choice = choice
        self.ring = SampleRing(int(choice.rate * ring_seconds), choice.channels)
        self.pa_overflows = 0
        self.finished = False
        self.last_callback = time.monotonic()
        self.callbacks = 0
        with quiet_fd():
            self.stream = sd.InputStream(device=choice.index, samplerate=choice.rate, channels=choice.channels,
                                         dtype="float32", blocksize=int(choice.rate * block_ms / 1000),
                                         callback=self._callback, finished_callback=self._finished)
            self.stream.start()

    def _callback(self, indata, frames, time_info, status) -> None:  # the audio thread: copy and count only
        if status.input_overflow:
            self.pa_overflows += 1
        self.ring.write(indata)
        self.callbacks += 1
        self.last_callback = time.monotonic()

    def _finished(self) -> None:
        self.finished = True

    def close(self) -> None:
        with contextlib.suppress(Exception), quiet_fd():
            self.stream.abort(ignore_errors=True)
        with contextlib.suppress(Exception), quiet_fd():
            self.stream.close(ignore_errors=True)


class Listener:
    """Capture from one input into a Detector until stopped; survive a device that comes and goes.

    `on_event(detection)` is called on the worker thread for each Detection (keep it short: print,
    queue). `log(line)` gets one-line status messages. `run()` returns the ListenStats.

    Blocks of 50 ms and a worker that looks at the ring every 25 ms: measured through PulseAudio, 20 ms
    blocks cost about 4% of a core against 2.4% for 50 ms (PortAudio and ALSA's pulse plugin wake up
    per block), and the model only runs every 100 ms anyway; the added delay is at most one block."""

    def __init__(self, detector, *, input_spec=None, channel: int | None = None, force_rate: int | None = None,
                 on_event=None, log=None, block_ms: float = 50.0, ring_seconds: float = 4.0,
                 stall_seconds: float = 5.0, max_backoff: float = 30.0, poll_seconds: float = 0.025):
        self.sd = import_sounddevice()
        self.detector = detector
        self.input_spec, self.channel, self.force_rate = input_spec, channel, force_rate
        self.on_event = on_event or (lambda event: None)
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.block_ms, self.ring_seconds = block_ms, ring_seconds
        self.stall_seconds, self.max_backoff, self.poll_seconds = stall_seconds, max_backoff, poll_seconds
        self.stats = ListenStats()
        self.stop_event = threading.Event()
        self._source: _Source | None = None
        self._device_name: str | None = None
        self.worker_error: BaseException | None = None

    # -- opening ----------------------------------------------------------------------------------------

    def _open(self, first: bool) -> _Source:
        """Open the input. The first time, the user's spec is resolved and every failure is a user error;
        later (reconnecting) the device is looked up again by the name it had, after PortAudio has been
        re-initialised so that devices that came back are listed again."""
        if not first:
            with quiet_fd():
                self.sd._terminate()
                self.sd._initialize()
        spec = self.input_spec if first else self._device_name
        device = find_input(spec, self.sd)
        choice = choose_settings(device, self.channel, self.detector.frontend_config.sample_rate, self.force_rate, self.sd)
        try:
            source = _Source(self.sd, choice, self.block_ms, self.ring_seconds)
        except Exception as exc:  # sounddevice.PortAudioError and friends
            raise TinyearError(f"input {choice.describe()} does not open ({_first_line(exc)}); "
                               "check that it is not in exclusive use, or pick another with --input") from None
        self._device_name = choice.name
        return source

    # -- the worker: ring -> converter -> detector ------------------------------------------------------

    def _work(self) -> None:
        current, convert, sources_seen = None, None, 0
        try:
            while not self.stop_event.is_set():
                source = self._source
                if source is not current:
                    if source is not None:
                        sources_seen += 1
                        if sources_seen > 1:
                            # A reconnect: the audio has a gap, so the features start afresh, and event
                            # times jump over the gap to stay seconds since the listener started.
                            self.detector.reset(time_offset=time.monotonic() - self.stats.started)
                    current = source
                    convert = None if source is None else Converter(source.choice.rate, self.detector.frontend_config.sample_rate, source.choice.channel)
                if current is None or current.ring.available() == 0:
                    time.sleep(self.poll_seconds)
                    continue
                mono = convert(current.ring.read())
                before = self.detector.stream_seconds
                for event in self.detector.push(mono):
                    self.stats.detections += 1
                    self.on_event(event)
                self.stats.audio_seconds += self.detector.stream_seconds - before
        except BaseException as exc:  # a bug in the worker must stop the listener, not leave it deaf
            self.worker_error = exc
            self.stop_event.set()

    # -- the supervisor (the caller's thread) ----------------------------------------------------------

    def _health(self, source: _Source) -> str | None:
        """Why the stream is no longer usable, or None if it is fine."""
        if source.finished or not source.stream.active:
            return "the stream ended unexpectedly"
        if time.monotonic() - source.last_callback > self.stall_seconds:
            return f"no audio for {self.stall_seconds:g} s"
        return None

    def _account(self, source: _Source) -> None:
        """Add a closed source's counters to the totals (only then: its callback no longer runs)."""
        self.stats.overflows += source.pa_overflows + source.ring.dropped_blocks
        self.stats.dropped_frames += source.ring.dropped_frames

    def open(self) -> _Source:
        """Open the input the first time (TinyearError, one line, if it cannot be used) and start the
        clock of the summary there: its CPU share is that of listening, not of starting up."""
        source = self._open(first=True)
        self.stats.started, self.stats.cpu_started = time.monotonic(), time.process_time()
        self._source = source
        self.log(f"listening on {source.choice.describe()} -> {self.detector.frontend_config.sample_rate} Hz mono")
        return source

    def run(self, duration: float | None = None) -> ListenStats:
        """Listen until `stop_event` is set (signal handlers set it) or `duration` seconds have passed.
        Opens the input first if `open()` was not called; after that, losses are retried."""
        source = self._source or self.open()
        worker = threading.Thread(target=self._work, name="tinyear-detector", daemon=True)
        worker.start()
        deadline = None if duration is None else time.monotonic() + duration
        backoff, retry_at, lost_reason = 1.0, None, None
        try:
            while not self.stop_event.wait(0.1):
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if source is not None:
                    reason = self._health(source)
                    if reason is None:
                        continue
                    source.close()
                    self._account(source)
                    self._source = source = None
                    lost_reason = reason
                    self.log(f"input '{self._device_name}' lost ({reason}); retrying in {backoff:g} s")
                    retry_at = now + backoff
                elif now >= retry_at:
                    try:
                        source = self._open(first=False)
                    except TinyearError as exc:
                        backoff = min(backoff * 2, self.max_backoff)
                        retry_at = now + backoff
                        self.log(f"input '{self._device_name}' still unavailable ({exc}); retrying in {backoff:g} s")
                        continue
                    self.stats.reconnects += 1
                    self._source = source
                    backoff = 1.0
                    self.log(f"input back after '{lost_reason}': {source.choice.describe()}")
        finally:
            self.stop_event.set()
            worker.join(timeout=5.0)
            if source is not None:
                source.close()
                self._account(source)
            self._source = None
        if self.worker_error is not None:
            raise self.worker_error
        return self.stats


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
