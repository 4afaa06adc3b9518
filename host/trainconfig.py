"""`TrainConfig` and `DataOptions`: every number that shapes a training run and the data it sees, in a
module that imports no torch, so that the commands show their defaults in `--help` without loading it
(the training loop is `train.fit`). The built-in teacher's recipe (`TEACHER_RECIPE`) lives here too."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .augment import AugmentConfig

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
    source_adversary: float = 0.0
    """Strength of the source adversary (`tinyear.host.adversary`; 0: off): a head beside the model tries
    to tell real from synthetic clips of the same label by the model's pooled embedding, and the model
    learns, through a reversed gradient, features in which it cannot, so that what synthetic clips teach
    about a word carries over to people. Needs labels with both real and synthetic training clips
    (`tinyear synth --fill-from REAL --mix N` gives every word some)."""

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
        if self.source_adversary < 0:
            raise ValueError("source_adversary must be 0 (off) or more")
        if self.mixup > 0 and self.teacher_mode == "cached":
            raise ValueError("mixup needs the teacher online (cached outputs are of unmixed clips)")


TEACHER_RECIPE = {"epochs": 12, "patience": 4, "lr": 3e-3, "batch_size": 64}
"""How the built-in teacher trains (`tinyear teacher`, the pipeline's teacher step, `train_teacher`):
a larger network that converges in fewer epochs than a student."""


def teacher_config(**overrides) -> TrainConfig:
    """The teacher's TrainConfig: TEACHER_RECIPE, then `overrides` (seed, epochs, ...)."""
    return TrainConfig(**{**TEACHER_RECIPE, **overrides})


def _default_augment():
    from .augment import AugmentConfig  # numpy and scipy, loaded when a DataOptions is made

    return AugmentConfig()


@dataclass(frozen=True)
class DataOptions:
    """Which clips and how they are turned into training features."""

    roots: tuple[str, ...]
    words: tuple[str, ...] | None = None
    """None: the Speech Commands ten."""
    data_seed: int = 0
    """Seed of the dataset's _unknown_/_silence_ picks and of the augmented variants."""
    variants: int = 4
    """Augmented copies of each training clip, made once and cached; each epoch draws one per clip."""
    augment: AugmentConfig = field(default_factory=_default_augment)
    cache_dir: str | None = None
    jobs: int | None = None
    mix_variants: int = 0
    """Mixture variants per clip (featcache.mixture_plan): what a waveform teacher judges."""
    unknown_ratio: float = 1.0
    """`_unknown_` clips per split as a multiple of the mean keyword count (spread evenly over the other
    words); more real non-keyword speech teaches that a real voice is not always a keyword."""
    window_variants: int = 0
    """Stream-aware windows per clip (tinyear.host.windows): the word off-centre, cut off at an edge,
    beside a neighbour's word; labelled by the share of the word inside, or judged by the teacher."""
    level_norm_db: float = 30.0
    """The frontend's level normalisation (FrontendConfig.level_norm_db): each model window's loudest value
    moved to a fixed level by at most this many dB; 0 = off, the features of every run made before it
    (their bundles keep working as they were). Recorded in the run and the bundle. 30 (the default)
    measured well (docs/BENCHMARKS.md, "Microphone level": nothing lost at the nominal level on
    validation, a 30 dB quiet microphone within 2.7 points instead of 9.4, +4 points on people)."""

    @property
    def frontend(self):
        """The FrontendConfig these options train on: the defaults, with level normalisation if asked."""
        from tinyear.device.features import FrontendConfig

        return FrontendConfig(level_norm_db=self.level_norm_db)


def defaults(cls=TrainConfig) -> dict:
    """Field name -> default of a dataclass here (TrainConfig or DataOptions), read without making one."""
    return {f.name: f.default for f in fields(cls)}
