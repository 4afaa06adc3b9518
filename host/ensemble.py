"""Several teachers as one, in the student's labels: weights, a label map per teacher, and per-class
sources.

`--teacher` may be given more than once, each with an optional `,weight=W` (default 1). Each teacher's
probabilities are first mapped into the student's labels (its own `LabelMap`, with its own
`--label-map N:TEACHER=STUDENT` pairs), then averaged with the weights. Where the teachers are weak a
class can be taken elsewhere (`--teacher-class LABEL=SOURCE`):
- `LABEL=labels`: no teacher speaks for LABEL; its clips learn from their labels alone, and the
  teachers' probability for it is dropped from every other clip's target (the rest renormalised). For
  `_silence_` with teachers that call room noise a word, this is what the labels are better at.
- `LABEL=N` (1-based teacher number): LABEL's probability comes from teacher N alone (the others'
  shares are rescaled to fill the rest).
The result is a `Teacher` whose labels are the student's (less those taken from the labels) and whose
logits are log-probabilities, so the ordinary `LabelMap` and the KL term apply unchanged.

Outputs are cached per member teacher (`featcache.teacher_outputs` combines them with `combine`), so
trying other weights or sources on the validation split costs no new teacher pass.

Imports torch; the teachers through `tinyear.host.teachers`.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn

from tinyear.device.errors import TinyearError
from tinyear.device.fileio import sha256_bytes

from .labelmap import LabelMap
from .teacher_base import Teacher
from .teachers import load_teacher, split_options


def parse_label_maps(pairs, count: int) -> list[dict[str, str]]:
    """["[N:]TEACHER=STUDENT", ...] -> one {teacher label: student label} per teacher; a pair without N
    applies to every teacher that has that label."""
    out: list[dict[str, str]] = [{} for _ in range(count)]
    for pair in pairs or ():
        head, colon, rest = pair.partition(":")
        which = None
        if colon and head.isdigit() and "=" in rest:
            which, pair_text = int(head), rest
        else:
            pair_text = pair
        t, sep, s = pair_text.partition("=")
        if not sep or not t or not s:
            raise TinyearError(f"--label-map {pair!r}: write TEACHER_LABEL=STUDENT_LABEL, or N:TEACHER=STUDENT for "
                               "teacher N")
        if which is not None and not 1 <= which <= count:
            raise TinyearError(f"--label-map {pair!r}: there is no teacher {which} (teachers 1..{count})")
        for i in ([which - 1] if which is not None else range(count)):
            out[i][t] = s
    return out


def parse_class_sources(pairs, count: int, student_labels) -> dict[str, object]:
    """["LABEL=labels" | "LABEL=N", ...] -> {label: "labels" | teacher index (0-based)}."""
    out: dict[str, object] = {}
    for pair in pairs or ():
        label, sep, source = pair.partition("=")
        if not sep or not label or not source:
            raise TinyearError(f"--teacher-class {pair!r}: write LABEL=labels or LABEL=N (teacher N)")
        if label not in student_labels:
            raise TinyearError(f"--teacher-class {pair!r}: the student has no label {label} "
                               f"(its labels: {', '.join(student_labels)})")
        if source == "labels":
            out[label] = "labels"
        elif source.isdigit() and 1 <= int(source) <= count:
            out[label] = int(source) - 1
        else:
            raise TinyearError(f"--teacher-class {pair!r}: the source must be 'labels' or a teacher number 1..{count}")
    return out


class EnsembleModule(nn.Module):
    """Member logits -> the ensemble's log-probabilities over `out_labels` (see the module docstring)."""

    def __init__(self, members: list[Teacher], maps: list[LabelMap], weights: list[float], student_labels: list[str],
                 sources: dict[str, object]):
        super().__init__()
        self.members = members
        self.maps = maps
        self.weights = [float(w) for w in weights]
        self.student_labels = list(student_labels)
        self.sources = dict(sources)
        covered = torch.zeros(len(student_labels), dtype=torch.bool)
        for m in maps:
            covered |= m.covered
        self.keep = [j for j, s in enumerate(student_labels) if covered[j] and sources.get(s) != "labels"]
        self.out_labels = [student_labels[j] for j in self.keep]

    def combine(self, member_logits: list[torch.Tensor]) -> torch.Tensor:
        """[(B, member labels)] -> (B, out labels) log-probabilities."""
        probs = [m.log_probs(z.float()).exp() for m, z in zip(self.maps, member_logits)]  # [(B, S)]
        w = torch.tensor(self.weights, dtype=torch.float32)
        mix = sum(wi * p for wi, p in zip(w, probs)) / w.sum()  # (B, S)
        for label, source in self.sources.items():
            if source == "labels":
                continue
            j = self.student_labels.index(label)
            own = probs[int(source)][:, j]  # (B,)
            rest = mix.sum(dim=1) - mix[:, j]  # (B,)
            scale = ((1.0 - own) / rest.clamp_min(1e-12)).unsqueeze(1)  # (B, 1)
            mix = mix * scale
            mix[:, j] = own
        kept = mix[:, self.keep]  # (B, out)
        kept = kept / kept.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return torch.log(kept.clamp_min(1e-12))

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.combine([m.module(waves) for m in self.members])

    def to(self, *args, **kwargs):  # members are not registered submodules: move them too
        for m in self.members:
            m.module.to(*args, **kwargs)
        return self


