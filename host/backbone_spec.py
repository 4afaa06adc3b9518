"""What a pretrained backbone is (its model files, how a clip becomes windows) and how the head over it
trains: numbers only, so that `tinyear teacher`'s options read them without importing torch. The work
is in `tinyear.host.backbone`; the backbone's own numbers (`BackboneSpec`) are the device's
(`tinyear.device.backbone`), which runs it from a bundle. Standard library and `tinyear.device` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from tinyear.device.backbone import BACKBONES, BackboneSpec  # noqa: F401  (the numbers live with the device)


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
    variants: int = 0
    """Augmented copies of each training clip embedded beside the clean one (`backbone.augmented_embeddings`:
    the students' waveform augmentation); 0: clean clips only."""
    members: int = 3
    """Heads trained from seeds seed, seed + 1, ... and averaged (`backbone.HeadEnsemble`): steadier than
    one (docs/BENCHMARKS.md, "Your own words ... on the device")."""
