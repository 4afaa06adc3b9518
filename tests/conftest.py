"""Shared fixtures: where test artifacts live, the tiny trained models, and bundles made from them.

The full environment (host extra, torch) builds the tiny models with the project's real converter and
leaves them in the artifacts folder (TINYEAR_TEST_ARTIFACTS, default `.test-artifacts/`), under a hash
of their sources, so they are rebuilt only when those change. The device-only
environments run the `device`-marked tests against those same files; without torch and without the
files they fail, saying to run the full environment first, rather than skip.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("TINYEAR_TEST_ARTIFACTS", ROOT / ".test-artifacts"))
SHARED_DATA = ROOT.parent / "shared" / "data"
HAS_TORCH = importlib.util.find_spec("torch") is not None


def pytest_ignore_collect(collection_path, config):
    """Without torch (the device-only environments), leave out the test modules that are not marked
    `device`: they test the workstation half, which those environments do not install."""
    if HAS_TORCH or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    return "pytest.mark.device" not in collection_path.read_text() or None


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def _tiny_source_hash() -> str:
    """What the tiny models are made from: their recipe, the converter and the frontend."""
    h = hashlib.sha256()
    for path in (ROOT / "tests" / "tiny_model.py", ROOT / "host" / "convert.py", ROOT / "device" / "features.py"):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def tiny_models(artifacts) -> dict:
    """Paths of the tiny tone classifier as int8 and float TFLite ({"int8": Path, "float": Path}).

    Rebuilt (about 20 s) only when what they are made from changed, so they always come from the
    current code."""
    import tiny_model

    paths = {"int8": artifacts / "tiny_int8.tflite", "float": artifacts / "tiny_float.tflite"}
    marker = artifacts / "tiny.source"  # the hash they were built from, written last (after the files)
    source = _tiny_source_hash()
    if HAS_TORCH and not (marker.exists() and marker.read_text() == source and all(p.exists() for p in paths.values())):
        marker.unlink(missing_ok=True)
        tiny_model.build(artifacts)
        marker.write_text(source)
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        pytest.fail(f"tiny test models missing ({missing}); run the tests in the full environment first "
                    "(scripts/test.sh does), which builds them with litert-torch")
    return paths


@pytest.fixture(scope="session")
def tiny_bundles(tiny_models, tmp_path_factory) -> dict:
    """Bundles around the tiny models, with a self-test clip: {"int8": Path, "float": Path}."""
    import tiny_model

    from tinyear.device.bundle import SelfTest, pack_bundle
    from tinyear.device.classify import Classifier
    from tinyear.device.features import DEFAULT_CONFIG

    out = tmp_path_factory.mktemp("bundles")
    # The bundle stores its self-test clip as 16-bit PCM: score the clip the device will read back.
    clip = np.round(tiny_model.make_clip("high", np.random.default_rng(7)) * 32767.0) / 32767.0
    clip = clip.astype(np.float32)
    paths = {}
    for kind, model_path in tiny_models.items():
        data = pack_bundle(model_path.read_bytes(), tiny_model.LABELS, DEFAULT_CONFIG,
                           metrics={"note": "tiny test model"}, provenance={"made_by": "tests/conftest.py"})
        path = out / f"tiny_{kind}.tinyear"
        path.write_bytes(data)
        probs = Classifier(path).scores(clip)
        data = pack_bundle(model_path.read_bytes(), tiny_model.LABELS, DEFAULT_CONFIG,
                           metrics={"note": "tiny test model"}, provenance={"made_by": "tests/conftest.py"},
                           selftest=SelfTest(audio=clip, expected=probs.tolist(), label="high"))
        path.write_bytes(data)
        paths[kind] = path
    return paths


def write_wav(path: Path, x: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> Path:
    import soundfile as sf

    sf.write(str(path), x, rate, subtype=subtype)
    return path


def full_pipe() -> tuple[int, int]:
    """A real pipe (read end, write end) whose buffer is already full: the next write blocks until
    someone reads, as it does for a program that stopped reading our stdout."""
    import contextlib

    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_end, b"\n" * 4096)
    os.set_blocking(write_end, True)
    return read_end, write_end
