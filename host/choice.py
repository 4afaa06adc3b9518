"""Which validation clips choose: the one rule behind every choice the kit makes on its validation split
(which student ships, the `_unknown_` offset of an export).

Where real clips are filled with synthetic ones, only the recorded clips of validation (people, and
silence cut from recorded noise: every source but synthetic) choose; otherwise the whole split.
Synthetic validation clips score a model on agreeing with the synthetic labels, which a model that
has learnt from people does not do on purpose (docs/BENCHMARKS.md, "Choosing the shipped student").
The rule applies once validation holds at least RECORDED_MIN clips of people and some synthetic ones.

Imports numpy only.
"""

from __future__ import annotations

import numpy as np

RECORDED_MIN = 100


def recorded_rule_applies(real: int, synthetic: int) -> bool:
    """True when a validation split with `real` clips of people and `synthetic` synthetic clips is
    chosen on its recorded clips."""
    return real >= RECORDED_MIN and synthetic > 0


def recorded_clips(sources) -> np.ndarray | None:
    """Boolean mask of the recorded clips (every source but synthetic) among the validation clips whose
    sources ("real", "synthetic", "noise", ...) are given, where the rule reads them alone; else None."""
    sources = np.asarray(list(sources), dtype=object)
    real, synthetic = int((sources == "real").sum()), int((sources == "synthetic").sum())
    return sources != "synthetic" if recorded_rule_applies(real, synthetic) else None


def choosing_clips(sources) -> tuple[np.ndarray, str]:
    """(boolean mask over the validation clips, what it is) from each clip's source."""
    sources = list(sources)  # read twice below: an iterator would be spent by the first
    mask = recorded_clips(sources)
    if mask is not None:
        return mask, f"the validation split's {int(mask.sum()):,} recorded clips"
    return np.ones(len(sources), dtype=bool), "the validation split"
