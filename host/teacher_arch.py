"""The built-in teacher's architecture: a plain CNN over the shared log-mel features, and the small
registry `tinyear teacher` builds from. Its own module so that run folders (`runs`), which must know
every architecture a checkpoint may name, and the teacher loaders (`teachers`), which load run folders,
both import it without importing each other.

Imports torch only.
"""

from __future__ import annotations

import torch
from torch import nn


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
