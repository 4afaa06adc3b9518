"""Your own words from text alone, measured on people: train on synthetic speech only (espeak-ng and
flite, near-miss negatives in `_unknown_`) for some wake phrases of ../shared/data/other-speech, with
the speech_embedding backbone teacher and without a teacher, export both students to int8 bundles, and
score them on the REAL clips, side by side with openWakeWord's `alexa` model (the pyopen-wakeword
wheel's alexa.tflite, with its own melspectrogram and embedding models) on the same clips:

- recall: the clips of each trained phrase whose keyword score is >= the keyword's threshold;
- false accepts: the clips of the other phrases (and of Speech Commands' test words, ../shared/data/
  speech-commands-v2-test-public, all 12 folders) on which ANY keyword's score is >= its threshold.

A tinyear clip score is the bundle's probability for the keyword on the 1 s clip (one window, as
`tinyear-device classify`); an openWakeWord clip score is the largest `alexa` score over the clip
between 1.5 s of silence before and 0.5 s after (its model sees 1.28 s of context). Two thresholds:
the bundle's own (per keyword, calibrated by `tinyear calibrate` on validation streams of the synthetic
data; openWakeWord's documented 0.5), and one chosen on the SYNTHETIC validation split: the threshold
with the highest mean keyword recall whose false accepts on the validation `_unknown_`/`_silence_` clips
(near misses included) stay <= --val-fa (ties to the higher threshold). The real clips are only
measured: nothing is trained, calibrated, tuned or chosen on them. A third row per model, the
"oracle", picks the threshold on the real clips themselves (best mean recall at <= 2% false accepts on
the other phrases): labelled not a result, it only says whether the target is within reach of these
scores. The bundle to ship is the student with the higher validation accuracy (the pipeline's rule).
--teacher-row adds the float backbone teacher (what the students learn from) on the phrases.

    nice -n 15 python scripts/bench_words.py --out runs/bench-words                      # train + score
    nice -n 15 python scripts/bench_words.py --out runs/bench-words --student dscnn-m --teachers backbone \
        --alpha 0.9                                          # another student, same data and teacher
    nice -n 15 python scripts/bench_words.py --out runs/bench-words \
        --bundle models/computer-jarvis-snowboy.tinyear --teacher-row runs/bench-words/teacher-backbone --json

(--bundle needs the bundle's synthetic training data where it says, or --data DIR, for the validation
threshold.) The exact runs behind docs/BENCHMARKS.md are listed there.

Writes OUT/bench.json and OUT/bench.md; prints the Markdown table (or, with --json, the JSON object).
A rerun reuses what is finished (synthesis, runs, bundles).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
OTHER = SHARED / "other-speech"
SPEECH_COMMANDS = SHARED / "speech-commands-v2-test-public"
PHRASES = ("alexa", "computer", "jarvis", "smart_mirror", "snowboy", "view_glass")
OWW_WORD = "alexa"
OWW_THRESHOLD = 0.5  # openWakeWord's documented default
GRID = tuple(round(t, 3) for t in np.arange(0.05, 0.995, 0.01)) + (0.995, 0.999)
TARGET_RECALL, TARGET_FA = 0.97, 0.02


# -- clips ----------------------------------------------------------------------------------------------


def real_clips(other=OTHER, speech_commands=SPEECH_COMMANDS) -> dict[str, list[np.ndarray]]:
    """Every clip of the six phrases, and of Speech Commands' test part (as one set, "speech_commands")
    when it is there: {set name: [float32 waveform at 16 kHz]}."""
    from tinyear.device import load_audio

    sets = {p: [load_audio(f, 16000) for f in sorted((Path(other) / p).glob("*.flac"))] for p in PHRASES
            if (Path(other) / p).is_dir()}
    if speech_commands is not None and Path(speech_commands).is_dir():
        sets["speech_commands"] = [load_audio(f, 16000) for f in sorted(Path(speech_commands).glob("*/*.flac"))]
    return sets


# -- scoring --------------------------------------------------------------------------------------------


@dataclass
class Scored:
    """One model's keyword scores on every clip set: scores[set] is (clips, keywords) float32."""

    name: str
    keywords: list[str]
    scores: dict[str, np.ndarray]


