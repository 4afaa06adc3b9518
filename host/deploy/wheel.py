"""The device-only wheel that `tinyear deploy` installs on a device: `tinyear.device` and nothing else.

Why not `pip wheel .` of the whole project: that needs the source checkout and a build backend (or the
network for build isolation), writes `build/` into the tree, takes seconds, and its zip timestamps make
every build a different file. This packs the very `tinyear.device` modules the workstation is running
(from a checkout or from site-packages alike) into a standard wheel (PEP 427: METADATA, WHEEL,
entry_points.txt, RECORD with sha256s) with fixed timestamps, in milliseconds. Same code, same bytes: the
wheel's sha256 names the code, which is how a redeploy knows the device's environment is already
current. It leaves out `tinyear.host` (so no `tinyear` command on the device that would fail importing
torch) and carries the device dependencies of the installed `tinyear` distribution's metadata: the
`device` extra without its runtime, plus two extras that choose one, `device` (ai-edge-litert) and
`tflite` (tflite-runtime with numpy<2), named as in pyproject.toml.

Standard library only (no torch): it may be imported by `tinyear deploy` alone.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import zipfile
from importlib import metadata
from pathlib import Path

from tinyear.device.errors import TinyearError
from tinyear.device.fileio import atomic_write_bytes

DIST = "tinyear"
RUNTIME_PACKAGES = ("ai-edge-litert", "tflite-runtime")
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold: no build time leaks into the bytes


def _metadata():
    try:
        return metadata.metadata(DIST)
    except metadata.PackageNotFoundError:
        raise TinyearError("tinyear is not installed as a package here, so its device dependencies are unknown; "
                           "pip install -e '.[host]' in the checkout first") from None


def requires_python() -> str:
    """tinyear's Requires-Python, e.g. ">=3.10": pyproject.toml's `requires-python` (its one home), as
    the installed metadata has it."""
    return _metadata()["Requires-Python"] or ""


def min_python() -> tuple[int, int]:
    """The oldest Python tinyear runs on, (major, minor), from `requires_python()`."""
    match = re.search(r">=\s*(\d+)\.(\d+)", requires_python())
    return (int(match.group(1)), int(match.group(2))) if match else (3, 0)


def _name(requirement: str) -> str:
    """The distribution name a requirement string starts with, normalised (PEP 503)."""
    head = requirement.split(";")[0].strip()
    for i, ch in enumerate(head):
        if not (ch.isalnum() or ch in "-_."):
            head = head[:i]
            break
    return head.lower().replace("_", "-").replace(".", "-")


def device_requirements() -> dict[str, list[str]]:
    """{"base": [...], "device": [...], "tflite": [...]} from the installed `tinyear` metadata.

    "base" is what every device needs (numpy, soundfile, soxr, sounddevice), "device" adds the default
    runtime (ai-edge-litert), "tflite" adds tflite-runtime and numpy<2. Raises TinyearError when tinyear
    is not installed as a distribution (a bare checkout on sys.path)."""
    _metadata()
    requires = metadata.requires(DIST) or []
    plain, extras = [], {"device": [], "tflite": []}
    for req in requires:
        spec, _, marker = req.partition(";")
        spec, marker = spec.strip(), marker.replace("'", '"').replace(" ", "")
        if not marker:
            plain.append(spec)
        for extra in extras:
            if f'extra=="{extra}"' in marker:
                extras[extra].append(spec)
    if not extras["device"]:
        raise TinyearError("the installed tinyear metadata has no 'device' extra; reinstall tinyear (pip install -e '.[host]')")
    base, seen = [], set()
    for spec in plain + extras["device"]:
        if _name(spec) not in RUNTIME_PACKAGES and spec not in seen:
            base.append(spec)
            seen.add(spec)
    device = [s for s in extras["device"] if _name(s) in RUNTIME_PACKAGES]
    tflite = [s for s in extras["tflite"] if _name(s) in RUNTIME_PACKAGES or s not in seen]
    return {"base": base, "device": device, "tflite": tflite}


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _device_files() -> list[tuple[str, bytes]]:
    """(archive name, bytes) of every file of the running `tinyear.device` package, sorted."""
    import tinyear.device

    root = Path(tinyear.device.__file__).resolve().parent
    files = []
    for path in sorted(root.rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
            continue
        files.append(("tinyear/device/" + path.relative_to(root).as_posix(), path.read_bytes()))
    if not any(name == "tinyear/device/cli.py" for name, _ in files):
        raise TinyearError(f"{root}: does not look like the tinyear.device package (no cli.py); reinstall tinyear")
    return files


def wheel_bytes() -> tuple[str, bytes]:
    """Build the device wheel in memory; returns (file name, bytes). Deterministic for the same code."""
    from tinyear.device import __version__

    reqs = device_requirements()
    dist_info = f"{DIST}-{__version__}.dist-info"
    meta = [
        "Metadata-Version: 2.1",
        f"Name: {DIST}",
        f"Version: {__version__}",
        "Summary: tinyear's device half: run a .tinyear keyword model on a microphone (deployed by tinyear deploy)",
        f"Requires-Python: {requires_python()}",
        *[f"Requires-Dist: {r}" for r in reqs["base"]],
        "Provides-Extra: device",
        *[f'Requires-Dist: {r}; extra == "device"' for r in reqs["device"]],
        "Provides-Extra: tflite",
        *[f'Requires-Dist: {r}; extra == "tflite"' for r in reqs["tflite"]],
    ]
    extra_files = [
        (f"{dist_info}/METADATA", ("\n".join(meta) + "\n").encode()),
        (f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: tinyear-deploy\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
        (f"{dist_info}/entry_points.txt", b"[console_scripts]\ntinyear-device = tinyear.device.cli:main\n"),
    ]
    entries = _device_files() + extra_files
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in entries) + f"{dist_info}/RECORD,,\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries + [(f"{dist_info}/RECORD", record.encode())]:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return f"{DIST}-{__version__}-py3-none-any.whl", buf.getvalue()


def build_device_wheel(out_dir: str | Path) -> Path:
    """Write the device wheel into `out_dir`; returns its path."""
    name, data = wheel_bytes()
    return atomic_write_bytes(Path(out_dir) / name, data)
