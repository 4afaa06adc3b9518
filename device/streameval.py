"""Streaming evaluation: run the live detector over a long recording and score its events against the truth.

A truth file is a CSV of `start,end,label` rows (seconds from the start of the recording; a header row
`start,end,label` is optional) naming each word spoken in it. Rows whose label the model detects
(a label of the bundle, other than `_silence_`/`_unknown_`) are keywords; the others (`_unknown_`,
words the model does not know) are there to be ignored, and an event on them is a false accept.

Scoring: events are taken in time order; an event is a hit if an unmatched keyword of the same label
has `start <= event time <= end + MATCH_AFTER_END_S`, and it takes the earliest such word; every
other event is a false accept. Keywords left unmatched are misses. Detection latency is event time
minus the word's end: the delay a user feels after finishing the word (negative if the model decided
before the word was over). False accepts are reported per hour of audio.

`stream_file` is what `tinyear-device classify --stream` runs: the same `Detector` as `listen`, fed
from the file in 100 ms blocks as fast as the CPU allows. A library module: it prints nothing but the
progress line, and never imports a command. Device half only (numpy, soundfile, soxr).
"""

from __future__ import annotations

import csv
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TinyearError

# How long after a word ends its detection may still come: the word must first fill enough of the 1 s
# window, and the smoothing average then needs a few hops to rise.
MATCH_AFTER_END_S = 1.5


@dataclass(frozen=True)
class TruthWord:
    start: float  # seconds
    end: float  # seconds
    label: str


def read_truth(path: str | Path) -> list[TruthWord]:
    """Read a `start,end,label` CSV. TinyearError naming the file and row for anything malformed."""
    path = Path(path)
    fix = "each row must be start,end,label with times in seconds (e.g. 12.40,12.95,yes)"
    if not path.exists():
        raise TinyearError(f"{path}: no such truth file")
    if path.is_dir():
        raise TinyearError(f"{path}: is a folder; give the truth CSV file")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error, OSError) as exc:
        raise TinyearError(f"{path}: not a readable CSV file ({exc}); {fix}") from None
    words = []
    for number, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not cells or all(not c for c in cells) or cells[0].startswith("#"):
            continue
        if number == 1 and [c.lower() for c in cells] == ["start", "end", "label"]:
            continue
        if len(cells) != 3:
            raise TinyearError(f"{path}: row {number} has {len(cells)} column(s), expected 3; {fix}")
        try:
            start, end = float(cells[0]), float(cells[1])
        except ValueError:
            raise TinyearError(f"{path}: row {number}: {cells[0]!r} or {cells[1]!r} is not a number of seconds; {fix}") from None
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
            raise TinyearError(f"{path}: row {number}: need 0 <= start < end, got start {cells[0]}, end {cells[1]}; {fix}")
        if not cells[2]:
            raise TinyearError(f"{path}: row {number} has an empty label; {fix}")
        words.append(TruthWord(start, end, cells[2]))
    return sorted(words, key=lambda w: w.start)


def write_truth(path: str | Path, words) -> None:
    """Write `start,end,label` rows (with the header), times to the millisecond."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["start", "end", "label"])
        for w in words:
            out.writerow([f"{w.start:.3f}", f"{w.end:.3f}", w.label])


def mix_word(stream, start: int, word):
    """Add `word` into `stream` at sample `start`, in place, turned down first if the sum would clip
    (peak above 0.99): a test stream clips nothing. Returns the word as it went in."""
    import numpy as np

    mixed = stream[start : start + len(word)] + word
    peak = float(np.abs(mixed).max())
    if peak > 0.99:
        word = word * np.float32(0.99 / peak)
        mixed = stream[start : start + len(word)] + word
    stream[start : start + len(word)] = mixed
    return word


def score_events(events, truth: list[TruthWord], *, keywords, duration_s: float,
                 match_after_end_s: float = MATCH_AFTER_END_S) -> dict:
    """Hits, misses, false accepts and latency of `events` (objects with time, label, score) against
    `truth` (see the module docstring). `keywords`: the labels that count as words to find."""
    keywords = set(keywords)
    targets = [w for w in truth if w.label in keywords]
    matched = [False] * len(targets)
    latencies, false_accepts, hit_events = [], [], []
    per_label = {k: {"words": 0, "hits": 0, "false_accepts": 0} for k in sorted(keywords)}
    for w in targets:
        per_label[w.label]["words"] += 1
    for event in sorted(events, key=lambda e: e.time):
        hit = None
        for i, w in enumerate(targets):
            if not matched[i] and w.label == event.label and w.start <= event.time <= w.end + match_after_end_s:
                hit = i
                break
        if hit is None:
            false_accepts.append(event)
            if event.label in per_label:
                per_label[event.label]["false_accepts"] += 1
            continue
        matched[hit] = True
        latencies.append(event.time - targets[hit].end)
        hit_events.append(event)
        per_label[event.label]["hits"] += 1
    hits = sum(matched)
    hours = duration_s / 3600.0
    lat = np.asarray(latencies) * 1000.0
    return {
        "duration_s": round(duration_s, 2),
        "keywords": len(targets),
        "events": len(events),
        "hits": hits,
        "misses": len(targets) - hits,
        "recall": round(hits / len(targets), 4) if targets else None,
        "false_accepts": len(false_accepts),
        "false_accepts_per_hour": round(len(false_accepts) / hours, 2) if hours > 0 else None,
        "latency_ms": None if not len(lat) else {"p50": round(float(np.percentile(lat, 50)), 1),
                                                 "p90": round(float(np.percentile(lat, 90)), 1),
                                                 "mean": round(float(lat.mean()), 1)},
        "per_label": per_label,
        "false_accept_times": [round(e.time, 3) for e in false_accepts],
        "hit_times": [[round(e.time, 3), round(1000.0 * lat, 1)] for e, lat in zip(hit_events, latencies)],
    }


def keyword_labels(labels, ignore) -> list[str]:
    return [label for label in labels if label not in ignore]


def stream_file(detector, path: str | Path, *, channel: int | None = None, progress: bool = False):
    """Run `detector` over an audio file (any format/rate/channels, resampled to the bundle's rate) as if
    live, in 100 ms blocks. Returns (events, duration in seconds)."""
    from .audio import load_audio
    from .detector import detect_array

    rate = detector.frontend_config.sample_rate
    wave = load_audio(path, rate, channel=channel)
    bar = ProgressLine(len(wave) / rate, f"streaming {Path(path).name}") if progress else None
    events = detect_array(detector, wave, chunk_samples=rate // 10,
                          progress=None if bar is None else (lambda n: bar.update(n / rate)))
    if bar is not None:
        bar.close()
    return events, len(wave) / rate


class ProgressLine:
    """A one-line progress report on stderr, redrawn at most twice a second, only when stderr is a
    terminal (the device half has no tqdm): `update(n)` adds n units of `total`; `close()` clears it."""

    def __init__(self, total: float, desc: str, unit: str = "s"):
        self.total, self.desc, self.unit = total, desc, unit
        self.done = 0.0
        self.enabled = sys.stderr.isatty()
        self._shown = 0.0
        self._start = time.monotonic()

    def update(self, n: float) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self._shown >= 0.5:
            self._shown = now
            pct = 100.0 * self.done / self.total if self.total else 100.0
            sys.stderr.write(f"\r{self.desc}: {self.done:.0f}/{self.total:.0f} {self.unit} ({pct:.0f}%, {now - self._start:.0f} s)")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self._shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