def score_bundle(name: str, bundle_path, sets: dict) -> Scored:
    """The bundle's probability of each of its keywords on every clip (one 1 s window)."""
    from tinyear.device import Classifier

    classifier = Classifier(bundle_path)
    labels = list(classifier.labels)
    keywords = [lab for lab in labels if not lab.startswith("_")]
    cols = [labels.index(k) for k in keywords]
    scores = {}
    for set_name, waves in sets.items():
        feats = np.stack([classifier.features(w) for w in waves]) if waves else np.zeros((0, 1, 1), np.float32)
        probs = np.concatenate([classifier.scores_from_features(feats[a : a + 256]) for a in range(0, len(feats), 256)]) \
            if len(feats) else np.zeros((0, len(labels)), np.float32)
        scores[set_name] = probs[:, cols].astype(np.float32)
    return Scored(name, keywords, scores)


class OpenWakeWordModel:
    """openWakeWord's pipeline with the wheel's model files on LiteRT: audio -> 32 mel bins a 10 ms frame
    (`x / 10 + 2`), 76-frame windows every 8 frames -> 96-value embeddings, 16 consecutive embeddings ->
    the wake word's score. Whole clips at once (as openWakeWord computes its training features)."""

    def __init__(self, word: str = OWW_WORD):
        import pyopen_wakeword

        from tinyear.device.runtime import find_interpreter

        folder = Path(pyopen_wakeword.__file__).resolve().parent / "models"
        interpreter, _ = find_interpreter()
        self.paths = [folder / "melspectrogram.tflite", folder / "embedding_model.tflite", folder / f"{word}.tflite"]
        self.mel, self.emb, self.ww = (interpreter(model_path=str(p), num_threads=1) for p in self.paths)
        self.context = int(self.ww.get_input_details()[0]["shape"][1])  # 16 embeddings
        self._shapes: dict = {}

    def _run(self, interp, x: np.ndarray) -> np.ndarray:
        index = interp.get_input_details()[0]["index"]
        if self._shapes.get(id(interp)) != x.shape:  # resizing costs more than running
            interp.resize_tensor_input(index, list(x.shape))
            interp.allocate_tensors()
            self._shapes[id(interp)] = x.shape
        interp.set_tensor(index, x.astype(np.float32))
        interp.invoke()
        return interp.get_tensor(interp.get_output_details()[0]["index"])

    def clip_score(self, wave: np.ndarray, before: float = 1.5, after: float = 0.5) -> float:
        """The largest wake-word score over the clip (fitted to 1 s: `features.fit_clip`) padded by silence."""
        from tinyear.device.features import DEFAULT_CONFIG, fit_clip

        wave = fit_clip(np.asarray(wave, np.float32), DEFAULT_CONFIG)
        audio = np.concatenate([np.zeros(int(before * 16000), np.float32), wave,
                                np.zeros(int(after * 16000), np.float32)])
        mels = self._run(self.mel, (np.clip(audio, -1, 1) * 32767.0)[None])[0, 0] / 10.0 + 2.0  # (frames, 32)
        starts = range(0, mels.shape[0] - 76 + 1, 8)
        wins = np.stack([mels[a : a + 76] for a in starts])[..., None]  # (W, 76, 32, 1)
        emb = self._run(self.emb, wins).reshape(len(wins), -1)  # (W, 96)
        ctx = np.stack([emb[a : a + self.context] for a in range(0, len(emb) - self.context + 1)])  # (K, 16, 96)
        return float(self._run(self.ww, ctx).max())


def score_oww(sets: dict, word: str = OWW_WORD, cache: Path | None = None) -> Scored:
    """openWakeWord's clip scores on every set (about 0.1 s a clip on one core), kept in `cache` (.npz)
    for reruns over the same clips."""
    sizes = {name: len(waves) for name, waves in sets.items()}
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            if {k: len(z[k]) for k in z.files} == sizes:
                return Scored(f"openWakeWord {word}", [word], {k: z[k].reshape(-1, 1) for k in z.files})
    model = OpenWakeWordModel(word)
    scores = {name: np.array([model.clip_score(w) for w in waves], np.float32).reshape(-1, 1)
              for name, waves in sets.items()}
    if cache is not None:
        np.savez(cache, **{k: v[:, 0] for k, v in scores.items()})
    return Scored(f"openWakeWord {word}", [word], scores)


