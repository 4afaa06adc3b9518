"""Teachers: large models whose outputs a student learns from, loaded by kind, and the map from their
labels to the student's.

A teacher maps a batch of 16 kHz float32 waveforms (B, samples) to logits over its own labels and keeps
its own front end; only the student is bound to the shared one. Kinds (`TEACHER_LOADERS`, chosen by
`load_teacher(spec)`):
- `run`: a folder written by `tinyear teacher` (the built-in `CNNTeacher` below, over the shared
  log-mel features, so it can also take the student's feature batch directly: `feature_model`);
- `torchscript`: a TorchScript file whose forward takes (B, samples) and returns (B, labels) logits,
  labels in its `labels.json` extra file (`torch.jit.save(m, path, _extra_files={"labels.json": ...})`)
  or in a `labels.txt` / `<file>.labels.txt` beside it, one a line;
- `huggingface`: a local folder with an audio-classification model and its feature extractor
  (`save_pretrained`), labels from `config.id2label`; nothing is downloaded;
- `factory`: `module:function` or `path/to/file.py:function`, a function returning
  `(module, labels)` where `module(waves)` gives logits.

`LabelMap` turns teacher probabilities into the student's labels: a teacher label with the same name
(case and surrounding underscores ignored; "silence"/"background_noise" = `_silence_`, "unknown" =
`_unknown_`) maps to it, and the probabilities of every other teacher label are summed into
`_unknown_`. Student labels the teacher cannot speak for (say `_silence_` for a 35-word teacher) get no
distillation term; their clips learn from the labels alone.

Imports torch, numpy and `tinyear.device`; transformers only inside the Hugging Face loader. Never the
training loop.
"""

from __future__ import annotations

from . import ompwait  # noqa: F401  (before torch: see the module)

import hashlib
import importlib
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinyear.device.errors import TinyearError
from tinyear.device.features import DEFAULT_CONFIG, FrontendConfig, fingerprint, fit_clip, log_mel

UNKNOWN, SILENCE = "_unknown_", "_silence_"


# -- the built-in teacher -------------------------------------------------------------------------------


