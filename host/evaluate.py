"""Scoring a model on a labelled dataset: accuracy, per-class precision/recall/F1, a confusion matrix.

A model is a `.tinyear` bundle (run through the device's own runner, so the numbers are the ones a Pi
gets) or a run folder (the float torch model of `best.pt`, student or built-in teacher). Either way the model's labels decide how
the dataset is read: its words are the keyword folders, other word folders count as `_unknown_` when
the model has that label, and `_silence_` likewise. Data with classes the model cannot name (word
folders or silence clips when it has no `_unknown_` / `_silence_`) is refused, naming them.

`split` is "train", "validation" or "test" of the dataset's own split (list files or speaker hash), or
"all": every clip of the folder as it is, nothing generated (for a folder that is an evaluation set,
like the public part of the Speech Commands test set), or "auto" (the default; `choose_split`): "all"
for a folder that looks like an evaluation set, "test" otherwise, saying which and why.

Imports numpy, matplotlib (Agg, lazily) and `tinyear.device`; torch only for run folders.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyear.device.errors import TinyearError
from tinyear.device.features import FrontendConfig, clip_features
from tinyear.device.fileio import atomic_write_text

from .plots import pyplot, save_figure
from .progress import bar as progress_bar

SPLIT_CHOICES = ("auto", "train", "validation", "test", "all")


def batch_features(waves: np.ndarray, config: FrontendConfig, *, progress: bool = True,
                   desc: str = "features") -> np.ndarray:
    """(N, samples) float32 waveforms -> (N, frames, bins) float32 features with the shared frontend."""
    frames, bins = config.feature_shape
    out = np.zeros((len(waves), frames, bins), dtype=np.float32)
    with progress_bar(len(waves), desc, enabled=progress, at_least=500) as bar:
        for i, wave in enumerate(waves):
            out[i] = clip_features(wave, config)
            bar.update(1)
    return out


def featurize_all(waves: np.ndarray, featurize, *, progress: bool = True, desc: str = "features") -> np.ndarray:
    """(N, samples) waveforms -> a stack of `featurize(clip)` (e.g. a backbone bundle's embeddings)."""
    out = []
    with progress_bar(len(waves), desc, enabled=progress, at_least=500) as bar:
        for wave in waves:
            out.append(featurize(wave))
            bar.update(1)
    return np.stack(out).astype(np.float32) if out else np.zeros((0,), np.float32)


def frontend_of(meta: dict) -> FrontendConfig:
    """The FrontendConfig of a run's meta (`load_run` gives it as "frontend_config"; "frontend" is the dict)."""
    config = meta.get("frontend_config")
    if isinstance(config, FrontendConfig):
        return config
    front = meta["frontend"]
    return front if isinstance(front, FrontendConfig) else FrontendConfig.from_dict(front)


# -- models ------------------------------------------------------------------------------------------------


@dataclass
class Scorer:
    """Anything that maps features (N, frames, bins) to logits (N, labels), with its labels and frontend."""

    kind: str  # "int8 bundle" | "float bundle" | "float student run" | "float teacher run"
    path: Path
    labels: list[str]
    frontend: FrontendConfig
    _predict: object = field(repr=False, default=None)
    info: dict = field(default_factory=dict)
    featurize: object = field(repr=False, default=None)  # one clip -> one input; None: the shared frontend

    def logits(self, features: np.ndarray) -> np.ndarray:
        return self._predict(features)

    def features(self, waves: np.ndarray, *, progress: bool = True, desc: str = "features") -> np.ndarray:
        """(N, samples) waveforms -> the model's inputs: the shared frontend's features, or a backbone
        bundle's embeddings."""
        if self.featurize is None:
            return batch_features(waves, self.frontend, progress=progress, desc=desc)
        return featurize_all(waves, self.featurize, progress=progress, desc=desc)


def load_scorer(path: str | Path, *, num_threads: int = 1) -> Scorer:
    """A bundle file or a run folder, ready to score features."""
    path = Path(path)
    if path.is_dir():
        from .runs import load_run
        from .verify import float_logits

        model, meta = load_run(path)  # students and built-in teachers alike take the shared features
        frontend = frontend_of(meta)
        return Scorer(f"float {meta.get('kind', 'student')} run", path, list(meta["labels"]), frontend, lambda f: float_logits(model, f),
                      info={"arch": meta.get("arch"), "teacher": meta.get("teacher")})
    if not path.exists():
        raise TinyearError(f"{path}: no such bundle or run folder")
    from tinyear.device.bundle import read_bundle

    bundle = read_bundle(path)
    model = bundle.load_model(num_threads=num_threads)
    kind = "int8 bundle" if model.quantized else "float bundle"
    if bundle.output != "logits":
        raise TinyearError(f"{path}: the model outputs {bundle.output}, not logits; re-export it with tinyear export")
    return Scorer(kind, path, list(bundle.labels), bundle.frontend, model.predict,
                  info={"model_bytes": len(bundle.model_bytes), "model_sha256": bundle.model_sha256},
                  featurize=bundle.featurizer(num_threads=num_threads) if bundle.backbone is not None else None)


# -- data --------------------------------------------------------------------------------------------------


@dataclass
class EvalSet:
    waves: np.ndarray  # (N, samples) float32
    labels: np.ndarray  # (N,) int64 indices into the MODEL's labels
    notes: list[str]
    roots: list[str]
    split: str
    fingerprint: str
    folded: dict = field(default_factory=dict)  # the data's classes scored as _unknown_: clips of each


def _looks_like_a_test_set(root: Path) -> str | None:
    """Why a folder is an evaluation set, or None: its name says test (a word of it), or it ships
    `_silence_` clips but no `_background_noise_` recordings to make training silence from."""
    import re

    from .data import SILENCE
    from .data.layout import BACKGROUND

    if "test" in re.split(r"[^a-z0-9]+", root.resolve().name.lower()):
        return "'test' in its name"
    if (root / SILENCE).is_dir() and not (root / BACKGROUND).is_dir():
        return f"{SILENCE} clips, no {BACKGROUND}"
    return None


def choose_split(data, split: str = "auto") -> tuple[str, str]:
    """(split, why) for `--split`: a named split as given; "auto" picks "all" when no folder has a
    validation/testing list and every one looks like an evaluation set (`_looks_like_a_test_set`),
    else the dataset's own "test" split."""
    from .data.layout import TESTING_LIST, VALIDATION_LIST

    if split not in SPLIT_CHOICES:
        raise TinyearError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_CHOICES)}")
    if split != "auto":
        return split, "as asked (--split)"
    roots = [Path(r) for r in (data if isinstance(data, (list, tuple)) else [data])]
    listed = [r for r in roots if (r / VALIDATION_LIST).is_file() or (r / TESTING_LIST).is_file()]
    if listed:
        return "test", f"auto: the test list of {', '.join(map(str, listed))}"
    why = [_looks_like_a_test_set(r) for r in roots]
    if all(why):
        return "all", f"auto: every clip, an evaluation set: no list files, {'; '.join(dict.fromkeys(why))}"
    return "test", "auto: the speaker-hash test split: no list files, and not named or laid out as a test set"


