"""Recipes side by side over seeds: what a teacher and the source adversary add on the real + synthetic
recipe, scored on validation (what the kit chooses by), on the real clips of validation alone, and on
real speech (Speech Commands v2 test, public part: EVALUATION ONLY, never used to choose anything).

Each ROW names a recipe and its `tinyear distill` options; the script trains every (row, seed) that
has no finished run folder yet (the same data for all: speech-commands-mini-train + a synthetic fill
with every word mixed in + other-speech), scores each run folder (float) with `tinyear evaluate`'s
code, appends one JSON line per run to --results and prints the Markdown table of docs/BENCHMARKS.md
(mean ± population std over seeds). `--table` only renders --results.

    python scripts/bench_sources.py --seeds 0 1 2 --out runs/sources \\
        "baseline=--no-teacher" "adversary=--no-teacher --source-adversary 1" \\
        "ensemble=--teacher ../shared/teachers/kwt1/model.tflite --teacher ../shared/teachers/dscnn-l/model.pb
                  --teacher-class _silence_=labels --teacher-cache" ...
    python scripts/bench_sources.py --table --results runs/sources/results.jsonl

The fill is `tinyear synth OUT/fillmix --fill-from ../shared/data/speech-commands-mini-train --mix 300`
(made when absent).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
REAL_TRAIN = SHARED / "speech-commands-mini-train"
OTHER = SHARED / "other-speech"
PUBLIC = SHARED / "speech-commands-v2-test-public"
COMMON = ("--student", "dscnn-m", "--epochs", "20")
CLASSES = ("on", "off", "_unknown_", "go", "down")


def tinyear(*args) -> None:
    subprocess.run([sys.executable, "-m", "tinyear.host.cli", *map(str, args)], check=True)


def fill(out: Path) -> Path:
    path = out / "fillmix"
    if not (path / "tinyear-synth.json").exists():
        tinyear("synth", path, "--fill-from", REAL_TRAIN, "--mix", "300", "--quiet")
    return path


def score(run: Path, roots: list[str]) -> dict:
    from tinyear.host.evaluate import evaluate, load_scorer

    scorer = load_scorer(run)
    val = evaluate(run, roots, split="validation", progress=False, scorer=scorer)
    real_val = evaluate(run, [str(REAL_TRAIN), str(OTHER)], split="validation", progress=False, scorer=scorer)
    public = evaluate(run, [str(PUBLIC)], split="all", progress=False, scorer=scorer)
    recall = {c: 100 * public["per_class"][c]["recall"] for c in CLASSES}
    return {"validation": val["accuracy"], "real_validation": real_val["accuracy"], "public": public["accuracy"],
            "public_recall": recall}


def ms(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.1f}" if len(values) == 1 else f"{values.mean():.1f} ± {values.std():.1f}"


def render(results: Path) -> str:
    rows: dict[str, list[dict]] = {}
    for line in results.read_text().splitlines():
        r = json.loads(line)
        rows.setdefault(r["row"], []).append(r)
    head = ("| recipe | seeds | validation | real clips of validation | real speech (public part) | "
            + " | ".join(CLASSES) + " |")
    out = [head, "|" + "---|" * (5 + len(CLASSES))]
    for name, rs in rows.items():
        cells = [name, str(len(rs)), ms([r["validation"] for r in rs]), ms([r["real_validation"] for r in rs]),
                 ms([r["public"] for r in rs])] + [ms([r["public_recall"][c] for r in rs]) for c in CLASSES]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", nargs="*", metavar="NAME=OPTIONS", help="a recipe: its name and distill options")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "sources", help="run folders and the fill")
    parser.add_argument("--results", type=Path, default=None, help="JSON lines (default OUT/results.jsonl)")
    parser.add_argument("--table", action="store_true", help="only print the table of --results")
    args = parser.parse_args()
    results = args.results or args.out / "results.jsonl"
    if args.table:
        print(render(results))
        return
    if not PUBLIC.exists() or not REAL_TRAIN.exists():
        sys.exit(f"needs {REAL_TRAIN} and {PUBLIC}")
    args.out.mkdir(parents=True, exist_ok=True)
    roots = [str(REAL_TRAIN), str(fill(args.out)), str(OTHER)]
    done = {(json.loads(x)["row"], json.loads(x)["seed"]) for x in results.read_text().splitlines()} \
        if results.exists() else set()
    for spec in args.rows:
        name, _, options = spec.partition("=")
        for seed in args.seeds:
            if (name, seed) in done:
                continue
            run = args.out / f"{name}-s{seed}"
            if not (run / "run.json").exists():
                tinyear("distill", *roots, *COMMON, *shlex.split(options), "--seed", seed, "--out", run, "--quiet")
            line = {"row": name, "seed": seed, "options": options, "run": str(run), **score(run, roots)}
            with results.open("a") as f:
                f.write(json.dumps(line) + "\n")
            print(json.dumps(line), flush=True)
    print(render(results))


if __name__ == "__main__":
    main()
