"""The text-to-speech engines synthetic speech is made with: espeak-ng (always) and flite (when
installed): whether they are there, their voices, their versions, and one utterance as audio.

Both are programs run as subprocesses (`espeak-ng --stdout`, `flite -o /dev/stdout`), deterministic for
the same arguments. Imports numpy and soundfile (lazily) and `tinyear.device`; never torch.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess

import numpy as np

from tinyear.device.errors import TinyearError

# espeak-ng's English accents (the mbrola "mb-" voices are not installed here and are left out).
ESPEAK_ACCENTS = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                  "en-029", "en-us-nyc")
# Variants that sound like no person (robots, monsters, cartoon effects) are left out; whisper stays.
ESPEAK_EXCLUDED_VARIANTS = frozenset({"Demonic", "Tweaky", "UniRobot", "anikaRobot", "robosoft", "robosoft2",
                                      "robosoft3", "robosoft4", "robosoft5", "robosoft6", "robosoft7",
                                      "robosoft8", "RicishayMax", "RicishayMax2", "RicishayMax3", "Mr serious"})
# flite's built-in voices at 16 kHz: kal16 (diphone, US male), awb (Scottish male), rms (US male),
# slt (US female), all statistical-parametric (clustergen) but kal16. The 8 kHz `kal` is left out.
FLITE_VOICES = ("kal16", "awb", "rms", "slt")


def engine_available(engine: str) -> bool:
    return shutil.which(engine) is not None


def require_espeak() -> None:
    if not engine_available("espeak-ng"):
        raise TinyearError("espeak-ng is not installed, and synthetic speech needs it: apt-get install espeak-ng")


@functools.lru_cache(maxsize=1)
def espeak_variants() -> tuple[str, ...]:
    """The voice variants of the installed espeak-ng (`+f3`, `+klatt2`, ...), people-like ones only."""
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=False).stdout
    names = []
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5 and parts[4].startswith("!v/"):
            name = parts[4][3:]
            if name not in ESPEAK_EXCLUDED_VARIANTS:
                names.append(name)
    return tuple(sorted(set(names)))


def engine_versions(engines: list[str]) -> dict:
    """What each speech engine says its version is (`--version`): programs, not Python distributions, so
    not `tinyear.device.fileio.tool_versions`."""
    versions = {}
    for engine in engines:
        flag = "--version"
        lines = subprocess.run([engine, flag], capture_output=True, text=True, check=False).stdout.strip().splitlines()
        # espeak-ng says its version on the first line, flite on the one that names it.
        named = [line.strip() for line in lines if "version" in line.lower() or "text-to-speech" in line.lower()]
        versions[engine] = (named or lines or ["unknown"])[0]
    return versions


def resolve_engines(engines: str | list[str] = "auto") -> list[str]:
    """"auto": espeak-ng, plus flite when installed. A list is checked: each must be installed."""
    require_espeak()
    if engines == "auto":
        return ["espeak-ng"] + (["flite"] if engine_available("flite") else [])
    chosen = list(engines)
    for engine in chosen:
        if engine not in ("espeak-ng", "flite"):
            raise TinyearError(f"unknown speech engine {engine!r}; choose espeak-ng and/or flite")
        if not engine_available(engine):
            raise TinyearError(f"{engine} is not installed; apt-get install {engine}")
    return chosen


def speak(engine: str, voice: str, text: str, *, rate: float, pitch: int = 0) -> tuple[np.ndarray, int]:
    """`text` spoken by `engine` with `voice`: (float32 mono (samples,), its sample rate). rate: espeak-ng
    words per minute, or flite's duration stretch; pitch: espeak-ng's 0..99 (flite ignores it)."""
    import soundfile as sf

    if engine == "espeak-ng":
        cmd = ["espeak-ng", "-v", voice, "-s", str(int(rate)), "-p", str(pitch), "--stdout", text]
    else:
        cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={rate:.3f}", "-t", text, "-o", "/dev/stdout"]
    done = subprocess.run(cmd, capture_output=True, check=False)
    if done.returncode != 0 or len(done.stdout) < 100:
        raise TinyearError(f"{engine} failed on {text!r} with voice {voice}: "
                           f"{done.stderr.decode(errors='replace').strip()[:200] or 'no audio'}")
    wave, sample_rate = sf.read(io.BytesIO(done.stdout), dtype="float32")
    if wave.ndim > 1:
        wave = wave.mean(axis=1)
    return wave, sample_rate