def _conv(cin: int, cout: int, stride=1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class CNNTeacher(nn.Module):
    """The built-in teacher: a plain CNN over shared log-mel features (B, frames, bins), >= 1M
    parameters yet cheap to train on two CPU cores. It halves the map four times early (98 x 40 ->
    7 x 3) and spends its parameters where positions are few: the widest convs run on 21 positions and a
    two-layer head on the pooled vector. Not meant for a device (no int8 constraint): it normalises its
    input with a batch norm and pads freely."""

    def __init__(self, num_labels: int, width: int = 32, head: int = 512, dropout: float = 0.3):
        super().__init__()
        w = width
        self.norm = nn.BatchNorm2d(1)  # learns the input's mean and scale (log-mel is about -8 +- 4)
        self.features = nn.Sequential(
            _conv(1, w, stride=2),  # (B, w, 49, 20)
            _conv(w, 2 * w, stride=2),  # (B, 2w, 25, 10)
            _conv(2 * w, 2 * w),  # (B, 2w, 25, 10)
            _conv(2 * w, 4 * w, stride=2),  # (B, 4w, 13, 5)
            _conv(4 * w, 8 * w, stride=2),  # (B, 8w, 7, 3)
            _conv(8 * w, 8 * w),  # (B, 8w, 7, 3)
        )
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(8 * w, head), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(head, head), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(head, num_labels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x.unsqueeze(1))  # (B, 1, frames, bins)
        x = self.features(x)  # (B, 8w, 7, 3)
        x = x.mean(dim=(2, 3))  # (B, 8w)
        return self.head(x)  # (B, num_labels)


TEACHER_ARCHS_REGISTRY = {"cnn-teacher": (CNNTeacher, {"width": 32, "head": 512})}
DEFAULT_TEACHER_ARCH = "cnn-teacher"
ARCHS: dict[str, type] = {"CNNTeacher": CNNTeacher}


def build_teacher_arch(name: str, num_labels: int) -> nn.Module:
    """A freshly initialised built-in teacher by registry name."""
    try:
        cls, kwargs = TEACHER_ARCHS_REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown teacher architecture {name!r}; registered: {', '.join(TEACHER_ARCHS_REGISTRY)}") from None
    return cls(num_labels, **kwargs)


class FeatureTeacherModule(nn.Module):
    """Waveforms -> logits for a model over the shared features: (B, samples) float32 at 16 kHz ->
    numpy log-mel of each clip (`fit_clip`, then `log_mel`: the device's own code, so no port to
    check) -> the feature model. Not differentiable in the waveform, which a teacher never needs."""

    def __init__(self, feature_model: nn.Module, frontend: FrontendConfig = DEFAULT_CONFIG):
        super().__init__()
        self.feature_model = feature_model
        self.frontend = frontend

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        x = waves.detach().cpu().numpy()
        feats = np.stack([log_mel(fit_clip(w, self.frontend), self.frontend) for w in x])  # (B, frames, bins)
        device = next(self.feature_model.parameters()).device
        return self.feature_model(torch.from_numpy(feats).to(device))  # (B, labels)


# -- a loaded teacher -----------------------------------------------------------------------------------


@dataclass
class Teacher:
    """A teacher ready to use. `module(waves (B, samples) float32 16 kHz) -> logits (B, len(labels))`.
    `feature_model`, when set, takes the shared features (B, frames, bins) of `frontend` directly (the
    fast path: no waveform, and it sees exactly the student's augmented batch). `identity` is a hash of
    the weights and labels, the key of cached teacher outputs."""

    kind: str
    source: str
    labels: list[str]
    module: nn.Module
    identity: str
    feature_model: nn.Module | None = None
    frontend_fingerprint: str | None = None
    sample_rate: int = 16000
    info: dict = field(default_factory=dict)

    def accepts_features(self, frontend: FrontendConfig = DEFAULT_CONFIG) -> bool:
        return self.feature_model is not None and self.frontend_fingerprint == fingerprint(frontend)

    def to(self, device) -> "Teacher":
        self.module.to(device)
        return self

    @torch.no_grad()
    def __call__(self, waves) -> torch.Tensor:
        """Logits (B, len(labels)) for waveforms (B, samples), numpy or torch, float32 at 16 kHz."""
        waves = torch.as_tensor(np.asarray(waves, dtype=np.float32)) if not torch.is_tensor(waves) else waves
        self.module.eval()
        return self.module(waves.float()).float()

    def describe(self) -> dict:
        return {"kind": self.kind, "source": self.source, "labels": list(self.labels), "identity": self.identity,
                **self.info}


def module_identity(module: nn.Module, labels, extra: str = "") -> str:
    """sha256 over the module's parameters and buffers (names, shapes, bytes), the labels and `extra`."""
    h = hashlib.sha256()
    for name, t in sorted({**dict(module.named_parameters()), **dict(module.named_buffers())}.items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps(list(labels)).encode())
    h.update(extra.encode())
    return "teacher-" + h.hexdigest()[:16]


def _file_identity(paths, labels) -> str:
    h = hashlib.sha256()
    for p in sorted(Path(p) for p in paths):
        h.update(p.name.encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    h.update(json.dumps(list(labels)).encode())
    return "teacher-" + h.hexdigest()[:16]


# -- loaders --------------------------------------------------------------------------------------------


def load_run_teacher(spec: str) -> Teacher:
    """A folder written by `tinyear teacher` (or any run folder: a student can teach too)."""
    from .runs import BEST, load_run

    model, meta = load_run(spec)
    frontend = meta["frontend_config"]
    return Teacher(
        kind="run", source=str(spec), labels=list(meta["labels"]), module=FeatureTeacherModule(model, frontend),
        identity=_file_identity([Path(spec) / BEST], meta["labels"]), feature_model=model,
        frontend_fingerprint=meta["frontend_fingerprint"], sample_rate=frontend.sample_rate,
        info={"arch": meta["arch"], "metrics": meta.get("metrics", {})},
    )


def _labels_beside(path: Path) -> list[str] | None:
    for candidate in (path.with_name(path.name + ".labels.txt"), path.with_suffix(".labels.txt"),
                      path.parent / "labels.txt"):
        if candidate.is_file():
            return [line.strip() for line in candidate.read_text().splitlines() if line.strip()]
    return None


def load_torchscript_teacher(spec: str) -> Teacher:
    """A TorchScript file: forward (B, samples) -> (B, labels); labels embedded or beside it."""
    path = Path(spec)
    if not path.is_file():
        raise TinyearError(f"{path}: no such TorchScript file")
    extra = {"labels.json": ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # torch raises RuntimeError/ValueError for non-TorchScript files
        raise TinyearError(f"{path}: not a TorchScript model ({str(exc).splitlines()[0][:120]}); save one "
                           "with torch.jit.save") from None
    labels = json.loads(extra["labels.json"]) if extra["labels.json"] else _labels_beside(path)
    if not labels:
        raise TinyearError(f"{path}: the TorchScript teacher has no labels; save it with "
                           "_extra_files={'labels.json': json.dumps(labels)} or put labels.txt beside it")
    return Teacher(kind="torchscript", source=str(path), labels=[str(x) for x in labels], module=module,
                   identity=_file_identity([path], labels))


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


def load_hf_teacher(spec: str) -> Teacher:
    """A local Hugging Face audio-classification folder (config.json, weights, preprocessor_config.json)."""
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
                           f"{str(exc).splitlines()[0][:160]}") from None
    model.eval()
    id2label = model.config.id2label
    labels = [str(id2label[i]) for i in range(len(id2label))]
    weights = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".json")]
    return Teacher(kind="huggingface", source=str(folder), labels=labels, module=HFTeacherModule(model, extractor),
                   identity=_file_identity(weights, labels), info={"model_type": model.config.model_type})


