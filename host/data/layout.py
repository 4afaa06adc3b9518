"""The on-disk dataset contract: Speech Commands' folder names and list files, the reserved labels,
and what one labelled clip is. Standard library only; the rest of `tinyear.host.data` builds on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tinyear.device.errors import TinyearError

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
BACKGROUND = "_background_noise_"
SPLITS = ("train", "validation", "test")
VALIDATION_LIST, TESTING_LIST = "validation_list.txt", "testing_list.txt"
SYNTH_MANIFEST = "tinyear-synth.json"  # written last by `tinyear synth`: marks a root as synthetic
AUDIO_SUFFIXES = frozenset(
    ".wav .wave .flac .ogg .oga .opus .mp3 .aif .aiff .aifc .au .snd .caf .w64 .rf64".split()
)
SOURCES = ("real", "synthetic", "noise")  # where a clip comes from (Clip.source)


def default_labels(words=WORDS) -> list[str]:
    """The label list of a keyword model: [*words, "_unknown_", "_silence_"]."""
    return [*words, UNKNOWN, SILENCE]


@dataclass(frozen=True)
class Clip:
    """One labelled example.

    `path` is the audio file, or None for a `_silence_` clip generated from background noise, which is
    then `noise_clip` (index into the split's noise recordings), `noise_offset` (first sample) and
    `noise_rms_db` (RMS level it is scaled to, dBFS). `word` is what was said (for `_unknown_` the
    actual other word, for silence "_silence_"); `speaker` is the split key."""

    path: Path | None
    label: str
    split: str
    source: str  # one of SOURCES
    speaker: str
    word: str
    root: int = 0  # index into Dataset.roots
    noise_clip: int = -1
    noise_offset: int = 0
    noise_rms_db: float = 0.0


def clip_order(clip: Clip):
    """The fixed order clips are listed in: by label, root, path."""
    return (clip.label, clip.root, str(clip.path))


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise TinyearError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")


def file_size(path: Path) -> int:
    """Bytes of a file, -1 when it cannot be read."""
    try:
        return path.stat().st_size
    except OSError:
        return -1
