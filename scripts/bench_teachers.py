"""Teacher benchmark: the same student distilled from each teacher (none, the built-in CNN, KWT-1, DS-CNN-L,
their ensemble, the speech_embedding backbone), per recipe and seed, scored on real speech (Speech
Commands v2 test, public part: EVALUATION ONLY; checkpoints and settings are chosen on the validation
split by the training code), with each teacher's own accuracy and single-thread latency beside the
student's.

Each invocation appends one JSON line per trained student to --results (finished runs are reused), and
measures each teacher once (cached in --results too); `--table` renders the Markdown of
docs/BENCHMARKS.md.

    python scripts/bench_teachers.py --recipe real --teachers none kwt1 dscnn-l ensemble --seeds 0
    python scripts/bench_teachers.py --table

Runs trained by hand (`tinyear distill ... --out RUN`) are scored the same way with `--score RUN ...
--recipe NAME`: the teacher is read from each run's run.json, and all of speech-commands-mini-train (real
clips of 8 of the 10 words and 260 other words, used by no synthetic-recipe training) is scored beside
the public part; the student's int8 latency is measured once per architecture.

Teachers: `none` (the baseline), `cnn` (a run folder of `tinyear teacher`, --cnn-run), `kwt1`
(../shared/teachers/kwt1/model.tflite), `dscnn-l` (../shared/teachers/dscnn-l/model.pb, needs the
tensorflow extra), `ensemble` (both, `_silence_` from the labels), `backbone` (a speech_embedding
teacher run folder, --backbone-run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
SHARED = ROOT.parent / "shared"
TEACHERS = SHARED / "teachers"
OTHER_SPEECH = SHARED / "data" / "other-speech"

from bench_distill import REAL_TEST, ms, recipe_roots, score  # noqa: E402


TRAINED = ("cnn", "backbone")  # teachers trained on a recipe's own data: measured per recipe


def teacher_key(line: dict) -> tuple:
    """(recipe, name) of a teacher row for the trained teachers (rows written before they said their
    recipe: read from their command), (None, name) for the pretrained ones."""
    if line["teacher"] not in TRAINED:
        return None, line["teacher"]
    recipe = line.get("recipe") or next((r for r in ("synth", "real") if f"--recipe {r}" in line.get("command", "")), None)
    return recipe, line["teacher"]


def teacher_specs(name: str, args) -> tuple[list[str] | None, list[str]]:
    """(specs, --teacher-class pairs) of a teacher name."""
    kwt, dscnn = str(TEACHERS / "kwt1" / "model.tflite"), str(TEACHERS / "dscnn-l" / "model.pb")
    return {
        "none": (None, []),
        "cnn": ([args.cnn_run], []),
        "kwt1": ([kwt], ["_silence_=labels"] if args.silence_from_labels else []),
        "dscnn-l": ([dscnn], ["_silence_=labels"] if args.silence_from_labels else []),
        "ensemble": ([kwt, dscnn], ["_silence_=labels"]),
        "backbone": ([args.backbone_run], []),
    }[name]


def real_waves(words):
    from tinyear.device.features import DEFAULT_CONFIG
    from tinyear.host.data import load_dataset

    ds = load_dataset(REAL_TEST, words, only_split="test", unknown_ratio=None, silence_ratio=None, quiet=True)
    x, y = ds.arrays("test", DEFAULT_CONFIG, progress=False)
    return x, y, list(ds.labels)


def teacher_on_real(name: str, specs, classes, labels, waves, y) -> dict:
    """The teacher's own accuracy on real speech (in the student's labels) and its median per-clip time."""
    import torch

    from tinyear.host.ensemble import load_teachers
    from tinyear.host.train import accuracy_metrics

    torch.set_num_threads(1)
    teacher, label_map = load_teachers(specs, labels, None, classes)
    outs, times = [], []
    for s in range(0, len(waves), 32):
        t0 = time.perf_counter()
        outs.append(label_map.log_probs(teacher(waves[s : s + 32])).numpy())
        times.append((time.perf_counter() - t0) / len(waves[s : s + 32]))
    logp = np.concatenate(outs)
    logp = np.where(np.isfinite(logp), logp, -1e9)
    m = accuracy_metrics(logp, y, labels)
    return {"teacher": name, "real_accuracy": m["accuracy"], "real_per_class": m["per_class"],
            "ms_per_clip": 1000 * float(np.median(times)), "kind": teacher.kind}


def student_latency(run_dir: Path) -> float:
    """Median single-thread invoke time of the run's model as int8 TFLite (ms): exported once, in memory."""
    from tinyear.device.runtime import Model
    from tinyear.host.export import ExportOptions, export_run

    bundle = run_dir / "bench.tinyear"
    if not bundle.exists():
        export_run(run_dir, bundle, ExportOptions(calibration=200, progress=False))
    from tinyear.device.bundle import read_bundle

    b = read_bundle(bundle)
    model = Model(b.model_bytes, num_threads=1)
    x = np.zeros((1, *model.feature_shape), np.float32)
    for _ in range(20):
        model.predict(x)
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        model.predict(x)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


