"""Progress on the workstation's stderr, in one style for every host command.

Two shapes, both here: a tqdm bar for work that is counted (clips, steps, variants: `bar`), and numbered
step lines for the stages of a long command (`Steps`: "[3/7] probing the device ... ok (0.4 s)"). Bars
are transient (they leave no line behind) and off when the caller asks for quiet; a bar over fewer
items than `at_least` is not shown (reading 40 clips needs no bar). Standard library and tqdm
(imported when a bar is made) only, so deploy and `--help` stay cheap.
"""

from __future__ import annotations

import sys
import time


def bar(total: int, desc: str, *, enabled: bool = True, unit: str = "clip", at_least: int = 0):
    """A tqdm bar on stderr over `total` items (a disabled one, which costs nothing, when not `enabled`
    or when total < at_least). Use as a context manager or call close()."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                disable=not enabled or total < at_least)


def format_seconds(seconds: float) -> str:
    """'42 s' up to 90 seconds, then '1.6 min'."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


class Steps:
    """Numbered step lines on `stream` (None: silent), each step's result and wall time kept in `steps`
    ({"step", "result", "seconds"}) and `times` (name -> seconds, 0.1 s).

    inline=True writes "[i/n] what ... " and then the result on the same line, for a command whose
    steps print nothing else (deploy); inline=False writes a line when a step starts and another when it
    ends ("[i/n] what: done in 42 s"), so that progress bars can run in between (the pipeline)."""

    def __init__(self, total: int, stream=sys.stderr, *, prefix: str = "", inline: bool = True):
        self.total, self.stream, self.prefix, self.inline = total, stream, prefix, inline
        self.index = 0
        self.steps: list[dict] = []
        self.times: dict[str, float] = {}
        self._what, self._name, self._t0 = "", "", 0.0

    def start(self, what: str, name: str | None = None) -> None:
        self.index += 1
        self._t0, self._what, self._name = time.monotonic(), what, name or what
        self._write(f"{self._head()} ... " if self.inline else f"{self._head()} ...\n")

    def done(self, note: str = "ok") -> float:
        seconds = self._record(note)
        self._write(f"{note} ({seconds:.1f} s)\n" if self.inline
                    else f"{self._head()}: {note} in {format_seconds(self.times[self._name])}\n")
        return seconds

    def fail(self) -> None:
        self._record("failed")
        if self.inline:
            self._write("failed\n")

    def skip(self, what: str, name: str | None = None) -> None:
        """A step that was already done: counted, recorded as 0 s."""
        self.index += 1
        self._what, self._name = what, name or what
        self.steps.append({"step": what, "result": "skipped", "seconds": 0.0})
        self.times[self._name] = 0.0
        self._write(f"{self._head()}: already done, skipped\n")

    def _head(self) -> str:
        return f"{self.prefix}[{self.index}/{self.total}] {self._what}"

    def _record(self, result: str) -> float:
        seconds = time.monotonic() - self._t0
        self.steps.append({"step": self._what, "result": result, "seconds": round(seconds, 3)})
        self.times[self._name] = round(seconds, 1)
        return seconds

    def _write(self, text: str) -> None:
        if self.stream:
            self.stream.write(text)
            self.stream.flush()


class SecondsBar:
    """A `bar` over the seconds of a stream, fed sample counts: `update(samples)` from a callback that
    gets samples done (as `detect_array` gives them) moves the bar by whole seconds."""

    def __init__(self, seconds: float, rate: int, desc: str, *, enabled: bool = True):
        self.rate, self.samples, self.shown = rate, 0, 0
        self._bar = bar(int(seconds), desc, enabled=enabled, unit="s")

    def update(self, samples: int) -> None:
        self.samples += samples
        whole = self.samples // self.rate
        if whole > self.shown:
            self._bar.update(whole - self.shown)
            self.shown = whole

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._bar.close()
