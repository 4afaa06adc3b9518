"""Writing `.tinyear` bundles on the workstation.

Fills in what only the host knows (tool versions, provenance) around the device's pure serialiser
`tinyear.device.bundle.pack_bundle`, and writes atomically: a bundle that exists is complete, because it
is written to a temporary file in the same folder and renamed into place.
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

from tinyear.device import __version__
from tinyear.device.bundle import SUFFIX, SelfTest, pack_bundle
from tinyear.device.errors import TinyearError
from tinyear.device.features import FrontendConfig


def tool_versions() -> dict:
    versions = {"tinyear": __version__, "python": platform.python_version()}
    for dist in ("torch", "litert-torch", "ai-edge-litert", "numpy"):
        try:
            from importlib.metadata import version

            versions[dist] = version(dist)
        except Exception:
            pass
    return versions


def write_bundle(
    path: str | Path,
    model_bytes: bytes,
    labels: list[str],
    frontend: FrontendConfig,
    *,
    detection: dict | None = None,
    metrics: dict | None = None,
    provenance: dict | None = None,
    selftest: SelfTest | None = None,
    output: str = "logits",
) -> Path:
    """Write a bundle file atomically; returns its path. Tool versions are added to provenance."""
    path = Path(path)
    if path.suffix != SUFFIX:
        raise TinyearError(f"{path}: a bundle file name must end in {SUFFIX}")
    data = pack_bundle(
        model_bytes,
        labels,
        frontend,
        detection=detection,
        metrics=metrics,
        provenance={**(provenance or {}), "tools": tool_versions()},
        selftest=selftest,
        output=output,
    )
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise TinyearError(f"{folder}: cannot write there ({exc.strerror}); choose another --out") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file owner-only; a bundle is read by other users (a listener service runs
        # as its own user), so give it the permissions a plain open() would have
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
