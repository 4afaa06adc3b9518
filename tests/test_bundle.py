"""The .tinyear bundle: a round trip, and a refusal with a remedy for every kind of damage or mismatch."""

import hashlib
import json
import struct

import numpy as np
import pytest

from tinyear.device.bundle import FORMAT_VERSION, MAGIC, SelfTest, pack_bundle, parse_bundle, read_bundle
from tinyear.device.detection import DetectionConfig
from tinyear.device.errors import BundleError
from tinyear.device.features import DEFAULT_CONFIG, FrontendConfig, fingerprint

pytestmark = pytest.mark.device
LABELS = ["low", "high", "noise"]
PREFIX = struct.Struct("<8sHI")


def _repack(data: bytes, mutate_header=None, version=None) -> bytes:
    """Rewrite a bundle's header (and fix sizes and the checksum), as a careful forger would."""
    magic, ver, hlen = PREFIX.unpack_from(data)
    header = json.loads(data[PREFIX.size : PREFIX.size + hlen])
    payload = data[PREFIX.size + hlen : -32]
    if mutate_header:
        mutate_header(header)
    blob = json.dumps(header).encode()
    header["total_size"] = PREFIX.size + len(blob) + len(payload) + 32
    blob = json.dumps(header).encode()
    body = PREFIX.pack(magic, ver if version is None else version, len(blob)) + blob + payload
    return body + hashlib.sha256(body).digest()


@pytest.fixture
def model_bytes(tiny_models):
    return tiny_models["int8"].read_bytes()


def test_round_trip(tmp_path, model_bytes):
    clip = np.linspace(-0.5, 0.5, 16000, dtype=np.float32)
    data = pack_bundle(model_bytes, LABELS, DEFAULT_CONFIG, detection={"threshold": 0.7, "per_class_threshold": {"high": 0.9}},
                       metrics={"int8_accuracy": 0.97}, provenance={"student": "tiny"},
                       selftest=SelfTest(audio=clip, expected=[0.1, 0.8, 0.1], label="high"))
    path = tmp_path / "m.tinyear"
    path.write_bytes(data)
    b = read_bundle(path)
    assert b.model_bytes == model_bytes
    assert b.labels == LABELS and b.frontend == DEFAULT_CONFIG and b.sample_rate == 16000
    assert b.fingerprint == fingerprint()
    config = DetectionConfig.from_bundle(b)
    assert config.threshold_for("high") == 0.9 and config.threshold_for("low") == 0.7
    assert b.detection["refractory_ms"] == 1000  # defaults filled in
    assert b.metrics == {"int8_accuracy": 0.97} and b.provenance == {"student": "tiny"}
    assert b.model_sha256 == hashlib.sha256(model_bytes).hexdigest()
    assert b.selftest.label == "high" and b.selftest.expected == [0.1, 0.8, 0.1]
    assert np.abs(b.selftest.audio - clip).max() < 1 / 32767 + 1e-7  # stored as 16-bit PCM
    model = b.load_model()
    assert model.num_outputs == 3 and model.feature_shape == (98, 40)


def test_pack_is_deterministic(model_bytes):
    assert pack_bundle(model_bytes, LABELS, DEFAULT_CONFIG) == pack_bundle(model_bytes, LABELS, DEFAULT_CONFIG)


