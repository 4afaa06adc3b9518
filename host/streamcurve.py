"""Detection curves: a bundle on a long stream built from a dataset, recall against false accepts per
hour as its operating point is swept, beside a peer model's on the same stream.

`evaluate_stream` builds the stream from a split of the data (`tinyear.host.streams`; `all` for a
folder that is itself an evaluation set, such as the public part of the Speech Commands test set),
runs the bundle over it once with the live detector (`tinyear.device.sweep.record_scores`), scores the
bundle's own operating point (its thresholds and smoothing, with the real decision gate), and sweeps
one threshold shared by every keyword over the recorded scores. With a peer (the MLPerf Tiny reference
model, see ../shared/tools/README.md, and a Python with tensorflow for its frontend), `peer_scores.py`
runs it over the same stream file in its own plain detector at each threshold, scored by the same code.
With `out_dir`: stream.wav and its truth CSV, curve.csv (both models), curve.png (`tinyear.host.plots`)
and stream.json. Imports numpy and the device half; never torch.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tinyear.device.errors import TinyearError
from tinyear.device.fileio import atomic_write_text

from . import streams

PEER_KEYWORDS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")
PEER_THRESHOLDS = (0.3, 0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)
DEFAULT_MINUTES = 15.0


def peer_curve(peer_python: str, peer_model, wav: Path, truth, keywords, duration_s: float,
               tools_dir=None, thresholds=PEER_THRESHOLDS) -> list[dict]:
    """The peer's recall / false accepts per hour at each threshold on `wav` (its own detector)."""
    from tinyear.device.detector import Detection
    from tinyear.device.streameval import score_events

    tools = Path(tools_dir) if tools_dir else Path(__file__).resolve().parents[1].parent / "shared" / "tools"
    if not (tools / "peer_mlperf_kws.py").exists():
        raise TinyearError(f"{tools}: no peer_mlperf_kws.py there; give --peer-tools DIR (the shared tools folder)")
    if not Path(peer_model).is_file():
        raise TinyearError(f"{peer_model}: no such peer model (kws_ref_model.tflite from mlcommons/tiny)")
    cmd = [peer_python, str(Path(__file__).with_name("peer_scores.py")), str(tools), str(peer_model), str(wav),
           "--thresholds", ",".join(f"{t:g}" for t in thresholds)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""})
    except (OSError, subprocess.CalledProcessError) as exc:
        tail = getattr(exc, "stderr", "") or str(exc)
        raise TinyearError(f"the peer run failed ({tail.strip().splitlines()[-1] if tail.strip() else exc}); "
                           "--peer-python must have tensorflow, soundfile and ai-edge-litert") from None
    events = json.loads(out.stdout)["events"]
    peer_kw = [k for k in keywords if k in PEER_KEYWORDS]
    rows = []
    for th, evs in events.items():
        scored = score_events([Detection(t, lab, s) for t, lab, s in evs], truth, keywords=peer_kw, duration_s=duration_s)
        rows.append({"threshold": float(th), "recall": scored["recall"], "hits": scored["hits"],
                     "keywords": scored["keywords"], "false_accepts": scored["false_accepts"],
                     "false_accepts_per_hour": scored["false_accepts_per_hour"]})
    return rows


