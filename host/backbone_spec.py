"""What a pretrained backbone is (its model files, how a clip becomes windows) and how the head over it
trains: numbers only, so that `tinyear teacher`'s options read them without importing torch. The work
is in `tinyear.host.backbone`. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackboneSpec:
    """One pretrained backbone: where its files are and what a clip becomes."""

    files: tuple[str, ...]
    """Model files inside the `pyopen_wakeword` package's `models/` folder, in running order."""
    pad_seconds: float = 0.25
    """Zeros added before and after the 1 s clip, so that the embedding windows cover all of it."""
    mel_frames: int = 76
    """Mel frames (10 ms each) one embedding window sees."""
    step_frames: int = 8
    """Frames between embedding windows."""
    windows: int = 9
    """Embedding windows of a padded 1 s clip."""
    dim: int = 96
    """Values of one embedding window."""


BACKBONES = {"speech-embedding": BackboneSpec(files=("melspectrogram.tflite", "embedding_model.tflite"))}


@dataclass(frozen=True)
class HeadConfig:
    """How the head is trained (recorded in run.json)."""

    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    label_smoothing: float = 0.1
    hidden: int = 256
    dropout: float = 0.3
    noise: float = 0.1
    """Gaussian noise added to the normalised training embeddings (times their std): a cheap
    augmentation, since the backbone is frozen."""
    seed: int = 0