def teacher_probs(run_dir, waves) -> tuple[list[str], np.ndarray]:
    """A backbone teacher run's (labels, (N, labels) softmax) on waveforms."""
    import torch

    from tinyear.device.features import DEFAULT_CONFIG, fit_clip
    from tinyear.host.backbone import load_backbone_teacher

    teacher = load_backbone_teacher(str(run_dir))
    x = torch.from_numpy(np.stack([fit_clip(np.asarray(w, np.float32), DEFAULT_CONFIG) for w in waves]))
    with torch.no_grad():
        p = torch.cat([teacher.module(x[a : a + 64]).softmax(-1) for a in range(0, len(x), 64)]).numpy()
    return list(teacher.labels), p


def teacher_rows(run_dir, roots, sets: dict, val_fa: float, seed: int = 0) -> list[dict]:
    """The float backbone teacher (not a bundle: speech_embedding is 2.4 MB of float TFLite) on the real
    phrase clips (Speech Commands left out: 10 clips/s on two busy cores), at the threshold chosen on its
    synthetic validation split, and the oracle, for context: what the students are distilled from."""
    from tinyear.host.data import load_dataset

    labels = None
    scores = {}
    for name, waves in sets.items():
        if name == "speech_commands":
            continue
        labels, p = teacher_probs(run_dir, waves)
        keywords = [lab for lab in labels if not lab.startswith("_")]
        scores[name] = p[:, [labels.index(k) for k in keywords]]
    keywords = [lab for lab in labels if not lab.startswith("_")]
    dataset = load_dataset(list(roots), keywords, seed=seed, quiet=True)
    waves, y = dataset.arrays("validation", progress=False)
    vlabels, vp = teacher_probs(run_dir, waves)
    names = list(dataset.labels)
    truth = np.array([keywords.index(names[i]) if names[i] in keywords else -1 for i in y])
    chosen = choose_threshold(vp[:, [vlabels.index(k) for k in keywords]], truth, val_fa)
    scored = Scored("backbone teacher (float)", keywords, scores)
    oracle = oracle_threshold(scored)
    return [{"model": scored.name, "bundle": str(run_dir), "threshold_kind": "chosen on synthetic validation",
             "validation": chosen, "result": rates(scored, {k: chosen["threshold"] for k in keywords})},
            {"model": scored.name, "bundle": str(run_dir), "threshold_kind": "oracle, chosen on these real clips (not a result)",
             "result": rates(scored, {k: oracle for k in keywords})}]


def rates(scored: Scored, thresholds: dict[str, float]) -> dict:
    """Recall on each keyword's own set, false accepts (any keyword fires) on every other set."""
    th = np.array([thresholds[k] for k in scored.keywords], np.float32)
    recall, fa = {}, {}
    for set_name, s in scored.scores.items():
        if set_name in scored.keywords:
            k = scored.keywords.index(set_name)
            hits = int((s[:, k] >= th[k]).sum())
            recall[set_name] = {"clips": len(s), "hits": hits, "rate": round(hits / max(1, len(s)), 4)}
        else:
            fired = int((s >= th).any(axis=1).sum())
            fa[set_name] = {"clips": len(s), "false_accepts": fired, "rate": round(fired / max(1, len(s)), 4)}
    phrases = [n for n in fa if n in PHRASES]
    n, f = sum(fa[p]["clips"] for p in phrases), sum(fa[p]["false_accepts"] for p in phrases)
    other = {"clips": n, "false_accepts": f, "rate": round(f / max(1, n), 4)}
    met = bool(recall) and all(r["rate"] >= TARGET_RECALL for r in recall.values()) and other["rate"] <= TARGET_FA
    return {"thresholds": {k: float(v) for k, v in thresholds.items()}, "recall": recall, "false_accepts": fa,
            "other_phrases": other, "target_met": met}


# -- thresholds from the synthetic validation split -----------------------------------------------------


