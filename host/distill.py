"""Training runs end to end: `train_teacher` (what `tinyear teacher` runs) and `distill` (what `tinyear
distill` runs, `--no-teacher` included), one driver for both.

A run: check the options and the output folder (writable; not a finished or unfinished run unless
resuming or forced) -> load the dataset -> features (`featcache`: augmented variants, cached) -> the
teacher and its label map, its outputs cached when asked -> the model (a registered student or the
built-in teacher) -> `train.fit`, the one loop -> evaluate the best epoch on the validation and test
splits -> `run.json`, written last. Distillation and the baseline differ only in alpha and the teacher:
`--no-teacher` is alpha = 0 with no teacher loaded, through the same code.

Under torchrun (`tinyear.host.dist`) every rank runs this same driver: rank 0 checks the output folder
and makes the feature caches while the others wait and then read them (`dist.once`), the teacher's
outputs are computed by all ranks on their blocks of clips and cached by rank 0, rank 0 alone measures the teacher, evaluates the best epoch and writes run.json (with
the world size, backend and every rank's device), and every rank returns what it wrote.

Imports torch and every `tinyear.host` training module; the command modules import this one.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from tinyear.device.errors import TinyearError
from tinyear.device.features import fingerprint
from tinyear.device.fileio import tool_versions

from . import dist, runs
from .students import STUDENTS, build_student, count_macs, count_params
from .ensemble import load_teachers
from .teachers import resolved_spec
from .labelmap import LabelMap
from .teacher_arch import DEFAULT_TEACHER_ARCH, TEACHER_ARCHS_REGISTRY, build_teacher_arch
from .train import TrainConfig, accuracy_metrics, fit, predict
from .trainconfig import DataOptions, teacher_config  # DataOptions: re-exported



def _prepare_out(out: Path, resume: bool, force: bool) -> str:
    """'fresh', 'resume' or 'finished'. Errors (one line) for an occupied folder and nothing to resume."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TinyearError(f"{out} is a file; --out must be a folder")
    finished = (out / runs.RUN_JSON).exists()
    started = (out / runs.LAST).exists()
    if resume:
        if finished:
            return "finished"
        if not started:
            raise TinyearError(f"nothing to resume in {out} (no {runs.LAST}); run without --resume to start")
        runs.check_writable(out)
        return "resume"
    if (finished or started) and not force:
        what = "a finished run" if finished else "an unfinished run"
        raise TinyearError(f"{out} already holds {what}; choose another --out, add --resume to continue it, or "
                           "--force to start over")
    runs.check_writable(out)
    if force:
        for name in (runs.RUN_JSON, runs.BEST, runs.LAST, runs.LOG, runs.CURVES):  # run.json first: not finished
            (out / name).unlink(missing_ok=True)
    return "fresh"


def _load_data(options: DataOptions, progress: bool):
    from .data import WORDS, load_dataset

    words = options.words or WORDS
    return load_dataset(list(options.roots), words, seed=options.data_seed, unknown_ratio=options.unknown_ratio,
                        quiet=not progress)


def _evaluate(model, features, labels, device) -> dict:
    """Metrics of each evaluation split, with the accuracy on each source of clips beside
    ("by_source": {"real" | "synthetic" | "noise": {"accuracy", "count"}}; the pipeline's choice of the
    shipped student reads it, `tinyear.host.pipeline_report.choice_accuracies`)."""
    from .data import SOURCES

    out = {}
    for split, (x, y) in features.eval.items():
        if len(y):
            logits = predict(model, x, device)
            m = accuracy_metrics(logits, y, labels)
            source = (features.eval_source or {}).get(split)
            if source is not None and len(source) == len(y):
                right = logits.argmax(axis=1) == y
                m["by_source"] = {name: {"accuracy": float(right[source == k].mean()), "count": int((source == k).sum())}
                                  for k, name in enumerate(SOURCES) if (source == k).any()}
            out[split] = m
    return out


def _teacher_eval(teacher, label_map: LabelMap, features, dataset, device) -> dict:
    """The teacher's accuracy on the validation split, in the student's labels."""
    x, y = features.eval["validation"]
    if teacher.accepts_features(features.frontend):
        logits = predict(teacher.feature_model.to(device), x, device)
    else:
        waves, _ = dataset.arrays("validation", features.frontend, progress=False)
        outs = []
        for s in range(0, len(waves), 64):
            outs.append(teacher(torch.from_numpy(waves[s : s + 64])).cpu().numpy())
        logits = np.concatenate(outs)
    mapped = label_map.log_probs(torch.from_numpy(logits)).numpy()
    return accuracy_metrics(mapped, y, list(features.labels))


