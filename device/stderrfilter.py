"""Keeping PortAudio's and ALSA's C-level chatter out of a listener's stderr, for as long as it listens.

PortAudio's ALSA backend, ALSA itself and JACK print diagnostics straight to file descriptor 2 from
their own threads ("ALSA lib pcm.c: ...", "Expression '...' failed in 'src/hostapi/alsa/pa_linux_alsa.c'")
while probing devices and when a stream dies. A short synchronous call is silenced whole with
`fileio.quiet_fd`; a listener cannot be, since its own status lines share the descriptor, so
`NativeNoiseFilter` routes fd 2 through a pipe and drops only the lines with those prefixes.
Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

_NOISE_PREFIXES = (b"ALSA lib ", b"Expression '", b"PaAlsa", b"Cannot connect to server", b"jack server",
                   b"JackShmReadWritePtr", b"Jack: ")


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
