"""The map from a teacher's labels to the student's, and its arithmetic on probabilities.

A teacher label with the same name as a student label (case and surrounding underscores ignored;
"silence"/"background_noise" = `_silence_`, "unknown" = `_unknown_`) maps to it, and the probabilities of
every other teacher label are summed into `_unknown_`. Student labels the teacher cannot speak for (say
`_silence_` for a 35-word teacher, or a class an ensemble takes from the labels) get no distillation
term; their clips learn from the labels alone.

Imports torch only (and the reserved label names).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tinyear.device.errors import TinyearError

UNKNOWN, SILENCE = "_unknown_", "_silence_"

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
