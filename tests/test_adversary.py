"""The source adversary (`tinyear.host.adversary`, `--source-adversary`): the gradient reversal's
arithmetic, which labels take part, and a run through the CLI on real + "synthetic" tones, with its
one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from tinyear.host.adversary import AdversaryTerm, SourceAdversary, Tap, eligible_labels, ramp, reverse_gradient
from tinyear.host.data import SYNTH_MANIFEST
from tinyear.host.students import build_student

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import train_data  # noqa: E402

WORDS = train_data.WORDS


def test_reversal_is_identity_forward_and_negated_scaled_backward():
    x = torch.randn(5, 3, requires_grad=True)
    y = reverse_gradient(x, 0.7)
    assert torch.equal(y, x)
    (y * torch.arange(3.0)).sum().backward()
    assert torch.allclose(x.grad, -0.7 * torch.arange(3.0).expand(5, 3))


def test_ramp_rises_from_zero_to_nearly_one():
    assert ramp(0.0) == 0.0 and ramp(1.0) == pytest.approx(0.99991, abs=1e-4)
    assert ramp(-1.0) == 0.0 and ramp(2.0) == ramp(1.0)  # clamped
    assert all(ramp(a) < ramp(b) for a, b in [(0.1, 0.2), (0.2, 0.5), (0.5, 0.9)])


def test_only_labels_with_both_sources_take_part():
    y = np.array([0, 0, 1, 1, 2, 3])
    source = np.array([0, 1, 1, 1, 0, 2])  # label 0 both; 1 synthetic only; 2 real only; 3 noise
    assert eligible_labels(y, source, 5).tolist() == [True, False, False, False, False]


def test_head_learns_to_tell_while_the_embedding_is_pushed_the_other_way():
    """One loss, two directions: the head's parameters descend it, the embedding's gradient is the
    plain gradient reversed and scaled."""
    torch.manual_seed(0)
    head = SourceAdversary(8, 3)
    emb = torch.randn(6, 8, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    target = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    F.binary_cross_entropy_with_logits(head(emb, labels, 0.5), target).backward()
    reversed_grad = emb.grad.clone()
    emb.grad = None
    head.zero_grad()
    F.binary_cross_entropy_with_logits(head(emb, labels, 0.0) * 1.0, target).backward()  # scale 0: no gradient
    assert torch.count_nonzero(emb.grad) == 0
    emb.grad = None
    plain = head.net(emb).gather(1, labels.view(-1, 1)).squeeze(1)
    F.binary_cross_entropy_with_logits(plain, target).backward()
    assert torch.allclose(reversed_grad, -0.5 * emb.grad, atol=1e-6)


def test_term_uses_the_students_embedding_and_skips_ineligible_clips():
    model = build_student("dscnn-s", 3)
    y = np.array([0, 0, 1, 1, 2])
    source = np.array([0, 1, 0, 0, 2])  # only label 0 has both
    term = AdversaryTerm(model, y, source, 3, weight=1.0, device=torch.device("cpu"))
    assert term.tap.width == model.fc.in_features
    model(torch.randn(5, 98, 40))
    loss, correct, seen = term.loss(torch.from_numpy(y), torch.from_numpy(source), progress=0.5)
    assert seen == 2 and 0 <= correct <= 2 and loss.item() > 0
    model(torch.randn(3, 98, 40))
    loss, correct, seen = term.loss(torch.tensor([1, 2, 2]), torch.tensor([0, 2, 0]), progress=0.5)
    assert seen == 0 and loss.item() == 0.0
    with pytest.raises(ValueError, match="no final linear layer"):
        Tap(torch.nn.Sequential(torch.nn.Linear(2, 2)))


# -- a run through the CLI -----------------------------------------------------------------------------


def _synthetic_root(real: Path, out: Path) -> Path:
    """A 'synthetic' copy of some of the real tones: a harmonic on top (a voice of another kind), marked
    as `tinyear synth` marks its output."""
    for folder in ("low", "high"):
        (out / folder).mkdir(parents=True)
        for i, f in enumerate(sorted((real / folder).glob("*.wav"))[:20]):
            x, sr = sf.read(str(f), dtype="float32")
            buzz = np.sign(x) * np.abs(x) ** 0.5 * 0.3  # a harsher timbre, the same tone
            sf.write(str(out / folder / f"v{i:03d}_nohash_0.wav"), (0.7 * x + buzz).astype(np.float32), sr)
    (out / SYNTH_MANIFEST).write_text(json.dumps({"engine": "test"}))
    return out


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory):
    base = tmp_path_factory.mktemp("adv")
    real = train_data.make_dataset(base / "real", per_word=30)
    return real, _synthetic_root(real, base / "synth")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "tinyear.host.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def _one_error_line(done, needle):
    assert done.returncode != 0, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tinyear: error:"), done.stderr
    assert needle in lines[0], lines[0]


@pytest.mark.slow
def test_cli_run_with_the_adversary_records_it_and_resumes_exactly(two_sources, tmp_path):
    real, synth = two_sources
    common = ["distill", real, synth, "--words", *WORDS, "--no-teacher", "--student", "dscnn-s", "--variants", "1",
              "--batch-size", "16", "--cache-dir", tmp_path / "cache", "--jobs", "1", "--source-adversary", "1"]
    done = _cli(*common, "--epochs", "2", "--out", tmp_path / "a", "--json")
    assert done.returncode == 0, done.stderr
    assert "source guess" in done.stderr  # the head's accuracy, each epoch
    info = json.loads(done.stdout)
    assert info["options"]["train"]["source_adversary"] == 1.0
    from tinyear.host import runs

    last = torch.load(tmp_path / "a" / runs.LAST, weights_only=False)
    assert set(last["adversary"]) and not any(k.startswith("net.") for k in last["state_dict"])  # head apart

    # Interrupted after epoch 1 (a 1-epoch run's last.pt is the same state), resumed: the same weights.
    from tinyear.host.distill import DataOptions, distill
    from tinyear.host.augment import AugmentConfig
    from tinyear.host.train import TrainConfig

    data = DataOptions(roots=(str(real), str(synth)), words=WORDS, variants=1, augment=AugmentConfig(), jobs=1,
                       cache_dir=str(tmp_path / "cache"))
    config = TrainConfig(epochs=2, batch_size=16, source_adversary=1.0)

    class Interrupted(Exception):
        pass

    def stop(epoch, row):
        if epoch == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        distill([real, synth], tmp_path / "b", student="dscnn-s", teacher=None, data=data, config=config,
                progress=False, on_epoch=stop)
    distill([real, synth], tmp_path / "b", student="dscnn-s", teacher=None, data=data, config=config, progress=False,
            resume=True)
    b = torch.load(tmp_path / "b" / runs.LAST, weights_only=False)
    assert all(torch.equal(last["state_dict"][k], b["state_dict"][k]) for k in b["state_dict"])
    assert all(torch.equal(last["adversary"][k], b["adversary"][k]) for k in b["adversary"])


@pytest.mark.slow
def test_cli_adversary_errors(two_sources, tmp_path):
    real, synth = two_sources
    _one_error_line(_cli("distill", real, "--words", *WORDS, "--no-teacher", "--epochs", "1", "--source-adversary", "1",
                         "--cache-dir", tmp_path / "cache", "--quiet", "--out", tmp_path / "o"),
                    "needs a label with both real and synthetic training clips")
    _one_error_line(_cli("distill", real, synth, "--words", *WORDS, "--no-teacher", "--source-adversary", "-1",
                         "--out", tmp_path / "o"), "source_adversary must be 0 (off) or more")
    assert not (tmp_path / "o").exists()  # nothing left that looks like a run
