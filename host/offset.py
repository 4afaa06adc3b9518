"""The `_unknown_` offset of an export: a constant added to the student's `_unknown_` logit, chosen on
the validation split and folded into the last layer's bias before the int8 conversion.

Why: a keyword model meets far more other words in a room than its training data held (the shipped
recipe has 260 recorded clips of 20 other words), so it calls unfamiliar short words keywords (`dog`
-> down, `bed` -> left). Moving the `_unknown_` logit by a constant is post-hoc logit adjustment (Menon
et al., 2021, "Long-tail learning via logit adjustment"): it shifts the boundary between `_unknown_`
and the words without retraining, and it costs the device nothing (the bias is already there; the
bundle format and the listener are unchanged). docs/BENCHMARKS.md, "The `_unknown_` offset", has what
it did to the shipped bundle on people and in streams.

The choice: each offset of GRID (0 to 4 in steps of 0.25, only ever toward `_unknown_`) scored on the
clips `choice.choosing_clips` names (the recorded clips of validation where real clips are filled with
synthetic ones, else the whole split) with the float student; the highest accuracy wins, ties to the
smaller offset, so 0 stays unless something beats it. Test and real-speech numbers play no part.

Imports numpy and torch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from tinyear.device.errors import TinyearError

from .choice import choosing_clips

UNKNOWN = "_unknown_"
GRID = tuple(round(0.25 * i, 2) for i in range(17))  # 0.0 .. 4.0


@dataclass(frozen=True)
class OffsetChoice:
    offset: float  # added to the _unknown_ logit
    chosen_on: str  # "the validation split's N recorded clips", "given", ...
    accuracy_before: float | None  # percent, float student, on those clips
    accuracy_after: float | None
    scores: dict  # offset -> accuracy (percent) on those clips

    def record(self) -> dict:
        """JSON-ready, for the bundle's metrics."""
        return {"offset": self.offset, "chosen_on": self.chosen_on, "accuracy_before": self.accuracy_before,
                "accuracy_after": self.accuracy_after, "scores": {f"{k:g}": v for k, v in self.scores.items()}}


def parse_offset(text: str) -> float | None:
    """`--unknown-offset` value: "auto" -> None (choose), else a number >= 0."""
    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise TinyearError(f"--unknown-offset {text!r}: give auto or a number (0 turns it off)") from None
    if not np.isfinite(value) or value < 0:
        raise TinyearError(f"--unknown-offset {text!r}: give auto or a number >= 0 (0 turns it off)")
    return value


def choose_offset(logits: np.ndarray, y: np.ndarray, labels, sources, grid=GRID) -> OffsetChoice:
    """The offset of `grid` that scores best on the choosing clips of the validation split.

    logits (N, labels) of the float student, y (N,) label indices, sources (N,) each clip's source."""
    labels = list(labels)
    if UNKNOWN not in labels:
        return OffsetChoice(0.0, "no _unknown_ label", None, None, {})
    mask, basis = choosing_clips(sources)
    z, t = np.asarray(logits, dtype=np.float64)[mask], np.asarray(y)[mask]
    if len(t) == 0 or not (t == labels.index(UNKNOWN)).any():
        return OffsetChoice(0.0, f"{basis} (no {UNKNOWN} clips there: left at 0)", None, None, {})
    u = labels.index(UNKNOWN)
    scores = {}
    for offset in grid:
        shifted = z.copy()
        shifted[:, u] += offset
        scores[float(offset)] = round(100.0 * float((shifted.argmax(axis=1) == t).mean()), 3)
    best = max(scores.values())
    offset = min(o for o, s in scores.items() if s == best)  # ties to the smaller offset
    return OffsetChoice(offset, basis, scores.get(0.0), best, scores)


def fold_offset(model, labels, offset: float):
    """A copy of `model` whose `_unknown_` logit is `offset` higher: added to the bias of its last
    linear layer (the one with one output per label). The model given is left as it was."""
    from torch import nn

    labels = list(labels)
    if offset == 0:
        return model
    if UNKNOWN not in labels:
        raise TinyearError(f"--unknown-offset {offset:g}: the model has no {UNKNOWN} label; give 0")
    model = copy.deepcopy(model)
    last = getattr(model, "fc", None)
    if not (isinstance(last, nn.Linear) and last.out_features == len(labels)):
        heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == len(labels)]
        last = heads[-1] if heads else None
    if last is None or last.bias is None:
        raise TinyearError(f"this student has no final linear layer with a bias to carry the {UNKNOWN} offset; "
                           "export it with --unknown-offset 0")
    import torch

    with torch.no_grad():
        last.bias[labels.index(UNKNOWN)] += float(offset)
    return model
