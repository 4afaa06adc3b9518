"""What a deploy will do on a device, decided from the probe before anything there changes: the TFLite
runtime that has wheels for the device's Python and machine, the environment to create or reuse, the
wheels to upload, and whether it all fits on the device's disk. Standard library only.
"""

from __future__ import annotations

from pathlib import Path

from tinyear.device.errors import TinyearError
from tinyear.device.fileio import sha256_bytes

from .options import DeployOptions

# Which runtime has wheels where (checked by scripts/check_aarch64_wheels.sh, recorded in docs/DEPLOY.md):
# runtime -> (pip extra of the device wheel, machines, oldest and newest Python with wheels).
RUNTIMES = {
    "ai-edge-litert": ("device", ("aarch64", "x86_64"), (3, 10), (3, 13)),
    "tflite-runtime": ("tflite", ("aarch64", "x86_64", "armv7l"), (3, 9), (3, 11)),
}
# Room a new environment takes, measured: 41.6 MB of wheels (numpy 2, ai-edge-litert 2.3, soundfile,
# soxr, cffi, ...) became 166 MiB installed on x86_64 (du -sk of envs/KEY in the deploy test), 4.2x;
# 4.5x the wheel sizes covers it with a little room.
ENV_SIZE_FACTOR = 4.5
ENV_SIZE_ONLINE = 250 * 1024 * 1024  # without a wheelhouse the wheel sizes are unknown here
SPACE_MARGIN = 5 * 1024 * 1024


def choose_runtime(version: tuple[int, int], machine: str, forced: str | None) -> str:
    """The runtime to install for a device Python `version` (major, minor) on `machine` (as the device's
    Python sees it: aarch64, armv7l, x86_64). Raises TinyearError when none has wheels there."""
    py = f"{version[0]}.{version[1]}"
    if forced:
        extra, machines, lo, hi = RUNTIMES[forced]
        if machine not in machines or not lo <= version <= hi:
            raise TinyearError(f"{forced} has no wheels for Python {py} on {machine} (it has them for Python "
                               f"{lo[0]}.{lo[1]}-{hi[0]}.{hi[1]} on {', '.join(machines)}); drop --runtime")
        return forced
    for name, (extra, machines, lo, hi) in RUNTIMES.items():
        if machine in machines and lo <= version <= hi:
            return name
    raise TinyearError(f"no TFLite runtime has wheels for Python {py} on {machine}: ai-edge-litert covers Python "
                       "3.10-3.13 on aarch64 and x86_64, tflite-runtime 3.9-3.11 (also armv7l); use a 64-bit Pi OS "
                       "(Bookworm or Trixie) or point --python at a supported Python on the device")


def machine(probe: dict) -> str:
    """The device's architecture as its Python was built for (a 32-bit Pi OS on a 64-bit kernel is armv7l)."""
    plat = probe.get("python_platform", "")
    return plat.split("-", 1)[1] if plat.startswith("linux-") else (plat or probe.get("kernel_machine", "unknown"))


def version_tuple(text: str) -> tuple[int, ...]:
    """'3.11.2' -> (3, 11, 2); (0,) when it is not a version."""
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return (0,)


def env_key(wheel: bytes, runtime: str, probe: dict) -> str:
    """The name of the device environment for this wheel, runtime and device Python."""
    return sha256_bytes(wheel + f"|{runtime}|{probe.get('python_version')}|{probe.get('python_executable')}".encode())[:16]


def plan(opts: DeployOptions, probe: dict, wheel: Path | None) -> dict:
    """What this deploy will do on the device; refuses, before anything changes, what cannot fit."""
    version = version_tuple(probe["python_version"])[:2]
    previous = probe.get("state") or {}
    bundle_size = opts.bundle.stat().st_size
    if opts.bundle_only:
        key = previous.get("env")
        if not key or key not in probe["env"]:
            raise TinyearError(f"the device has no tinyear environment in {probe['dir']} yet; deploy once without --bundle-only")
        chosen = {"runtime": previous.get("runtime"), "extra": None, "env_key": key, "env_ready": True, "upload_wheels": []}
        need = bundle_size
    else:
        runtime = choose_runtime(version, machine(probe), opts.runtime)
        key = env_key(wheel.read_bytes(), runtime, probe)
        ready = key in probe["env"]
        uploads = []
        if opts.wheelhouse and not ready:
            folder = Path(opts.wheelhouse)
            if not folder.is_dir():
                raise TinyearError(f"--wheelhouse {folder}: no such folder")
            cached = probe["cached"]
            uploads = [f for f in sorted(folder.glob("*.whl")) if cached.get(f.name) != f.stat().st_size and not f.name.startswith("tinyear-")]
            if not any(folder.glob("*.whl")):
                raise TinyearError(f"--wheelhouse {folder}: holds no .whl files; fill it with pip download (see docs/DEPLOY.md)")
        upload_size = sum(f.stat().st_size for f in uploads) + (wheel.stat().st_size if not ready else 0) + bundle_size
        if ready:
            env_size = 0
        elif opts.wheelhouse:
            env_size = int(ENV_SIZE_FACTOR * sum(f.stat().st_size for f in Path(opts.wheelhouse).glob("*.whl")))
        else:
            env_size = ENV_SIZE_ONLINE
        chosen = {"runtime": runtime, "extra": RUNTIMES[runtime][0], "env_key": key, "env_ready": ready, "upload_wheels": uploads}
        need = upload_size + env_size
    free = int(probe.get("free_kb") or 0) * 1024
    if free < need + SPACE_MARGIN:
        raise TinyearError(f"the device's disk is full: {probe['dir']} has {free / 2**20:.1f} MiB free, this deploy needs about "
                           f"{(need + SPACE_MARGIN) / 2**20:.1f} MiB; free some space there (or deploy to another DIR)")
    return chosen
