"""Small file and process helpers that both halves share: the one atomic write, the one sha256 of a file,
the one way to keep C/C++ libraries' chatter off stderr, and the one collector of tool versions.

Every file tinyear writes that another process may read while it is written (bundles, run.json,
checkpoints, caches, reports) goes through `atomic_write_bytes` (or `atomic_path` for writers that need a
path, such as torch.save or numpy): a uniquely named temporary file beside the target, flushed and
fsynced, given the permissions a plain open() would have (mkstemp's are owner-only, and a listener
service runs as its own user), then renamed over the target. Two processes writing the same file never
collide on a temporary name, and a file that exists is whole.

numpy and the standard library only: the device half uses it too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Iterator


def _umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary path beside `path`; when the block ends without an error the file there is
    fsynced, given plain-open() permissions and renamed over `path`; on an error it is removed."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if fsync:
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
        os.chmod(tmp_path, _umask_mode())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (see the module docstring); returns the path."""
    path = Path(path)
    with atomic_path(path, fsync=False) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, *, block: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def quiet_fd(*fds: int) -> Iterator[None]:
    """Send what C/C++ code writes to these file descriptors (default: 2, stderr) to /dev/null for the
    block: LiteRT's "Created TensorFlow Lite XNNPACK delegate", absl and oneDNN banners. Python
    exceptions are unaffected. Where a descriptor does not exist (a daemon without stderr) it is left.
    Python's own sys.stdout / sys.stderr are flushed first, so what they hold still reaches them."""
    fds = fds or (2,)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            if stream.fileno() in fds:
                stream.flush()
    saved: list[tuple[int, int]] = []
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in fds:
            try:
                saved.append((fd, os.dup(fd)))
            except OSError:
                continue
            os.dup2(devnull, fd)
        yield
    finally:
        for fd, copy in reversed(saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def tool_versions(*dists: str) -> dict:
    """tinyear's and Python's versions, plus those of the named installed distributions (absent ones
    left out): the provenance a bundle, a run or a benchmark records."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    out = {"tinyear": __version__, "python": platform.python_version()}
    for dist in dists:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out