def _identity(members, weights, sources, student_labels) -> str:
    blob = json.dumps({"members": [m.identity for m in members], "weights": weights,
                       "sources": {k: str(v) for k, v in sorted(sources.items())}, "labels": student_labels})
    return "ensemble-" + sha256_bytes(blob.encode())[:16]


def load_teachers(specs, student_labels, label_maps=None, class_sources=None) -> tuple[Teacher, LabelMap]:
    """The teacher for `specs` (one spec string or several) and its map onto `student_labels`.

    label_maps: {teacher: student} pairs for all (a dict) or ["[N:]T=S", ...]; class_sources:
    ["LABEL=labels|N", ...] or a parsed dict. One spec and no class sources: that teacher itself (a
    feature teacher keeps its fast path). Otherwise an ensemble (see the module docstring)."""
    specs = [specs] if isinstance(specs, str) else list(specs)
    if not specs:
        raise TinyearError("no teacher given")
    student_labels = list(student_labels)
    if isinstance(label_maps, dict):
        per_teacher = [dict(label_maps) for _ in specs]
    else:
        per_teacher = parse_label_maps(label_maps, len(specs))
    sources = (class_sources if isinstance(class_sources, dict)
               else parse_class_sources(class_sources, len(specs), student_labels))
    members, weights = [], []
    for spec in specs:
        _, options = split_options(spec)
        try:
            weight = float(options.get("weight", 1.0))
        except ValueError:
            raise TinyearError(f"teacher {spec}: weight={options['weight']} is not a number") from None
        if weight <= 0:
            raise TinyearError(f"teacher {spec}: weight must be above 0")
        members.append(load_teacher(spec))
        weights.append(weight)
    maps = [LabelMap.build(t.labels, student_labels, m) for t, m in zip(members, per_teacher)]
    if len(members) == 1 and not sources:
        return members[0], maps[0]
    module = EnsembleModule(members, maps, weights, student_labels, sources)
    info = {"members": [m.describe() for m in members], "weights": weights,
            "class_sources": {k: ("labels" if v == "labels" else int(v) + 1) for k, v in sources.items()}}
    teacher = Teacher(kind="ensemble", source=" + ".join(m.source for m in members), labels=module.out_labels,
                      module=module, identity=_identity(members, weights, sources, student_labels), info=info,
                      members=members, combine=module.combine)
    return teacher, LabelMap.build(teacher.labels, student_labels)


def combine_cached(teacher: Teacher, member_outputs: list[np.ndarray], chunk: int = 4096) -> np.ndarray:
    """Member outputs (K, N, labels_i) -> the ensemble's (K, N, out labels), in chunks."""
    k_count, n = member_outputs[0].shape[:2]
    out = np.zeros((k_count, n, len(teacher.labels)), dtype=np.float32)
    with torch.no_grad():
        for k in range(k_count):
            for s in range(0, n, chunk):
                parts = [torch.from_numpy(np.array(o[k, s : s + chunk], dtype=np.float32)) for o in member_outputs]
                out[k, s : s + chunk] = teacher.combine(parts).numpy()
    return out
