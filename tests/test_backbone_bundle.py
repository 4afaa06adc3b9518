"""Bundles that carry the speech_embedding backbone (format 2): the head's LayerNorm split into the
device's float normalisation and the int8 head, the bundle's sections and checks, and the device
running it (clips, any chunking of a stream, the self-test), all through the real converter and LiteRT.

Needs the `backbone` extra (pyopen-wakeword, for its model files); skipped with a message without it.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyopen_wakeword", reason="the backbone extra is not installed: pip install 'tinyear[backbone]'")

import torch  # noqa: E402

from tinyear.device.backbone import BACKBONES, ClipStream, layer_normalize  # noqa: E402
from tinyear.device.bundle import FORMAT_VERSION, PLAIN_FORMAT, SelfTest, pack_bundle, parse_bundle  # noqa: E402
from tinyear.device.classify import Classifier  # noqa: E402
from tinyear.device.detection import DetectionConfig  # noqa: E402
from tinyear.device.detector import Detector, detect_array  # noqa: E402
from tinyear.device.errors import BundleError  # noqa: E402
from tinyear.device.features import DEFAULT_CONFIG  # noqa: E402
from tinyear.host.backbone import EmbeddingHead, SpeechEmbedding  # noqa: E402

LABELS = ["tone", "noise", "_unknown_", "_silence_"]
SPEC = BACKBONES["speech-embedding"]


def _waves(n=6, seconds=1.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    out = []
    for i in range(n):
        tone = 0.3 * np.sin(2 * np.pi * (300 + 150 * i) * t)
        out.append((tone if i % 2 == 0 else 0.05 * rng.standard_normal(len(t))).astype(np.float32))
    return np.stack(out)


@pytest.fixture(scope="module")
def net():
    return SpeechEmbedding()


@pytest.fixture(scope="module")
def head():
    torch.manual_seed(0)
    h = EmbeddingHead(len(LABELS), act="relu").eval()
    with torch.no_grad():  # a LayerNorm that is not the identity, so the fold is tested
        h.net[1].weight.uniform_(0.5, 1.5)
        h.net[1].bias.uniform_(-0.2, 0.2)
    return h


@pytest.fixture(scope="module")
def model_bytes(net, head):
    from tinyear.host.convert import convert_int8

    calib = layer_normalize(net(_waves(16)))
    return convert_int8(head.deployable(), torch.from_numpy(calib[:1]), [calib])


@pytest.fixture(scope="module")
def bundle_bytes(net, model_bytes):
    clip = _waves(1)[0]
    from tinyear.device.runtime import Model, softmax

    expected = softmax(Model(model_bytes).predict(layer_normalize(net(clip[None]))[0]))
    selftest = SelfTest(audio=np.round(clip * 32767) / 32767, expected=[float(p) for p in expected],
                        label=LABELS[int(np.argmax(expected))])
    return pack_bundle(model_bytes, LABELS, DEFAULT_CONFIG, selftest=selftest,
                       backbone={"name": "speech-embedding", "normalize": "layer"}, backbone_models=net.models)


def test_layer_normalize_is_layernorm_without_its_affine():
    x = np.random.default_rng(0).normal(3.0, 2.0, (4, SPEC.windows, SPEC.dim)).astype(np.float32)
    ref = torch.nn.functional.layer_norm(torch.from_numpy(x).flatten(1), (SPEC.windows * SPEC.dim,), eps=1e-5)
    np.testing.assert_allclose(layer_normalize(x).reshape(4, -1), ref.numpy(), atol=1e-5)


def test_deployable_head_is_the_same_function_on_normalised_input(net, head):
    x = net(_waves(4))
    with torch.no_grad():
        want = head(torch.from_numpy(x)).numpy()
        got = head.deployable()(torch.from_numpy(layer_normalize(x))).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, (torch.nn.LayerNorm, torch.nn.GELU, torch.nn.Dropout)) for m in head.deployable().modules())


def test_a_gelu_head_is_refused_in_one_line():
    from tinyear.device.errors import TinyearError

    with pytest.raises(TinyearError, match="GELU, which has no int8 kernel"):
        EmbeddingHead(3, act="gelu").deployable()


def test_int8_head_tracks_the_float_head(net, head, model_bytes):
    from tinyear.device.runtime import Model

    x = layer_normalize(net(_waves(8, seed=3)))
    with torch.no_grad():
        want = head.deployable()(torch.from_numpy(x)).numpy()
    got = Model(model_bytes).predict(x)
    assert got.shape == want.shape and np.abs(got - want).max() < 0.1  # a few int8 output steps


def test_an_ensemble_of_heads_converts_side_by_side_without_stored_zeros(net):
    """Three heads averaged: deployable() is the ensemble's function on normalised input, and the int8
    model holds each member's weights once (fully connected layers and adds), not a block-diagonal
    middle layer whose zeros a merged MLP would store."""
    from tinyear.device.runtime import Model
    from tinyear.host.backbone import HeadEnsemble, SummedHeads
    from tinyear.host.convert import convert_int8

    torch.manual_seed(1)
    heads = [EmbeddingHead(len(LABELS), hidden=64, act="relu").eval() for _ in range(3)]
    ensemble = HeadEnsemble(heads).eval()
    x = net(_waves(8, seed=5))
    xn = layer_normalize(x)
    model = ensemble.deployable()
    assert isinstance(model, SummedHeads) and len(model.parts) == 3
    with torch.no_grad():
        want = ensemble(torch.from_numpy(x)).numpy()
        got = model(torch.from_numpy(xn)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    one = convert_int8(heads[0].deployable(), torch.from_numpy(xn[:1]), [xn])
    three = convert_int8(model, torch.from_numpy(xn[:1]), [xn])
    # three members' weights (int8) and little else: a merged MLP would add a 192 x 192 middle layer of
    # which two thirds are zeros (24,576 bytes) on top of what three separate heads hold
    assert len(three) < 3 * len(one) + 4096
    assert np.abs(Model(three).predict(xn) - got).max() < 0.15  # a few int8 output steps


def test_the_bundle_is_format_2_with_the_backbone_inside(bundle_bytes, net, model_bytes):
    b = parse_bundle(bundle_bytes)
    assert b.backbone["name"] == "speech-embedding" and b.backbone["normalize"] == "layer"
    assert b.backbone_models == net.models and b.feature_shape == (SPEC.windows, SPEC.dim)
    assert int.from_bytes(bundle_bytes[8:10], "little") == FORMAT_VERSION == 2
    # a bundle without a backbone is written as before: format 1, readable by older devices
    plain = pack_bundle(model_bytes, LABELS, DEFAULT_CONFIG)
    assert int.from_bytes(plain[8:10], "little") == PLAIN_FORMAT == 1
    assert parse_bundle(plain).backbone is None


def _repack(data: bytes, edit) -> bytes:
    """The bundle with its header edited by `edit(header)` and checksums made consistent again."""
    import struct

    from tinyear.device.fileio import sha256_bytes

    _, version, hlen = struct.unpack_from("<8sHI", data)
    header = json.loads(data[14 : 14 + hlen])
    payload = data[14 + hlen : -32]
    edit(header)
    header["total_size"] = 0
    while True:
        blob = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        total = 14 + len(blob) + len(payload) + 32
        if header["total_size"] == total:
            break
        header["total_size"] = total
    body = struct.pack("<8sHI", b"TINYEAR\x00", version, len(blob)) + blob + payload
    return body + bytes.fromhex(sha256_bytes(body))


@pytest.mark.parametrize("edit, message", [
    (lambda h: h["backbone"].update(version=99), "embeddings version 99, but this device computes version 1"),
    (lambda h: h["backbone"].update(name="wav2vec"), "made for backbone 'wav2vec', which this tinyear does not know"),
    (lambda h: h["backbone"].update(normalize="pcen"), "normalised as 'pcen'"),
    (lambda h: h["backbone"].update(windows=8), "embeddings version 1, but this device computes"),
    (lambda h: h["backbone"]["sha256"].update({"embedding_model.tflite": "0" * 64}), "embedding_model.tflite is missing or fails"),
])
def test_a_bundle_whose_backbone_this_device_does_not_compute_is_refused(bundle_bytes, edit, message):
    with pytest.raises(BundleError, match=message) as err:
        parse_bundle(_repack(bundle_bytes, edit), source="b.tinyear")
    assert "\n" not in str(err.value)


def test_classifier_uses_the_backbone_features(bundle_bytes, net, model_bytes):
    b = parse_bundle(bundle_bytes)
    clf = Classifier(b)
    wave = _waves(3, seed=5)[2]
    np.testing.assert_array_equal(clf.features(wave), layer_normalize(net(wave[None]))[0])
    assert clf.scores(wave).shape == (len(LABELS),)


def test_stream_runs_are_the_clips_they_hold_for_any_chunking(bundle_bytes):
    b = parse_bundle(bundle_bytes)
    rng = np.random.default_rng(2)
    stream = np.concatenate([_waves(4, seed=1).reshape(-1), 0.02 * rng.standard_normal(8000).astype(np.float32)])
    config = DetectionConfig.from_bundle(b)
    logs = []
    for chunk in (320, 1600, 7777):
        det = Detector(b, config)
        det.score_log = []
        detect_array(det, stream, chunk_samples=chunk)
        logs.append(det.score_log)
    assert len(logs[0]) == 1 + (len(stream) - 16000) // 1600  # one run a hop once the first clip is in
    for other in logs[1:]:
        assert [t for t, _ in other] == [t for t, _ in logs[0]]
        np.testing.assert_array_equal(np.stack([p for _, p in other]), np.stack([p for _, p in logs[0]]))
    clf = Classifier(b)
    for t, probs in logs[0][::7]:  # each run scored exactly the second of audio that ended at its time
        end = round(t * 16000)
        np.testing.assert_allclose(probs, clf.scores(stream[end - 16000 : end]), atol=1e-6)


def test_clip_stream_counts_runs_like_the_frame_ring(net):
    s = ClipStream(net, DEFAULT_CONFIG, 1600)
    assert s.next_run() == 16000
    assert [end for end, _ in s.push(np.zeros(19200, np.float32))] == [16000, 17600, 19200]
    assert s.next_run() == 20800
    s.reset()
    assert s.next_run() == 16000


def test_device_cli_on_a_backbone_bundle(bundle_bytes, tmp_path):
    path = tmp_path / "tones.tinyear"
    path.write_bytes(bundle_bytes)

    def device(*args):
        return subprocess.run([sys.executable, "-m", "tinyear.device.cli", *map(str, args)], capture_output=True, text=True)

    st = device("selftest", path)
    assert st.returncode == 0 and "self-test passed" in st.stdout, st.stdout + st.stderr
    info = device("info", path, "--json")
    assert info.returncode == 0, info.stderr
    shown = json.loads(info.stdout)
    assert shown["backbone"]["name"] == "speech-embedding" and shown["input"]["shape"] == [SPEC.windows, SPEC.dim]
    text = device("info", path)
    assert "backbone   speech-embedding" in text.stdout
    import soundfile as sf

    sf.write(tmp_path / "tone.wav", _waves(1)[0], 16000)
    cl = device("classify", path, tmp_path / "tone.wav", "--json")
    assert cl.returncode == 0, cl.stderr
    bench = device("bench", path, "--seconds", "3", "--json")
    assert bench.returncode == 0, bench.stderr
    measured = json.loads(bench.stdout)
    assert measured["features"]["kind"] == "speech-embedding backbone" and measured["features"]["ms_per_hop"] > 0
    assert measured["detector"]["inferences"] > 0
