"""Speaker splits: which of train / validation / test a clip belongs to when the root has no list files.

The split key of a file is its speaker: the part of its name before `_nohash_` (in `_unknown_/`, after
the leading `<word>_`), else the whole name. `speaker_split` hashes that key (sha1), so one speaker's
clips never cross splits and adding files never moves old ones. Standard library only.
"""

from __future__ import annotations

import hashlib

from .layout import SILENCE, UNKNOWN


def speaker_of(folder: str, stem: str) -> str:
    """The speaker key of a file: the part of its name before `_nohash_` (in `_unknown_/`, without the
    leading `<word>_`), else the whole name without its extension."""
    return word_and_speaker(folder, stem)[1]


def word_and_speaker(folder: str, stem: str) -> tuple[str, str]:
    """(what was said, speaker key) of the file `stem` in the class folder `folder`."""
    head = stem.split("_nohash_")[0] if "_nohash_" in stem else None
    if folder == UNKNOWN:
        # Speech Commands-style `<word>_<speaker>_nohash_<n>`: keep the word, key the split on the speaker.
        if head is not None and "_" in head:
            word, speaker = head.split("_", 1)
            return word, speaker
        return UNKNOWN, head if head is not None else stem
    if folder == SILENCE:
        return SILENCE, head if head is not None else stem
    return folder, head if head is not None else stem


def speaker_split(speaker: str, validation_percent: float = 10.0, testing_percent: float = 10.0) -> str:
    """The split of a speaker: sha1 of the key, as a percentage in [0, 100) with 0.01 resolution, below
    validation_percent -> "validation", then testing_percent -> "test", else "train". Stable: it depends
    on the speaker key alone, never on which other files exist."""
    percent = (int(hashlib.sha1(speaker.encode("utf-8")).hexdigest(), 16) % 10000) / 100.0
    if percent < validation_percent:
        return "validation"
    if percent < validation_percent + testing_percent:
        return "test"
    return "train"