def load_eval_set(data, model_labels: list[str], split: str = "test", *, seed: int = 0,
                  config: FrontendConfig | None = None, progress: bool = True) -> EvalSet:
    """The clips of `data` (a folder or list of folders) in `split` (not "auto": `choose_split` first),
    labelled in the model's label space."""
    from .data import SILENCE, UNKNOWN, load_dataset

    if split not in SPLIT_CHOICES or split == "auto":
        raise TinyearError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_CHOICES[1:])}")
    roots = [str(r) for r in (data if isinstance(data, (list, tuple)) else [data])]
    words = [label for label in model_labels if label not in (UNKNOWN, SILENCE)]
    if not words:
        raise TinyearError("the model has no keyword labels to evaluate")
    has_unknown, has_silence = UNKNOWN in model_labels, SILENCE in model_labels
    whole = split == "all"
    dataset = load_dataset(
        roots, words, seed=seed, only_split="test" if whole else None, require_train=False,
        # Without the label, take every such clip, so they can be named below rather than silently dropped.
        unknown_ratio=None if (whole or not has_unknown) else 1.0,
        silence_ratio=None if (whole or not has_silence) else 1.0,
        allow_missing=True, quiet=not progress,
    )
    use = "test" if whole else split
    all_clips = [c for s in ("train", "validation", "test") for c in dataset.clips_in(s)]
    if not any(c.label in words for c in all_clips):
        found = sorted({c.word for c in all_clips if c.label == UNKNOWN})
        raise TinyearError(
            f"{', '.join(roots)}: has no clips of any of the model's words ({', '.join(words)})"
            + (f"; its word folders are {', '.join(found)}" if found else "")
            + ": is this the data the model was made for?")
    clips = dataset.clips_in(use)
    lacking = []
    if not has_unknown:
        lacking += sorted({c.word for c in clips if c.label == UNKNOWN})
    if not has_silence and any(c.label == SILENCE for c in clips):
        lacking.append(SILENCE)
    if lacking:
        raise TinyearError(
            f"{', '.join(roots)}: has clips of {', '.join(lacking)}, which the model cannot name (its labels: "
            f"{', '.join(model_labels)}); remove those folders or evaluate a model trained with them"
        )
    if not clips:
        raise TinyearError(f"{', '.join(roots)}: no clips in the {use} split; choose another --split (or all)")
    notes = []
    counts = dataset.counts(use)
    missing = [w for w in words if counts.get(w, 0) == 0]
    if missing:
        notes.append(f"no clips of {', '.join(missing)} in this data")
    others = Counter(c.word for c in clips if c.label == UNKNOWN and c.word != UNKNOWN)
    if others:
        notes.append(f"scored as {UNKNOWN} ({len(others)} classes of the data): "
                     + ", ".join(f"{w} ({n})" for w, n in sorted(others.items())))
    cfg = config or FrontendConfig()
    waves, y = dataset.arrays(use, cfg, progress=progress)
    index = {label: i for i, label in enumerate(model_labels)}
    mapped = np.array([index[dataset.labels[j]] for j in y], dtype=np.int64)
    return EvalSet(waves, mapped, notes, roots, split, dataset.fingerprint(), dict(sorted(others.items())))


