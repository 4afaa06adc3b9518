"""Reading a dataset root: its class folders, list files and background recordings, into clips.

`scan_root` walks one root and sorts its files into keyword, unknown and silence clips (each with its
split: from the list files, the one split asked for, or the speaker hash) and background recordings;
`drop_unreadable` checks each clip's header (about 0.4 ms a file) so the clip list and the arrays made
later agree. Imports soundfile (lazily) and `tinyear.device`.
"""

from __future__ import annotations

from pathlib import Path

from tinyear.device.errors import TinyearError

from .layout import (AUDIO_SUFFIXES, BACKGROUND, SILENCE, SYNTH_MANIFEST, TESTING_LIST, UNKNOWN, VALIDATION_LIST,
                     Clip, file_size)
from .speakers import speaker_split, word_and_speaker


def scan_root(root: Path, r: int, words, only_split, val_pct, test_pct) -> dict:
    """{"keyword", "unknown", "silence": [Clip], "noise": [Path], "files": count, "source": "real" or
    "synthetic"} of root number `r`. Raises TinyearError for a missing root or an empty class folder."""
    if not root.exists():
        raise TinyearError(f"{root}: no such dataset folder")
    if not root.is_dir():
        raise TinyearError(f"{root}: is a file, not a dataset folder (a folder per word, e.g. yes/, no/)")
    source = "synthetic" if (root / SYNTH_MANIFEST).exists() else "real"
    lists = _list_files(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise TinyearError(f"{root}: no class folders; a dataset has a folder per word (yes/, no/, ...) "
                           "with audio files in it")
    found = {"keyword": [], "unknown": [], "silence": [], "noise": [], "files": 0, "source": source}
    for folder in folders:
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise TinyearError(f"{folder}: class folder has no audio files; add clips or remove the folder")
        found["files"] += len(files)
        if folder.name == BACKGROUND:
            found["noise"] += files
            continue
        for path in files:
            word, speaker = word_and_speaker(folder.name, path.stem)
            rel = _strip_suffix(f"{folder.name}/{path.name}")
            if only_split is not None:
                split = only_split
            elif lists:
                split = lists.get(rel, "train")
            else:
                split = speaker_split(speaker, val_pct, test_pct)
            if folder.name == SILENCE:
                label, bucket = SILENCE, "silence"
            elif folder.name in words:
                label, bucket = folder.name, "keyword"
            else:
                label, bucket = UNKNOWN, "unknown"
            found[bucket].append(Clip(path=path, label=label, split=split, source=source, speaker=speaker,
                                      word=word, root=r))
    return found


def _list_files(root: Path) -> dict[str, str]:
    """Clip (folder/name without suffix) -> "validation" or "test", from the root's list files."""
    lists = {}
    for split, name in (("validation", VALIDATION_LIST), ("test", TESTING_LIST)):
        if (root / name).exists():
            for line in (root / name).read_text().splitlines():
                if line.strip():
                    lists[_strip_suffix(line.strip())] = split
    return lists


def _strip_suffix(rel: str) -> str:
    # List files name `.wav` clips; a converted copy of the dataset may hold `.flac`: match without suffix.
    return rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel


def unreadable(path: Path) -> str | None:
    """Why soundfile cannot read `path` (one line), or None when it can."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile raises several types for a broken header
        return "empty file" if file_size(path) == 0 else str(exc).split("\n")[0]
    if info.frames == 0:
        return "no samples"
    return None


def drop_unreadable(clips: list[Clip], skipped: list[str]) -> list[Clip]:
    """The readable clips; each unreadable one is appended to `skipped` as "path: reason"."""
    kept = []
    for c in clips:
        problem = unreadable(c.path)
        if problem:
            skipped.append(f"{c.path}: {problem}")
        else:
            kept.append(c)
    return kept