def load_factory_teacher(spec: str) -> Teacher:
    """`module:function` or `file.py:function`; the function returns (nn.Module, labels)."""
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
    except ImportError as exc:
        raise TinyearError(f"teacher factory {spec!r}: cannot import {target} ({exc})") from None
    fn = getattr(mod, func, None)
    if not callable(fn):
        raise TinyearError(f"teacher factory {spec!r}: {target} has no function {func}")
    made = fn()
    if not (isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], nn.Module)):
        raise TinyearError(f"teacher factory {spec!r} must return (torch.nn.Module, labels), got {type(made).__name__}")
    module, labels = made
    labels = [str(x) for x in labels]
    return Teacher(kind="factory", source=spec, labels=labels, module=module.eval(),
                   identity=module_identity(module, labels, spec))


TEACHER_LOADERS = {
    "run": load_run_teacher,
    "torchscript": load_torchscript_teacher,
    "huggingface": load_hf_teacher,
    "factory": load_factory_teacher,
}


def teacher_kind(spec: str) -> tuple[str, str]:
    """(kind, rest) for a teacher spec: an explicit `KIND:rest` prefix (KIND in TEACHER_LOADERS), else
    by what is there: a run folder (best.pt), a Hugging Face folder (config.json), a file (TorchScript),
    `x:y` that is not a path (a factory)."""
    head, sep, rest = spec.partition(":")
    if sep and head in TEACHER_LOADERS:
        return head, rest
    path = Path(spec)
    if path.is_dir():
        if (path / "best.pt").exists() or (path / "last.pt").exists() or (path / "run.json").exists():
            return "run", spec
        if (path / "config.json").exists():
            return "huggingface", spec
        raise TinyearError(f"{path}: neither a tinyear run folder (best.pt) nor a Hugging Face model folder "
                           "(config.json)")
    if path.is_file():
        if path.suffix == ".py":
            raise TinyearError(f"{path}: a Python file; name the function too: {path}:make_teacher")
        return "torchscript", spec
    target, sep, func = spec.rpartition(":")
    if sep and func.isidentifier() and (target.endswith(".py") or all(p.isidentifier() for p in target.split("."))):
        return "factory", spec
    raise TinyearError(f"teacher {spec!r}: no such file or folder, and not a module:function factory")


def load_teacher(spec: str) -> Teacher:
    """A teacher from a spec string (see `teacher_kind`), on the CPU in eval mode."""
    kind, rest = teacher_kind(str(spec))
    teacher = TEACHER_LOADERS[kind](rest)
    if kind != "factory":
        teacher.source = str(Path(rest).resolve())  # recorded in runs: must load again from anywhere
    if not teacher.labels:
        raise TinyearError(f"teacher {spec}: it has no labels")
    return teacher


# -- label map ------------------------------------------------------------------------------------------

_SYNONYMS = {"silence": SILENCE, "background_noise": SILENCE, "background": SILENCE, "noise": SILENCE,
             "unknown": UNKNOWN}


def _canonical(label: str) -> str:
    key = label.strip().lower().strip("_").replace(" ", "_").replace("-", "_")
    return _SYNONYMS.get(key, key)


