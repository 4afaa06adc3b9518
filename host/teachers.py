"""Teachers: large models whose outputs a student learns from, loaded by kind from a spec string.

A teacher maps a batch of 16 kHz float32 waveforms (B, samples) to logits over its own labels and keeps
its own front end; only the student is bound to the shared one. A spec is `[KIND:]PATH[,key=value...]`;
the kind (`TEACHER_LOADERS`) is optional where the file tells (`teacher_kind`):
- `run`: a folder written by `tinyear teacher` (the built-in CNN of `teacher_arch`, over the shared
  log-mel features, so it can also take the student's feature batch directly: `feature_model`);
- `torchscript`: a TorchScript file whose forward takes (B, samples) and returns (B, labels) logits,
  labels in its `labels.json` extra file (`torch.jit.save(m, path, _extra_files={"labels.json": ...})`)
  or in a `labels.txt` / `<file>.labels.txt` beside it, one a line;
- `huggingface`: a local folder with an audio-classification model and its feature extractor
  (`save_pretrained`), labels from `config.id2label`; nothing is downloaded;
- `factory`: `module:function` or `path/to/file.py:function`, a function returning
  `(module, labels)` where `module(waves)` gives logits;
- `tflite`, `tf` (a frozen graph `.pb`) and `savedmodel`: the TensorFlow world (`tfteachers`);
- `backbone`: a folder written by `tinyear teacher --backbone speech-embedding` (a frozen pretrained
  backbone with a trained head: `backbone`).
Several teachers teach together through `ensemble`; their labels reach the student's through
`labelmap.LabelMap`.

Imports torch, numpy and `tinyear.device`; transformers only inside the Hugging Face loader, tensorflow
only inside `tfteachers`. Never the training loop.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinyear.device.errors import TinyearError, first_line

from .teacher_base import (FeatureTeacherModule, Teacher, file_identity, module_identity, read_labels,  # noqa: F401
                           reject_options)



# -- loaders --------------------------------------------------------------------------------------------


def load_run_teacher(spec: str, options: dict | None = None) -> Teacher:
    """A folder written by `tinyear teacher` (or any run folder: a student can teach too)."""
    reject_options(spec, options or {}, ())
    from .runs import BEST, load_run

    model, meta = load_run(spec)
    frontend = meta["frontend_config"]
    return Teacher(
        kind="run", source=str(spec), labels=list(meta["labels"]), module=FeatureTeacherModule(model, frontend),
        identity=file_identity([Path(spec) / BEST], meta["labels"]), feature_model=model,
        frontend_fingerprint=meta["frontend_fingerprint"], sample_rate=frontend.sample_rate,
        info={"arch": meta["arch"], "metrics": meta.get("metrics", {})},
    )


def load_torchscript_teacher(spec: str, options: dict | None = None) -> Teacher:
    """A TorchScript file: forward (B, samples) -> (B, labels); labels embedded or beside it."""
    reject_options(spec, options or {}, ("labels",))
    path = Path(spec)
    if not path.is_file():
        raise TinyearError(f"{path}: no such TorchScript file")
    extra = {"labels.json": ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # torch raises RuntimeError/ValueError for non-TorchScript files
        raise TinyearError(f"{path}: not a TorchScript model ({first_line(exc, 120)}); save one "
                           "with torch.jit.save") from None
    labels = json.loads(extra["labels.json"]) if extra["labels.json"] else None
    if not labels:
        try:
            labels = read_labels(path, (options or {}).get("labels"))
        except TinyearError:
            raise TinyearError(f"{path}: the TorchScript teacher has no labels; save it with "
                               "_extra_files={'labels.json': json.dumps(labels)} or put labels.txt beside it") from None
    return Teacher(kind="torchscript", source=str(path), labels=[str(x) for x in labels], module=module,
                   identity=file_identity([path], labels))


class HFTeacherModule(nn.Module):
    """A Hugging Face audio-classification model with its own feature extractor, as waves -> logits."""

    def __init__(self, model, extractor, sample_rate: int = 16000):
        super().__init__()
        self.model = model
        self.extractor = extractor
        self.sample_rate = sample_rate

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        x = waves.detach().cpu().numpy().astype(np.float32)
        want = int(getattr(self.extractor, "sampling_rate", self.sample_rate))
        if want != self.sample_rate:
            from tinyear.device.audio import resample

            x = np.stack([resample(w, self.sample_rate, want) for w in x])
        inputs = self.extractor(list(x), sampling_rate=want, return_tensors="pt", padding=True)
        device = next(self.model.parameters()).device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        return self.model(**inputs).logits  # (B, labels)


def load_hf_teacher(spec: str, options: dict | None = None) -> Teacher:
    """A local Hugging Face audio-classification folder (config.json, weights, preprocessor_config.json)."""
    reject_options(spec, options or {}, ())
    folder = Path(spec)
    if not (folder / "config.json").is_file():
        raise TinyearError(f"{folder}: not a Hugging Face model folder (no config.json); save one with "
                           "model.save_pretrained() and feature_extractor.save_pretrained()")
    try:
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise TinyearError("Hugging Face teachers need transformers: pip install 'tinyear[host]'") from None
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForAudioClassification.from_pretrained(str(folder), local_files_only=True)
        extractor = AutoFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise TinyearError(f"{folder}: cannot load it as an audio-classification model: "
                           f"{first_line(exc, 160)}") from None
    model.eval()
    id2label = model.config.id2label
    labels = [str(id2label[i]) for i in range(len(id2label))]
    weights = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".json")]
    return Teacher(kind="huggingface", source=str(folder), labels=labels, module=HFTeacherModule(model, extractor),
                   identity=file_identity(weights, labels), info={"model_type": model.config.model_type})


def load_factory_teacher(spec: str, options: dict | None = None) -> Teacher:
    """`module:function` or `file.py:function`; the function returns (nn.Module, labels)."""
    reject_options(spec, options or {}, ())
    target, _, func = spec.rpartition(":")
    if not target or not func:
        raise TinyearError(f"teacher factory {spec!r} must look like package.module:function or file.py:function")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise TinyearError(f"{path}: no such file for teacher factory {spec!r}")
            module_spec = importlib.util.spec_from_file_location(f"tinyear_teacher_{path.stem}", path)
            mod = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(target)
    except TinyearError:
        raise
    except ImportError as exc:
        raise TinyearError(f"teacher factory {spec!r}: cannot import {target} ({first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001  (the user's module failed while importing: one line)
        raise TinyearError(f"teacher factory {spec!r}: importing {target} raised {type(exc).__name__}: "
                           f"{first_line(exc)}") from None
    fn = getattr(mod, func, None)
    if not callable(fn):
        raise TinyearError(f"teacher factory {spec!r}: {target} has no function {func}")
    try:
        made = fn()
    except Exception as exc:  # noqa: BLE001  (the user's code: one line, not its traceback)
        raise TinyearError(f"teacher factory {spec!r} raised {type(exc).__name__}: {first_line(exc)}") from None
    if not (isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], nn.Module)):
        raise TinyearError(f"teacher factory {spec!r} must return (torch.nn.Module, labels), got {type(made).__name__}")
    module, labels = made
    labels = [str(x) for x in labels]
    try:  # the user's forward, once on a silent 1 s clip: a broken one fails here in one line, not later
        with torch.no_grad():
            width = tuple(module.eval()(torch.zeros(1, 16000)).shape)
    except Exception as exc:  # noqa: BLE001
        raise TinyearError(f"teacher factory {spec!r}: its module raised {type(exc).__name__} on a 1 s clip: "
                           f"{first_line(exc)}") from None
    if width != (1, len(labels)):
        raise TinyearError(f"teacher factory {spec!r}: its module gives shape {width} for one 1 s clip, not "
                           f"(1, {len(labels)}) for its {len(labels)} labels")
    return Teacher(kind="factory", source=spec, labels=labels, module=module.eval(),
                   identity=module_identity(module, labels, spec))


def _tf_loader(name: str):
    """A loader from `tfteachers`, imported when used (it is large and may import tensorflow)."""
    def load(spec: str, options: dict | None = None) -> Teacher:
        from . import tfteachers

        return getattr(tfteachers, name)(spec, options or {})
    return load


def load_backbone(spec: str, options: dict | None = None) -> Teacher:
    """A backbone run folder (`tinyear teacher --backbone`): `tinyear.host.backbone`, imported when used."""
    from .backbone import load_backbone_teacher

    return load_backbone_teacher(spec, options)


TEACHER_LOADERS = {
    "backbone": load_backbone,
    "run": load_run_teacher,
    "torchscript": load_torchscript_teacher,
    "huggingface": load_hf_teacher,
    "factory": load_factory_teacher,
    "tflite": _tf_loader("load_tflite_teacher"),
    "tf": _tf_loader("load_graph_teacher"),
    "savedmodel": _tf_loader("load_savedmodel_teacher"),
}
OPTION_KEYS = ("labels", "scores", "input", "output", "signature", "threads", "samples", "weight")


def split_options(spec: str) -> tuple[str, dict]:
    """`PATH,key=value,...` -> (PATH, {key: value}). Only known keys (OPTION_KEYS) split, so a path with
    a comma still works; `weight` is the ensemble's, the rest go to the loader."""
    parts = str(spec).split(",")
    options: dict = {}
    while len(parts) > 1:
        key, sep, value = parts[-1].partition("=")
        if not sep or key.strip() not in OPTION_KEYS:
            break
        options[key.strip()] = value.strip()
        parts.pop()
    return ",".join(parts), dict(reversed(list(options.items())))


