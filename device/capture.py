"""Live audio capture: microphones as they are, into the streaming detector, surviving their hiccups.

A PortAudio input stream (through sounddevice) whose callback does nothing but copy the block into a
`ring.SampleRing`. A worker thread drains the ring, converts (`ring.Converter`: channel pick or
downmix, soxr streaming resampling to the model's rate) and feeds the `Detector`. The main thread
supervises: when the stream ends on its own (a USB microphone pulled out, the sound server gone) or
stops delivering audio, it reports one line and reopens the device (found again by `inputs`) with
backoff, and logs when a device's first audio arrives; Ctrl-C and SIGTERM end it. `listen` runs a
listener inside `stderrfilter.NativeNoiseFilter`, so ALSA's chatter stays out of its output.

Imports the device half's `ring` and `inputs` (so numpy, soxr, and sounddevice lazily, with an install
hint); never torch or `tinyear.host`.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from dataclasses import dataclass, field

from .errors import TinyearError
from .fileio import quiet_fd
from .inputs import InputChoice, choose_settings, find_input, import_sounddevice
from .ring import Converter, SampleRing


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

    `on_event(detection)` is called on the worker thread for each Detection: it must never wait (hand
    the event to a queue, as `events.EventPrinter` and `hooks.HookRunner` do). `log(line)` gets one-line status messages. `run()` returns the ListenStats.

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
        backoff, retry_at, lost_reason, heard = 1.0, None, None, None
        try:
            while not self.stop_event.wait(0.1):
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if source is not None:
                    if source is not heard and source.callbacks:
                        # The device's first block: from here on, what is played is heard (a sound
                        # server's stream can take a second or two to start after opening).
                        heard = source
                        self.log(f"audio arriving from '{source.choice.name}'")
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
