"""A trained student run -> a verified full-integer int8 `.tinyear` bundle.

`export_run` reads the run folder (`tinyear.host.runs.load_run`), loads the dataset the run recorded
(or the one given), and makes features with the shared frontend: a class-balanced sample of the
TRAINING split to calibrate the int8 ranges, the validation split to verify. It converts the student
(post-training quantization, or with `qat` a short quantization-aware fine-tune first, still distilling
from the run's teacher when it had one), verifies the result (`tinyear.host.verify`: float vs int8,
TFLite Micro parity and arena), picks a self-test clip and writes the bundle atomically with labels,
frontend, detection defaults, metrics and provenance. Nothing of the evaluation set is touched here.

Imports torch (through the converter and the run loader) and `tinyear.device`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tinyear.device.errors import TinyearError
from tinyear.device.features import FrontendConfig, fingerprint as frontend_fingerprint
from tinyear.device.fileio import sha256_file

from .bundleparts import load_data, pick_selftest, say
from .evaluate import batch_features, frontend_of
from .qat import QatConfig
from .verify import pick_spread

DEFAULT_CALIBRATION = 500


@dataclass(frozen=True)
class ExportOptions:
    """What `tinyear export` can change."""

    calibration: int = DEFAULT_CALIBRATION
    """Training clips (class-balanced) run through the observers to set the int8 activation ranges."""

    qat: bool = False
    """Quantization-aware fine-tune before conversion."""

    qat_config: QatConfig = field(default_factory=QatConfig)
    """Settings of that fine-tune (alpha and temperature are overridden by the run's own when it had them)."""

    data: tuple[str, ...] = ()
    """Dataset folder(s) to use instead of the ones the run recorded."""

    tflm_samples: int = 50
    """Validation inputs compared between TFLite Micro and LiteRT."""

    seed: int = 0
    """Seed of the calibration sample."""

    unknown_offset: float | None = 0.0
    """Added to the `_unknown_` logit before conversion (`tinyear.host.offset`); None: chosen on the
    validation split ("auto"); 0, the default: none."""

    progress: bool = True


def calibration_set(dataset, n: int, config: FrontendConfig, *, seed: int = 0, progress: bool = True):
    """(features (M, frames, bins), labels (M,)): up to n training clips, spread evenly over the classes."""
    if n < 1:
        raise TinyearError(f"--calibration {n}: the calibration set is empty; give at least 1 (default "
                           f"{DEFAULT_CALIBRATION})")
    y = dataset.label_index("train")
    if len(y) == 0:
        raise TinyearError("the calibration set is empty: the dataset's training split has no clips; "
                           "give the training data with --data")
    waves, y = dataset.arrays("train", config, progress=progress)
    pick = pick_spread(y, n, seed)
    return batch_features(waves[pick], config, progress=progress, desc="calibration features"), y[pick]


def export_run(run_dir, out, options: ExportOptions = ExportOptions()) -> dict:
    """Convert, verify and bundle a student run. Returns what was measured and written (JSON-ready)."""
    from .bundle import write_bundle
    from .verify import format_report, verify_int8

    from .backbone import is_backbone_run

    if is_backbone_run(Path(run_dir)):  # a head over a pretrained backbone: the bundle carries the backbone
        from .headexport import export_backbone_run

        if options.unknown_offset != 0:
            raise TinyearError(f"{run_dir}: the _unknown_ offset is for log-mel students; a backbone run is exported "
                               "without one (leave out --unknown-offset)")

        return export_backbone_run(run_dir, out, options)
    started = time.time()
    out = Path(out)
    if out.suffix != ".tinyear":
        raise TinyearError(f"{out}: a bundle file name must end in .tinyear")
    model, meta, config = _load_student(run_dir)
    labels = list(meta["labels"])
    dataset = load_data(meta, options.data, progress=options.progress)
    calib = None if options.qat else calibration_set(dataset, options.calibration, config, seed=options.seed,
                                                     progress=options.progress)  # QAT sets its ranges itself
    val_waves, val_y = dataset.arrays("validation", config, progress=options.progress)
    if len(val_y) == 0:
        raise TinyearError("the dataset's validation split is empty, so the int8 model cannot be verified; "
                           "give a dataset with validation clips (--data)")
    val_x = batch_features(val_waves, config, progress=options.progress, desc="validation features")
    model, offset = _unknown_offset(model, labels, dataset, val_x, val_y, options)
    model_bytes, calibration, qat_record = _convert(model, meta, dataset, config, options, calib)
    say("verifying (float vs int8 on the validation split, TFLite Micro vs LiteRT)", options.progress)
    verification = verify_int8(model, model_bytes, val_x, val_y, qat=options.qat, tflm_samples=options.tflm_samples)
    selftest = pick_selftest(model_bytes, labels, val_waves, val_y, config)
    metrics = _metrics(model, meta, config, verification, calibration, qat_record, options)
    metrics["unknown_offset"] = offset.record()
    detection = (meta.get("run") or {}).get("detection") or meta.get("detection") or None
    path = write_bundle(out, model_bytes, labels, config, detection=detection, metrics=metrics,
                        provenance=_provenance(run_dir, meta, dataset, options), selftest=selftest)
    return {
        "bundle": str(path),
        "bundle_bytes": path.stat().st_size,
        "labels": labels,
        "metrics": metrics,
        "selftest": None if selftest is None else {"label": selftest.label},
        "seconds": round(time.time() - started, 1),
        "report": format_report(verification),
        "options": {k: v for k, v in asdict(options).items() if k != "progress"},
    }


def _load_student(run_dir):
    """(model, meta, FrontendConfig) of a finished student run, refusing one whose recorded frontend
    fingerprint this tinyear computes differently."""
    from .runs import load_run

    model, meta = load_run(run_dir, "student")
    config = frontend_of(meta)
    if meta.get("frontend_fingerprint") and meta["frontend_fingerprint"] != frontend_fingerprint(config):
        raise TinyearError(f"{run_dir}: trained on frontend {meta['frontend_fingerprint']}, but this tinyear computes "
                           f"{frontend_fingerprint(config)} for that config; retrain with this version")
    return model, meta, config


def _unknown_offset(model, labels, dataset, val_x, val_y, options: ExportOptions):
    """(the model to convert, its `offset.OffsetChoice`): the `_unknown_` offset chosen on the validation
    split (or as given) and folded into the model's last layer."""
    from .offset import OffsetChoice, choose_offset, fold_offset
    from .verify import float_logits

    if options.unknown_offset is not None:
        choice = OffsetChoice(float(options.unknown_offset),
                              "given (--unknown-offset)" if options.unknown_offset else "none (the default)")
    else:
        sources = [c.source for c in dataset.clips_in("validation")]
        choice = choose_offset(float_logits(model, val_x), val_y, labels, sources)
        if choice.offset:
            say(f"_unknown_ offset {choice.offset:g}: the best fit to {choice.chosen_on} (float student: "
                f"log-loss {choice.nll_before:.3f} -> {choice.nll_after:.3f}, accuracy {choice.accuracy_before:.1f}% -> "
                f"{choice.accuracy_after:.1f}%)", options.progress)
    return fold_offset(model, labels, choice.offset), choice


def _convert(model, meta: dict, dataset, config: FrontendConfig, options: ExportOptions, calib):
    """(int8 TFLite bytes, calibration record, QAT record or None): post-training quantization on
    `calib` (features, labels: a class-balanced sample of the training split), or with `options.qat` a
    quantization-aware fine-tune (which sets its ranges from every training clip; `calib` is None)."""
    import torch

    if options.qat:
        from .qat import qat_int8

        train_x, train_y, augment, teacher_logits, label_map, qat_config = qat_training_data(
            meta, dataset, config, options.qat_config, progress=options.progress)
        say(f"quantization-aware fine-tune: {qat_config.epochs} epochs over {len(train_y)} training clips"
             + (f" x {train_x.shape[0]} augmented variants" if train_x.ndim == 4 else "")
             + (f", distilling (alpha {qat_config.alpha}, T {qat_config.temperature})" if teacher_logits is not None
                else ", labels only"), options.progress)
        model_bytes, qat_record = qat_int8(model, train_x, train_y, teacher_logits=teacher_logits,
                                           label_map=label_map, augment=augment, config=qat_config,
                                           progress=options.progress)
        return model_bytes, {"clips": int(len(train_y)), "split": "train", "by": "QAT fake-quantization observers"}, qat_record
    from .convert import convert_int8

    labels = list(meta["labels"])
    calib_x, calib_y = calib
    say(f"converting to int8 (calibration: {len(calib_y)} training clips)", options.progress)
    model_bytes = convert_int8(model, torch.from_numpy(calib_x[:1]), [calib_x])
    calibration = {"clips": int(len(calib_y)), "split": "train", "by": "PTQ histogram observers",
                   "per_class": {labels[c]: int(n) for c, n in zip(*np.unique(calib_y, return_counts=True))}}
    return model_bytes, calibration, None


def _metrics(model, meta: dict, config: FrontendConfig, verification: dict, calibration: dict, qat_record,
             options: ExportOptions) -> dict:
    """The bundle's metrics: float and int8 accuracy on the validation split, the teacher's, size and
    cost, quantization, the verification and calibration records."""
    params = macs = None
    try:
        from .students import count_macs, count_params

        params, macs = count_params(model), count_macs(model, config.feature_shape)
    except Exception:  # a student class the counter cannot run: leave the numbers out rather than guess
        pass
    v = verification["validation"]
    teacher_info = meta.get("teacher") or {}
    metrics = {
        "float_accuracy": v["float_accuracy"],
        "int8_accuracy": v["int8_accuracy"],
        "accuracy_drop_points": v["accuracy_drop_points"],
        "agreement_percent": v["agreement_percent"],
        "evaluated_on": "validation split",
        # the run records the teacher's validation accuracy as a fraction; the bundle speaks percent
        "teacher_accuracy": (round(100.0 * teacher_info["validation_accuracy"], 3)
                             if isinstance(teacher_info, dict) and teacher_info.get("validation_accuracy") is not None
                             else None),
        "model_bytes": verification["model_bytes"],
        "params": params,
        "macs": macs,
        "quantization": "qat" if options.qat else "ptq",
        "microcontroller_ready": verification["microcontroller_ready"],
        "tflm_arena_bytes": verification["tflm"]["arena_bytes"],
        "verification": verification,
        "calibration": calibration,
    }
    if qat_record is not None:
        metrics["qat"] = qat_record
    return metrics


def _provenance(run_dir, meta: dict, dataset, options: ExportOptions) -> dict:
    """Where the bundle came from: student, teacher, data, the run and its checkpoint's sha256, export
    settings (tool versions are added by `write_bundle`)."""
    from .runs import BEST

    return {
        "student": {"arch": meta.get("arch"), "name": meta.get("name"), "arch_kwargs": meta.get("arch_kwargs")},
        "teacher": meta.get("teacher"),
        "data": {"roots": [str(r) for r in dataset.roots], "fingerprint": dataset.fingerprint(),
                 "run_fingerprint": (meta.get("data") or {}).get("fingerprint")},
        "run": {"dir": str(Path(run_dir).resolve()), "checkpoint_sha256": sha256_file(Path(run_dir) / BEST),
                "validation_metrics": meta.get("metrics") or {}},
        "export": {"calibration": options.calibration, "qat": options.qat, "seed": options.seed,
                   "converter": "litert-torch PT2E, strict export, per-channel int8 weights, static int8 activations"},
    }


def _augment_config(recorded: dict | None):
    """The run's AugmentConfig from run.json (fields this version lacks dropped, JSON lists back to
    tuples); None when the run recorded none."""
    if not recorded:
        return None
    import dataclasses

    from .augment import AugmentConfig

    known = {f.name for f in dataclasses.fields(AugmentConfig)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items() if k in known}
    try:
        return AugmentConfig(**values)
    except (TypeError, ValueError):
        return None


def qat_training_data(meta: dict, dataset, config: FrontendConfig, qat_config: QatConfig, *, progress: bool = True):
    """What the QAT fine-tune trains on, mirroring the run's training: (features, labels, augment,
    teacher logits or None, label map or None, QAT config with the run's distillation settings).

    Features are the run's own augmented training variants (K, N, frames, bins) from the feature cache
    (`tinyear.host.featcache`; computed again if the cache is gone) and its SpecAugment settings; a run
    that recorded no options gets the clean training features (N, frames, bins). The teacher is the one
    the run recorded, its outputs cached per variant like training's; when it can no longer be loaded
    the error says so rather than fine-tuning without it."""
    from dataclasses import replace

    from .featcache import build_features, teacher_outputs

    options = (meta.get("run") or {}).get("options") or {}
    data_opts, train_opts = options.get("data") or {}, options.get("train") or {}
    augment = _augment_config(data_opts.get("augment"))
    variants = int(data_opts.get("variants") or 1)
    seed = int((meta.get("data") or {}).get("seed", data_opts.get("data_seed", 0)))
    from .augment import AugmentConfig

    features = build_features(dataset, variants=variants, augment=augment or AugmentConfig.off(), seed=seed,
                              frontend=config, eval_splits=(), cache_dir=data_opts.get("cache_dir"),
                              progress=progress, keep_waves=True)
    x = features.train if variants > 1 else features.train[0]
    settings = {k: train_opts[k] for k in ("alpha", "temperature", "kd_loss", "label_smoothing") if k in train_opts}
    qat_config = replace(qat_config, **settings)
    info = meta.get("teacher")
    if not info:
        return x, features.train_y, augment, None, None, replace(qat_config, alpha=0.0)
    from .ensemble import load_teachers

    spec = (info.get("specs") or info.get("source")) if isinstance(info, dict) else str(info)
    try:
        teacher, label_map = load_teachers(spec, list(meta["labels"]), options.get("label_map") or {},
                                           options.get("teacher_classes") or None)
    except TinyearError as exc:
        raise TinyearError(f"the run was distilled from {spec}, which cannot be loaded now ({exc}); --qat fine-tunes "
                           "with the teacher: restore it, or export without --qat") from None
    say(f"teacher outputs for the training clips ({teacher.kind} {spec})", progress)
    logits = np.asarray(teacher_outputs(features, teacher, progress=progress), dtype=np.float32)  # (K, N, T)
    return x, features.train_y, augment, (logits if variants > 1 else logits[0]), label_map, qat_config
