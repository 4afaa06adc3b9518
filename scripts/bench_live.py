#!/usr/bin/env python3
"""Benchmark live detection and write the "## Live detection" section of docs/BENCHMARKS.md.

    python scripts/bench_live.py [BUNDLE] [--listen-seconds 45] [--out docs/BENCHMARKS.md]

Measured side by side in one run, on this machine:
  1. features: the listener's incremental frontend (one push per hop) against recomputing the whole
     1 s window every hop; model inference p50/p95/p99; the detection path's CPU share; peak RSS
     (`tinyear-device bench`'s measure());
  2. streaming evaluation: `classify --stream`'s detector over a stream built by make_stream.py, scored
     against its truth: hits, false accepts per hour, latency from the end of each word to its event;
  3. the real listener through PulseAudio (scripts/virtual_mic.py, as tests/test_listen_pulse.py): a
     48 kHz stereo null sink, `paplay` playing the stream's first --listen-seconds, `tinyear-device
     listen --json` on its monitor. Its CPU share of one core while listening (from /proc, startup
     excluded), beside a bare PortAudio stream with an empty callback on the same device and settings
     (the floor that PortAudio and ALSA's pulse plugin cost by themselves), and the latency from the
     end of each word as played to the event's wall-clock time (an upper bound: paplay's own start-up
     delay is counted in it).
With the real keyword bundle (models/keywords.tinyear) the stream is built from real speech
(../shared/data/speech-commands-v2-test-public, evaluation only) and, when the MLPerf Tiny reference
model and a Python with tensorflow are given (--peer, --peer-python), the peer runs on the same stream
(../shared/tools/peer_stream.py) and is scored by the same code. Without a bundle: the keyword bundle
if it exists, else the stream-trained tone model of the tests (run pytest tests/test_streameval.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

from soak import default_bundle, tone_stream_files  # noqa: E402
from tinyear.device.bundle import read_bundle  # noqa: E402
from tinyear.device.bench import measure  # noqa: E402
from tinyear.device.detector import Detection, DetectionConfig, Detector  # noqa: E402
from tinyear.device.fileio import atomic_write_text  # noqa: E402
from tinyear.device.streameval import TruthWord, keyword_labels, read_truth, score_events, stream_file  # noqa: E402

REAL_SPEECH = ROOT.parent / "shared" / "data" / "speech-commands-v2-test-public"
PEER_TOOL = ROOT.parent / "shared" / "tools" / "peer_stream.py"
DEVICE_CLI = [sys.executable, "-m", "tinyear.device.cli"]
BARE_STREAM = """
import sys, time, sounddevice as sd
calls = [0]
def callback(indata, frames, t, status):
    calls[0] += 1
