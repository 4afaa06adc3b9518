#!/usr/bin/env python3
"""Benchmark the shared frontend: batch features of a 1 s clip, and the streaming cost per second of
audio as a share of one core, beside librosa's mel spectrogram on the same clip (one run, one thread).

    python scripts/bench_frontend.py [--out docs/BENCHMARKS.md]

Writes the "## Frontend" section of the benchmarks file (replacing an older one) and prints it.
CPU time (time.process_time) is used for the shares, so a busy machine inflates them less than wall time.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from tinyear.device.features import DEFAULT_CONFIG, StreamingFrontend, fingerprint, log_mel  # noqa: E402
from tinyear.device.fileio import atomic_write_text  # noqa: E402


def per_call(fn, repeats: int, rounds: int = 7) -> float:
    """Median over rounds of the CPU seconds per call."""
    out = []
    for _ in range(rounds):
        t = time.process_time()
        for _ in range(repeats):
            fn()
        out.append((time.process_time() - t) / repeats)
    return statistics.median(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    clip = (0.1 * rng.standard_normal(DEFAULT_CONFIG.clip_samples)).astype(np.float32)
    batch_s = per_call(lambda: log_mel(clip), 200)

    seconds = 20
    audio = (0.1 * rng.standard_normal(seconds * DEFAULT_CONFIG.sample_rate)).astype(np.float32)
    rows = []
    for chunk_ms in (10, 32, 100):
        n = DEFAULT_CONFIG.sample_rate * chunk_ms // 1000

        def stream():
            fe = StreamingFrontend()
            for i in range(0, len(audio), n):
                fe.push(audio[i : i + n])

        cpu = per_call(stream, 1, rounds=5) / seconds
        rows.append((chunk_ms, cpu))

    librosa_s = None
    try:
        import librosa

        c = DEFAULT_CONFIG
        librosa_s = per_call(lambda: librosa.feature.melspectrogram(
            y=clip, sr=c.sample_rate, n_fft=c.fft_size, hop_length=c.hop_length, win_length=c.window_length,
            center=False, n_mels=c.num_mel_bins, fmin=c.lower_hz, fmax=c.upper_hz, htk=True, norm=None), 200)
    except ImportError:
        pass

    cpu_name = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    lines = [
        "## Frontend",
        "",
        f"Command: `python scripts/bench_frontend.py` ({time.strftime('%Y-%m-%d')}, {cpu_name}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, one thread, CPU time, median of rounds). Frontend {fingerprint()}: "
        f"{DEFAULT_CONFIG.num_mel_bins} log-mel bins, {DEFAULT_CONFIG.window_ms:g} ms window, {DEFAULT_CONFIG.hop_ms:g} ms hop.",
        "",
        "| what | time | share of one core |",
        "|---|---|---|",
        f"| batch `log_mel`, one 1 s clip (98 frames) | {batch_s * 1e3:.2f} ms | – |",
    ]
    if librosa_s is not None:
        lines.append(f"| librosa `melspectrogram`, same clip (reference, same numbers) | {librosa_s * 1e3:.2f} ms | – |")
    for chunk_ms, cpu in rows:
        lines.append(f"| streaming, {chunk_ms} ms chunks, per second of audio | {cpu * 1e3:.2f} ms | {cpu * 100:.2f}% |")
    lines += ["", "Target: streaming at most 1% of one core. Streaming output equals batch bit for bit (tests/test_features.py).", ""]
    section = "\n".join(lines)
    print(section)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = args.out.read_text() if args.out.exists() else "# Benchmarks\n\n"
    pattern = re.compile(r"^## Frontend\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
    atomic_write_text(args.out, text)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
