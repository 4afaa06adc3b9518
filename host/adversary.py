"""The source adversary: student features in which a synthetic voice and a real one saying the same word
look alike.

Where a dataset is real for some words and synthetic for others (600 real clips of `up`, 8 of `on`
filled with espeak-ng), the source is a shortcut: the student learns that a real voice says one of the
words it heard real clips of, and sends a real `off` to `up` (FINDINGS.md). Domain-adversarial
training (Ganin & Lempitsky 2015: a gradient reversal layer) takes that shortcut out of the student's
pooled embedding, the input of its last linear layer: a small head beside the student tries to tell
from the embedding whether a clip is real or synthetic, and the gradient that reaches the student is
reversed, so the student learns features in which the head cannot.

The head is conditional on the label (one real/synthetic logit per label, in the spirit of Long et al.
2018, conditional adversarial adaptation): real and synthetic clips of the *same* word must look alike,
while what separates words is left alone even where it follows the source (a word with only synthetic
clips). Only labels with both real and synthetic training clips take part; noise clips never do. The
default draw (`balance="source"`) gives a label's real and synthetic clips equal shares, so the head's
plain mean loss weighs both sides alike.

The reversal's strength rises from 0 to `weight` over the run (2 / (1 + exp(-10 p)) - 1 of it at
progress p, as in the paper): early on the features are still forming and the head's judgement is
noise. The head never reaches the student's checkpoint; export never sees it.

Imports torch, numpy and the source names of `tinyear.host.data`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import SOURCES

REAL, SYNTHETIC = SOURCES.index("real"), SOURCES.index("synthetic")  # Clip.source codes in the feature set


class _Reverse(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by -scale."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """x, with its gradient multiplied by -scale on the way back."""
    return _Reverse.apply(x, scale)


def ramp(progress: float) -> float:
    """The share of the full reversal strength at training progress 0..1: 0 at the start, ~1 at the end."""
    return 2.0 / (1.0 + math.exp(-10.0 * min(max(progress, 0.0), 1.0))) - 1.0


def eligible_labels(y: np.ndarray, source: np.ndarray, num_labels: int) -> np.ndarray:
    """(num_labels,) bool: the labels that have both real and synthetic training clips."""
    y, source = np.asarray(y), np.asarray(source)
    real = np.bincount(y[source == REAL], minlength=num_labels) > 0
    synthetic = np.bincount(y[source == SYNTHETIC], minlength=num_labels) > 0
    return real & synthetic


class SourceAdversary(nn.Module):
    """The head: (B, width) embeddings and (B,) labels -> (B,) logits of "synthetic"."""

    def __init__(self, width: int, num_labels: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, num_labels))

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor:
        logits = self.net(reverse_gradient(embedding, scale))  # (B, labels)
        return logits.gather(1, labels.view(-1, 1)).squeeze(1)  # (B,)


class Tap:
    """Keeps the input of a model's last linear layer (`fc`) from its latest forward pass."""

    def __init__(self, model: nn.Module):
        fc = getattr(model, "fc", None)
        if not isinstance(fc, nn.Linear):
            raise ValueError(f"{type(model).__name__} has no final linear layer `fc` to take its embedding from")
        self.width = fc.in_features
        self.value: torch.Tensor | None = None
        fc.register_forward_pre_hook(self._keep)

    def _keep(self, module, inputs) -> None:
        self.value = inputs[0]


class AdversaryTerm:
    """What the training loop adds to a step when the adversary is on: the head, the tap on the student,
    the labels that take part and the strength; `loss(labels, source, progress)` after the student's
    forward pass -> (loss over the batch's eligible clips, correct guesses, clips judged)."""

    def __init__(self, model: nn.Module, y: np.ndarray, source: np.ndarray, num_labels: int, weight: float,
                 device: torch.device):
        self.tap = Tap(model)
        self.eligible = torch.from_numpy(eligible_labels(y, source, num_labels)).to(device)  # (labels,)
        self.head = SourceAdversary(self.tap.width, num_labels).to(device)
        self.weight = weight

    def loss(self, labels: torch.Tensor, source: torch.Tensor, progress: float):
        emb = self.tap.value  # (B, width)
        take = self.eligible[labels] & ((source == REAL) | (source == SYNTHETIC))  # (B,)
        if not bool(take.any()):
            return torch.zeros((), device=emb.device), 0, 0
        logit = self.head(emb[take], labels[take], self.weight * ramp(progress))  # (b,)
        target = (source[take] == SYNTHETIC).float()  # (b,)
        loss = F.binary_cross_entropy_with_logits(logit, target)
        correct = int(((logit > 0).float() == target).sum())
        return loss, correct, int(take.sum())
