"""Microphone-level benchmark: how much accuracy a model loses when the same clips arrive quieter or
hotter than its training data, as they do from people's microphones (20-30 dB either way).

Each model (a `.tinyear` bundle, run by the device's own runner, or a run folder's float model) scores
the same clips at every gain: the clip is scaled by the gain and clipped to [-1, 1] (a hot microphone
clips), then goes through the shared frontend. Real speech (the public part of the Speech Commands v2
test set) is for evaluation only: nothing here chooses anything. Give `--split validation` and a
training dataset to measure on validation clips instead (what a choice between recipes may use).

    python scripts/bench_levels.py models/keywords.tinyear runs/wide/keywords.tinyear --out docs/levels.json
    python scripts/bench_levels.py --table docs/levels.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REAL_TEST = ROOT.parent / "shared" / "data" / "speech-commands-v2-test-public"
GAINS_DB = (-30.0, -20.0, -10.0, 0.0, 6.0, 10.0)


def score_at_gains(model_path: str, data: str, split: str, gains, progress: bool) -> dict:
    """Accuracy (and per-class recall) of one model on the clips of `data` at each gain, dB."""
    from tinyear.host.evaluate import batch_features, classification_metrics, load_eval_set, load_scorer

    scorer = load_scorer(model_path)
    evalset = load_eval_set(data, scorer.labels, split, config=scorer.frontend, progress=progress)
    out = {"model": str(model_path), "kind": scorer.kind, "data": str(data), "split": split,
           "clips": int(len(evalset.labels)), "levels": {}}
    for gain in gains:
        waves = np.clip(evalset.waves * np.float32(10.0 ** (gain / 20.0)), -1.0, 1.0)
        feats = batch_features(waves, scorer.frontend, progress=progress, desc=f"{gain:+.0f} dB")
        pred = scorer.logits(feats).argmax(axis=1)
        m = classification_metrics(evalset.labels, pred, scorer.labels)
        out["levels"][f"{gain:+.0f}"] = {"accuracy": m["accuracy"],
                                         "recall": {k: v["recall"] for k, v in m["per_class"].items()}}
        print(f"{model_path}  {gain:+5.0f} dB  {m['accuracy']:.1f}%", file=sys.stderr)
    return out


def table(results: list[dict]) -> str:
    gains = list(results[0]["levels"])
    head = "| model | " + " | ".join(f"{g} dB" for g in gains) + " | worst drop |"
    rows = [head, "|" + "---|" * (len(gains) + 2)]
    for r in results:
        acc = [r["levels"][g]["accuracy"] for g in gains]  # percent
        ref = r["levels"]["+0"]["accuracy"]
        rows.append(f"| {r['model']} | " + " | ".join(f"{a:.1f}" for a in acc) + f" | {ref - min(acc):.1f} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help="bundles or run folders")
    ap.add_argument("--data", default=str(REAL_TEST), help="dataset folder (default: the public test part)")
    ap.add_argument("--split", default="all", help="all (default, for a test set), validation, test")
    ap.add_argument("--gains", type=float, nargs="+", default=list(GAINS_DB), metavar="DB")
    ap.add_argument("--out", help="write the results (JSON) here")
    ap.add_argument("--table", metavar="JSON", help="print the Markdown table of a results file and stop")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.table).read_text())["results"]))
        return 0
    if not args.models:
        ap.error("give at least one model")
    start = time.time()
    results = [score_at_gains(m, args.data, args.split, args.gains, not args.quiet) for m in args.models]
    doc = {"command": " ".join(["python", "scripts/bench_levels.py", *(argv or sys.argv[1:])]),
           "seconds": round(time.time() - start, 1), "results": results}
    if args.out:
        from tinyear.device.fileio import atomic_write_text

        atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
