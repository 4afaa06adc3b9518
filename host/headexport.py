"""A backbone run (`tinyear teacher DATA --backbone speech-embedding`) -> a `.tinyear` bundle that runs
the backbone on the device: the head converted to full int8, the backbone's TFLite files beside it.

This is the export for custom words from text alone: a tiny network over log-mels trained on synthetic
speech does not carry to people, a head over the frozen speech_embedding does (docs/BENCHMARKS.md, "Your
own words"). The steps are `export_run`'s: a class-balanced sample of the TRAINING split's embeddings
calibrates the int8 ranges, the validation split verifies float vs int8 (and TFLite Micro on the head),
a validation clip the int8 head gets right becomes the self-test (its features computed by the same
`tinyear.device.backbone.Backbone` the device runs), and the bundle is written atomically with the
backbone's files (format 2, `tinyear.device.bundle`). The head's LayerNorm is split: the device normalises
each clip's embeddings in float (`tinyear.device.backbone.layer_normalize`, recorded in the bundle as the
backbone's "normalize": "layer") and the norm's scale and shift fold into the first layer
(`EmbeddingHead.deployable`), so the int8 model is linear + relu only.

Imports torch (the head, the converter) and `tinyear.device`; reads embeddings through
`tinyear.host.backbone`'s cache.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from tinyear.device.backbone import layer_normalize
from tinyear.device.errors import TinyearError
from tinyear.device.features import DEFAULT_CONFIG
from tinyear.device.fileio import sha256_file


def export_backbone_run(run_dir, out, options) -> dict:
    """Convert, verify and bundle a backbone run (`options`: an `export.ExportOptions`; QAT is refused).
    Returns what `export_run` returns."""
    import torch

    from . import runs
    from .backbone import HEAD_FILE, read_head_run, split_embeddings
    from .bundle import write_bundle
    from .convert import convert_int8
    from .bundleparts import load_data, pick_selftest, say
    from .verify import format_report, pick_spread, verify_int8

    started = time.time()
    run_dir, out = Path(run_dir), Path(out)
    if out.suffix != ".tinyear":
        raise TinyearError(f"{out}: a bundle file name must end in .tinyear")
    if options.qat:
        raise TinyearError(f"{run_dir}: --qat fine-tunes a student; a backbone head is exported with post-training "
                           "quantization (leave out --qat)")
    payload, head, net = read_head_run(run_dir)
    model = head.deployable()  # refuses the first heads' GELU recipe in one line
    name = payload["backbone"]
    info = json.loads((run_dir / runs.RUN_JSON).read_text())
    labels = list(payload["labels"])
    recorded = (info.get("options") or {}).get("data") or {}
    meta = {"labels": labels, "run_dir": str(run_dir),
            "data": {"roots": recorded.get("roots") or (info.get("data") or {}).get("roots"),
                     "words": recorded.get("words"), "seed": recorded.get("seed", 0)}}
    dataset = load_data(meta, options.data, progress=options.progress)
    train_x, train_y = split_embeddings(net, dataset, "train", progress=options.progress)
    val_x, val_y = split_embeddings(net, dataset, "validation", progress=options.progress)
    raw_val = val_x[:64]
    train_x, val_x = layer_normalize(train_x), layer_normalize(val_x)  # the deployable head's input
    if not len(train_y) or not len(val_y):
        raise TinyearError(f"{', '.join(map(str, dataset.roots))}: exporting a backbone head needs training clips (to "
                           "calibrate) and validation clips (to verify); give the data it was trained on with --data")
    if options.calibration < 1:
        raise TinyearError(f"--calibration {options.calibration}: the calibration set is empty; give at least 1")
    pick = pick_spread(train_y, options.calibration, options.seed)
    with torch.no_grad():  # splitting the LayerNorm must not change the function
        a, b = head(torch.from_numpy(raw_val)), model(torch.from_numpy(val_x[:64]))
    if not torch.allclose(a, b, atol=1e-3, rtol=1e-3):
        raise TinyearError(f"{run_dir}: the folded head differs from the trained one by {float((a - b).abs().max()):.3g}")
    say(f"converting the head to int8 (calibration: {len(pick)} training clips' embeddings)", options.progress)
    model_bytes = convert_int8(model, torch.from_numpy(train_x[pick[:1]]), [train_x[pick]])
    say("verifying (float vs int8 on the validation split, TFLite Micro vs LiteRT)", options.progress)
    verification = verify_int8(model, model_bytes, val_x, val_y, tflm_samples=options.tflm_samples)
    val_waves, val_y2 = dataset.arrays("validation", DEFAULT_CONFIG, progress=False)
    selftest = pick_selftest(model_bytes, labels, val_waves, val_y2, DEFAULT_CONFIG,
                         features=lambda audio: layer_normalize(net.features(audio[None], DEFAULT_CONFIG))[0])
    v = verification["validation"]
    params = sum(p.numel() for p in head.parameters() if p.requires_grad)  # trained values
    metrics = {
        "float_accuracy": v["float_accuracy"], "int8_accuracy": v["int8_accuracy"],
        "accuracy_drop_points": v["accuracy_drop_points"], "agreement_percent": v["agreement_percent"],
        "evaluated_on": "validation split", "teacher_accuracy": None,
        "model_bytes": verification["model_bytes"], "params": params, "macs": info.get("macs"),
        "backbone_bytes": sum(len(b) for b in net.models.values()),
        "quantization": "ptq", "microcontroller_ready": False,  # the backbone is float TFLite: a Pi, not an MCU
        "tflm_arena_bytes": verification["tflm"]["arena_bytes"], "verification": verification,
        "calibration": {"clips": int(len(pick)), "split": "train", "by": "PTQ histogram observers",
                        "per_class": {labels[c]: int(n) for c, n in zip(*np.unique(train_y[pick], return_counts=True))}},
    }
    provenance = {
        "student": {"arch": "backbone-head", "name": f"{name} + int8 head", "arch_kwargs": payload["head_kwargs"]},
        "teacher": None,
        "backbone": {**net.identity(), "source": "pyopen-wakeword wheel (Apache-2.0), Google's speech_embedding"},
        "data": {"roots": [str(r) for r in dataset.roots], "fingerprint": dataset.fingerprint(),
                 "run_fingerprint": (info.get("data") or {}).get("fingerprint")},
        "run": {"dir": str(run_dir.resolve()), "checkpoint_sha256": sha256_file(run_dir / HEAD_FILE),
                "validation_metrics": info.get("metrics") or {}},
        "export": {"calibration": options.calibration, "qat": False, "seed": options.seed,
                   "converter": "litert-torch PT2E, strict export, per-channel int8 weights, static int8 activations"},
    }
    path = write_bundle(out, model_bytes, labels, DEFAULT_CONFIG, metrics=metrics, provenance=provenance,
                        selftest=selftest, backbone={"name": name, "normalize": "layer"}, backbone_models=net.models)
    return {
        "bundle": str(path), "bundle_bytes": path.stat().st_size, "labels": labels, "metrics": metrics,
        "selftest": None if selftest is None else {"label": selftest.label},
        "seconds": round(time.time() - started, 1), "report": format_report(verification),
        "options": {"calibration": options.calibration, "data": list(options.data), "seed": options.seed},
    }