@dataclass
class LabelMap:
    """Teacher labels -> student labels. `matrix` (teacher, student) is 1 where a teacher label goes;
    every teacher label goes to exactly one student label. `covered[j]` says whether student label j
    gets any teacher label (else the teacher has no opinion on it)."""

    teacher_labels: list[str]
    student_labels: list[str]
    target: list[int]  # per teacher label, its student index
    matched: list[str]  # teacher labels matched by name (or by `overrides`)
    to_unknown: list[str]  # teacher labels summed into _unknown_

    @classmethod
    def build(cls, teacher_labels, student_labels, overrides: dict[str, str] | None = None) -> "LabelMap":
        """Map by name; `overrides` {teacher label: student label} wins. Raises TinyearError naming the
        labels when the teacher's labels cannot be mapped: none of them matches a student label, or some
        match none and the student has no `_unknown_` to take them."""
        teacher_labels, student_labels = list(teacher_labels), list(student_labels)
        overrides = dict(overrides or {})
        bad = sorted(set(overrides.values()) - set(student_labels))
        if bad:
            raise TinyearError(f"--label-map names student labels {', '.join(bad)} that the student does not have "
                               f"(its labels: {', '.join(student_labels)})")
        unknown_override = sorted(set(overrides) - set(teacher_labels))
        if unknown_override:
            raise TinyearError(f"--label-map names teacher labels {', '.join(unknown_override)} that the teacher "
                               "does not have")
        student_index = {_canonical(s): j for j, s in enumerate(student_labels)}
        target, matched, leftover = [], [], []
        for t in teacher_labels:
            j = student_labels.index(overrides[t]) if t in overrides else student_index.get(_canonical(t))
            if j is None:
                leftover.append(t)
                target.append(-1)
            else:
                matched.append(t)
                target.append(j)
        keywords = [s for s in student_labels if s not in (UNKNOWN, SILENCE)]
        if not any(student_labels[j] in keywords for j in target if j >= 0):
            shown = ", ".join(teacher_labels[:12]) + (f", ... ({len(teacher_labels)} in all)" if len(teacher_labels) > 12 else "")
            raise TinyearError(f"the teacher's labels cannot be mapped onto the student's: none of {shown} is one of "
                               f"{', '.join(keywords)}; give --label-map TEACHER=STUDENT pairs or another teacher")
        if leftover:
            if UNKNOWN not in student_labels:
                raise TinyearError(f"teacher labels {', '.join(leftover)} match no student label and the student has "
                                   f"no {UNKNOWN} to take them; map them with --label-map TEACHER=STUDENT")
            u = student_labels.index(UNKNOWN)
            target = [u if j < 0 else j for j in target]
        return cls(teacher_labels, student_labels, target, matched, leftover)

    @property
    def matrix(self) -> torch.Tensor:
        m = torch.zeros(len(self.teacher_labels), len(self.student_labels))
        m[torch.arange(len(self.target)), torch.tensor(self.target)] = 1.0
        return m

    @property
    def covered(self) -> torch.Tensor:
        """(student labels,) bool: which student labels some teacher label maps to."""
        c = torch.zeros(len(self.student_labels), dtype=torch.bool)
        c[torch.tensor(sorted(set(self.target)))] = True
        return c

    @property
    def is_identity(self) -> bool:
        return self.teacher_labels == self.student_labels

    def log_probs(self, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """(B, teacher) logits -> (B, student) log of the teacher's softmax(logits / T) probabilities
        summed per student label (-inf for uncovered labels)."""
        logp = torch.log_softmax(teacher_logits / temperature, dim=-1)  # (B, teacher)
        if self.is_identity:
            return logp
        m = self.matrix.to(teacher_logits.device)  # (teacher, student)
        masked = logp.unsqueeze(2) + torch.log(m).unsqueeze(0)  # (B, teacher, student); log 0 = -inf
        return torch.logsumexp(masked, dim=1)  # (B, student)

    def logits(self, teacher_logits: torch.Tensor) -> torch.Tensor:
        """(B, teacher) logits -> (B, student) logits whose softmax is the mapped probabilities:
        log-sum-exp of the member logits (the logits themselves when the labels are the same);
        -inf for uncovered labels. What the MSE distillation loss compares with the student's."""
        if self.is_identity:
            return teacher_logits
        m = self.matrix.to(teacher_logits.device)
        return torch.logsumexp(teacher_logits.unsqueeze(2) + torch.log(m).unsqueeze(0), dim=1)

    def describe(self) -> dict:
        uncovered = [s for s, c in zip(self.student_labels, self.covered.tolist()) if not c]
        return {"matched": self.matched, "to_unknown": self.to_unknown, "uncovered_student_labels": uncovered}


def parse_label_map(pairs) -> dict[str, str]:
    """["teacher=student", ...] -> {teacher: student}; TinyearError on a malformed pair."""
    out = {}
    for pair in pairs or ():
        t, sep, s = pair.partition("=")
        if not sep or not t or not s:
            raise TinyearError(f"--label-map {pair!r}: write TEACHER_LABEL=STUDENT_LABEL")
        out[t] = s
    return out


def note(line: str) -> None:
    print(f"tinyear: {line}", file=sys.stderr)
