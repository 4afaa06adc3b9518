"""Writing detections out: the event line, and the printer that never lets a stalled reader hold up
detection. The pipes are real (os.pipe): one whose reader stalls, one whose reader left."""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest

from conftest import full_pipe
from stream_model import SR, tone_bundle, tone_stream  # noqa: F401  (tone_bundle is a fixture)
from tinyear.device.bundle import read_bundle
from tinyear.device.detector import Detection, Detector, detect_array
from tinyear.device.events import EventPrinter, event_line

pytestmark = pytest.mark.device


def drain(fd: int, into: bytearray) -> threading.Thread:
    def loop():
        while chunk := os.read(fd, 65536):
            into.extend(chunk)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def test_event_line_text_and_json():
    event = Detection(12.3004, "yes", 0.91234)
    assert event_line(event) == "    12.30 s  yes            0.912\n"
    assert json.loads(event_line(event, as_json=True)) == {"type": "detection", "time": 12.3, "label": "yes", "score": 0.9123}
    assert json.loads(event_line(event, as_json=True, wall_time=1700000000.12345))["wall_time"] == 1700000000.123


def test_stalled_reader_never_blocks_submit_and_drops_are_counted():
    read_end, write_end = full_pipe()
    messages = []
    printer = EventPrinter(write_end, max_pending=8, log=messages.append)
    t0 = time.monotonic()
    for i in range(200):
        printer.submit(f"{i:04d}\n")
    assert time.monotonic() - t0 < 0.5  # 200 submits into a pipe nobody reads: no waiting
    assert printer.dropped >= 200 - 8 - 1  # the queue, plus the one line the printer holds
    assert len(messages) == 1 and "not being read" in messages[0]
    data = bytearray()
    reader = drain(read_end, data)  # the reader wakes up: what was queued comes out, in order
    assert printer.close(timeout=10) == printer.dropped
    os.close(write_end)
    reader.join(timeout=10)
    os.close(read_end)
    lines = [line for line in data.decode().split("\n") if line]
    assert len(lines) == printer.written == 200 - printer.dropped
    assert lines == sorted(lines) and lines[0] == "0000"


def test_detection_goes_on_while_stdout_is_stalled(tone_bundle):
    """The listener's on_event path with a real detector: a whole stream is detected at full speed
    while every line waits on a full pipe."""
    read_end, write_end = full_pipe()
    printer = EventPrinter(write_end)
    detector = Detector(read_bundle(tone_bundle))
    words = ["low", "high", "low", "high"]
    wave, _ = tone_stream(words, np.random.default_rng(3), noise_dbfs=-60.0)
    t0 = time.monotonic()
    events = []
    for event in detect_array(detector, wave, chunk_samples=SR // 20):
        events.append(event)
        printer.submit(event_line(event, as_json=True))
    assert time.monotonic() - t0 < 0.5 * len(wave) / SR  # faster than real time, never waiting on the pipe
    assert [e.label for e in events] == words
    assert printer.written == 0 and printer.dropped == 0
    data = bytearray()
    reader = drain(read_end, data)
    assert printer.close(timeout=10) == 0
    os.close(write_end)
    reader.join(timeout=10)
    os.close(read_end)
    printed = [json.loads(line) for line in data.decode().split("\n") if line.strip()]
    assert [p["label"] for p in printed] == words


def test_reader_that_left_is_reported_once():
    read_end, write_end = os.pipe()
    os.close(read_end)
    gone = []
    printer = EventPrinter(write_end, on_gone=lambda: gone.append(True))
    for i in range(5):
        printer.submit(f"{i}\n")
    assert printer.close(timeout=5) == 5
    os.close(write_end)
    assert printer.gone and gone == [True] and printer.written == 0