def teacher_kind(spec: str) -> tuple[str, str]:
    """(kind, rest) for a teacher spec without its options: an explicit `KIND:rest` prefix (KIND in
    TEACHER_LOADERS), else by what is there: a backbone run folder (head.pt), a run folder (best.pt), a Hugging Face folder
    (config.json), a SavedModel folder (saved_model.pb), a `.tflite` file, a `.pb` file (a frozen
    graph), any other file (TorchScript), `x:y` that is not a path (a factory)."""
    head, sep, rest = spec.partition(":")
    if sep and head in TEACHER_LOADERS:
        return head, rest
    path = Path(spec)
    if path.is_dir():
        if (path / "head.pt").exists():  # before the plain run check: a backbone run has a run.json too
            return "backbone", spec
        if (path / "best.pt").exists() or (path / "last.pt").exists() or (path / "run.json").exists():
            return "run", spec
        if (path / "config.json").exists():
            return "huggingface", spec
        if (path / "saved_model.pb").exists():
            return "savedmodel", spec
        raise TinyearError(f"{path}: neither a tinyear run folder (best.pt), a Hugging Face model folder "
                           "(config.json) nor a TensorFlow SavedModel (saved_model.pb)")
    if path.is_file():
        if path.suffix == ".py":
            raise TinyearError(f"{path}: a Python file; name the function too: {path}:make_teacher")
        if path.suffix == ".tflite":
            return "tflite", spec
        if path.suffix == ".pb":
            return "tf", spec
        if path.suffix in (".pt", ".pth", ".jit", ".ts", ".torchscript"):
            return "torchscript", spec
        head = path.read_bytes()[:8]
        if len(head) >= 8 and head[4:8] == b"TFL3":
            return "tflite", spec
        return "torchscript", spec
    target, sep, func = spec.rpartition(":")
    if sep and func.isidentifier() and (target.endswith(".py") or all(p.isidentifier() for p in target.split("."))):
        return "factory", spec
    raise TinyearError(f"teacher {spec!r}: no such file or folder, and not a module:function factory")


