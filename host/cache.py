"""Where the workstation keeps what it can compute again: the one rule, and the one cache key.

Caches (fixed-length waveforms of a dataset, augmented training features, a teacher's outputs) go to
the user's cache folder: `--cache-dir` when given, else `$TINYEAR_CACHE`, else `$XDG_CACHE_HOME/tinyear`
(`~/.cache/tinyear`): the first of those that takes a file. Never inside a dataset folder: a data folder
may be read-only, shared or under version control, and one distillation run's features of a small
dataset are hundreds of megabytes. When nothing is writable, callers compute in memory instead.

Cache files are named by `key(...)`, a sha256 of a JSON description of everything that shapes the
numbers (dataset and frontend fingerprints, settings), and written atomically
(`tinyear.device.fileio`). Standard library only.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from tinyear.device.fileio import sha256_bytes

ENV = "TINYEAR_CACHE"
RULE = f"--cache-dir, else ${ENV}, else ~/.cache/tinyear; never inside the dataset folder"


def candidates(override: str | Path | None = None) -> list[Path]:
    """The cache folders in the order they are tried (see the module docstring)."""
    folders = [Path(override)] if override else []
    if os.environ.get(ENV):
        folders.append(Path(os.environ[ENV]))
    folders.append(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tinyear")
    return folders


def cache_root(override: str | Path | None = None, sub: str = "") -> Path | None:
    """The first candidate folder (plus `sub`) that can be created and takes a file; None when none does."""
    for folder in candidates(override):
        folder = folder / sub if sub else folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=folder, prefix=".probe-")
            os.close(fd)
            os.unlink(probe)
            return folder
        except OSError:
            continue
    return None


def key(obj) -> str:
    """Hex sha256 of `obj` as sorted JSON (str() for what JSON lacks): a cache file's identity."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode())


def folder_bytes(folder: str | Path) -> int:
    """Bytes of the files directly in `folder` (0 when it is gone)."""
    try:
        return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())
    except OSError:
        return 0