s = sd.InputStream(device='pulse', samplerate=48000, channels=2, dtype='float32', blocksize=2400, callback=callback)
s.start(); print('open', flush=True); time.sleep(float(sys.argv[1])); s.close(); print('calls', calls[0])
"""


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def excerpt(stream: Path, truth: list[TruthWord], seconds: float, out: Path) -> list[TruthWord]:
    """The first `seconds` of a stream, with the truth rows that end 1.5 s before its end."""
    x, sr = sf.read(str(stream), dtype="float32", frames=int(seconds * sf.info(str(stream)).samplerate))
    sf.write(str(out), x, sr, subtype="PCM_16")
    return [w for w in truth if w.end + 1.5 <= len(x) / sr]


def live_run(mic, bundle_path: Path, wav: Path, play_seconds: float) -> dict:
    """The listener on the virtual microphone while `wav` plays: events, CPU share, summary."""
    proc = subprocess.Popen([*DEVICE_CLI, "listen", str(bundle_path), "--json", "--input", "pulse", "--capture-rate", "48000"],
                            env=mic.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = [], []
    readers = [threading.Thread(target=lambda: out.extend(json.loads(l) for l in proc.stdout), daemon=True),
               threading.Thread(target=lambda: err.extend(l.rstrip() for l in proc.stderr), daemon=True)]
    for r in readers:
        r.start()
    deadline = time.monotonic() + 60
    while not any("listening on" in l for l in err):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("listener did not start:\n" + "\n".join(err))
        time.sleep(0.05)
    time.sleep(3.0)  # past start-up: the monitor stream delivering, imports and first windows done
    cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
    played_at = time.time()
    mic.play(wav)
    time.sleep(2.5)
    cpu1, wall1 = cpu_seconds(proc.pid), time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    for r in readers:
        r.join(timeout=5)
    detections = [o for o in out if o.get("type") == "detection"]
    summary = next((o for o in out if o.get("type") == "summary"), {})
    return {"detections": detections, "played_at": played_at, "summary": summary, "stderr": err,
            "cpu_percent": 100.0 * (cpu1 - cpu0) / (wall1 - wall0), "seconds": wall1 - wall0}


def bare_portaudio_cpu(mic, seconds: float, wav: Path) -> float:
    """CPU share of a sounddevice stream with an empty callback, same device and settings, while `wav` plays."""
    proc = subprocess.Popen([sys.executable, "-c", BARE_STREAM, str(seconds + 6)], env=mic.env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout.readline().strip() == "open"
    time.sleep(3.0)
    cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
    mic.play(wav)
    time.sleep(max(0.0, seconds - (time.monotonic() - wall0)))
    cpu1, wall1 = cpu_seconds(proc.pid), time.monotonic()
    proc.wait(timeout=60)
    return 100.0 * (cpu1 - cpu0) / (wall1 - wall0)


def peer_events(peer_python: str, peer_model: Path, stream: Path, hop: int = 100, k: int = 3, th: float = 0.8) -> list[Detection]:
    out = subprocess.run([peer_python, str(PEER_TOOL), str(peer_model), str(stream), "--hop", str(hop), "--k", str(k),
                          "--th", str(th)], capture_output=True, text=True, check=True, cwd=str(PEER_TOOL.parent),
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""})
    return [Detection(o["time"], o["label"], o["score"]) for o in map(json.loads, out.stdout.splitlines()) if o]


def agreement(live: list, from_file: list, within_s: float = 0.5) -> dict:
    """Events of the live run and of the file run that pair up (same label, times within `within_s`;
    each event pairs at most once): how far the microphone path is from the file path."""
    left = list(from_file)
    paired = 0
    for d in live:
        match = next((f for f in left if f.label == d.label and abs(f.time - d.time) <= within_s), None)
        if match is not None:
            left.remove(match)
            paired += 1
    return {"live": len(live), "file": len(from_file), "paired": paired, "within_s": within_s}


def fmt_latency(r: dict) -> str:
    lat = r.get("latency_ms")
    return f"{lat['p50']:.0f} / {lat['p90']:.0f}" if lat else "–"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", nargs="?", type=Path, default=None)
    parser.add_argument("--listen-seconds", type=float, default=45.0, help="seconds of the stream played through PulseAudio")
    parser.add_argument("--stream-minutes", type=float, default=15.0, help="length of the streaming-evaluation stream")
    parser.add_argument("--peer", type=Path, default=None, help="the MLPerf Tiny kws_ref_model.tflite (not committed)")
    parser.add_argument("--peer-python", default=None, help="a Python with tensorflow-cpu, soundfile and ai-edge-litert for the peer")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    command = " ".join(["python scripts/bench_live.py", *(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))])

    bundle_path = args.bundle or default_bundle()
    bundle = read_bundle(bundle_path)
    is_tones = "_silence_" in bundle.labels and set(bundle.labels) == {"low", "high", "_silence_"}
    tmp = Path(tempfile.mkdtemp(prefix="tinyear-bench-live-"))
    print(f"bench_live: bundle {bundle_path}", file=sys.stderr)

    # 1. features, inference, detector CPU, memory
    m = measure(bundle, seconds=60.0, inferences=1000)

    # 2. streaming evaluation
    if is_tones:
        stream, truth_path = tone_stream_files(tmp / "tones", minutes=args.stream_minutes)
        stream_desc = f"tone words over -60..-50 dBFS noise, {args.stream_minutes:g} min (make_stream.py, seed 0)"
    else:
        stream, truth_path = tmp / "real.wav", tmp / "real.csv"
        import make_stream

        make_stream.main([str(REAL_SPEECH), str(stream), "--minutes", str(args.stream_minutes), "--seed", "0"])
        stream_desc = (f"real speech (Speech Commands v2 test, public part), {args.stream_minutes:g} min: a word every 2.5-5 s, "
                       "20% other words, -26..-12 dBFS over the set's background noise at -50..-30 dBFS (make_stream.py, seed 0)")
    truth = read_truth(truth_path)
    config = DetectionConfig.from_bundle(bundle)
    keywords = keyword_labels(bundle.labels, config.ignore)
    t0 = time.process_time()
    events, duration = stream_file(Detector(bundle, config), stream)
    stream_cpu = time.process_time() - t0
    ours = score_events(events, truth, keywords=keywords, duration_s=duration)
    peer = None
    if not is_tones and args.peer and args.peer_python:
        peer_kw = [k for k in keywords if k in ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")]
        peer = score_events(peer_events(args.peer_python, args.peer, stream), truth, keywords=peer_kw, duration_s=duration)

    # 3. live through PulseAudio
    from virtual_mic import VirtualMic, missing_tools

    live, bare = None, None
    if not missing_tools():
        clip = tmp / "live.wav"
        live_truth = excerpt(stream, truth, args.listen_seconds, clip)
        with VirtualMic(tmp / "vmic") as mic:
            live = live_run(mic, bundle_path, clip, args.listen_seconds)
            bare = bare_portaudio_cpu(mic, args.listen_seconds, clip)
        as_played = [Detection(d["wall_time"] - live["played_at"], d["label"], d["score"]) for d in live["detections"]]
        live["score"] = score_events(as_played, live_truth, keywords=keywords, duration_s=args.listen_seconds)
        # The same excerpt from the file, through the same detector: the live path should agree with it.
        from_file, _ = stream_file(Detector(bundle, config), clip)
        live["file_score"] = score_events(from_file, live_truth, keywords=keywords, duration_s=args.listen_seconds)
        live["agreement"] = agreement(as_played, from_file)

    # The section
    cpu_name = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    f, inf, det = m["features"], m["inference_ms"], m["detector"]
    lines = [
        "## Live detection",
        "",
        f"Command: `{command}` ({time.strftime('%Y-%m-%d')}, {cpu_name}, 2 cores shared with other engineers' jobs, so "
        f"absolute times are noisy; ratios are measured side by side). Bundle `{bundle_path.name}` "
        f"({', '.join(bundle.labels)}), {m['model_bytes']:,}-byte model, {m['runtime']}, one thread; detection "
        f"threshold {config.threshold:g}, smoothing {config.smoothing_ms:g} ms, refractory {config.refractory_ms:g} ms, "
        f"hop {config.hop_ms:g} ms.",
        "",
        "| what | measured | target |",
        "|---|---|---|",
        *([f"| features per {config.hop_ms:g} ms hop: {f['kind']} (the last second embedded) | {f['ms_per_hop']:.3f} ms "
           f"({f['core_percent']:.2f}% of a core) | |"] if "ms_per_hop" in f else [
          f"| features per {config.hop_ms:g} ms hop: incremental (what listen does) | {f['incremental_ms_per_hop']:.3f} ms "
          f"({f['incremental_core_percent']:.2f}% of a core) | |",
          f"| features per hop: recompute the 1 s window | {f['recompute_ms_per_hop']:.3f} ms ({f['recompute_core_percent']:.2f}% of a core) | |",
          f"| incremental is cheaper by | **{f['recompute_over_incremental']:.1f}x** | >= 5x |"]),
        f"| model inference p50 / p95 / p99 | {inf['p50']:.3f} / {inf['p95']:.3f} / {inf['p99']:.3f} ms | |",
        f"| detection path (features + model + smoothing), file-fed | {det['core_percent']:.2f}% of one core "
        f"({det['realtime_factor']:.0f}x real time) | |",
    ]
    if live:
        lines += [
            f"| whole listener through PulseAudio (48 kHz stereo -> soxr -> detector), {live['seconds']:.0f} s | "
            f"**{live['cpu_percent']:.2f}% of one core** | <= 5% |",
            f"| of which PortAudio + ALSA pulse plugin alone (empty callback, same settings) | {bare:.2f}% of one core | |",
        ]
    lines += [
        f"| peak RSS (bench process) | {m['peak_rss_mb']:.0f} MB | |",
        "",
        f"Detection latency, from the end of a word to its event ({stream_desc}):",
        "",
        "| run | keywords | hits | misses | false accepts (per hour) | latency p50 / p90 (ms) | target p50 |",
        "|---|---|---|---|---|---|---|",
        f"| streaming evaluation (`classify --stream`), tinyear | {ours['keywords']} | {ours['hits']} | {ours['misses']} | "
        f"{ours['false_accepts']} ({ours['false_accepts_per_hour']:.1f}) | {fmt_latency(ours)} | <= 300 ms |",
    ]
    if peer:
        lines.append(f"| same stream, MLPerf Tiny KWS reference (peer_stream.py, 100 ms hop, mean of 3, threshold 0.8) | "
                     f"{peer['keywords']} | {peer['hits']} | {peer['misses']} | {peer['false_accepts']} "
                     f"({peer['false_accepts_per_hour']:.1f}) | {fmt_latency(peer)} | |")
    if live:
        s = live["score"]
        lines.append(f"| PulseAudio, the stream's first {args.listen_seconds:g} s played by paplay, wall clock | {s['keywords']} | "
                     f"{s['hits']} | {s['misses']} | {s['false_accepts']} | {fmt_latency(s)} | <= 300 ms |")
        s = live["file_score"]
        lines.append(f"| the same first {args.listen_seconds:g} s from the file (`classify --stream`) | {s['keywords']} | "
                     f"{s['hits']} | {s['misses']} | {s['false_accepts']} | {fmt_latency(s)} | |")
    if live:
        a = live["agreement"]
        lines += ["", f"Live against file on the same {args.listen_seconds:g} s: {a['paired']} of {a['live']} live events "
                  f"and {a['file']} file events pair up (same label, within {a['within_s'] * 1000:.0f} ms; the live "
                  "times are wall clock, paplay's start-up included)."]
    if is_tones:
        lines += ["", "This run used the stream-trained tone model of the tests: models/keywords.tinyear did not exist yet. "
                  "With it, `python scripts/bench_live.py --peer kws_ref_model.tflite --peer-python VENV/bin/python` "
                  "measures the same on a stream of real speech (Speech Commands v2 test, public part) with the MLPerf "
                  "Tiny reference model beside it (see ../shared/tools/README.md)."]
    lines += ["", f"Streaming evaluation: {duration:.0f} s of audio in {stream_cpu:.1f} s of CPU "
                  f"({duration / max(stream_cpu, 1e-9):.0f}x faster than real time). Latency can be negative: the "
                  "model may be sure before the word is over. Soak (30 minutes, memory and latency over time): "
                  "[soak.md](soak.md).", ""]
    section = "\n".join(lines)
    print(section)
    text = args.out.read_text() if args.out.exists() else "# Benchmarks\n\n"
    pattern = re.compile(r"^## Live detection\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
    atomic_write_text(args.out, text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
