"""Scoring a model on a labelled dataset: accuracy, per-class precision/recall/F1, a confusion matrix.

A model is a `.tinyear` bundle (run through the device's own runner, so the numbers are the ones a Pi
gets) or a run folder (the float torch model of `best.pt`, student or built-in teacher). Either way the model's labels decide how
the dataset is read: its words are the keyword folders, other word folders count as `_unknown_` when
the model has that label, and `_silence_` likewise. Data with classes the model cannot name (word
folders or silence clips when it has no `_unknown_` / `_silence_`) is refused, naming them.

`split` is "train", "validation" or "test" of the dataset's own split (list files or speaker hash), or
"all": every clip of the folder as it is, nothing generated (for a folder that is an evaluation set,
like the public part of the Speech Commands test set).

Imports numpy, matplotlib (Agg, lazily) and `tinyear.device`; torch only for run folders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyear.device.errors import TinyearError
from tinyear.device.features import FrontendConfig, clip_features
from tinyear.device.fileio import atomic_write_text

from .plots import pyplot, save_figure
from .progress import bar as progress_bar

SPLIT_CHOICES = ("train", "validation", "test", "all")


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

    def logits(self, features: np.ndarray) -> np.ndarray:
        return self._predict(features)


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
                  info={"model_bytes": len(bundle.model_bytes), "model_sha256": bundle.model_sha256})


# -- data --------------------------------------------------------------------------------------------------


@dataclass
class EvalSet:
    waves: np.ndarray  # (N, samples) float32
    labels: np.ndarray  # (N,) int64 indices into the MODEL's labels
    notes: list[str]
    roots: list[str]
    split: str
    fingerprint: str


def load_eval_set(data, model_labels: list[str], split: str = "test", *, seed: int = 0,
                  config: FrontendConfig | None = None, progress: bool = True) -> EvalSet:
    """The clips of `data` (a folder or list of folders) in `split`, labelled in the model's label space."""
    from .data import SILENCE, UNKNOWN, load_dataset

    if split not in SPLIT_CHOICES:
        raise TinyearError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_CHOICES)}")
    roots = [str(r) for r in (data if isinstance(data, (list, tuple)) else [data])]
    words = [label for label in model_labels if label not in (UNKNOWN, SILENCE)]
    if not words:
        raise TinyearError("the model has no keyword labels to evaluate")
    has_unknown, has_silence = UNKNOWN in model_labels, SILENCE in model_labels
    whole = split == "all"
    dataset = load_dataset(
        roots, words, seed=seed, only_split="test" if whole else None,
        # Without the label, take every such clip, so they can be named below rather than silently dropped.
        unknown_ratio=None if (whole or not has_unknown) else 1.0,
        silence_ratio=None if (whole or not has_silence) else 1.0,
        allow_missing=True, quiet=not progress,
    )
    use = "test" if whole else split
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
    others = sorted({c.word for c in clips if c.label == UNKNOWN} - {UNKNOWN})
    if others:
        notes.append(f"scored as {UNKNOWN}: {', '.join(others[:10])}{', ...' if len(others) > 10 else ''}")
    cfg = config or FrontendConfig()
    waves, y = dataset.arrays(use, cfg, progress=progress)
    index = {label: i for i, label in enumerate(model_labels)}
    mapped = np.array([index[dataset.labels[j]] for j in y], dtype=np.int64)
    return EvalSet(waves, mapped, notes, roots, split, dataset.fingerprint())


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


def evaluate(model_path, data, *, split: str = "test", out_dir: str | Path | None = None, seed: int = 0,
             progress: bool = True, scorer: Scorer | None = None) -> dict:
    """Score a bundle or run folder on `data`'s `split`. With `out_dir`, writes confusion.png and
    metrics.json there. Returns the metrics dict (plus model, data and notes)."""
    scorer = scorer or load_scorer(model_path)
    eval_set = load_eval_set(data, scorer.labels, split, seed=seed, config=scorer.frontend, progress=progress)
    features = batch_features(eval_set.waves, scorer.frontend, progress=progress, desc=f"{split} features")
    predicted = scorer.logits(features).argmax(axis=1)
    result = {
        "model": str(scorer.path), "kind": scorer.kind, "data": eval_set.roots, "split": split,
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
    lines += [f"  note: {n}" for n in result["notes"]]
    lines.append(f"  {'label':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'clips':>8}")
    for label, m in result["per_class"].items():
        lines.append(f"  {label:<12}{m['precision']:>10.3f}{m['recall']:>10.3f}{m['f1']:>10.3f}{m['support']:>8}")
    if result.get("confusion_png"):
        lines.append(f"  confusion matrix: {result['confusion_png']}")
    return lines
