"""Teachers: the built-in CNN's size, the label map (by name, synonyms, summing into _unknown_, errors that
name the labels), and the TorchScript, Hugging Face and factory loaders on real (tiny, randomly
initialised, saved by the test) models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from tinyear.device.errors import TinyearError
from tinyear.host.students import count_macs, count_params
from tinyear.host.labelmap import LabelMap, parse_label_map
from tinyear.host.teacher_arch import build_teacher_arch
from tinyear.host.teachers import load_teacher, teacher_kind

STUDENT = ["yes", "no", "_unknown_", "_silence_"]


def test_builtin_teacher_is_large_but_cheap():
    model = build_teacher_arch("cnn-teacher", 12)
    assert count_params(model) >= 1_000_000
    assert count_macs(model) < 60_000_000  # a few minutes of training on two cores
    assert model.eval()(torch.randn(2, 98, 40)).shape == (2, 12)


def test_label_map_sums_unmapped_teacher_labels_into_unknown():
    teacher = ["Yes", "no", "cat", "dog"]  # case differs; cat, dog are not student labels
    m = LabelMap.build(teacher, STUDENT)
    assert m.matched == ["Yes", "no"] and m.to_unknown == ["cat", "dog"]
    assert m.covered.tolist() == [True, True, True, False]  # _silence_: the teacher has no opinion
    logits = torch.tensor([[2.0, 0.5, 1.0, -1.0]])
    p = torch.softmax(logits, dim=1)[0]
    q = m.log_probs(logits).exp()[0]
    assert torch.allclose(q[:3], torch.stack([p[0], p[1], p[2] + p[3]]), atol=1e-6)
    assert q[3] == 0.0
    # at temperature T the probabilities are summed after softening
    pt = torch.softmax(logits / 4.0, dim=1)[0]
    assert torch.allclose(m.log_probs(logits, 4.0).exp()[0, 2], pt[2] + pt[3], atol=1e-6)
    # mapped logits: softmax of them is the mapped distribution
    assert torch.allclose(torch.softmax(m.logits(logits)[:, :3], dim=1)[0], q[:3] / q[:3].sum(), atol=1e-6)


def test_label_map_synonyms_identity_and_overrides():
    m = LabelMap.build(["yes", "no", "unknown", "silence"], STUDENT)
    assert m.target == [0, 1, 2, 3] and not m.to_unknown
    same = LabelMap.build(STUDENT, STUDENT)
    assert same.is_identity
    logits = torch.randn(3, 4)
    assert torch.equal(same.logits(logits), logits)
    m = LabelMap.build(["yeah", "no", "bird"], STUDENT, parse_label_map(["yeah=yes"]))
    assert m.target == [0, 1, 2]


def test_label_map_errors_name_the_labels():
    with pytest.raises(TinyearError, match="cannot be mapped.*cat, dog"):
        LabelMap.build(["cat", "dog"], STUDENT)
    with pytest.raises(TinyearError, match="teacher labels bird match no student label"):
        LabelMap.build(["yes", "bird"], ["yes", "no"])
    with pytest.raises(TinyearError, match="student does not have"):
        LabelMap.build(["yes"], STUDENT, {"yes": "maybe"})
    with pytest.raises(TinyearError, match="TEACHER_LABEL=STUDENT_LABEL"):
        parse_label_map(["yes"])


class WaveNet(nn.Module):
    """A waveform teacher: frame energies -> linear."""

    def __init__(self, labels: int = 3):
        super().__init__()
        self.fc = nn.Linear(100, labels)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        frames = waves[:, : 16000].reshape(waves.shape[0], 100, 160)  # (B, 100, 160)
        return self.fc(torch.log(frames.pow(2).mean(dim=2) + 1e-6))  # (B, labels)


def test_torchscript_teacher_with_embedded_or_side_labels(tmp_path):
    torch.manual_seed(0)
    net = WaveNet().eval()
    waves = torch.randn(2, 16000) * 0.1
    path = tmp_path / "teacher.pt"
    torch.jit.save(torch.jit.script(net), str(path), _extra_files={"labels.json": json.dumps(["yes", "no", "cat"])})
    teacher = load_teacher(str(path))
    assert teacher.kind == "torchscript" and teacher.labels == ["yes", "no", "cat"]
    assert torch.allclose(teacher(waves), net(waves), atol=1e-5)
    bare = tmp_path / "bare.ts"
    torch.jit.save(torch.jit.script(net), str(bare))
    with pytest.raises(TinyearError, match="has no labels"):
        load_teacher(str(bare))
    (tmp_path / "labels.txt").write_text("up\ndown\nleft\n")
    assert load_teacher(f"torchscript:{bare}").labels == ["up", "down", "left"]
    assert teacher.identity != load_teacher(str(bare)).identity  # other labels, other cache key


def make_teacher():
    """Factory used by the test below and by tests/test_distill.py."""
    torch.manual_seed(1)
    return WaveNet(3), ["yes", "no", "cat"]


def test_factory_teacher(tmp_path):
    teacher = load_teacher(f"{__file__}:make_teacher")
    assert teacher.kind == "factory" and teacher.labels == ["yes", "no", "cat"]
    assert teacher(np.zeros((2, 16000), np.float32)).shape == (2, 3)
    assert teacher_kind("some.module:make")[0] == "factory"
    with pytest.raises(TinyearError, match="has no function nothing"):
        load_teacher(f"{__file__}:nothing")
    with pytest.raises(TinyearError, match="cannot import"):
        load_teacher("tinyear_no_such_module:make")
    with pytest.raises(TinyearError, match="no such file or folder"):
        load_teacher(str(tmp_path / "missing.pt"))


def test_a_factory_that_raises_is_one_line(tmp_path):
    """The user's factory failing while its file imports, in the function, or in its forward: one line
    naming the factory and the first line of its error, never its traceback."""
    file = tmp_path / "teachers.py"
    file.write_text(
        "import torch\n"
        "def broken():\n"
        "    raise RuntimeError('weights not found at /models/big.pt\\nsecond line of detail')\n"
        "class Bad(torch.nn.Module):\n"
        "    def forward(self, waves):\n"
        "        raise ValueError('expected 8 kHz input')\n"
        "def bad_forward():\n"
        "    return Bad(), ['yes', 'no']\n"
        "def wrong_width():\n"
        "    return torch.nn.Linear(16000, 3), ['yes', 'no']\n")
    cases = {"broken": "raised RuntimeError: weights not found at /models/big.pt",
             "bad_forward": "its module raised ValueError on a 1 s clip: expected 8 kHz input",
             "wrong_width": "gives shape (1, 3) for one 1 s clip, not (1, 2) for its 2 labels"}
    for func, needle in cases.items():
        with pytest.raises(TinyearError) as info:
            load_teacher(f"{file}:{func}")
        assert needle in str(info.value) and "\n" not in str(info.value), str(info.value)
    (tmp_path / "at_import.py").write_text("raise OSError('no GPU driver')\ndef make():\n    pass\n")
    with pytest.raises(TinyearError, match="importing .*at_import.py raised OSError: no GPU driver"):
        load_teacher(f"{tmp_path / 'at_import.py'}:make")


@pytest.mark.slow
def test_hugging_face_teacher_from_a_local_folder(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    labels = ["yes", "no", "dog", "_silence_"]
    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                            conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2), num_feat_extract_layers=2,
                            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, classifier_proj_size=8,
                            id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    torch.manual_seed(0)
    Wav2Vec2ForSequenceClassification(config).save_pretrained(tmp_path / "hf")
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(tmp_path / "hf")
    teacher = load_teacher(str(tmp_path / "hf"))
    assert teacher.kind == "huggingface" and teacher.labels == labels
    waves = np.random.default_rng(0).standard_normal((3, 16000)).astype(np.float32) * 0.1
    logits = teacher(waves)
    assert logits.shape == (3, 4) and torch.isfinite(logits).all()
    m = LabelMap.build(teacher.labels, STUDENT)
    assert m.to_unknown == ["dog"] and m.covered.all()
    with pytest.raises(TinyearError, match="not a Hugging Face model folder|neither a tinyear run folder"):
        (tmp_path / "empty").mkdir()
        load_teacher(str(tmp_path / "empty"))
