"""Distillation benchmark: teacher vs distilled student vs the same student trained alone, for the two
recipes (synthetic speech only; real + synthetic), over several seeds, scored on the dataset's own test
split and on real speech (Speech Commands v2 test, public part: EVALUATION ONLY, never used to choose
anything: checkpoints and settings are chosen on the validation split by the training code).

One invocation runs one recipe for the seeds given and appends one JSON line per trained model to
--results; `--table` renders every line of --results as the Markdown table of docs/BENCHMARKS.md.
Runs that already finished are reused (their run.json), so a benchmark split over several invocations
(to keep each under the heavy-job lock's 20 minutes) trains every model once. One teacher per recipe
(seed 0) teaches the students of every seed.

    flock /tmp/tinyear-heavy.lock python scripts/bench_distill.py --recipe synth --seeds 0
    flock /tmp/tinyear-heavy.lock python scripts/bench_distill.py --recipe real --seeds 0 1 2
    python scripts/bench_distill.py --table
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from tinyear.host.defaults import DEFAULT_STUDENT

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
REAL_TRAIN = SHARED / "speech-commands-mini-train"
REAL_TEST = SHARED / "speech-commands-v2-test-public"


def recipe_roots(recipe: str, data_dir: Path) -> list[str]:
    """The training folders of a recipe, synthesized when absent (seed 0, the kit's defaults)."""
    from tinyear.host.fill import fill_missing
    from tinyear.host.synth import synthesize

    if recipe == "synth":
        out = data_dir / "synth"
        synthesize(out)  # reuses a complete dataset made with the same request
        return [str(out)]
    if not REAL_TRAIN.exists():
        sys.exit(f"{REAL_TRAIN} is missing: the real + synthetic recipe needs it")
    fill = data_dir / "fill"
    dataset = fill_missing(REAL_TRAIN, fill)
    return [str(r) for r in dataset.roots]


_REAL_CACHE: dict = {}


def real_speech(words, frontend):
    """Model inputs and labels of the real test set (all of it, in the 'test' split), made by the
    frontend's own clip_features (level normalisation included where the run has it), one set per
    frontend."""
    from tinyear.device.features import clip_features, fingerprint
    from tinyear.host.data import load_dataset

    key = (tuple(words), fingerprint(frontend), frontend.level_norm_db)
    if key not in _REAL_CACHE:
        ds = load_dataset(REAL_TEST, words, only_split="test", unknown_ratio=None, silence_ratio=None, quiet=True)
        x, y = ds.arrays("test", frontend, progress=False)
        feats = np.stack([clip_features(w, frontend) for w in x])
        _REAL_CACHE[key] = (feats, y, list(ds.labels))
    return _REAL_CACHE[key]


def score(run_dir: Path) -> dict:
    """Accuracy of a finished run's best model on real speech, per class too."""
    import torch

    from tinyear.host.runs import load_run
    from tinyear.host.train import accuracy_metrics, predict

    model, meta = load_run(run_dir)
    words = meta["data"]["words"]
    x, y, labels = real_speech(words, meta["frontend_config"])
    assert labels == meta["labels"], (labels, meta["labels"])
    return accuracy_metrics(predict(model, x, torch.device("cpu")), y, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=["synth", "real"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--student", default=DEFAULT_STUDENT)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=6)
    parser.add_argument("--teacher-epochs", type=int, default=12)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--kd", nargs="*", default=["kl", "mse"], choices=["kl", "mse"])
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--online", action="store_true", help="teacher online (sees the augmented batch) instead of "
                        "cached outputs")
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--mixup", type=float, default=0.0, help="fraction of each batch mixed (implies --online)")
    parser.add_argument("--tag", default="", help="suffix of the run folders (a tuning variant)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench"))
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--results", default=str(ROOT / "runs" / "bench" / "results.jsonl"))
    parser.add_argument("--table", action="store_true", help="print the Markdown table of --results and exit")
    args = parser.parse_args()
    if args.table:
        print(render_table(Path(args.results)))
        return
    if not args.recipe:
        parser.error("--recipe is required (or --table)")

    from tinyear.host.distill import DataOptions, distill, train_teacher
    from tinyear.host.trainconfig import TrainConfig

    roots = recipe_roots(args.recipe, Path(args.data_dir))
    base = Path(args.out) / args.recipe
    data = DataOptions(roots=tuple(roots), variants=args.variants)
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python scripts/bench_distill.py", *sys.argv[1:]])

    def record(name: str, run_dir: Path, info: dict, seed: int, extra: dict) -> None:
        real = score(run_dir)
        line = {"recipe": args.recipe, "model": name, "seed": seed, "run": str(run_dir), "params": info["params"],
                "macs": info["macs"], "validation_accuracy": info["metrics"]["validation"]["accuracy"],
                "test_accuracy": info["metrics"]["test"]["accuracy"], "real_accuracy": real["accuracy"],
                "real_per_class": real["per_class"], "train_seconds": info["train_seconds"],
                "wall_seconds": info["wall_seconds"], "epochs_run": info["epochs_run"],
                "best_epoch": info["best_epoch"], "tag": args.tag, "command": command, **extra}
        with open(results, "a") as f:
            f.write(json.dumps(line) + "\n")
        print(f"{args.recipe} {name} seed {seed}: val {line['validation_accuracy']:.3f} test {line['test_accuracy']:.3f} "
              f"real {line['real_accuracy']:.3f} ({info['wall_seconds']:.0f} s)", flush=True)

    teacher_dir = base / "teacher"
    t0 = time.time()
    tinfo = train_teacher(roots, teacher_dir, data=data, resume=(teacher_dir / "last.pt").exists(),
                          config=TrainConfig(epochs=args.teacher_epochs, patience=4, seed=0))
    if time.time() - t0 > 5:  # freshly trained (a reused teacher is recorded already)
        record("teacher", teacher_dir, tinfo, 0, {"kd": None})
    for seed in args.seeds:
        config = TrainConfig(epochs=args.epochs, patience=args.patience, seed=seed, mixup=args.mixup)
        jobs = [] if args.no_baseline else [("baseline", None, config)]
        for kd in args.kd:
            jobs.append((f"distilled-{kd}", str(teacher_dir),
                         replace(config, alpha=args.alpha, temperature=args.temperature, kd_loss=kd,
                                 teacher_mode="online" if args.online or args.mixup else "cached")))
        for name, teacher, cfg in jobs:
            run_dir = base / f"{args.student}-{name}{args.tag}-s{seed}"
            info = distill(roots, run_dir, student=args.student, teacher=teacher, data=data, config=cfg,
                           resume=(run_dir / "last.pt").exists())
            record(name, run_dir, info, seed, {"kd": cfg.kd_loss if teacher else None, "alpha": cfg.alpha,
                                               "temperature": cfg.temperature, "student": args.student,
                                               "teacher_mode": cfg.teacher_mode, "mixup": cfg.mixup})


def ms(values) -> str:
    """Fractions as percent: "mean ± sd" over seeds, or the one value."""
    values = [100 * v for v in values]
    return f"{np.mean(values):.1f} ± {np.std(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def render_table(path: Path) -> str:
    """Mean +- standard deviation over seeds, per recipe and model."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["recipe"], r["model"], r.get("tag", "")), {})[r["seed"]] = r  # last line per seed wins
    out = ["| recipe | model | params | MACs | seeds | val acc | synthetic/own test acc | real speech acc | train time |",
           "|---|---|---|---|---|---|---|---|---|"]

    for (recipe, model, tag), by_seed in sorted(groups.items()):
        rs = list(by_seed.values())
        out.append(f"| {recipe} | {model}{tag} | {rs[0]['params']:,} | {rs[0]['macs'] / 1e6:.2f} M | {len(rs)} | "
                   f"{ms([r['validation_accuracy'] for r in rs])} | {ms([r['test_accuracy'] for r in rs])} | "
                   f"{ms([r['real_accuracy'] for r in rs])} | {np.mean([r['train_seconds'] for r in rs]):.0f} s |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