# -- metrics -----------------------------------------------------------------------------------------------


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    """Accuracy (percent), per-class precision/recall/F1 (0-1) and support, macro F1, confusion matrix
    (rows: true label, columns: predicted), all JSON-ready."""
    k = len(labels)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    per_class, f1s = {}, []
    for i, label in enumerate(labels):
        tp = cm[i, i]
        predicted, support = cm[:, i].sum(), cm[i, :].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": round(float(precision), 4), "recall": round(float(recall), 4),
                            "f1": round(float(f1), 4), "support": int(support)}
        if support:
            f1s.append(f1)
    return {
        "clips": int(len(y_true)),
        "accuracy": round(100.0 * float(np.mean(y_true == y_pred)), 3) if len(y_true) else 0.0,
        "macro_f1": round(float(np.mean(f1s)), 4) if f1s else 0.0,
        "per_class": per_class,
        "confusion": cm.tolist(),
    }


def plot_confusion(confusion, labels: list[str], path: str | Path, title: str = "") -> Path:
    """A confusion-matrix PNG: rows true label, columns predicted, cells row-normalised, counts written."""
    plt = pyplot()

    cm = np.asarray(confusion, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = 1.6 + 0.55 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            if cm[i, j]:
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true label")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def evaluate(model_path, data, *, split: str = "auto", out_dir: str | Path | None = None, seed: int = 0,
             progress: bool = True, scorer: Scorer | None = None) -> dict:
    """Score a bundle or run folder on `data`'s `split` ("auto": `choose_split`). With `out_dir`, writes
    confusion.png and metrics.json there. Returns the metrics dict (plus model, data, the split and why,
    the classes folded into `_unknown_`, and notes)."""
    scorer = scorer or load_scorer(model_path)
    split, why = choose_split(data, split)
    eval_set = load_eval_set(data, scorer.labels, split, seed=seed, config=scorer.frontend, progress=progress)
    features = scorer.features(eval_set.waves, progress=progress, desc=f"{split} features")
    predicted = scorer.logits(features).argmax(axis=1)
    result = {
        "model": str(scorer.path), "kind": scorer.kind, "data": eval_set.roots, "split": split,
        "split_reason": why, "folded_into_unknown": eval_set.folded,
        "data_fingerprint": eval_set.fingerprint, "notes": eval_set.notes,
        **classification_metrics(eval_set.labels, predicted, scorer.labels),
        "labels": scorer.labels,
    }
    if out_dir is not None:
        import json

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        title = f"{Path(scorer.path).name} on {', '.join(Path(r).name for r in eval_set.roots)} ({split}): " \
                f"{result['accuracy']:.1f}%"
        result["confusion_png"] = str(plot_confusion(result["confusion"], scorer.labels, out / "confusion.png", title))
        atomic_write_text(out / "metrics.json", json.dumps(result, indent=1) + "\n")
        result["metrics_json"] = str(out / "metrics.json")
    return result


def format_result(result: dict) -> list[str]:
    """The evaluation as lines for people: headline, notes, per-class table."""
    lines = [f"{result['model']} ({result['kind']}) on {', '.join(result['data'])} [{result['split']}]: "
             f"accuracy {result['accuracy']:.2f}% on {result['clips']} clips, macro F1 {result['macro_f1']:.3f}"]
    if result.get("split_reason"):
        lines.append(f"  split: {result['split']} ({result['split_reason']})")
    lines += [f"  note: {n}" for n in result["notes"]]
    lines.append(f"  {'label':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'clips':>8}")
    for label, m in result["per_class"].items():
        lines.append(f"  {label:<12}{m['precision']:>10.3f}{m['recall']:>10.3f}{m['f1']:>10.3f}{m['support']:>8}")
    if result.get("confusion_png"):
        lines.append(f"  confusion matrix: {result['confusion_png']}")
    return lines
