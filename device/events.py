"""How detections are written out: the event line, once for every command that prints them (`listen`,
`classify --stream`), and the printer that keeps a stalled reader from stalling the listener.

Text: `   12.30 s  yes            0.912` (stream seconds, label, smoothed score). JSON: one object a line,
`{"type":"detection","time":12.3,"label":"yes","score":0.912}`, plus `wall_time` (unix seconds) when
the listener knows when it heard it.

`EventPrinter`: the detector's worker only puts a line in a bounded queue (never blocks); a thread of
its own writes them to stdout in order. A reader that stops reading (`listen --json | slow-program`)
fills the pipe, then the queue, and further lines are dropped and counted, while detection and the
`--exec` hooks go on. A reader that leaves (`| head -1`) is noticed and reported through `on_gone`.
Standard library only.
"""

from __future__ import annotations

import os

from .backlog import Backlog
from .cliutil import json_line


def event_line(event, *, as_json: bool = False, wall_time: float | None = None) -> str:
    """The line (with its newline) that reports `event` (a `Detection`), as text or as JSON."""
    if as_json:
        record = {"type": "detection", **event.to_dict()}
        if wall_time is not None:
            record["wall_time"] = round(wall_time, 3)
        return json_line(record)
    return f"{event.time:9.2f} s  {event.label:<14} {event.score:.3f}\n"


class EventPrinter:
    """Writes lines to `out` (a file descriptor, or a text stream) from a thread of its own.

    `submit(line)` never blocks: with `max_pending` lines already waiting, the line is dropped and
    counted (`dropped`; `log` gets one message the first time). `on_gone()` is called once if the
    reader closes the pipe. `close(timeout)` waits up to `timeout` seconds for what is queued and
    returns how many submitted lines were never written (dropped, or still waiting on a stalled reader)."""

    def __init__(self, out, *, max_pending: int = 256, on_gone=None, log=None):
        self._write = _fd_writer(out) if isinstance(out, int) else _stream_writer(out)
        self.on_gone = on_gone or (lambda: None)
        self.submitted = 0
        self.written = 0
        self.gone = False
        self._backlog = Backlog(self._print, name="tinyear-printer", max_pending=max_pending, log=log,
                                full_message="tinyear-device: stdout is not being read; dropping detection lines "
                                             "(counted in the summary)")

    @property
    def dropped(self) -> int:
        return self._backlog.dropped

    def submit(self, line: str) -> None:
        self.submitted += 1
        self._backlog.submit(line)

    def _print(self, line: str) -> None:
        if self.gone:
            return
        try:
            self._write(line.encode("utf-8"))
            self.written += 1
        except (BrokenPipeError, ValueError, OSError):  # the reader left (or stdout was closed)
            self.gone = True
            self.on_gone()

    def close(self, timeout: float = 3.0) -> int:
        """Stop after the queued lines (at most `timeout` seconds); the number of lines not written."""
        self._backlog.close(timeout)
        return self.submitted - self.written


def _fd_writer(fd: int):
    # os.write, not sys.stdout: a thread blocked on a full pipe then holds no lock that the interpreter
    # needs at exit, so a stalled reader cannot keep the listener from ending.
    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    return write


def _stream_writer(stream):
    def write(data: bytes) -> None:
        stream.write(data.decode("utf-8"))
        stream.flush()

    return write
