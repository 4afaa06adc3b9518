"""What every teacher loader shares: the `Teacher` object a loader returns, the module that puts the
shared frontend in front of a feature model, identities (the keys of cached teacher outputs), the
check of a spec's options and a labels file beside a model.

Its own module so that the loaders of `teachers` and of `tfteachers` both stand on it, and
`teachers` can reach `tfteachers` without a loop. Imports torch, numpy and `tinyear.device`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinyear.device.errors import TinyearError
from tinyear.device.features import DEFAULT_CONFIG, FrontendConfig, clip_features, fingerprint
from tinyear.device.fileio import sha256_file


class FeatureTeacherModule(nn.Module):
    """Waveforms -> logits for a model over the shared features: (B, samples) float32 at 16 kHz ->
    numpy features of each clip (`clip_features`: the device's own code, so no port to check) -> the
    feature model. Not differentiable in the waveform, which a teacher never needs."""

    def __init__(self, feature_model: nn.Module, frontend: FrontendConfig = DEFAULT_CONFIG):
        super().__init__()
        self.feature_model = feature_model
        self.frontend = frontend

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        x = waves.detach().cpu().numpy()
        feats = np.stack([clip_features(w, self.frontend) for w in x])  # (B, frames, bins)
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
    members: list | None = None  # an ensemble's teachers (`ensemble.load_teachers`)
    combine: object = None  # an ensemble's member logits -> its own (`ensemble.EnsembleModule.combine`)

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


def file_identity(paths, labels, extra: str = "") -> str:
    """sha256 over the files' names and bytes, the labels and `extra` (what changes the outputs)."""
    h = hashlib.sha256()
    for p in sorted(Path(p) for p in paths):
        h.update(p.name.encode())
        h.update(bytes.fromhex(sha256_file(p)))
    h.update(json.dumps(list(labels)).encode())
    h.update(extra.encode())
    return "teacher-" + h.hexdigest()[:16]


def reject_options(spec: str, options: dict, allowed=()) -> None:
    """One line for options a loader does not take."""
    bad = sorted(set(options) - set(allowed))
    if bad:
        takes = f"it takes {', '.join(allowed)}" if allowed else "it takes none"
        raise TinyearError(f"teacher {spec}: option {', '.join(bad)} does not apply to this kind of teacher ({takes})")


def read_labels(path: Path, option: str | None) -> list[str]:
    """Labels from `option` (a file, one a line) or a labels.txt / <model>.labels.txt beside `path`."""
    candidates = [Path(option)] if option else [path.with_name(path.name + ".labels.txt"),
                                                path.with_suffix(".labels.txt"),
                                                (path if path.is_dir() else path.parent) / "labels.txt"]
    for candidate in candidates:
        if candidate.is_file():
            labels = [line.strip() for line in candidate.read_text().splitlines() if line.strip()]
            if labels:
                return labels
    if option:
        raise TinyearError(f"labels={option}: no such labels file (one label a line)")
    raise TinyearError(f"{path}: no labels for this teacher; put labels.txt (one label a line) beside it or "
                       "add ,labels=FILE to the teacher")