def _teacher_title(teacher) -> str:
    if teacher is None:
        return ""
    if teacher.members:
        return " <- " + " + ".join(Path(m.source).name for m in teacher.members)
    return f" <- {Path(teacher.source).name}"


def train_run(out, data: DataOptions, config: TrainConfig, *, kind: str, arch_name: str,
              teacher_spec: str | list[str] | None = None, label_overrides: dict | list | None = None,
              teacher_classes: list[str] | None = None, resume: bool = False,
              force: bool = False, device: str = "auto", progress: bool = True, command: str = "",
              on_epoch=None) -> dict:
    """One training run into the folder `out`; returns what run.json holds. See the module docstring.
    device: "auto" (CUDA when present, else the CPU), "cpu", "cuda", "cuda:1", ...; under torchrun each
    process takes the GPU of its local rank. on_epoch(epoch, log row): called after every epoch (see
    `train.fit`). A run that fails or is interrupted before it wrote anything leaves no empty folder."""
    wall0 = time.perf_counter()
    out = Path(out)
    created = not out.exists()
    try:
        with dist.session(device) as dev:
            return _train_run(out, data, config, dev, wall0, kind=kind, arch_name=arch_name,
                              teacher_spec=teacher_spec, label_overrides=label_overrides,
                              teacher_classes=teacher_classes, resume=resume, force=force,
                              progress=progress and dist.is_main(), command=command, on_epoch=on_epoch)
    except BaseException:
        if created and dist.is_main():
            runs.remove_if_empty(out)
        raise


