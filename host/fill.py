"""The real + synthetic recipe: synthesize only what a real dataset lacks, and train on the union.

`fill_missing(real_roots, out)` counts what the real data holds (every clip, no silence generated),
synthesizes into `out` the words below a minimum count, the `_unknown_` it lacks and background noise
when it has no recordings (`tinyear.host.synth`), says what it filled, and returns the union as one
`Dataset`. Imports numpy, `tinyear.host.data` and `tinyear.host.synth`; never torch.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np

from .data import UNKNOWN, WORDS, Dataset, load_dataset
from .synth import DEFAULT_SYNTH, SynthConfig, synthesize


def fill_missing(
    real_roots,
    out: str | Path,
    words=WORDS,
    *,
    min_per_word: int = 200,
    per_word: int | None = None,
    mix_per_word: int = 0,
    unknown_ratio: float = 1.0,
    seed: int = 0,
    jobs: int | None = None,
    engines: str | list[str] = "auto",
    config: SynthConfig = DEFAULT_SYNTH,
    progress: bool = True,
    force: bool = False,
    report=None,
    **load_kwargs,
) -> Dataset:
    """Synthesize what real data lacks into `out`, print what was filled, return the union Dataset.

    Filled: every word with fewer than `min_per_word` real clips gets `per_word` synthetic ones
    (default: the median real count of the other words, at least min_per_word); with `mix_per_word`,
    every other word gets that many synthetic clips too, so that sounding synthetic does not tell the
    model which word it is (without them, a model trained where only the thin words and `_unknown_`
    are synthetic learns that shortcut and hears a synthetic `stop` as `_unknown_`); `_unknown_` is
    topped up to unknown_ratio x the mean word count; background noise is synthesized only if the
    real data has none. `force`: replace an `out` made by an earlier, different fill. `report`: a function taking
    one line (default: print to stderr). Extra keyword arguments go to load_dataset."""
    say = report or (lambda line: print(line, file=sys.stderr))
    roots = [Path(r) for r in (real_roots if isinstance(real_roots, (list, tuple)) else [real_roots])]
    from .keywords import parse_keywords

    keywords = parse_keywords(words)
    by_label = {k.label: k for k in keywords}
    words = [k.label for k in keywords]
    # Every unknown clip and no silence: this load only counts what the real data holds.
    real = load_dataset(roots, words, seed=seed, allow_missing=True, unknown_ratio=None, silence_ratio=0.0,
                        quiet=not progress, **load_kwargs)
    have = Counter(c.word for c in real.clips if c.label in words)
    thin = [w for w in words if have[w] < min_per_word]
    full = sorted(have[w] for w in words if w not in thin)
    n_word = per_word or max(min_per_word, int(np.median(full)) if full else 500)
    mean_after = (sum(have[w] for w in words) + n_word * len(thin)) / len(words)
    have_unknown = sum(1 for c in real.clips if c.label == UNKNOWN)
    n_unknown = max(0, int(round(unknown_ratio * mean_after)) - have_unknown)
    need_noise = real.noise_source != "real"
    mixed = [w for w in words if w not in thin] if mix_per_word > 0 else []
    if not thin and not mixed and n_unknown == 0 and not need_noise:
        say(f"tinyear: {', '.join(str(r) for r in roots)} has enough of every word, _unknown_ and noise; "
            "nothing synthesized")
        return load_dataset(roots, words, seed=seed, quiet=True, **load_kwargs)
    # Without a mix, a plain count keeps the synthesis request (and so the reuse of earlier fills) as it was.
    make, counts = (words, {w: n_word if w in thin else mix_per_word for w in words}) if mixed else (thin, n_word)
    synthesize(out, [by_label[w] for w in make], per_word=counts, unknown=n_unknown, seed=seed, jobs=jobs, engines=engines,
               write_noise=need_noise, config=config, progress=progress, force=force,
               extra={"fill_from": [str(r) for r in roots],
                      "real_counts": {**{w: have[w] for w in words}, UNKNOWN: have_unknown}})
    for w in thin:
        say(f"tinyear: filled {w}: {have[w]} real + {n_word} synthetic clips (fewer than {min_per_word} real)")
    if mixed:
        say(f"tinyear: mixed in {mix_per_word} synthetic clips of each of {', '.join(mixed)}, so that a synthetic "
            "voice does not predict the label")
    if n_unknown:
        say(f"tinyear: filled {UNKNOWN}: {have_unknown} real + {n_unknown} synthetic clips of other words")
    say(f"tinyear: {'filled _silence_ and noise augmentation with synthetic noise (no real background recordings)' if need_noise else '_silence_ cut from the real background recordings'}")
    say(f"tinyear: training on the union of {', '.join(str(r) for r in roots)} and {out}")
    return load_dataset([*roots, Path(out)], words, seed=seed, quiet=True, **load_kwargs)