MINI_TRAIN = SHARED / "data" / "speech-commands-mini-train"


def teacher_name(info: dict) -> str:
    """The teacher of a finished run, as this script names it, from its run.json."""
    spec = (info.get("options") or {}).get("teacher")
    specs = [] if spec is None else [spec] if isinstance(spec, str) else list(spec)
    names = " ".join(map(str, specs))
    if not specs:
        return "none"
    if "kwt1" in names and "dscnn-l" in names:
        return "ensemble"
    trained = [x for x in specs if "kwt1" not in str(x) and "dscnn-l" not in str(x)]
    own = ("backbone" if all((Path(x.split(",")[0]) / "head.pt").exists() for x in trained) else "cnn") if trained else None
    if "kwt1" in names or "dscnn-l" in names:
        pretrained = "kwt1" if "kwt1" in names else "dscnn-l"
        return f"{own}+{pretrained}" if own else pretrained  # e.g. backbone+dscnn-l: the head beside DS-CNN-L
    return own


def score_runs(runs: list[str], recipe: str, results: Path, command: str) -> None:
    """Score finished run folders (public part, and all of mini-train unless the run trained on it) and
    append one student line each."""
    import torch

    from tinyear.host.evaluate import evaluate, load_scorer

    latency: dict = {}
    done = set()
    if results.exists():
        done = {json.loads(x).get("run") for x in results.read_text().splitlines() if x.strip()}
    for run in runs:
        run_dir = Path(run)
        if str(run_dir) in done:
            continue
        info = json.loads((run_dir / "run.json").read_text())
        real = score(run_dir)
        scorer = load_scorer(run_dir)
        roots = {Path(r).resolve() for r in info["options"]["data"]["roots"]}
        trained_on_mini = MINI_TRAIN.resolve() in roots  # then it is not held out: leave the column blank
        mini = None if trained_on_mini else evaluate(run_dir, [str(MINI_TRAIN)], split="all", progress=False, scorer=scorer)
        student = info["name"]
        if student not in latency:
            torch.set_num_threads(1)
            latency[student] = student_latency(run_dir)
        train = info["options"]["train"]
        line = {"row": "student", "recipe": recipe, "teacher": teacher_name(info), "student": student,
                "seed": train["seed"], "tag": "", "params": info["params"], "run": str(run_dir),
                "validation_accuracy": info["metrics"]["validation"]["accuracy"],
                "real_accuracy": real["accuracy"], "real_per_class": real["per_class"],
                "mini_train_accuracy": None if mini is None else mini["accuracy"] / 100, "int8_ms": latency[student],
                "wall_seconds": info["wall_seconds"], "alpha": train["alpha"],
                "synthetic_alpha": train.get("synthetic_alpha"), "command": command, "run_command": info.get("command")}
        with open(results, "a") as f:
            f.write(json.dumps(line) + "\n")
        print(f"{recipe} {student} <- {line['teacher']} seed {line['seed']}: val {line['validation_accuracy']:.3f} "
              f"mini-train {'(trained on)' if mini is None else format(line['mini_train_accuracy'], '.3f')} "
              f"real {line['real_accuracy']:.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=["synth", "real"])
    parser.add_argument("--teachers", nargs="+", default=["none", "kwt1", "dscnn-l", "ensemble"])
    parser.add_argument("--students", nargs="+", default=["dscnn-m"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--synthetic-alpha", type=float, default=None)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--other-speech", action="store_true", help="add ../shared/data/other-speech (real "
                        "non-keyword speech) to the training data")
    parser.add_argument("--silence-from-labels", action="store_true", help="single pretrained teachers too")
    parser.add_argument("--cnn-run", default=str(ROOT / "runs" / "bench" / "real" / "teacher"))
    parser.add_argument("--backbone-run", default=str(ROOT / "runs" / "backbone-teacher"))
    parser.add_argument("--tag", default="")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-teachers"))
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--results", default=str(ROOT / "runs" / "bench-teachers" / "results.jsonl"))
    parser.add_argument("--teachers-only", action="store_true", help="measure the teachers themselves, train nothing")
    parser.add_argument("--score", nargs="+", metavar="RUN", help="score finished run folders instead of training")
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    results = Path(args.results)
    if args.table:
        print(render_table(results))
        return
    if args.score:
        results.parent.mkdir(parents=True, exist_ok=True)
        score_runs(args.score, args.recipe or "given", results,
                   " ".join(["python scripts/bench_teachers.py", *sys.argv[1:]]))
        return
    if not args.recipe:
        parser.error("--recipe is required (or --table)")
    os.environ.setdefault("TINYEAR_CACHE", str(ROOT / "runs" / "cache"))

    from tinyear.host.distill import DataOptions, distill
    from tinyear.host.train import TrainConfig

    roots = [] if args.teachers_only else recipe_roots(args.recipe, Path(args.data_dir))
    if args.other_speech:
        roots.append(str(OTHER_SPEECH))
    data = DataOptions(roots=tuple(roots))
    results.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python scripts/bench_teachers.py", *sys.argv[1:]])
    done_teachers = set()
    if results.exists():
        done_teachers = {teacher_key(json.loads(x)) for x in results.read_text().splitlines()
                         if x.strip() and json.loads(x).get("row") == "teacher"}
    waves = None
    for name in args.teachers:
        specs, classes = teacher_specs(name, args)
        if specs is None or teacher_key({"teacher": name, "recipe": args.recipe}) in done_teachers:
            continue
        if waves is None:
            from tinyear.host.data import WORDS

            waves, y, labels = real_waves(WORDS)
        line = {"row": "teacher", **teacher_on_real(name, specs, classes, labels, waves, y), "command": command,
                **({"recipe": args.recipe} if name in TRAINED else {})}
        with open(results, "a") as f:
            f.write(json.dumps(line) + "\n")
        print(f"teacher {name}: real {line['real_accuracy']:.3f}, {line['ms_per_clip']:.2f} ms/clip", flush=True)
    for student in ([] if args.teachers_only else args.students):
        for seed in args.seeds:
            for name in args.teachers:
                specs, classes = teacher_specs(name, args)
                cfg = TrainConfig(epochs=args.epochs, seed=seed,
                                  alpha=0.0 if specs is None else args.alpha, temperature=args.temperature,
                                  teacher_mode="none" if specs is None else "cached",
                                  synthetic_alpha=None if specs is None else args.synthetic_alpha)
                run_dir = Path(args.out) / args.recipe / f"{student}-{name}{args.tag}-s{seed}"
                t0 = time.time()
                info = distill(roots, run_dir, student=student, teacher=specs, data=data, config=cfg,
                               teacher_classes=classes, resume=(run_dir / "last.pt").exists(), progress=False)
                real = score(run_dir)
                line = {"row": "student", "recipe": args.recipe, "teacher": name, "student": student, "seed": seed,
                        "tag": args.tag, "params": info["params"], "run": str(run_dir),
                        "validation_accuracy": info["metrics"]["validation"]["accuracy"],
                        "real_accuracy": real["accuracy"], "real_per_class": real["per_class"],
                        "int8_ms": student_latency(run_dir), "wall_seconds": info["wall_seconds"],
                        "alpha": cfg.alpha, "synthetic_alpha": cfg.synthetic_alpha, "other_speech": args.other_speech,
                        "command": command}
                with open(results, "a") as f:
                    f.write(json.dumps(line) + "\n")
                print(f"{args.recipe} {student} <- {name} seed {seed}: val {line['validation_accuracy']:.3f} "
                      f"real {line['real_accuracy']:.3f} ({time.time() - t0:.0f} s)", flush=True)


def mini(rs: list[dict]) -> str:
    """Mean ± std of the mini-train column, blank where the runs were not scored on it."""
    vals = [r["mini_train_accuracy"] for r in rs if r.get("mini_train_accuracy") is not None]
    return ms(vals) if len(vals) == len(rs) else ""


def render_table(path: Path) -> str:
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    teachers = {teacher_key(r): r for r in rows if r.get("row") == "teacher"}
    groups: dict = {}
    for r in rows:
        if r.get("row") == "student":
            groups.setdefault((r["recipe"], r["student"], r["teacher"], r.get("tag", "")), {})[r["seed"]] = r

    out = ["| recipe | student | teacher | seeds | val acc | mini-train (real) | real speech | on / off / _unknown_ (real) | "
           "teacher real | teacher ms | student int8 ms | speed ratio |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (recipe, student, teacher, tag), by_seed in sorted(groups.items()):
        rs = list(by_seed.values())
        def pc(label, rs=rs):
            return np.mean([r["real_per_class"][label] for r in rs])
        t = teachers.get(teacher_key({"teacher": teacher, "recipe": recipe}))
        s_ms = np.mean([r["int8_ms"] for r in rs])
        t_acc = "" if not t else f"{100 * t['real_accuracy']:.1f}"
        t_ms = "" if not t else f"{t['ms_per_clip']:.2f}"
        ratio = "" if not t else f"{t['ms_per_clip'] / s_ms:.0f}x"
        out.append(f"| {recipe} | {student} | {teacher}{tag} | {len(rs)} | {ms([r['validation_accuracy'] for r in rs])} | "
                   f"{mini(rs)} | {ms([r['real_accuracy'] for r in rs])} | {100 * pc('on'):.0f} / {100 * pc('off'):.0f} / "
                   f"{100 * pc('_unknown_'):.0f} | {t_acc} | {t_ms} | {s_ms:.3f} | {ratio} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