def resolved_spec(spec: str) -> str:
    """The spec with its path made absolute (options kept): what a run records, to load again from
    anywhere."""
    body, options = split_options(str(spec))
    kind, rest = teacher_kind(body)
    if kind != "factory":
        rest = str(Path(rest).resolve())
    elif rest.rpartition(":")[0].endswith(".py"):  # a factory in a file: the file's path, made absolute
        target, _, func = rest.rpartition(":")
        rest = f"{Path(target).resolve()}:{func}"
    explicit = body.partition(":")[0] == kind
    return (f"{kind}:" if explicit else "") + rest + "".join(f",{k}={v}" for k, v in options.items())


def load_teacher(spec: str) -> Teacher:
    """A teacher from a spec string (`[KIND:]PATH[,key=value...]`, see `teacher_kind` and
    `split_options`), on the CPU in eval mode. A `weight` option is the ensemble's and ignored here."""
    body, options = split_options(str(spec))
    options.pop("weight", None)
    kind, rest = teacher_kind(body)
    teacher = TEACHER_LOADERS[kind](rest, options)
    if kind != "factory":
        teacher.source = str(Path(rest).resolve())  # recorded in runs: must load again from anywhere
    if not teacher.labels:
        raise TinyearError(f"teacher {spec}: it has no labels")
    return teacher