def _check(data, message, tmp_path):
    path = tmp_path / "bad.tinyear"
    path.write_bytes(data)
    with pytest.raises(BundleError, match=message) as info:
        read_bundle(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    return str(info.value)


def test_truncated(tmp_path, model_bytes):
    data = pack_bundle(model_bytes, LABELS, DEFAULT_CONFIG)
    for cut in (len(data) - 1, len(data) // 2, 300, 20):
        msg = _check(data[:cut], "truncated|damaged header", tmp_path)
        assert "copy the bundle again" in msg
    _check(data[:5], "not a tinyear bundle", tmp_path)


def test_trailing_bytes(tmp_path, model_bytes):
    _check(pack_bundle(model_bytes, LABELS, DEFAULT_CONFIG) + b"\0", "has trailing bytes", tmp_path)


def test_flipped_byte_anywhere_is_caught(tmp_path, model_bytes):
    data = bytearray(pack_bundle(model_bytes, LABELS, DEFAULT_CONFIG))
    for pos in (len(data) - 100, len(data) - 2000, len(data) - 10):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        _check(bytes(bad), "checksum mismatch|sha256", tmp_path)


def test_tampered_model_with_recomputed_checksum(tmp_path, model_bytes):
    """Someone swapped model bytes and fixed the file checksum but not the section's sha256."""
    data = pack_bundle(model_bytes, LABELS, DEFAULT_CONFIG)
    bad = bytearray(data[:-32])
    bad[-500] ^= 0xFF
    bad = bytes(bad) + hashlib.sha256(bytes(bad)).digest()
    _check(bad, "section 'model' fails its sha256", tmp_path)


def test_unknown_format_version(tmp_path, model_bytes):
    data = _repack(pack_bundle(model_bytes, LABELS, DEFAULT_CONFIG), version=FORMAT_VERSION + 1)
    msg = _check(data, f"bundle format {FORMAT_VERSION + 1} was written by a newer tinyear", tmp_path)
    assert "pip install" in msg


def test_other_frontend_fingerprint_names_both(tmp_path, model_bytes):
    """A bundle made by a tinyear whose frontend arithmetic differs (version 7) for the same config."""
    def other(header):
        header["frontend_version"] = 7
        header["frontend_fingerprint"] = "logmel-v7-0123456789abcdef"

    msg = _check(_repack(pack_bundle(model_bytes, LABELS, DEFAULT_CONFIG), other), "made for frontend", tmp_path)
    assert "logmel-v7-0123456789abcdef" in msg and fingerprint() in msg and "re-export" in msg


def test_frontend_config_from_the_future(tmp_path, model_bytes):
    def future(header):
        header["frontend"]["pcen"] = True

    _check(_repack(pack_bundle(model_bytes, LABELS, DEFAULT_CONFIG), future), "frontend config cannot be used here", tmp_path)


def test_labels_must_match_model_outputs(tmp_path, model_bytes):
    path = tmp_path / "four.tinyear"
    path.write_bytes(pack_bundle(model_bytes, LABELS + ["extra"], DEFAULT_CONFIG))
    bundle = read_bundle(path)
    with pytest.raises(BundleError, match="model has 3 outputs but the bundle lists 4 labels"):
        bundle.load_model()


def test_frontend_shape_must_match_model_input(tmp_path, model_bytes):
    """A consistent bundle whose config makes 1.5 s clips (148 frames) for a model that takes 98."""
    other = FrontendConfig(clip_ms=1500.0)
    path = tmp_path / "long.tinyear"
    path.write_bytes(pack_bundle(model_bytes, LABELS, other))
    with pytest.raises(BundleError, match=r"takes features of shape \(98, 40\) but its frontend makes \(148, 40\)"):
        read_bundle(path).load_model()


def test_not_a_bundle(tmp_path, model_bytes):
    _check(model_bytes, "bare .tflite model", tmp_path)
    _check(b"PK\x03\x04" + b"\0" * 100, "not a tinyear bundle", tmp_path)
    with pytest.raises(BundleError, match="no such bundle"):
        read_bundle(tmp_path / "nope.tinyear")


def test_damaged_header(tmp_path, model_bytes):
    data = pack_bundle(model_bytes, LABELS, DEFAULT_CONFIG)
    _, _, hlen = PREFIX.unpack_from(data)
    bad = bytearray(data)
    bad[PREFIX.size : PREFIX.size + 10] = b"\xff" * 10
    _check(bytes(bad), "damaged header", tmp_path)


def test_magic_and_layout_are_stable(model_bytes):
    data = pack_bundle(model_bytes, LABELS, DEFAULT_CONFIG)
    assert data[:8] == MAGIC
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]
    assert parse_bundle(data).labels == LABELS


OLD_DETECTION_KEYS = {"threshold", "per_class_threshold", "smoothing_ms", "refractory_ms", "hop_ms"}


def test_a_bundle_from_before_the_detection_rules_loads_and_behaves_as_before(tmp_path, model_bytes):
    """A bundle written before unknown_margin, min_runs, peak and per-class refractory existed: read,
    completed with the defaults (which switch the rules off), and its detector runs as it always did."""
    from tinyear.device.detector import Detector, detect_array

    def old_header(header):
        header["detection"] = {k: v for k, v in header["detection"].items() if k in OLD_DETECTION_KEYS}
        header["detection"]["threshold"] = 0.5

    path = tmp_path / "old.tinyear"
    path.write_bytes(_repack(pack_bundle(model_bytes, LABELS, DEFAULT_CONFIG), old_header))
    _, _, hlen = PREFIX.unpack_from(path.read_bytes())
    assert set(json.loads(path.read_bytes()[PREFIX.size : PREFIX.size + hlen])["detection"]) == OLD_DETECTION_KEYS
    b = read_bundle(path)
    assert b.detection["min_runs"] == 1 and b.detection["unknown_margin"] == 0 and b.detection["peak"] is False
    config = DetectionConfig.from_bundle(b)
    assert config.rules() == DetectionConfig().rules() and config.threshold == 0.5
    rng = np.random.default_rng(2)
    t = np.arange(16000) / 16000
    audio = np.concatenate([np.zeros(16000), 0.5 * np.sin(2 * np.pi * 440 * t), np.zeros(8000),
                            0.5 * np.sin(2 * np.pi * 3000 * t), np.zeros(16000)]).astype(np.float32)
    audio += (rng.standard_normal(len(audio)) * 0.003).astype(np.float32)
    plain = DetectionConfig(threshold=0.5, smoothing_ms=300, refractory_ms=1000, hop_ms=100)
    events = detect_array(Detector(b), audio)
    assert events and events == detect_array(Detector(b, plain), audio)


def test_detection_rules_round_trip(tmp_path, model_bytes):
    rules = {"unknown_margin": 0.2, "unknown_window_ms": 500, "min_runs": 2, "peak": True,
             "per_class_refractory_ms": {"high": 1500}}
    path = tmp_path / "r.tinyear"
    path.write_bytes(pack_bundle(model_bytes, LABELS, DEFAULT_CONFIG, detection=rules))
    config = DetectionConfig.from_bundle(read_bundle(path))
    assert config.rules() == rules and config.refractory_for("high") == 1500 and config.refractory_for("low") == 1000
