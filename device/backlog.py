"""A thread that works through items in order, fed from a bounded queue that never makes the feeder wait.

The detector's worker must never block on anything slower than itself: the `--exec` hooks
(`hooks.HookRunner`) and the printing of events (`events.EventPrinter`) each get a `Backlog`. When
`max_pending` items are already waiting, a new one is dropped and counted (`dropped`), and `log` gets
one line the first time: losing an event line or a hook run is better than going deaf. Standard
library only.
"""

from __future__ import annotations

import queue
import sys
import threading


class Backlog:
    """Calls `handle(item)` on a thread of its own for each submitted item, in order."""

    def __init__(self, handle, *, name: str, full_message: str, max_pending: int = 16, log=None):
        self._handle = handle
        self._full_message = full_message
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self.dropped = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item) -> None:
        """Queue `item`; never blocks (a full queue drops it and counts it)."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:
                self.log(self._full_message)

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            self._handle(item)

    def close(self, timeout: float = 5.0) -> None:
        """Let queued items finish (up to `timeout` seconds), then stop the thread."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout=timeout)
