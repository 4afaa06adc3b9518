"""Teachers from the TensorFlow world and ensembles: tiny real models made here (a raw-audio TFLite model
by litert-torch, a frozen graph and a SavedModel by tensorflow), loaded, mapped, combined and distilled
from through the CLI; cases with `../shared/teachers` skip with a message when it is absent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import train_data  # noqa: E402
from conftest import ROOT  # noqa: E402

from tinyear.device.errors import TinyearError  # noqa: E402
from tinyear.host.ensemble import load_teachers, parse_class_sources, parse_label_maps  # noqa: E402
from tinyear.host.teachers import load_teacher, split_options, teacher_kind  # noqa: E402

LABELS = ["low", "high", "_unknown_"]
TEACHERS = ROOT.parent / "shared" / "teachers"


class RawAudioNet(torch.nn.Module):
    """Waveform (B, 16000) -> logits (B, 3): a strided conv front end, as models with their own front end do."""

    def __init__(self, softmax: bool = False):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 8, 400, stride=160)
        self.fc = torch.nn.Linear(8, len(LABELS))
        self.softmax = softmax

    def forward(self, x):
        h = torch.relu(self.conv(x.unsqueeze(1)))  # (B, 8, frames)
        z = self.fc(h.mean(dim=2))  # (B, 3)
        return torch.softmax(z, dim=-1) if self.softmax else z


def _waves(n: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([train_data._burst(300, 4000, rng) for _ in range(n)])


@pytest.fixture(scope="module")
def raw_tflite(tmp_path_factory):
    """{"logits": path, "probs": path, "int8": path, "torch": module}: a raw-audio teacher as TFLite."""
    from tinyear.host.convert import convert_float, convert_int8

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("rawtflite")
    model = RawAudioNet().eval()
    example = torch.from_numpy(_waves(1))
    paths = {}
    for name, m in (("logits", model), ("probs", torch.nn.Sequential(model, torch.nn.Softmax(dim=-1)).eval())):
        folder = out / name
        folder.mkdir()
        (folder / "model.tflite").write_bytes(convert_float(m, example))
        (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")
        paths[name] = folder / "model.tflite"
    folder = out / "int8"
    folder.mkdir()
    (folder / "model.tflite").write_bytes(convert_int8(model, example, [_waves(16, seed=3)]))
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")
    paths["int8"] = folder / "model.tflite"
    paths["torch"] = model
    return paths


def test_raw_audio_tflite_teacher(raw_tflite):
    teacher = load_teacher(str(raw_tflite["logits"]))
    assert teacher.kind == "tflite" and teacher.labels == LABELS
    assert teacher.info["input"] == "audio" and teacher.info["scores"] == "logits"
    assert not teacher.accepts_features()
    waves = _waves(5, seed=1)
    with torch.no_grad():
        expected = raw_tflite["torch"](torch.from_numpy(waves)).numpy()
    got = teacher(waves).numpy()
    assert got.shape == (5, 3)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # a clip of another length is centre-padded to the model's
    short = teacher(waves[:, 4000:12000]).numpy()
    padded = np.pad(waves[:, 4000:12000], ((0, 0), (4000, 4000)))
    np.testing.assert_allclose(short, raw_tflite["torch"](torch.from_numpy(padded)).detach().numpy(), atol=1e-4)


def test_probabilities_are_detected_and_become_log_probabilities(raw_tflite):
    teacher = load_teacher(str(raw_tflite["probs"]))
    assert teacher.info["scores"] == "probs"
    waves = _waves(4, seed=2)
    with torch.no_grad():
        expected = torch.log_softmax(raw_tflite["torch"](torch.from_numpy(waves)), dim=-1).numpy()
    np.testing.assert_allclose(teacher(waves).numpy(), expected, atol=1e-4)
    said = load_teacher(f"{raw_tflite['probs']},scores=logits")  # said wins over detection
    assert said.info["scores"] == "logits"


def test_int8_io_tflite_teacher(raw_tflite):
    teacher = load_teacher(f"tflite:{raw_tflite['int8']}")
    assert teacher.info["quantized"] is True
    waves = _waves(8, seed=4)
    with torch.no_grad():
        expected = raw_tflite["torch"](torch.from_numpy(waves)).numpy()
    got = teacher(waves).numpy()
    spread = float(expected.max() - expected.min())
    assert np.abs(got - expected).max() < 0.15 * spread + 0.05


def test_feature_input_tflite_teacher_takes_feature_batches(tiny_models, tmp_path):
    import tiny_model

    from tinyear.device.features import clip_features
    from tinyear.device.runtime import Model

    path = tmp_path / "tiny.tflite"
    path.write_bytes(tiny_models["float"].read_bytes())
    (tmp_path / "labels.txt").write_text("\n".join(tiny_model.LABELS))
    teacher = load_teacher(str(path))
    assert teacher.info["input"] == "features" and teacher.accepts_features()
    clip = tiny_model.make_clip("high", np.random.default_rng(0))
    feats = clip_features(clip)[None]
    direct = Model(str(path)).predict(feats)
    np.testing.assert_allclose(teacher.feature_model(torch.from_numpy(feats)).numpy(), direct, atol=1e-5)
    np.testing.assert_allclose(teacher(clip[None]).numpy(), direct, atol=1e-5)


def test_spec_options_and_kinds(raw_tflite, tmp_path):
    body, options = split_options("a/b,c.tflite,labels=x.txt,weight=0.5")
    assert body == "a/b,c.tflite" and options == {"labels": "x.txt", "weight": "0.5"}
    assert teacher_kind(str(raw_tflite["logits"]))[0] == "tflite"
    renamed = tmp_path / "teacher.bin"  # no suffix: the TFLite magic tells
    renamed.write_bytes(raw_tflite["logits"].read_bytes())
    assert teacher_kind(str(renamed))[0] == "tflite"
    labels = tmp_path / "my_labels.txt"
    labels.write_text("\n".join(LABELS))
    assert load_teacher(f"tflite:{renamed},labels={labels}").labels == LABELS


def test_tflite_bad_input_is_one_line(raw_tflite, tmp_path):
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"\x00" * 64)
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    with pytest.raises(TinyearError, match="corrupt.tflite"):
        load_teacher(str(corrupt))
    with pytest.raises(TinyearError, match="no such TFLite file"):
        load_teacher(f"tflite:{tmp_path / 'missing.tflite'}")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "m.tflite").write_bytes(raw_tflite["logits"].read_bytes())
    (wrong / "labels.txt").write_text("a\nb\n")
    with pytest.raises(TinyearError, match="2 labels for 3 outputs"):
        load_teacher(str(wrong / "m.tflite"))
    nolabels = tmp_path / "nolabels"
    nolabels.mkdir()
    (nolabels / "m.tflite").write_bytes(raw_tflite["logits"].read_bytes())
    with pytest.raises(TinyearError, match="no labels for this teacher"):
        load_teacher(str(nolabels / "m.tflite"))
    with pytest.raises(TinyearError, match="option input does not apply"):
        load_teacher(f"{raw_tflite['logits']},input=x:0")


# -- TensorFlow ---------------------------------------------------------------------------------------


def _tf():
    return pytest.importorskip("tensorflow", reason="the tensorflow extra is not installed "
                               "(pip install 'tinyear[host,tensorflow]')")


@pytest.fixture(scope="module")
def frozen_graph(tmp_path_factory):
    """A Speech Commands style frozen graph: wav_data:0 (WAV bytes) -> labels_softmax:0 (1, 3), and the
    numpy function it computes."""
    tf = _tf()
    rng = np.random.default_rng(5)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        wav = tf.compat.v1.placeholder(tf.string, [], name="wav_data")
        audio, _ = tf.audio.decode_wav(wav, desired_channels=1, desired_samples=16000)
        x = tf.reshape(audio, [4, 4000])
        feats = tf.reshape(tf.reduce_mean(tf.abs(x), axis=1) * 10.0, [1, 4])
        tf.nn.softmax(tf.matmul(feats, tf.constant(w)), name="labels_softmax")
    folder = tmp_path_factory.mktemp("graph")
    (folder / "model.pb").write_bytes(graph.as_graph_def().SerializeToString())
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")

    def reference(waves):
        q = np.round(np.clip(waves, -1, 1) * 32767) / 32768.0  # what the WAV round trip keeps
        feats = np.abs(q.reshape(len(waves), 4, 4000)).mean(axis=2) * 10.0
        z = feats @ w
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)
    return folder / "model.pb", reference


def test_frozen_graph_teacher(frozen_graph):
    path, reference = frozen_graph
    teacher = load_teacher(str(path))
    assert teacher.kind == "tf" and teacher.labels == LABELS and teacher.info["scores"] == "probs"
    waves = _waves(4, seed=6)
    np.testing.assert_allclose(teacher(waves).exp().numpy(), reference(waves), atol=2e-4)


def test_frozen_graph_bad_input(frozen_graph, tmp_path):
    path, _ = frozen_graph
    with pytest.raises(TinyearError, match="its placeholders: wav_data:0"):
        load_teacher(f"{path},input=audio:0")
    junk = tmp_path / "junk.pb"
    junk.write_bytes(b"not a graph at all")
    (tmp_path / "labels.txt").write_text("\n".join(LABELS))
    with pytest.raises(TinyearError, match="junk.pb: not a TensorFlow frozen graph"):
        load_teacher(str(junk))


def test_savedmodel_teacher(tmp_path):
    tf = _tf()

    class Net(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 16000], tf.float32)])
        def __call__(self, x):
            feats = tf.reduce_mean(tf.abs(tf.reshape(x, [-1, 4, 4000])), axis=2) * 10.0
            return {"logits": tf.matmul(feats, self.w)}

    net = Net()
    folder = tmp_path / "saved"
    tf.saved_model.save(net, str(folder), signatures={"serving_default": net.__call__})
    (folder / "labels.txt").write_text("\n".join(LABELS))
    teacher = load_teacher(str(folder))
    assert teacher.kind == "savedmodel" and teacher.info["scores"] == "logits"
    waves = _waves(3, seed=7)
    np.testing.assert_allclose(teacher(waves).numpy(), net(tf.constant(waves))["logits"].numpy(), atol=1e-5)


def test_graph_without_tensorflow_says_how_to_install(frozen_graph):
    path, _ = frozen_graph
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "from tinyear.device.errors import TinyearError\n"
            "from tinyear.host.teachers import load_teacher\n"
            f"try:\n    load_teacher({str(path)!r})\nexcept TinyearError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "pip install 'tinyear[host,tensorflow]'" in out.stdout, out.stdout + out.stderr


# -- ensembles ----------------------------------------------------------------------------------------


def _factory_file(tmp_path: Path) -> Path:
    path = tmp_path / "fixed_teachers.py"
    path.write_text(
        "import torch\n"
        "class Fixed(torch.nn.Module):\n"
        "    def __init__(self, logits):\n"
        "        super().__init__()\n"
        "        self.register_buffer('z', torch.tensor(logits, dtype=torch.float32))\n"
        "    def forward(self, waves):\n"
        "        return self.z.expand(len(waves), -1)\n"
        "def a():\n    return Fixed([2.0, 0.0, 0.0, 1.0]), ['low', 'high', '_silence_', 'bird']\n"
        "def b():\n    return Fixed([0.0, 2.0, 1.0]), ['low', 'high', '_silence_']\n")
    return path


def test_ensemble_arithmetic(tmp_path):
    f = _factory_file(tmp_path)
    student = ["low", "high", "_unknown_", "_silence_"]
    waves = np.zeros((2, 16000), np.float32)
    pa = torch.softmax(torch.tensor([2.0, 0.0, 0.0, 1.0]), 0).numpy()  # low high _silence_ bird
    pb = torch.softmax(torch.tensor([0.0, 2.0, 1.0]), 0).numpy()  # low high _silence_
    a_st = np.array([pa[0], pa[1], pa[3], pa[2]])  # in student order: bird -> _unknown_
    b_st = np.array([pb[0], pb[1], 0.0, pb[2]])

    teacher, label_map = load_teachers([f"{f}:a,weight=3", f"{f}:b"], student)
    assert teacher.kind == "ensemble" and teacher.labels == student
    got = teacher(waves).exp().numpy()[0]
    np.testing.assert_allclose(got, (3 * a_st + b_st) / 4, atol=1e-6)

    teacher, label_map = load_teachers([f"{f}:a", f"{f}:b"], student, class_sources=["_silence_=labels"])
    assert teacher.labels == ["low", "high", "_unknown_"]
    assert label_map.describe()["uncovered_student_labels"] == ["_silence_"]
    mix = (a_st + b_st) / 2
    np.testing.assert_allclose(teacher(waves).exp().numpy()[0], mix[:3] / mix[:3].sum(), atol=1e-6)

    teacher, _ = load_teachers([f"{f}:a", f"{f}:b"], student, class_sources=["_silence_=2"])
    got = teacher(waves).exp().numpy()[0]
    assert got[3] == pytest.approx(b_st[3], abs=1e-6) and got.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(got[:3] / got[:3].sum(), mix[:3] / mix[:3].sum(), atol=1e-6)

    # a label map for teacher 1 only: its bird goes to low
    # a label map for teacher 1 only: its bird goes to low; then no teacher speaks for _unknown_
    teacher, label_map = load_teachers([f"{f}:a", f"{f}:b"], student, label_maps=["1:bird=low"])
    assert teacher.labels == ["low", "high", "_silence_"]
    assert label_map.describe()["uncovered_student_labels"] == ["_unknown_"]
    a_mapped = np.array([pa[0] + pa[3], pa[1], pa[2]])
    np.testing.assert_allclose(teacher(waves).exp().numpy()[0], (a_mapped + b_st[[0, 1, 3]]) / 2, atol=1e-6)


def test_ensemble_cached_outputs_equal_online(tmp_path):
    from tinyear.host.augment import AugmentConfig
    from tinyear.host.data import load_dataset
    from tinyear.host.featcache import build_features, teacher_outputs

    f = _factory_file(tmp_path)
    root = train_data.make_dataset(tmp_path / "data", per_word=12)
    dataset = load_dataset([root], ["low", "high"], quiet=True)
    features = build_features(dataset, variants=2, augment=AugmentConfig(), cache_dir=tmp_path / "cache",
                              progress=False, jobs=1)
    teacher, _ = load_teachers([f"{f}:a,weight=2", f"{f}:b"], list(dataset.labels))
    cached = teacher_outputs(features, teacher, progress=False)
    n = features.train.shape[1]
    online = teacher(features.variant_waves(np.arange(n), np.ones(n, int))).numpy()
    np.testing.assert_allclose(cached[1], online, atol=1e-5)
    again = teacher_outputs(features, teacher, progress=False)  # members come from their caches
    np.testing.assert_allclose(again, cached)


def test_ensemble_option_errors():
    with pytest.raises(TinyearError, match="there is no teacher 3"):
        parse_label_maps(["3:a=b"], 2)
    with pytest.raises(TinyearError, match="the student has no label _noise_"):
        parse_class_sources(["_noise_=labels"], 2, ["a", "_silence_"])
    with pytest.raises(TinyearError, match="'labels' or a teacher number 1..2"):
        parse_class_sources(["_silence_=7"], 2, ["a", "_silence_"])


@pytest.mark.slow
def test_cli_distills_from_a_tflite_and_graph_ensemble(raw_tflite, frozen_graph, tmp_path):
    root = train_data.make_dataset(tmp_path / "data", per_word=24)
    graph, _ = frozen_graph
    out = tmp_path / "student"
    cmd = [sys.executable, "-m", "tinyear.host.cli", "distill", str(root), "--words", "low", "high",
           "--teacher", str(raw_tflite["logits"]), "--teacher", f"{graph},weight=0.5",
           "--teacher-class", "_silence_=labels", "--teacher-cache", "--synthetic-alpha", "0.2",
           "--student", "dscnn-s", "--epochs", "2", "--variants", "1", "--out", str(out), "--quiet", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["teacher"]["kind"] == "ensemble" and info["teacher"]["weights"] == [1.0, 0.5]
    assert info["teacher"]["class_sources"] == {"_silence_": "labels"}
    assert len(info["teacher"]["specs"]) == 2 and all(Path(s.split(",")[0]).is_absolute() for s in info["teacher"]["specs"])
    bundle = tmp_path / "s.tinyear"
    done = subprocess.run([sys.executable, "-m", "tinyear.host.cli", "export", str(out), "--out", str(bundle)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert bundle.exists()


def test_cli_bad_teacher_is_one_line(tmp_path):
    root = train_data.make_dataset(tmp_path / "data", per_word=6)
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"garbage")
    (tmp_path / "labels.txt").write_text("low\nhigh\n")
    done = subprocess.run([sys.executable, "-m", "tinyear.host.cli", "distill", str(root), "--words", "low", "high",
                           "--teacher", str(bad), "--out", str(tmp_path / "s")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "bad.tflite" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "s" / "run.json").exists()


@pytest.mark.skipif(not (TEACHERS / "kwt1" / "model.tflite").exists(), reason="../shared/teachers is absent")
def test_shared_pretrained_teachers_load_and_agree_on_a_real_clip():
    import soundfile as sf

    clips = sorted((ROOT.parent / "shared" / "data" / "speech-commands-v2-test-public" / "yes").glob("*.flac"))[:3]
    if not clips:
        pytest.skip("../shared/data/speech-commands-v2-test-public is absent")
    waves = np.stack([np.pad(sf.read(str(c), dtype="float32")[0], (0, 16000))[:16000] for c in clips])
    kwt = load_teacher(str(TEACHERS / "kwt1" / "model.tflite"))
    assert kwt.info == {**kwt.info, "input": "audio", "scores": "logits"}
    assert [kwt.labels[i] for i in kwt(waves).argmax(1).tolist()] == ["yes"] * len(clips)
    dscnn = load_teacher(str(TEACHERS / "dscnn-l" / "model.pb"))
    assert dscnn.info["scores"] == "probs"
    assert [dscnn.labels[i] for i in dscnn(waves).argmax(1).tolist()] == ["yes"] * len(clips)
