"""`listen --exec CMD`: run a shell command for each detection, without ever holding up the audio.

The detector's worker only puts the event in a small queue (`HookRunner.submit`, a `backlog.Backlog`:
never blocks); one hook thread runs the commands in order with `/bin/sh -c CMD` and the detection in
the environment: TINYEAR_LABEL, TINYEAR_SCORE (smoothed probability) and TINYEAR_TIME (seconds since
the listener started). If commands are slower than detections, the queue fills and further events are skipped and
counted, rather than piling up. A failing command gets one line on stderr; the listener goes on.
Standard library only.
"""

from __future__ import annotations

import os
import subprocess
import sys

from .backlog import Backlog


class HookRunner:
    """Runs `command` once per submitted Detection on a thread of its own."""

    def __init__(self, command: str, *, max_pending: int = 16, stdout=None, log=None):
        self.command = command
        self.stdout = stdout  # None: inherit; the listener passes stderr when stdout carries --json lines
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.ran = 0
        self.failed = 0
        self._backlog = Backlog(self._run, name="tinyear-exec", max_pending=max_pending, log=self.log,
                                full_message="tinyear-device: --exec command is slower than the detections; "
                                             "skipping some (counted in the summary)")

    @property
    def skipped(self) -> int:
        return self._backlog.dropped

    def submit(self, event) -> None:
        """Queue a detection for the command; never blocks (a full queue skips it and counts it)."""
        self._backlog.submit(event)

    def _run(self, event) -> None:
        env = {**os.environ, "TINYEAR_LABEL": event.label, "TINYEAR_SCORE": f"{event.score:.4f}",
               "TINYEAR_TIME": f"{event.time:.3f}"}
        try:
            result = subprocess.run(["/bin/sh", "-c", self.command], env=env, stdin=subprocess.DEVNULL, stdout=self.stdout)
            self.ran += 1
            if result.returncode != 0:
                self.failed += 1
                self.log(f"tinyear-device: --exec command exited with status {result.returncode} for {event.label} at {event.time:.2f} s")
        except OSError as exc:
            self.failed += 1
            self.log(f"tinyear-device: --exec command could not run ({exc})")

    def close(self, timeout: float = 5.0) -> None:
        """Let queued commands finish (up to `timeout` seconds), then stop the thread."""
        self._backlog.close(timeout)
