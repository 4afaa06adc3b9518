#!/usr/bin/env python3
"""The peer's detection curve on a stream: the MLPerf Tiny KWS reference model run once over a WAV with
its own frontend (`peer_mlperf_kws.py` in the shared tools folder) and its own plain detector
(`peer_stream.py`: 1 s window every --hop ms, mean of the last --k score vectors, the argmax label fires
if it is a keyword at or above the threshold and 1 s after the last event), replayed offline at every
threshold. Prints one JSON object: {"labels": [...], "events": {"<threshold>": [[time, label, score], ...]}}.

Run by `tinyear evaluate --stream --peer` with the Python given as --peer-python (one with tensorflow,
soundfile and ai-edge-litert); it imports nothing of tinyear, so it runs in the peer's own venv.
usage: peer_scores.py TOOLS_DIR MODEL.tflite STREAM.wav [--hop 100] [--k 3] [--thresholds 0.5,0.8,...]
"""
import argparse
import json
import sys

import numpy as np
import soundfile as sf


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("tools")
    ap.add_argument("model")
    ap.add_argument("wav")
    ap.add_argument("--hop", type=int, default=100)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--thresholds", default="0.5,0.8,0.9,0.97")
    a = ap.parse_args()
    sys.path.insert(0, a.tools)
    from peer_mlperf_kws import LABELS, Interpreter, mfcc

    it = Interpreter(model_path=a.model, num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    (si, zi), (so, zo) = inp["quantization"], out["quantization"]
    x, sr = sf.read(a.wav, dtype="int16")
    x = x.astype(np.float32)
    hop = sr * a.hop // 1000
    times, probs = [], []
    for end in range(sr, len(x) + 1, hop):  # exactly peer_stream.py's windows
        it.set_tensor(inp["index"], np.clip(np.round(mfcc(x[end - sr:end]) / si + zi), -128, 127).astype(np.int8)[None])
        it.invoke()
        probs.append((it.get_tensor(out["index"])[0].astype(np.float32) - zo) * so)
        times.append(end / sr)
    p = np.array(probs, dtype=np.float64)
    c = np.concatenate([np.zeros((1, p.shape[1])), np.cumsum(p, axis=0)])
    i = np.arange(1, len(p) + 1)
    lo = np.maximum(0, i - a.k)
    m = (c[i] - c[lo]) / (i - lo)[:, None]  # mean of the last k (fewer at the start), as peer_stream.py
    best = m.argmax(axis=1)
    keyword = np.array([lab not in ("_silence_", "_unknown_") for lab in LABELS])
    result = {"labels": LABELS, "events": {}}
    for th in [float(t) for t in a.thresholds.split(",")]:
        events, last = [], -9.0
        for j in np.flatnonzero(keyword[best] & (m[np.arange(len(m)), best] >= th)).tolist():
            if times[j] - last >= 1.0:
                events.append([round(times[j], 3), LABELS[best[j]], round(float(m[j, best[j]]), 4)])
                last = times[j]
        result["events"][f"{th:g}"] = events
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
