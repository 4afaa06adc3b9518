#!/usr/bin/env python3
"""Soak test of the listener's detection path: 30 minutes of audio, faster than real time, with memory
and latency recorded over time. They must stay flat.

    python scripts/soak.py [BUNDLE] [--stream WAV --truth CSV] [--minutes 30] [--out docs/soak.md]

The path is the live listener's minus PortAudio: 48 kHz stereo blocks of 50 ms (what the listener asks
the virtual microphone for) go into the same `SampleRing` the audio callback fills, the worker's
`Converter` (downmix + soxr streaming resampler) and the `Detector`. The audio is the stream WAV
(looped to the length asked for; made by scripts/make_stream.py) read a second at a time, or, without
--stream, a stream of tone words built for the stream-trained tone model of the tests. Every minute of
audio it records the resident memory, the time to process one block (p50/p99/max), the model's
inference time (p50/p99), both as wall time and as the thread's CPU time (the difference is time the
thread waited for a core: on a shared machine, other processes) and, with a truth file, hits, false accepts and detection latency. Writes a
CSV, a PNG plot (if matplotlib is installed) and a Markdown summary with the command that made it.

Without BUNDLE: models/keywords.tinyear if it exists, else the tone model the tests build
(.test-artifacts/stream_tones_*.tinyear; run `pytest tests/test_streameval.py` first).
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

from tinyear.device.bundle import read_bundle  # noqa: E402
from tinyear.device.ring import Converter, SampleRing  # noqa: E402
from tinyear.device.detector import Detector  # noqa: E402
from tinyear.device.fileio import atomic_write_text  # noqa: E402
from tinyear.device.streameval import keyword_labels, read_truth, score_events  # noqa: E402


def default_bundle() -> Path:
    keywords = ROOT / "models" / "keywords.tinyear"
    if keywords.exists():
        return keywords
    artifacts = Path(os.environ.get("TINYEAR_TEST_ARTIFACTS", ROOT / ".test-artifacts"))
    tones = sorted(artifacts.glob("stream_tones_*.tinyear"), key=lambda p: p.stat().st_mtime)
    if not tones:
        sys.exit("no bundle: give one, export models/keywords.tinyear, or run pytest tests/test_streameval.py "
                 "(it builds the tone model)")
    return tones[-1]


def tone_stream_files(folder: Path, minutes: float, seed: int = 0) -> tuple[Path, Path]:
    """A stream of tone words for the tone model: a folder of tone clips, then make_stream.py."""
    import make_stream
    from stream_model import SR, tone_burst

    rng = np.random.default_rng(seed)
    for label in ("low", "high"):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(8):
            clip = np.zeros(SR, dtype=np.float32)
            burst = tone_burst(label, rng)
            start = int(rng.integers(1000, SR - len(burst) - 1000))
            clip[start : start + len(burst)] = burst
            sf.write(str(folder / label / f"{i}.wav"), clip, SR, subtype="PCM_16")
    (folder / "_background_noise_").mkdir(exist_ok=True)
    sf.write(str(folder / "_background_noise_" / "white.wav"), (rng.standard_normal(30 * SR) * 0.1).astype(np.float32), SR)
    out = folder / "stream.wav"
    make_stream.main([str(folder), str(out), "--minutes", str(minutes), "--seed", str(seed), "--unknown", "0",
                      "--noise-level", "-60", "-50"])
    return out, out.with_suffix(".csv")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", nargs="?", type=Path, default=None)
    parser.add_argument("--stream", type=Path, default=None, help="a stream WAV (looped); default: tone words")
    parser.add_argument("--truth", type=Path, default=None, help="its truth CSV (default: the WAV's name with .csv)")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--capture-rate", type=int, default=48000, help="rate of the simulated microphone")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "soak.md")
    args = parser.parse_args(argv)
    command = " ".join(["python scripts/soak.py", *(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))])

    bundle_path = args.bundle or default_bundle()
    bundle = read_bundle(bundle_path)
    tmp = tempfile.TemporaryDirectory(prefix="tinyear-soak-")
    if args.stream is None:
        stream_path, truth_path = tone_stream_files(Path(tmp.name), minutes=10.0)
    else:
        stream_path, truth_path = args.stream, args.truth or args.stream.with_suffix(".csv")
    truth = read_truth(truth_path) if truth_path and truth_path.exists() else None
    info = sf.info(str(stream_path))
    if info.samplerate != bundle.sample_rate or info.channels != 1:
        sys.exit(f"{stream_path}: expected mono at {bundle.sample_rate} Hz (as make_stream.py writes)")
    file_seconds = info.frames / info.samplerate
    keywords = keyword_labels(bundle.labels, ("_silence_", "_unknown_"))

    import soxr

    detector = Detector(bundle)
    inner = detector._scorer
    inference: list[float] = []

    inference_cpu: list[float] = []

    def timed_scorer(window):
        t0, c0 = time.perf_counter(), time.thread_time()
        out = inner(window)
        inference.append(time.perf_counter() - t0)
        inference_cpu.append(time.thread_time() - c0)
        return out

    detector._scorer = timed_scorer
    rate, sr = args.capture_rate, bundle.sample_rate
    block = rate // 20  # 50 ms blocks, as the listener asks PortAudio for
    ring = SampleRing(rate * 4, 2)
    convert = Converter(rate, sr, None)
    upsample = soxr.ResampleStream(sr, rate, 1, dtype="float32", quality="HQ")  # the "microphone" runs at 48 kHz

    rows, events_all = [], []
    total = int(args.minutes * 60 * sr)
    done, interval_s, next_mark = 0, 60.0, 60.0
    block_times: list[float] = []
    block_cpu: list[float] = []
    events_in_interval = []
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    print(f"soak: {args.minutes:g} min of {stream_path.name} (looped, {file_seconds:.0f} s) through ring -> "
          f"{rate} Hz stereo -> soxr -> detector, bundle {bundle_path}", file=sys.stderr)
    with sf.SoundFile(str(stream_path)) as f:
        while done < total:
            # One second at a time, so that what the soak itself holds stays small beside the listener's path.
            want = min(sr, total - done)
            pos = done % info.frames
            f.seek(pos)
            second = f.read(min(want, info.frames - pos), dtype="float32")
            mic = upsample.resample_chunk(second, last=False)  # (n,) at the capture rate
            stereo = np.repeat(mic[:, None], 2, axis=1)  # (n, 2): the sink's two channels
            for s in range(0, len(stereo), block):
                t0, c0 = time.perf_counter(), time.thread_time()
                ring.write(stereo[s : s + block])
                for event in detector.push(convert(ring.read())):
                    events_all.append(event)
                    events_in_interval.append(event)
                block_times.append(time.perf_counter() - t0)
                block_cpu.append(time.thread_time() - c0)
            done += len(second)
            t_audio = done / sr
            if t_audio + 1e-6 >= next_mark or done >= total:
                row = {"audio_min": round(t_audio / 60, 2), "rss_mb": round(rss_mb(), 2),
                       "block_ms_p50": round(1e3 * float(np.percentile(block_times, 50)), 4),
                       "block_ms_p99": round(1e3 * float(np.percentile(block_times, 99)), 4),
                       "block_ms_max": round(1e3 * float(np.max(block_times)), 3),
                       "inference_ms_p50": round(1e3 * float(np.percentile(inference, 50)), 4),
                       "inference_ms_p99": round(1e3 * float(np.percentile(inference, 99)), 4),
                       "block_cpu_ms_p99": round(1e3 * float(np.percentile(block_cpu, 99)), 4),
                       "inference_cpu_ms_p99": round(1e3 * float(np.percentile(inference_cpu, 99)), 4),
                       "detections": len(events_in_interval), "dropped_blocks": ring.dropped_blocks}
                rows.append(row)
                print("soak: " + ", ".join(f"{k} {v}" for k, v in row.items()), file=sys.stderr, flush=True)
                # timed_scorer closes over the variable `inference`, so it sees the new list
                block_times, block_cpu, inference, inference_cpu, events_in_interval = [], [], [], [], []
                next_mark += interval_s
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    if truth is not None:
        # Scored once over the whole run (the truth repeated for each loop of the file), then each hit
        # and false accept counted in the minute its event fell in: no word is cut at a boundary.
        loops = int(np.ceil(done / info.frames))
        looped = [type(w)(w.start + k * file_seconds, w.end + k * file_seconds, w.label)
                  for k in range(loops) for w in truth if w.end + k * file_seconds <= done / sr]
        r = score_events(events_all, looped, keywords=keywords, duration_s=done / sr)
        for i, row in enumerate(rows):
            lo, hi = i * interval_s, (i + 1) * interval_s
            lats = [lat for t, lat in r["hit_times"] if lo <= t < hi]
            row.update(hits=len(lats), keywords=sum(lo <= w.end < hi for w in looped if w.label in keywords),
                       false_accepts=sum(lo <= t < hi for t in r["false_accept_times"]),
                       latency_ms_p50=round(float(np.median(lats)), 1) if lats else None)

    out_csv, out_png = args.out.with_suffix(".csv"), args.out.with_suffix(".png")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(out_csv, "w", newline="") as fcsv:
        writer = csv.DictWriter(fcsv, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plotted = plot(rows, out_png)

    first, last = rows[0], rows[-1]
    minutes = np.array([r["audio_min"] for r in rows])
    rss = np.array([r["rss_mb"] for r in rows])
    slope = float(np.polyfit(minutes[1:], rss[1:], 1)[0] * 60) if len(rows) > 2 else float("nan")
    lines = [
        f"# Soak: {args.minutes:g} minutes through the listener's detection path",
        "",
        f"Command: `{command}` ({time.strftime('%Y-%m-%d')}; bundle `{bundle_path.name}`, labels {', '.join(bundle.labels)}).",
        f"Audio: `{stream_path.name if args.stream else 'tone words over -60..-50 dBFS noise (make_stream.py)'}` looped to "
        f"{args.minutes:g} min, fed as {rate} Hz stereo 50 ms blocks through SampleRing -> Converter (downmix, soxr) -> Detector. "
        f"Ran in {wall:.0f} s wall, {cpu:.0f} s CPU ({args.minutes * 60 / wall:.0f}x real time) on a 2-core machine shared with other jobs.",
        "",
        "| | first minute | last minute | whole run |",
        "|---|---|---|---|",
        f"| resident memory (MB) | {first['rss_mb']:.1f} | {last['rss_mb']:.1f} | max {rss.max():.1f}, slope after minute 1: {slope:+.2f} MB/hour |",
        f"| block processing p50 / p99 (ms per 50 ms block) | {first['block_ms_p50']:.3f} / {first['block_ms_p99']:.3f} | "
        f"{last['block_ms_p50']:.3f} / {last['block_ms_p99']:.3f} | worst p99 {max(r['block_ms_p99'] for r in rows):.3f}, "
        f"max {max(r['block_ms_max'] for r in rows):.2f} |",
        f"| block processing p99, thread CPU time (ms) | {first['block_cpu_ms_p99']:.3f} | {last['block_cpu_ms_p99']:.3f} | "
        f"worst {max(r['block_cpu_ms_p99'] for r in rows):.3f} |",
        f"| inference p50 / p99 (ms) | {first['inference_ms_p50']:.3f} / {first['inference_ms_p99']:.3f} | "
        f"{last['inference_ms_p50']:.3f} / {last['inference_ms_p99']:.3f} | worst p99 {max(r['inference_ms_p99'] for r in rows):.3f} |",
        f"| inference p99, thread CPU time (ms) | {first['inference_cpu_ms_p99']:.3f} | {last['inference_cpu_ms_p99']:.3f} | "
        f"worst {max(r['inference_cpu_ms_p99'] for r in rows):.3f} |",
        f"| detections | {first['detections']} | {last['detections']} | {len(events_all)} |",
        f"| ring overflows | | | {rows[-1]['dropped_blocks']} |",
    ]
    if truth is not None:
        lats = [r["latency_ms_p50"] for r in rows if r.get("latency_ms_p50") is not None]
        hits = sum(r["hits"] for r in rows)
        kws = sum(r["keywords"] for r in rows)
        fas = sum(r["false_accepts"] for r in rows)
        lines.append(f"| hits / keywords, false accepts | {first['hits']}/{first['keywords']}, {first['false_accepts']} | "
                     f"{last['hits']}/{last['keywords']}, {last['false_accepts']} | {hits}/{kws}, {fas} |")
        if lats:
            lines.append(f"| detection latency p50 (ms, end of word -> event) | {lats[0]:.0f} | {lats[-1]:.0f} | "
                         f"range {min(lats):.0f}..{max(lats):.0f} |")
    lines += ["", "Wall-time p99 that steps up while the thread's CPU-time p99 stays flat is time spent waiting for a "
              "core (other processes on this shared machine), not the listener slowing down; memory is the process's "
              "resident set, sampled at the end of each minute."]
    lines += ["", f"Per minute: [{out_csv.name}]({out_csv.name})" + (f"; plot: ![soak]({out_png.name})" if plotted else "") + ".", ""]
    atomic_write_text(args.out, "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {args.out}, {out_csv}" + (f", {out_png}" if plotted else ""), file=sys.stderr)
    tmp.cleanup()
    return 0


def plot(rows, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    minutes = [r["audio_min"] for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
    axes[0].plot(minutes, [r["rss_mb"] for r in rows], marker="o")
    axes[0].set_ylabel("RSS (MB)")
    axes[0].set_ylim(0, max(r["rss_mb"] for r in rows) * 1.2)
    for key, label in (("block_ms_p50", "p50"), ("block_ms_p99", "p99"), ("block_cpu_ms_p99", "p99, CPU time")):
        axes[1].plot(minutes, [r[key] for r in rows], marker=".", label=label)
    axes[1].set_ylabel("ms per 50 ms block")
    axes[1].legend()
    axes[1].set_ylim(bottom=0)
    for key, label in (("inference_ms_p50", "p50"), ("inference_ms_p99", "p99"), ("inference_cpu_ms_p99", "p99, CPU time")):
        axes[2].plot(minutes, [r[key] for r in rows], marker=".", label=label)
    axes[2].set_ylabel("inference (ms)")
    axes[2].set_xlabel("minutes of audio")
    axes[2].legend()
    axes[2].set_ylim(bottom=0)
    fig.suptitle("tinyear listener soak: memory and latency over time")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


if __name__ == "__main__":
    raise SystemExit(main())
