"""The `_unknown_` offset of an export (`--unknown-offset`, off by default): a constant added to the
student's `_unknown_` logit, given or chosen on the validation split, and folded into the last layer's
bias before the int8 conversion.

Why: a keyword model meets far more other words in a room than its training data held (the shipped
recipe has 260 recorded clips of 20 other words), so it calls unfamiliar short words keywords (`dog`
-> down, `bed` -> left). Moving the `_unknown_` logit by a constant is post-hoc logit adjustment (Menon
et al., 2021, "Long-tail learning via logit adjustment"): it shifts the boundary between `_unknown_`
and the words without retraining, and it costs the device nothing (the bias is already there; the
bundle format and the listener are unchanged). docs/BENCHMARKS.md, "The `_unknown_` offset", has what
it did to the shipped student on people and in streams, and why the validation split cannot choose it
there (its other words are the ones the student trained on), so it stays off unless asked for.

The choice: the offset of GRID (0 to 4 in steps of 0.05, only ever toward `_unknown_`) under which the
float student's probabilities fit the clips `choice.choosing_clips` names best (the recorded clips of
validation where real clips are filled with synthetic ones, else the whole split): the least mean
negative log-likelihood, ties to the smaller offset. The likelihood, not the accuracy, because on a few
hundred clips the accuracy of neighbouring offsets differs by a clip or two, and which one wins is
chance; the likelihood moves smoothly with the offset and every clip counts. It is the maximum-likelihood
correction of the `_unknown_` prior on those clips; a model that already fits them keeps 0. Test and
real-speech numbers play no part.

Imports numpy and torch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from tinyear.device.errors import TinyearError

from .choice import choosing_clips

UNKNOWN = "_unknown_"
GRID = tuple(round(0.05 * i, 2) for i in range(81))  # 0.0 .. 4.0


@dataclass(frozen=True)
class OffsetChoice:
    offset: float  # added to the _unknown_ logit
    chosen_on: str  # "the validation split's N recorded clips", "given (--unknown-offset)", ...
    nll_before: float | None = None  # mean negative log-likelihood of the float student on those clips
    nll_after: float | None = None
    accuracy_before: float | None = None  # percent, float student, on those clips
    accuracy_after: float | None = None

    def record(self) -> dict:
        """JSON-ready, for the bundle's metrics."""
        chosen = self.nll_after is not None  # a given offset was not chosen by anything here
        return {"offset": self.offset, "chosen_on": self.chosen_on, "by": "least negative log-likelihood" if chosen else None,
                "nll_before": self.nll_before, "nll_after": self.nll_after,
                "accuracy_before": self.accuracy_before, "accuracy_after": self.accuracy_after}


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


def _nll_and_accuracy(z: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(t)), t].mean()), 100.0 * float((z.argmax(axis=1) == t).mean())


def choose_offset(logits: np.ndarray, y: np.ndarray, labels, sources, grid=GRID) -> OffsetChoice:
    """The offset of `grid` under which the float student fits the choosing clips of the validation
    split best (least mean negative log-likelihood; ties to the smaller offset).

    logits (N, labels) of the float student, y (N,) label indices, sources (N,) each clip's source."""
    labels = list(labels)
    if UNKNOWN not in labels:
        return OffsetChoice(0.0, "no _unknown_ label")
    mask, basis = choosing_clips(sources)
    z, t = np.asarray(logits, dtype=np.float64)[mask], np.asarray(y)[mask]
    u = labels.index(UNKNOWN)
    if len(t) == 0 or not (t == u).any():
        return OffsetChoice(0.0, f"{basis} (no {UNKNOWN} clips there: left at 0)")
    scored = {}
    for offset in sorted({0.0, *map(float, grid)}):
        shifted = z.copy()
        shifted[:, u] += offset
        scored[offset] = _nll_and_accuracy(shifted, t)
    best = min(scored, key=lambda o: (round(scored[o][0], 9), o))  # ties to the smaller offset
    (nll0, acc0), (nll, acc) = scored[0.0], scored[best]
    return OffsetChoice(best, basis, round(nll0, 5), round(nll, 5), round(acc0, 3), round(acc, 3))


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
    heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == len(labels)]
    last = heads[-1] if heads else None
    if last is None or last.bias is None:
        raise TinyearError(f"this student has no final linear layer with a bias to carry the {UNKNOWN} offset; "
                           "export it with --unknown-offset 0")
    import torch

    with torch.no_grad():
        last.bias[labels.index(UNKNOWN)] += float(offset)
    return model