def validation_scores(bundle_path, data=None, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(keywords, (N, keywords) scores, (N,) keyword index or -1) on the validation split of the data
    the bundle was trained on (synthetic here; `data`: its folder(s), when they moved), checked by the
    dataset fingerprint the bundle records."""
    from tinyear.device import Classifier, read_bundle
    from tinyear.host.data import load_dataset

    bundle = read_bundle(bundle_path)
    recorded = bundle.provenance.get("data") or {}
    roots = list(data or recorded.get("roots") or [])
    if not roots or not all(Path(r).is_dir() for r in roots):
        raise SystemExit(f"bench_words: the training data of {bundle_path} ({', '.join(map(str, roots)) or 'none recorded'}) "
                         "is not here; give it with --data")
    labels = list(bundle.labels)
    keywords = [lab for lab in labels if not lab.startswith("_")]
    dataset = load_dataset(roots, keywords, seed=seed, quiet=True)
    if recorded.get("fingerprint") and dataset.fingerprint() != recorded["fingerprint"]:
        raise SystemExit(f"bench_words: {', '.join(map(str, roots))} is not the data {bundle_path} was trained on")
    waves, y = dataset.arrays("validation", progress=False)
    classifier = Classifier(bundle)
    feats = np.stack([classifier.features(w) for w in waves])
    probs = np.concatenate([classifier.scores_from_features(feats[a : a + 256]) for a in range(0, len(feats), 256)])
    cols = [labels.index(k) for k in keywords]
    names = list(dataset.labels)
    truth = np.array([keywords.index(names[i]) if names[i] in keywords else -1 for i in y])
    return keywords, probs[:, cols], truth


def choose_threshold(scores: np.ndarray, truth: np.ndarray, max_fa: float, grid=GRID) -> dict:
    """The one threshold with the highest mean keyword recall on these (validation) clips whose false
    accepts (a non-keyword clip on which any keyword reaches it) are <= max_fa; ties to the higher one."""
    neg = truth < 0
    best = None
    for t in grid:
        fired = scores >= t
        fa = float(fired[neg].any(axis=1).mean()) if neg.any() else 0.0
        recall = float(np.mean([fired[truth == k, k].mean() for k in range(scores.shape[1]) if (truth == k).any()]))
        if fa <= max_fa and (best is None or recall >= best["recall"]):
            best = {"threshold": float(t), "recall": round(recall, 4), "false_accepts": round(fa, 4)}
    if best is None:  # even the strictest threshold fires too often: report the strictest
        t = grid[-1]
        fired = scores >= t
        best = {"threshold": float(t), "recall": round(float(np.mean([fired[truth == k, k].mean()
                for k in range(scores.shape[1])])), 4), "false_accepts": round(float(fired[neg].any(axis=1).mean()), 4),
                "note": f"no threshold keeps validation false accepts <= {max_fa:.0%}"}
    return best


def oracle_threshold(scored: Scored, max_fa: float = TARGET_FA, grid=GRID) -> float:
    """For context only, NOT a result: the one threshold with the highest mean recall on the real clips
    whose false accepts on the other phrases' real clips are <= max_fa (chosen on the test clips
    themselves: it says whether the target is within reach of these scores at all)."""
    best, best_recall = grid[-1], -1.0
    for t in grid:
        res = rates(scored, {k: t for k in scored.keywords})
        recall = float(np.mean([r["rate"] for r in res["recall"].values()]))
        if res["other_phrases"]["rate"] <= max_fa and recall >= best_recall:
            best, best_recall = float(t), recall
    return best


# -- training -------------------------------------------------------------------------------------------


def train(out: Path, words: list[str], *, per_word: int, near_miss: int, student: str, epochs: int,
          teachers: list[str], fa_per_hour: float, variants: int, jobs: int | None, seed: int,
          alpha: float = 0.5) -> dict:
    """Synthesize, train the backbone teacher and the students, export and calibrate: {student: bundle}."""
    from tinyear.host import runs
    from tinyear.host.backbone import train_backbone_teacher
    from tinyear.host.backbone_spec import HeadConfig
    from tinyear.host.calibrate import BudgetNotMet, calibrate
    from tinyear.host.distill import distill
    from tinyear.host.export import ExportOptions, export_run
    from tinyear.host.keywords import parse_keywords
    from tinyear.host.synth import synthesize
    from tinyear.host.trainconfig import DataOptions, TrainConfig

    keywords = parse_keywords(words, check_speech=True)
    labels = tuple(k.label for k in keywords)
    data_dir = out / "data"
    synthesize(data_dir, keywords, per_word=per_word, near_miss=near_miss, seed=seed, jobs=jobs, progress=True)
    roots = (str(data_dir),)
    data = DataOptions(roots=roots, words=labels, variants=variants, data_seed=seed, jobs=jobs)
    made, info = {}, {"validation": {}}
    for teacher in teachers:
        spec = None
        if teacher == "backbone":
            spec = str(out / "teacher-backbone")
            head = train_backbone_teacher(roots, spec, data=DataOptions(roots=roots, words=labels, variants=variants,
                                                                       data_seed=seed, jobs=jobs),
                                          config=HeadConfig(seed=seed), progress=True)
            info["validation"]["teacher-backbone"] = head["metrics"]["validation"]["accuracy"]
        name = f"{student}-{teacher}" + (f"-a{alpha:g}" if spec and alpha != 0.5 else "")
        run_dir = out / name  # another --student or --alpha into the same --out reuses data and teacher
        cfg = TrainConfig(epochs=epochs, seed=seed, alpha=alpha if spec else 0.0, temperature=4.0,
                          teacher_mode="cached" if spec else "none")
        state = runs.run_state(run_dir)
        run = (json.loads((run_dir / runs.RUN_JSON).read_text()) if state == "finished" else
               distill(roots, run_dir, student=student, teacher=spec, data=data, config=cfg, resume=state == "resume",
                       progress=True))
        info["validation"][name] = run["metrics"]["validation"]["accuracy"]
        bundle = out / f"{'-'.join(labels)}-{name}.tinyear"
        if not bundle.exists():
            export_run(run_dir, bundle, ExportOptions(progress=True))
            try:
                calibrate(bundle, list(roots), fa_per_hour=fa_per_hour, seed=seed, fit=True, progress=True)
            except BudgetNotMet as exc:
                print(f"bench_words: {bundle.name}: calibration kept the default thresholds: {exc}", file=sys.stderr)
        made[name] = str(bundle)
    # the bundle to ship: the higher validation accuracy (the pipeline's rule), ties to the distilled one
    info["shipped"] = max(made, key=lambda n: (info["validation"][n], "-none" not in n))
    return {"bundles": made, **info}


# -- the table ------------------------------------------------------------------------------------------


def _pct(x: dict | None, key: str = "rate") -> str:
    return "" if x is None else f"{100 * x[key]:.1f}%"


def table(rows: list[dict], trained: list[str], others: list[str]) -> str:
    """Markdown: one line per model and threshold; recall on each trained phrase, false accepts on the
    others (openWakeWord's row: recall on alexa, false accepts on the rest)."""
    sets = [*trained, *others, "speech_commands"]
    head = ["model", "threshold", *sets, "other phrases (FA)", "target met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        res = r["result"]
        cells = []
        for s in sets:
            if s in res["recall"]:
                cells.append(f"recall {_pct(res['recall'][s])}")
            elif s in res["false_accepts"]:
                cells.append(f"FA {_pct(res['false_accepts'][s])}")
            else:
                cells.append("")
        th = res["thresholds"]
        th_text = ", ".join(f"{v:g}" for v in th.values()) if len(set(th.values())) > 1 else f"{next(iter(th.values())):g}"
        lines.append("| " + " | ".join([r["model"], f"{r['threshold_kind']} ({th_text})", *cells,
                                        _pct(res["other_phrases"]), "yes" if res["target_met"] else "no"]) + " |")
    return "\n".join(lines)


def bench(bundles: dict[str, str], *, val_fa: float, oww: bool, sets: dict, data=None, seed: int = 0,
          oww_cache: Path | None = None) -> list[dict]:
    """Rows for the table: each bundle at its own and at the validation-chosen threshold; openWakeWord."""
    from tinyear.device import read_bundle
    from tinyear.device.detection import DetectionConfig

    rows = []
    for name, path in bundles.items():
        scored = score_bundle(name, path, sets)
        det = DetectionConfig.from_bundle(read_bundle(path))
        own = {k: det.threshold_for(k) for k in scored.keywords}
        keywords, vs, truth = validation_scores(path, data, seed)
        chosen = choose_threshold(vs, truth, val_fa)
        rows.append({"model": name, "bundle": str(path), "threshold_kind": "bundle's own", "result": rates(scored, own)})
        rows.append({"model": name, "bundle": str(path), "threshold_kind": "chosen on synthetic validation",
                     "validation": chosen, "result": rates(scored, {k: chosen["threshold"] for k in scored.keywords})})
        oracle = oracle_threshold(scored)
        rows.append({"model": name, "bundle": str(path), "threshold_kind": "oracle, chosen on these real clips (not a result)",
                     "result": rates(scored, {k: oracle for k in scored.keywords})})
    if oww:
        scored = score_oww(sets, cache=oww_cache)
        rows.append({"model": scored.name, "bundle": f"pyopen-wakeword models/{OWW_WORD}.tflite", "threshold_kind": "its own",
                     "result": rates(scored, {OWW_WORD: OWW_THRESHOLD})})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench-words", help="folder for data, runs, bundles and bench.json")
    ap.add_argument("--words", nargs="+", default=["computer", "jarvis", "snowboy"],
                    help="phrases of other-speech to train from text (smart_mirror is said 'smart mirror')")
    ap.add_argument("--per-word", type=int, default=500, help="synthetic clips per keyword (and of other words)")
    ap.add_argument("--near-miss", type=int, default=100, help="near-miss _unknown_ clips per keyword")
    ap.add_argument("--student", default="dscnn-s")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--variants", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=0.5, help="distillation weight of the teacher's soft labels")
    ap.add_argument("--teachers", nargs="+", default=["backbone", "none"], choices=["backbone", "none"])
    ap.add_argument("--fa-per-hour", type=float, default=2.0, help="the bundles' calibration budget (synthetic streams)")
    ap.add_argument("--val-fa", type=float, default=0.01,
                    help="false accepts allowed on the synthetic validation non-keyword clips when choosing a threshold")
    ap.add_argument("--bundle", action="append", default=[], help="score this bundle instead of training (repeat)")
    ap.add_argument("--data", action="append", default=None,
                    help="with --bundle: its training data folder, when it is not where the bundle says")
    ap.add_argument("--teacher-row", metavar="RUN", help="also score this backbone teacher run (float) on the phrases")
    ap.add_argument("--no-oww", action="store_true", help="leave openWakeWord's alexa out")
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the JSON object instead of the table")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    words = [w.replace("_", " ") for w in args.words]
    if args.bundle:
        names = [Path(b).name for b in args.bundle]  # a name given twice (runs/*/keywords.tinyear) gets its folder
        trained = {"bundles": {(f"{Path(b).parent.name}/{n}" if names.count(n) > 1 else n): b
                               for b, n in zip(args.bundle, names)}}
    else:
        trained = train(out, words, per_word=args.per_word, near_miss=args.near_miss, student=args.student,
                        epochs=args.epochs, teachers=args.teachers, fa_per_hour=args.fa_per_hour,
                        variants=args.variants, jobs=args.jobs, seed=args.seed, alpha=args.alpha)
        trained["bundles"] = {name.replace("-none", ", no teacher").replace("-backbone", ", backbone teacher"): p
                              for name, p in trained["bundles"].items()}
    sets = real_clips()
    rows = bench(trained["bundles"], val_fa=args.val_fa, oww=not args.no_oww, sets=sets, data=args.data, seed=args.seed,
                 oww_cache=out / "oww-scores.npz")
    if args.teacher_row:
        from tinyear.device import read_bundle

        roots = args.data or (read_bundle(next(iter(trained["bundles"].values()))).provenance.get("data") or {})["roots"]
        rows += teacher_rows(args.teacher_row, roots, sets, args.val_fa, args.seed)
    labels = [w.replace(" ", "_") for w in words]
    others = [p for p in PHRASES if p not in labels]
    md = table(rows, labels, others)
    result = {"command": " ".join(["scripts/bench_words.py", *(sys.argv[1:] if argv is None else argv)]),
              "words": labels, "clips": {k: len(v) for k, v in sets.items()}, **{k: v for k, v in trained.items()},
              "settings": {k: v for k, v in vars(args).items() if k not in ("json",)}, "rows": rows,
              "seconds": round(time.perf_counter() - started, 1), "table": md}
    from tinyear.device.fileio import atomic_write_text

    atomic_write_text(out / "bench.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(out / "bench.md", md + "\n")
    print(json.dumps(result, indent=1) if args.json else md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
