"""`load_dataset`: one or more dataset roots -> a `Dataset` for the words asked for, in named steps:
check the request, scan the roots, drop unreadable files, insist on the words, cut the background
noise, and compose each split (keywords, an even spread of `_unknown_`, real and generated
`_silence_`). What each step decides is described in `tinyear.host.data`. Imports numpy and
`tinyear.device`; never torch.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from tinyear.device.errors import TinyearError

from .dataset import Dataset
from .layout import BACKGROUND, SILENCE, SPLITS, UNKNOWN, WORDS, Clip, check_split, clip_order, default_labels
from .scan import drop_unreadable, scan_root
from .silence import load_noise, silence_clips


def load_dataset(
    root_or_roots,
    words=WORDS,
    *,
    seed: int = 0,
    unknown_ratio: float | None = 1.0,
    silence_ratio: float | None = 1.0,
    validation_percent: float = 10.0,
    testing_percent: float = 10.0,
    only_split: str | None = None,
    require_train: bool = True,
    allow_missing: bool = False,
    skip_unreadable: bool = True,
    sample_rate: int = 16000,
    cache_dir: str | Path | None = None,
    quiet: bool = False,
) -> Dataset:
    """Load one dataset folder, or several as their union, for the keyword `words`.

    unknown_ratio / silence_ratio: `_unknown_` and generated `_silence_` clips per split, as a multiple
    of the mean number of clips per keyword in that split (1.0: as many as an average word); None takes
    every unknown clip and generates no silence beyond a `_silence_/` folder (for evaluation sets).
    validation_percent / testing_percent: the speaker split, for roots without list files.
    only_split: put every clip in this split (e.g. "test" for an evaluation set).
    require_train: refuse a dataset whose train split is empty (scoring one split does not need it).
    allow_missing: accept words with no clips (fill_missing uses it to see what to synthesize).
    skip_unreadable: skip files soundfile cannot open, with a warning that counts them (else fail).
    cache_dir: where the waveform cache goes (default: the user's cache folder, `tinyear.host.cache`).
    Raises TinyearError (one line) for a missing folder, an empty class folder, missing words.
    """
    roots = [Path(r) for r in (root_or_roots if isinstance(root_or_roots, (list, tuple)) else [root_or_roots])]
    words = tuple(words)
    _check_request(roots, words, only_split, validation_percent, testing_percent)
    found = _scan(roots, words, only_split, validation_percent, testing_percent)
    skipped: list[str] = []
    for bucket in ("keyword", "unknown", "silence"):
        found[bucket] = drop_unreadable(found[bucket], skipped)
    _report_unreadable(skipped, found["files"], skip_unreadable, quiet)
    if not allow_missing:
        _check_words_present(roots, words, found["keyword"], found["unknown"])
    noise_by_split, noise_files, noise_source = load_noise(found["noise"], roots, found["sources"], sample_rate, seed,
                                                           only_split, validation_percent, testing_percent)
    clips = _compose_splits(found, words, noise_by_split, seed, unknown_ratio, silence_ratio)
    dataset = Dataset(
        root=roots[0], labels=default_labels(words), clips=clips, noise=noise_by_split.get("train", []), roots=roots,
        words=words, sample_rate=sample_rate, noise_by_split=noise_by_split, noise_source=noise_source,
        noise_files=noise_files, skipped=skipped, cache_dir=Path(cache_dir) if cache_dir else None,
        params={"seed": seed, "unknown_ratio": unknown_ratio, "silence_ratio": silence_ratio,
                "validation_percent": validation_percent, "testing_percent": testing_percent,
                "only_split": only_split},
    )
    if only_split is None and require_train and not dataset.clips_in("train"):
        counts = {split: len(dataset.clips_in(split)) for split in SPLITS[1:]}
        raise TinyearError(
            f"{', '.join(map(str, roots))}: none of its clips fall in the train split (validation "
            f"{counts['validation']}, test {counts['test']}: its list files, or the speaker hash, put them all "
            "there); training needs clips from more speakers, or a folder that is an evaluation set is scored "
            "whole (tinyear evaluate --split all)")
    return dataset


def _check_request(roots: list[Path], words: tuple[str, ...], only_split, validation_percent, testing_percent) -> None:
    if not roots:
        raise TinyearError("no dataset folder given")
    if not words:
        raise TinyearError("no words asked for; name at least one keyword")
    reserved = {UNKNOWN, SILENCE, BACKGROUND} & set(words)
    if reserved:
        raise TinyearError(f"{', '.join(sorted(reserved))} cannot be a keyword: it is a reserved folder name")
    if len(set(words)) != len(words):
        raise TinyearError(f"words repeat: {', '.join(w for w, n in Counter(words).items() if n > 1)}")
    if only_split is not None:
        check_split(only_split)
    if not (0 <= validation_percent and 0 <= testing_percent and validation_percent + testing_percent < 100):
        raise TinyearError("validation_percent and testing_percent must be >= 0 and add up to less than 100")


def _scan(roots: list[Path], words, only_split, validation_percent, testing_percent) -> dict:
    """Every root scanned, as one: {"keyword", "unknown", "silence": [Clip], "noise": [(root, path)],
    "files": count, "sources": [each root's source]}."""
    found = {"keyword": [], "unknown": [], "silence": [], "noise": [], "files": 0, "sources": []}
    for r, root in enumerate(roots):
        one = scan_root(root, r, words, only_split, validation_percent, testing_percent)
        found["sources"].append(one["source"])
        found["files"] += one["files"]
        for bucket in ("keyword", "unknown", "silence"):
            found[bucket] += one[bucket]
        found["noise"] += [(r, p) for p in one["noise"]]
    return found


def _report_unreadable(skipped: list[str], total_files: int, skip_unreadable: bool, quiet: bool) -> None:
    if not skipped:
        return
    what = f"{len(skipped)} of {total_files} audio files are unreadable"
    if not skip_unreadable:
        raise TinyearError(f"{what} (first: {skipped[0]}); remove or convert them, or let them be skipped (no --strict)")
    if not quiet:
        print(f"tinyear: warning: {what}; skipped them (first: {skipped[0]})", file=sys.stderr)


def _check_words_present(roots: list[Path], words, keyword: list[Clip], unknown_pool: list[Clip]) -> None:
    have = Counter(c.word for c in keyword)
    missing = [w for w in words if have[w] == 0]
    if not missing:
        return
    where = ", ".join(str(r) for r in roots)
    others = sorted({c.word for c in unknown_pool} - {UNKNOWN})
    hint = f" (its other folders: {', '.join(others[:12])}{', ...' if len(others) > 12 else ''})" if others else ""
    raise TinyearError(
        f"{where} has no clips of {', '.join(missing)}{hint}; record them, choose other --words, or fill "
        f"them with synthetic speech: tinyear synth OUT --fill-from {roots[0]}")


def _compose_splits(found: dict, words, noise_by_split: dict, seed: int, unknown_ratio, silence_ratio) -> list[Clip]:
    """Every split's clips in a fixed order: its keywords, `_unknown_` at unknown_ratio x the mean keyword
    count (spread evenly over the other words), its real `_silence_` clips and generated ones up to
    silence_ratio x that count. Each split draws from its own generator."""
    rng_root = np.random.SeedSequence([seed, 0x7469])  # independent streams per split and purpose
    split_rngs = {s: np.random.default_rng(child) for s, child in zip(SPLITS, rng_root.spawn(len(SPLITS)))}
    clips: list[Clip] = []
    for split in SPLITS:
        kw = [c for c in found["keyword"] if c.split == split]
        mean_per_word = len(kw) / len(words)
        rng = split_rngs[split]
        pool = [c for c in found["unknown"] if c.split == split]
        want = len(pool) if unknown_ratio is None else min(len(pool), int(round(unknown_ratio * mean_per_word)))
        unknown = spread_pick(pool, want, rng)
        real_sil = [c for c in found["silence"] if c.split == split]
        n_gen = 0 if silence_ratio is None else max(0, int(round(silence_ratio * mean_per_word)) - len(real_sil))
        generated = silence_clips(n_gen, split, noise_by_split.get(split, []), rng)
        clips += sorted(kw, key=clip_order) + sorted(unknown, key=clip_order) + sorted(real_sil, key=clip_order) + generated
    return clips


def spread_pick(pool: list[Clip], n: int, rng: np.random.Generator) -> list[Clip]:
    """n clips from pool, spread evenly over their words (round robin over shuffled per-word lists)."""
    if n >= len(pool):
        return list(pool)
    by_word: dict[str, list[Clip]] = defaultdict(list)
    for c in sorted(pool, key=clip_order):
        by_word[c.word].append(c)
    queues = []
    for word in sorted(by_word):
        items = by_word[word]
        queues.append([items[i] for i in rng.permutation(len(items))])
    order = rng.permutation(len(queues))
    picked, depth = [], 0
    while len(picked) < n:
        for q in order:
            if depth < len(queues[q]) and len(picked) < n:
                picked.append(queues[q][depth])
        depth += 1
    return picked
