"""The waveform cache of `Dataset.arrays`: one `.npy` of fixed-length clips per dataset, split and
frontend, in the user's cache folder (`tinyear.host.cache`; never the dataset folder).

The file name carries the dataset fingerprint, the split and a key over the cache version, the dataset
and frontend fingerprints and the clips' modification times, so an edited clip misses the cache. A file
is written atomically; a damaged or mismatched one is computed again, and failing to write one is not an
error (the cache is an optimisation). Imports numpy and `tinyear.device`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyear.device.fileio import atomic_path, sha256_bytes

from ..cache import cache_root, key as cache_key
from .layout import Clip

CACHE_VERSION = 1  # bump when arrays() computes different numbers from the same clips


def cache_path(cache_dir, fingerprint: str, split: str, frontend_fingerprint: str, clips: list[Clip]) -> Path | None:
    """Where the arrays of these clips go, or None when no cache folder is writable."""
    folder = cache_root(cache_dir)
    if folder is None:
        return None
    key = cache_key({"v": CACHE_VERSION, "data": fingerprint, "frontend": frontend_fingerprint,
                     "split": split, "mtimes": _mtimes(clips)})[:24]
    return folder / f"{fingerprint}-{split}-{key}.x.npy"


def load(path: Path | None, shape: tuple[int, int]) -> np.ndarray | None:
    """The cached float32 array at `path` if it is there, whole and of `shape`; else None."""
    if path is None or not path.exists():
        return None
    try:
        x = np.load(path)
    except (OSError, ValueError):
        return None  # a damaged cache file is recomputed
    return x if x.shape == shape and x.dtype == np.float32 else None


def save(path: Path | None, array: np.ndarray) -> None:
    """np.save, atomically; silently nothing when it cannot be written."""
    if path is None:
        return
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, array)
    except OSError:
        pass


def _mtimes(clips: list[Clip]) -> str:
    stamps = []
    for c in clips:
        if c.path is not None:
            try:
                stamps.append(str(c.path.stat().st_mtime_ns))
            except OSError:
                stamps.append("?")
    return sha256_bytes("".join(stamps).encode())
