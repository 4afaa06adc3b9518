"""What listening with a bundle costs on this machine: the figures `tinyear-device bench` prints.

`measure` times, in one run: the model's per-inference latency (p50/p95/p99), the feature cost per hop
both incrementally (what the listener does) and by recomputing the whole window (what a naive
detector does), the CPU share of one core that the whole detection path needs to keep up with real
time, and the peak resident memory. The audio is synthetic (`bench_audio`: quiet noise, with the
bundle's self-test clip every few seconds when it has one), so the figures do not depend on a
microphone. scripts/bench_live.py uses it too. Device half only; prints nothing.
"""

from __future__ import annotations

import resource
import time

import numpy as np


def bench_audio(bundle, seconds: float, seed: int = 0) -> np.ndarray:
    """Synthetic input: white noise at -50 dBFS RMS, with the self-test clip every 3 s if there is one."""
    sr = bundle.sample_rate
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(int(seconds * sr)) * 10 ** (-50 / 20)).astype(np.float32)
    if bundle.selftest is not None:
        clip = bundle.selftest.audio.astype(np.float32)
        for start in range(sr, len(x) - len(clip), 3 * sr):
            x[start : start + len(clip)] += clip
    return x


def percentiles_ms(samples_s) -> dict:
    a = np.asarray(samples_s) * 1000.0
    return {"p50": round(float(np.percentile(a, 50)), 4), "p95": round(float(np.percentile(a, 95)), 4),
            "p99": round(float(np.percentile(a, 99)), 4), "mean": round(float(a.mean()), 4)}


def measure(bundle, *, seconds: float = 60.0, inferences: int = 500, hop_ms: float | None = None, num_threads: int = 1) -> dict:
    """All the figures `bench` prints, as a dict (also used by scripts/bench_live.py)."""
    from .detection import DetectionConfig
    from .detector import Detector
    from .features import log_mel

    config = DetectionConfig.from_bundle(bundle, hop_ms=hop_ms)
    fe = bundle.frontend
    model = bundle.load_model(num_threads=num_threads)
    audio = bench_audio(bundle, seconds)
    hop = round(config.hop_ms * fe.sample_rate / 1000)

    # Inference latency, on real windows of the bench audio.
    featurize = (bundle.featurizer(num_threads=num_threads) if bundle.backbone is not None
                 else lambda wave: log_mel(wave, fe))
    windows = [featurize(audio[s : s + fe.clip_samples]) for s in range(0, len(audio) - fe.clip_samples, fe.clip_samples)][:50]
    for w in windows[:10]:
        model.predict(w)  # warm-up: first calls allocate
    latency = []
    for i in range(inferences):
        t0 = time.perf_counter()
        model.predict(windows[i % len(windows)])
        latency.append(time.perf_counter() - t0)
    hops_per_s = 1000.0 / config.hop_ms
    if bundle.backbone is not None:
        features = _backbone_features(featurize, audio, fe.clip_samples, hop, hops_per_s)
        features["kind"] = f"{bundle.backbone['name']} backbone"
    else:
        features = _frontend_features(audio, fe, hop, hops_per_s)
        features["kind"] = "log-mel frontend"

    # The whole detection path, fed in 20 ms blocks like the live listener; CPU time of this process.
    detector = Detector(bundle, config, model=model)
    block = round(0.02 * fe.sample_rate)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    detections = 0
    for start in range(0, len(audio), block):
        detections += len(detector.push(audio[start : start + block]))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    audio_s = len(audio) / fe.sample_rate

    return {
        "bundle": str(bundle.path) if bundle.path else None,
        "runtime": model.runtime,
        "num_threads": num_threads,
        "model_bytes": len(bundle.model_bytes),
        "hop_ms": config.hop_ms,
        "inference_ms": percentiles_ms(latency),
        "features": features,
        "detector": {
            "audio_seconds": round(audio_s, 1),
            "cpu_seconds": round(cpu, 3),
            "core_percent": round(100 * cpu / audio_s, 3),
            "realtime_factor": round(audio_s / wall, 1),
            "feature_share": round(detector.feature_seconds / max(detector.feature_seconds + detector.model_seconds, 1e-12), 3),
            "inferences": detector.inferences,
            "detections": detections,
        },
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _frontend_features(audio: np.ndarray, fe, hop: int, hops_per_s: float) -> dict:
    """Log-mel features per hop, incremental and recompute-the-window, interleaved hop by hop so that
    both see the same machine load, timed in this thread's CPU time: what they cost, not how long the
    thread waited for a core on a busy machine."""
    from .features import StreamingFrontend, log_mel

    stream = StreamingFrontend(fe)
    incremental, recompute = [], []
    for _ in range(3):  # several passes over the audio: enough calls for a stable mean
        stream.reset()
        stream.push(audio[: fe.clip_samples])
        for end in range(fe.clip_samples + hop, len(audio), hop):
            t0 = time.thread_time()
            stream.push(audio[end - hop : end])
            t1 = time.thread_time()
            log_mel(audio[end - fe.clip_samples : end], fe)
            t2 = time.thread_time()
            incremental.append(t1 - t0)
            recompute.append(t2 - t1)
    inc, rec = float(np.mean(incremental)), float(np.mean(recompute))
    return {
        "incremental_ms_per_hop": round(inc * 1000, 4),
        "recompute_ms_per_hop": round(rec * 1000, 4),
        "recompute_over_incremental": round(rec / inc, 2),
        "incremental_core_percent": round(100 * inc * hops_per_s, 3),
        "recompute_core_percent": round(100 * rec * hops_per_s, 3),
    }


def _backbone_features(featurize, audio: np.ndarray, clip: int, hop: int, hops_per_s: float) -> dict:
    """A backbone bundle's features per hop: the backbone's embeddings of the whole last clip (what its
    listener computes each hop), in this thread's CPU time."""
    per_hop = []
    for end in range(clip + hop, len(audio), hop):
        t0 = time.thread_time()
        featurize(audio[end - clip : end])
        per_hop.append(time.thread_time() - t0)
    ms = float(np.mean(per_hop))
    return {"ms_per_hop": round(ms * 1000, 4), "core_percent": round(100 * ms * hops_per_s, 3)}
