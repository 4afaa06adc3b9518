"""The device half on a shipped backbone bundle (`models/computer-jarvis-snowboy.tinyear`: an int8 head
over the speech_embedding backbone, whose TFLite files it carries), with no torch and no pyopen-wakeword:
what the device-only and tflite-runtime environments have. It reads back verified, self-tests, scores a
stream the same however the audio is cut, each stream run is the clip it holds, and a bundle whose
backbone bytes were changed is refused in one line."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

pytestmark = pytest.mark.device

WAKE = ROOT / "models" / "computer-jarvis-snowboy.tinyear"


@pytest.fixture(scope="module")
def bundle():
    from tinyear.device import read_bundle

    return read_bundle(WAKE)


def test_the_wake_bundle_carries_its_backbone(bundle):
    assert bundle.backbone["name"] == "speech-embedding" and bundle.backbone["normalize"] == "layer"
    assert set(bundle.backbone_models) == {"melspectrogram.tflite", "embedding_model.tflite"}
    assert bundle.feature_shape == (9, 96)
    done = subprocess.run([sys.executable, "-m", "tinyear.device.cli", "selftest", str(WAKE), "--json"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["label"] == bundle.selftest.label


def test_stream_scores_do_not_depend_on_chunking_and_match_the_clip(bundle):
    from tinyear.device.classify import Classifier
    from tinyear.device.detection import DetectionConfig
    from tinyear.device.detector import Detector, detect_array

    rng = np.random.default_rng(0)
    noise = (0.003 * rng.standard_normal(8000)).astype(np.float32)
    clip = bundle.selftest.audio.astype(np.float32)
    stream = np.concatenate([noise, clip, noise, clip, noise])
    logs = []
    events = []
    for chunk in (160, 1024, 4800):
        det = Detector(bundle, DetectionConfig.from_bundle(bundle))
        det.score_log = []
        events.append([e.to_dict() for e in detect_array(det, stream, chunk_samples=chunk)])
        logs.append(det.score_log)
    for other in logs[1:]:
        np.testing.assert_array_equal(np.stack([p for _, p in other]), np.stack([p for _, p in logs[0]]))
    assert events[0] == events[1] == events[2]
    assert [e["label"] for e in events[0]] == [bundle.selftest.label] * 2  # its own clip, heard twice
    clf = Classifier(bundle)
    for t, probs in logs[0][::5]:
        end = round(t * 16000)
        np.testing.assert_allclose(probs, clf.scores(stream[end - 16000 : end]), atol=1e-6)


def test_changed_backbone_bytes_are_refused(tmp_path):
    from tinyear.device import read_bundle
    from tinyear.device.errors import BundleError
    from tinyear.device.fileio import sha256_bytes

    data = bytearray(WAKE.read_bytes())
    _, _, hlen = struct.unpack_from("<8sHI", data)
    header = json.loads(data[14 : 14 + hlen])
    section = header["sections"]["backbone/embedding_model.tflite"]
    data[14 + hlen + section["offset"] + section["size"] // 2] ^= 0xFF  # one byte of the embedding model
    body = bytes(data[:-32])
    path = tmp_path / "changed.tinyear"
    path.write_bytes(body + bytes.fromhex(sha256_bytes(body)))  # the file checksum renewed: only the section's fails
    with pytest.raises(BundleError, match="section 'backbone/embedding_model.tflite' fails its sha256") as err:
        read_bundle(path)
    assert "\n" not in str(err.value)