def evaluate_stream(model_path, data, *, split: str = "test", minutes: float = DEFAULT_MINUTES, seed: int = 0,
                    out_dir=None, peer_model=None, peer_python=None, peer_tools=None, num_threads: int = 1,
                    progress: bool = True) -> dict:
    """The bundle's operating point and detection curve on a stream of `data`'s `split`."""
    from tinyear.device.bundle import read_bundle
    from tinyear.device.detection import DetectionConfig
    from tinyear.device.detector import Detector
    from tinyear.device.sweep import curve, record_scores, replay_scored, write_curve_csv

    from .progress import SecondsBar

    if not str(model_path).endswith(".tinyear") or not Path(model_path).is_file():
        raise TinyearError(f"{model_path}: --stream runs the detector a device runs: give a .tinyear bundle "
                           "(tinyear export makes one from a run folder)")
    if peer_model and not peer_python:
        raise TinyearError("--peer needs --peer-python: a Python with tensorflow, soundfile and ai-edge-litert")
    bundle = read_bundle(model_path)
    out = Path(out_dir) if out_dir else None
    if out is not None:
        try:  # before the long run, not after it
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TinyearError(f"--out {out}: cannot make that folder ({exc.strerror}); choose another --out") from None
    config = DetectionConfig.from_bundle(bundle)
    keywords = [lab for lab in bundle.labels if lab not in config.ignore]
    stream = streams.build_stream(data, keywords, minutes=minutes, split=split, seed=seed, progress=progress)
    detector = Detector(bundle, config, num_threads=num_threads)
    rate = bundle.sample_rate
    with SecondsBar(stream.duration_s, rate, "scoring the stream", enabled=progress) as shown:
        trace = record_scores(detector, stream.waveform, progress=shown.update)
    point = replay_scored(trace, config, stream.truth, keywords)
    rows = curve(trace, stream.truth, keywords, smoothing_ms=config.smoothing_ms, refractory_ms=config.refractory_ms,
                 rules=config)
    name = Path(model_path).name
    result = {"model": str(model_path), "data": [str(d) for d in (data if isinstance(data, (list, tuple)) else [data])],
              "split": split, "stream": stream.summary(), "detection": config.to_dict(),
              "operating_point": {k: point[k] for k in ("keywords", "hits", "recall", "false_accepts",
                                                         "false_accepts_per_hour", "latency_ms", "per_label")},
              "curve": [{**r, "model": name} for r in rows]}
    wav = None
    if out is not None:
        wav, _ = stream.write(out / "stream.wav", out / "stream.csv")
    if peer_model:
        if wav is None:
            import tempfile

            wav, _ = stream.write(Path(tempfile.mkdtemp(prefix="tinyear-stream-")) / "stream.wav")
        result["peer"] = [{**r, "model": "MLPerf Tiny KWS (peer)"} for r in
                          peer_curve(peer_python, peer_model, wav, stream.truth, keywords, stream.duration_s, peer_tools)]
    if out is not None:
        from .plots import plot_detection_curves

        write_curve_csv(out / "curve.csv", result["curve"] + result.get("peer", []))
        curves = {name: result["curve"]}
        if "peer" in result:
            curves["MLPerf Tiny KWS (peer)"] = result["peer"]
        result["curve_png"] = str(plot_detection_curves(
            curves, out / "curve.png", title=f"{name} on a {stream.duration_s / 60:.0f}-minute stream of "
            f"{', '.join(Path(d).name for d in result['data'])} [{split}], seed {seed}"))
        result["curve_csv"] = str(out / "curve.csv")
        atomic_write_text(out / "stream.json", json.dumps(result, indent=1) + "\n")
    return result


def format_stream_result(result: dict) -> list[str]:
    p, s = result["operating_point"], result["stream"]
    recall = "n/a" if p["recall"] is None else f"{p['recall']:.3f}"
    lines = [f"{result['model']} on a {s['minutes']:g}-minute stream of {', '.join(result['data'])} [{result['split']}] "
             f"({', '.join(f'{v} {k}' for k, v in s['words'].items())})",
             f"  its operating point: recall {recall} ({p['hits']} of {p['keywords']}), "
             f"{p['false_accepts_per_hour']:.1f} false accepts/hour"]
    for name, rows in (("this model", result["curve"]), ("peer", result.get("peer", []))):
        for budget in (1, 5, 10, 30):
            ok = [r for r in rows if r["false_accepts_per_hour"] is not None and r["false_accepts_per_hour"] <= budget]
            if ok:
                best = max(ok, key=lambda r: (r["recall"] or 0, r["threshold"]))
                lines.append(f"  {name}: recall {best['recall']:.3f} at <= {budget} FA/h (threshold {best['threshold']:g})")
    if result.get("curve_png"):
        lines.append(f"  curve: {result['curve_csv']}, {result['curve_png']}")
    return lines
