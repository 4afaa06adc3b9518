"""The comparison across teacher, baseline student, distilled student and int8 bundle, and its report.

`compare` takes the models (run folders and a bundle) and the evaluation folders, and measures, in one
process and one sitting so the numbers are comparable: parameters, MACs, TFLite size (float TFLite of
each torch model made with `convert_float`; the bundle's int8 model as shipped), accuracy on every
evaluation set (features computed once per set with the shared frontend, fed to every model), and the
median single-thread LiteRT latency of one inference, measured side by side: the models take turns,
invoke by invoke, so a busy machine slows them all alike. The student's size and speed are also given
as multiples of the teacher's. `markdown_table` and `write_markdown` turn that into a report with
plots; the pipeline calls them.

Imports numpy, matplotlib (Agg, lazily), torch (to convert and score the float models) and
`tinyear.device`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyear.device.errors import TinyearError
from tinyear.device.fileio import atomic_write_text

from .plots import pyplot, save_figure

LATENCY_REPEATS = 200
LATENCY_WARMUP = 20


@dataclass
class Row:
    """One model of the comparison."""

    name: str  # "teacher", "baseline student", "distilled student", "int8 bundle"
    kind: str  # "float" | "int8"
    params: int | None = None
    macs: int | None = None
    size_bytes: int | None = None
    accuracy: dict = field(default_factory=dict)  # evaluation-set name -> percent
    latency_ms: float | None = None
    size_x: float | None = None  # teacher size / this size
    speed_x: float | None = None  # teacher latency / this latency
    note: str = ""
    source: str = ""

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def median_latencies(models: dict[str, bytes], *, repeats: int = LATENCY_REPEATS,
                     warmup: int = LATENCY_WARMUP, seed: int = 0) -> dict[str, float]:
    """Median milliseconds of one `invoke` per TFLite model, one thread each, LiteRT's default
    resolver (what a device runs). Models take turns invoke by invoke (side by side)."""
    from tinyear.device.runtime import Model

    rng = np.random.default_rng(seed)
    loaded = {name: Model(data, num_threads=1) for name, data in models.items()}
    inputs = {}
    for name, model in loaded.items():
        x = rng.normal(-8.0, 3.0, size=(1, *model.feature_shape)).astype(np.float32)
        inputs[name] = model.quantize_input(x)
    times: dict[str, list[float]] = {name: [] for name in loaded}
    for r in range(warmup + repeats):
        for name, model in loaded.items():
            t0 = time.perf_counter()
            model.predict_raw(inputs[name])
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: round(1000.0 * float(np.median(t)), 4) for name, t in times.items()}


def _clip_ms(featurize, repeats: int = 20) -> float:
    """Median milliseconds of `featurize` on one 1 s clip of quiet noise (after a warm-up call)."""
    clip = (0.05 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    featurize(clip)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        featurize(clip)
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def _float_scorer(model):
    from .verify import float_logits

    return lambda features: float_logits(model, features)


def compare(
    *,
    teacher: str | Path | None,
    baseline: str | Path | None,
    student: str | Path | None,
    bundle: str | Path | None,
    eval_sets: dict[str, tuple],
    latency_repeats: int = LATENCY_REPEATS,
    progress: bool = True,
    teacher_specs: list[str] | None = None,
    teacher_classes: list[str] | None = None,
) -> list[Row]:
    """Measure every given model. `eval_sets`: display name -> (folder or folders, split), e.g.
    {"synthetic test": ("data/synth", "test"), "real speech": (".../speech-commands-v2-test-public", "all")}.
    Run folders: the float torch model (converted to float TFLite for size and latency); bundle: its int8
    model. Every model must use the same labels and frontend (the student's). teacher_specs: pretrained
    teachers (`ensemble.load_teachers`) in the teacher slot instead of a run folder: scored on the
    waveforms through their own front ends, in the student's labels; their latency is the median time of
    one clip in their own runtime, their size that of their files."""
    import torch

    from .convert import convert_float
    from .evaluate import batch_features, classification_metrics, featurize_all, frontend_of, load_eval_set
    from .runs import load_run
    from .students import count_macs, count_params

    rows: list[Row] = []
    scorers, tflites, converted = {}, {}, {}
    bundle_features = None
    labels = frontend = None
    # the teacher slot takes any run folder (a student can teach too); the student slots insist on students
    for name, where, kind in (("teacher", teacher, None), ("baseline student", baseline, "student"),
                              ("distilled student", student, "student")):
        if where is None:
            continue
        model, meta = load_run(where, kind)
        if labels is None:
            labels, frontend = list(meta["labels"]), frontend_of(meta)
        elif list(meta["labels"]) != labels:
            raise TinyearError(f"{where}: labels {meta['labels']} differ from {labels}; compare models trained "
                               "on the same labels")
        shape = frontend.feature_shape
        row = Row(name, "float", params=count_params(model), macs=count_macs(model, shape), source=str(where))
        key = str(Path(where).resolve())
        try:
            if key not in converted:  # the same folder in two slots is converted once
                converted[key] = convert_float(model, torch.zeros((1, *shape)))
            tflites[name] = converted[key]
            row.size_bytes = len(tflites[name])
        except TinyearError as exc:
            row.note = f"no float TFLite: {exc}"
        scorers[name] = _float_scorer(model)
        rows.append(row)
    if bundle is not None:
        from tinyear.device.bundle import read_bundle

        b = read_bundle(bundle)
        if labels is not None and list(b.labels) != labels:
            raise TinyearError(f"{bundle}: labels {b.labels} differ from the runs' {labels}")
        labels, frontend = labels or list(b.labels), frontend or b.frontend
        model = b.load_model(num_threads=1)
        tflites["int8 bundle"] = b.model_bytes
        scorers["int8 bundle"] = model.predict
        if b.backbone is not None:  # a head over a backbone: scored on the backbone's embeddings of the clips
            bundle_features = b.featurizer(num_threads=1)
        rows.append(Row("int8 bundle", "int8", params=b.metrics.get("params"), macs=b.metrics.get("macs"),
                        size_bytes=len(b.model_bytes), source=str(bundle)))
    if not rows:
        raise TinyearError("nothing to compare: give at least one run folder or bundle")
    wave_scorers, wave_latency = {}, {}
    if teacher_specs:
        row, wave_scorers["teacher"], wave_latency["teacher"] = _pretrained_teacher_row(teacher_specs, teacher_classes,
                                                                                        labels)
        rows.insert(0, row)

    own_inputs = {"int8 bundle": bundle_features} if bundle_features is not None else {}  # rows not on log-mels
    on_frames = [r.name for r in rows if r.name not in wave_scorers and r.name not in own_inputs]
    for set_name, (data, split) in eval_sets.items():
        eval_set = load_eval_set(data, labels, split, config=frontend, progress=progress)
        if on_frames:
            features = batch_features(eval_set.waves, frontend, progress=progress, desc=f"{set_name} features")
        for row in rows:
            if row.name in wave_scorers:
                predicted = wave_scorers[row.name](eval_set.waves).argmax(axis=1)
            elif row.name in own_inputs:
                inputs = featurize_all(eval_set.waves, own_inputs[row.name], progress=progress,
                                       desc=f"{set_name} embeddings")
                predicted = scorers[row.name](inputs).argmax(axis=1)
            else:
                predicted = scorers[row.name](features).argmax(axis=1)
            row.accuracy[set_name] = classification_metrics(eval_set.labels, predicted, labels)["accuracy"]

    latencies = median_latencies(tflites, repeats=latency_repeats)
    if bundle_features is not None:  # a backbone bundle runs the backbone too: its time and files count
        latencies["int8 bundle"] = round(latencies["int8 bundle"] + _clip_ms(bundle_features), 4)
        bundle_row = next(r for r in rows if r.name == "int8 bundle")
        bundle_row.size_bytes += sum(map(len, b.backbone_models.values()))
        bundle_row.note = "with the backbone it carries (float TFLite): size and latency are both together"
    for row in rows:
        row.latency_ms = latencies.get(row.name, wave_latency.get(row.name))
    ref = next((r for r in rows if r.name == "teacher"), None)
    if ref is not None:
        for row in rows:
            if ref.size_bytes and row.size_bytes:
                row.size_x = round(ref.size_bytes / row.size_bytes, 2)
            if ref.latency_ms and row.latency_ms:
                row.speed_x = round(ref.latency_ms / row.latency_ms, 2)
    return rows


def _pretrained_teacher_row(specs, classes, labels):
    """(Row, waves -> scores in the student's labels, median ms per clip) of given pretrained teachers."""
    import time

    import torch

    from .ensemble import load_teachers
    from .teachers import split_options

    teacher, label_map = load_teachers(specs, labels, None, classes)
    members = teacher.members or [teacher]
    size = sum(_spec_bytes(split_options(m.source)[0]) for m in members)

    def score(waves):
        out = []
        with torch.no_grad():
            for s in range(0, len(waves), 64):
                logp = label_map.log_probs(teacher(waves[s : s + 64])).numpy()
                out.append(np.where(np.isfinite(logp), logp, -1e9))
        return np.concatenate(out)

    rng = np.random.default_rng(0)
    clip = (0.05 * rng.standard_normal((1, 16000))).astype(np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        teacher(clip)
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            teacher(clip)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    name = " + ".join(Path(m.source).parent.name + "/" + Path(m.source).name for m in members)
    row = Row("teacher", teacher.kind, params=None, macs=None, size_bytes=size or None, source=name)
    return row, score, 1000 * float(np.median(times))


def _spec_bytes(path: str) -> int:
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return 0


def _fmt_int(n) -> str:
    return "n/a" if n is None else f"{n:,}"


def _fmt_bytes(n) -> str:
    if n is None:
        return "n/a"
    return f"{n / 1024:,.1f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:,.2f} MB"


def markdown_table(rows: list[Row]) -> str:
    """The comparison as a Markdown table: one row per model, one accuracy column per evaluation set."""
    sets = list(dict.fromkeys(k for r in rows for k in r.accuracy))
    head = ["model", "params", "MACs", "size"] + [f"accuracy, {s}" for s in sets] + \
           ["latency (ms, 1 thread)", "smaller than teacher", "faster than teacher"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in rows:
        cells = [f"{r.name} ({r.kind})", _fmt_int(r.params), _fmt_int(r.macs), _fmt_bytes(r.size_bytes)]
        cells += [f"{r.accuracy[s]:.2f}%" if s in r.accuracy else "n/a" for s in sets]
        cells += ["n/a" if r.latency_ms is None else f"{r.latency_ms:.3f}",
                  "n/a" if r.size_x is None else f"{r.size_x:g}x",
                  "n/a" if r.speed_x is None else f"{r.speed_x:g}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_comparison(rows: list[Row], path: str | Path) -> Path:
    """Two panels: accuracy per evaluation set per model, and latency per model."""
    plt = pyplot()

    sets = list(dict.fromkeys(k for r in rows for k in r.accuracy))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / max(1, len(sets))
    x = np.arange(len(rows))
    for i, s in enumerate(sets):
        a1.bar(x + i * width, [r.accuracy.get(s, 0.0) for r in rows], width, label=s)
    a1.set_xticks(x + width * (len(sets) - 1) / 2, [r.name for r in rows], rotation=20, ha="right")
    a1.set_ylabel("accuracy (%)")
    a1.set_ylim(0, 100)
    a1.legend(fontsize=8)
    a1.set_title("accuracy")
    a2.bar(x, [r.latency_ms or 0.0 for r in rows], color="tab:gray")
    a2.set_xticks(x, [r.name for r in rows], rotation=20, ha="right")
    a2.set_ylabel("median ms per inference, 1 thread")
    a2.set_title("LiteRT latency")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def write_markdown(path: str | Path, title: str, rows: list[Row], *, sections: list[tuple[str, str]] = (),
                   images: list[tuple[str, str | Path]] = (), footer: str = "") -> Path:
    """A Markdown report: title, the comparison table, free-text sections (heading, body), images
    (caption, path; linked relative to the report), a footer. Written atomically."""
    path = Path(path)
    parts = [f"# {title}", "", markdown_table(rows), ""]
    for heading, body in sections:
        parts += [f"## {heading}", "", body.rstrip(), ""]
    for caption, image in images:
        image = Path(image)
        try:
            rel = image.resolve().relative_to(path.parent.resolve())
        except ValueError:
            rel = image
        parts += [f"![{caption}]({rel.as_posix()})", ""]
    if footer:
        parts += [footer, ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, "\n".join(parts))
