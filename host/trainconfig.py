"""`TrainConfig`: every number that shapes a training run, in a module that imports no torch, so that
the commands can show its defaults in `--help` without loading it (the training loop is `train.fit`)."""

from __future__ import annotations

from dataclasses import dataclass, fields

BALANCE = ("none", "class", "source")
TEACHER_MODES = ("none", "cached", "online")


@dataclass(frozen=True)
class TrainConfig:
    """Every number that shapes a training run (recorded in last.pt and run.json)."""

    epochs: int = 30
    """Most epochs (one pass over the training clips, one random variant each)."""
    batch_size: int = 64
    lr: float = 3e-3
    """Peak learning rate of the one-cycle schedule (AdamW)."""
    weight_decay: float = 1e-3
    patience: int = 8
    """Stop after this many epochs without a better validation accuracy."""
    seed: int = 0
    alpha: float = 0.0
    """Weight of the distillation term (0: labels only)."""
    temperature: float = 4.0
    kd_loss: str = "kl"
    label_smoothing: float = 0.0
    balance: str = "source"
    """How each epoch draws its training clips: "none" (a shuffle: every clip once), "class" (each
    class equally often, with replacement) or "source" (each class equally often and, within a class
    that has both, real and synthetic clips equally often). "source" is what makes a handful of real
    clips of a word filled with synthetic speech count: drawn in proportion, 8 real among 600
    synthetic would be 1% of that word's examples. On a dataset of one source it equals "class"."""
    teacher_mode: str = "none"
    """"none", "cached" or "online"."""
    synthetic_alpha: float | None = None
    """alpha on synthetic clips (None: alpha). A teacher trained on people is a better judge of real
    clips than of synthetic ones: per-source trust."""
    mixup: float = 0.0
    """Fraction of each batch mixed with another example of the batch, by adding their mel energies
    at a uniform random share (log(lam e^x1 + (1 - lam) e^x2): two sounds at once); the label term
    mixes the labels the same way, an online teacher is asked about the mixture itself (function
    matching). Needs teacher_mode "online" or "none"."""

    def __post_init__(self):
        from .kd import KD_LOSSES  # the loss kinds live with the loss (and torch); only checked here

        if self.kd_loss not in KD_LOSSES:
            raise ValueError(f"kd_loss must be one of {KD_LOSSES}")
        if self.teacher_mode not in TEACHER_MODES:
            raise ValueError("teacher_mode must be none, cached or online")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError("alpha must be in [0, 1]")
        if self.synthetic_alpha is not None and not 0.0 <= self.synthetic_alpha <= 1.0:
            raise ValueError("synthetic_alpha must be in [0, 1]")
        if self.balance not in BALANCE:
            raise ValueError(f"balance must be one of {BALANCE}")
        if not 0.0 <= self.mixup <= 1.0:
            raise ValueError("mixup must be in [0, 1]")
        if self.mixup > 0 and self.teacher_mode == "cached":
            raise ValueError("mixup needs the teacher online (cached outputs are of unmixed clips)")


def defaults() -> dict:
    """Field name -> default, read from the dataclass (without constructing one)."""
    return {f.name: f.default for f in fields(TrainConfig)}