def _train_run(out: Path, data: DataOptions, config: TrainConfig, dev: torch.device, wall0: float, *, kind, arch_name,
               teacher_spec, label_overrides, teacher_classes, resume, force, progress, command, on_epoch) -> dict:
    main = dist.is_main()
    if kind == "student" and arch_name not in STUDENTS:
        raise TinyearError(f"unknown student {arch_name!r}; choose one of {', '.join(STUDENTS)}")
    if kind == "teacher" and arch_name not in TEACHER_ARCHS_REGISTRY:
        raise TinyearError(f"unknown teacher architecture {arch_name!r}; choose one of {', '.join(TEACHER_ARCHS_REGISTRY)}")
    state = dist.broadcast(_prepare_out(out, resume, force) if main else None)  # rank 0 owns the folder
    if state == "finished":
        import json

        info = dist.broadcast(json.loads((out / runs.RUN_JSON).read_text()) if main else None)
        if progress:
            print(f"tinyear: {out} is already finished; nothing to resume", file=sys.stderr)
        return info

    dataset = _load_data(data, progress)
    labels = list(dataset.labels)
    teacher = label_map = cache = None
    teacher_info = None
    if teacher_spec is not None:  # before any long work: a teacher that cannot be used fails in a second
        teacher, label_map = load_teachers(teacher_spec, labels, label_overrides, teacher_classes)
        if config.mixup > 0 and not teacher.accepts_features(data.frontend):
            raise TinyearError(f"--mixup mixes feature batches, which a {teacher.kind} teacher (waveforms in) cannot "
                               "judge; use --mix-variants N instead (mixed waveforms, judged and cached)")
    if config.mixup > 0 and data.mix_variants > 0:
        raise TinyearError("--mixup and --mix-variants both mix clips; choose one")
    if config.mixup > 0 and data.window_variants > 0:
        raise TinyearError("--mixup would overwrite the windows' two-label targets (--window-variants); choose one")
    from .featcache import build_features, teacher_outputs

    features = dist.once(lambda: build_features(
        dataset, variants=data.variants, augment=data.augment, seed=data.data_seed, eval_splits=("validation", "test"),
        cache_dir=data.cache_dir, jobs=data.jobs, progress=progress, keep_waves=True, mix_variants=data.mix_variants,
        window_variants=data.window_variants, frontend=data.frontend))
    if teacher is not None:
        uncovered = label_map.describe()["uncovered_student_labels"]
        if uncovered and progress:
            print(f"tinyear: the teacher has no label for {', '.join(uncovered)}: those clips learn from their "
                  "labels alone", file=sys.stderr)
        if config.teacher_mode == "cached":
            cache = teacher_outputs(features, teacher, device=str(dev), progress=progress)  # shared out among ranks
        teacher.to(dev)
        teacher_val = dist.broadcast(_teacher_eval(teacher, label_map, features, dataset, dev) if main else None)
        specs = [teacher_spec] if isinstance(teacher_spec, str) else list(teacher_spec)
        teacher_info = {**teacher.describe(), "specs": [resolved_spec(s) for s in specs],
                        "label_map": label_map.describe(),
                        "validation_accuracy": teacher_val["accuracy"]}
        if progress:
            print(f"tinyear: teacher {teacher.kind} {teacher.source}: validation accuracy "
                  f"{teacher_val['accuracy']:.3f}", file=sys.stderr)

    torch.manual_seed(config.seed)  # weights: the same seed gives the same initial model
    if kind == "student":
        model = build_student(arch_name, len(labels))
        arch_kwargs = dict(STUDENTS[arch_name].kwargs)
    else:
        model = build_teacher_arch(arch_name, len(labels))
        arch_kwargs = dict(TEACHER_ARCHS_REGISTRY[arch_name][1])
    params, macs = count_params(model), count_macs(model, features.frontend.feature_shape)
    meta = {
        "kind": kind, "name": arch_name, "arch": type(model).__name__, "arch_kwargs": arch_kwargs,
        "labels": labels, "frontend": features.frontend.to_dict(), "frontend_fingerprint": fingerprint(features.frontend),
        "data": {"roots": [str(r) for r in dataset.roots], "fingerprint": dataset.fingerprint(),
                 "words": list(dataset.words), "seed": data.data_seed, "unknown_ratio": data.unknown_ratio},
        "teacher": teacher_info, "params": params, "macs": macs,
    }
    if progress:
        what = f"distilling from {teacher.source}" if teacher else "labels only"
        print(f"tinyear: training {kind} {arch_name} ({params:,} parameters, {macs / 1e6:.2f} M MACs), {what}, "
              f"{len(features.train_y)} training clips x {features.variants} variants, on {dev}"
              + (f" and {dist.world_size() - 1} more process(es)" if dist.active() else ""), file=sys.stderr)
    result = fit(model, features, out, config, checkpoint_meta=meta, teacher=teacher, teacher_cache=cache,
                 label_map=label_map, resume=(state == "resume"), device=dev, progress=progress,
                 title=f"{kind} {arch_name}" + _teacher_title(teacher),
                 on_epoch=on_epoch)
    distributed = dist.describe(dev)
    if not main:
        return dist.broadcast(None)
    metrics = _evaluate(model, features, labels, dev)
    info = {
        "kind": kind, "name": arch_name, "command": command, "labels": labels,
        "options": {"train": asdict(config), "data": {**asdict(data), "augment": dataclasses.asdict(data.augment)},
                    "teacher": teacher_spec, "label_map": label_overrides or {},
                    "teacher_classes": list(teacher_classes or [])},
        "params": params, "macs": macs,
        "data": {**meta["data"], "summary": dataset.summary()},
        "teacher": teacher_info,
        "metrics": {split: {k: v for k, v in m.items()} for split, m in metrics.items()},
        "best_epoch": result["best_epoch"], "epochs_run": result["epochs_run"],
        "stopped_early": result["stopped_early"],
        "feature_seconds": round(features.seconds, 2), "train_seconds": result["train_seconds"],
        "epoch_seconds": result["epoch_seconds"],
        "wall_seconds": round(time.perf_counter() - wall0, 2), "device": str(dev), "distributed": distributed,
        "versions": tool_versions("torch"),
        "frontend_fingerprint": fingerprint(features.frontend),
    }
    runs.write_run_json(out, info)
    return dist.broadcast(info)


def train_teacher(data_roots, out, *, arch: str = DEFAULT_TEACHER_ARCH, **kwargs) -> dict:
    """`tinyear teacher`: the built-in teacher on labels alone (see `train_run` for the options)."""
    data = kwargs.pop("data", None) or DataOptions(roots=tuple(str(r) for r in data_roots))
    config = kwargs.pop("config", None) or teacher_config()
    return train_run(out, data, config, kind="teacher", arch_name=arch, teacher_spec=None, **kwargs)


def distill(data_roots, out, *, student: str, teacher: str | list[str] | None, **kwargs) -> dict:
    """`tinyear distill`: a registered student, from `teacher` (a spec for `load_teacher`, or several
    for an ensemble: `ensemble.load_teachers`) or, with teacher=None, the baseline on labels alone."""
    data = kwargs.pop("data", None) or DataOptions(roots=tuple(str(r) for r in data_roots))
    config = kwargs.pop("config", None) or TrainConfig()
    if teacher is None and (config.alpha != 0.0 or config.teacher_mode != "none"):
        raise TinyearError("no teacher: alpha must be 0 and teacher_mode none")
    return train_run(out, data, config, kind="student", arch_name=student, teacher_spec=teacher, **kwargs)
