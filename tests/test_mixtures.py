"""Mixture variants: two clips added at an energy share, their features cached, their labels mixed in
the loss, and a waveform teacher judging exactly the mixed waveform."""

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

from tinyear.device.features import log_mel  # noqa: E402
from tinyear.host.augment import AugmentConfig  # noqa: E402
from tinyear.host.data import load_dataset  # noqa: E402
from tinyear.host.featcache import build_features, mixture_plan  # noqa: E402


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return train_data.make_dataset(tmp_path_factory.mktemp("mix") / "data", per_word=10)


def test_mixture_features_labels_and_waves_agree(tones, tmp_path):
    dataset = load_dataset([tones], ["low", "high"], quiet=True)
    f = build_features(dataset, variants=2, augment=AugmentConfig(), cache_dir=tmp_path, progress=False, jobs=1,
                       mix_variants=2)
    n = f.train.shape[1]
    assert f.mix.shape == (2, n, *f.train.shape[2:]) and f.mix_variants == 2
    partner, lam = mixture_plan(n, 2, 0)
    np.testing.assert_array_equal(partner, f.mix_partner)
    idx = np.arange(n)
    for k in range(4):  # variants 0, 1 plain; 2, 3 mixtures
        kv = np.full(n, k)
        waves = f.variant_waves(idx[:5], kv[:5])
        np.testing.assert_allclose(f.features_of(idx[:5], kv[:5]), np.stack([log_mel(w) for w in waves]), atol=1e-5)
        other, share = f.mix_of(idx, kv)
        if k < 2:
            assert (share == 1).all() and (other == f.train_y).all()
        else:
            assert np.allclose(share, lam[k - 2]) and (other == f.train_y[partner[k - 2]]).all()
    # the mixture is the two augmented variants at energy shares lam and 1 - lam
    a, b = f.variant_waves([0, int(partner[0, 0])], [0, 0])
    np.testing.assert_allclose(f.variant_waves([0], [2])[0], np.sqrt(lam[0, 0]) * a + np.sqrt(1 - lam[0, 0]) * b,
                               atol=1e-6)
    again = build_features(dataset, variants=2, augment=AugmentConfig(), cache_dir=tmp_path, progress=False, jobs=1,
                           mix_variants=2)
    assert again.seconds == 0.0  # every file came from the cache


def test_waveform_teacher_judges_the_mixture(tones, tmp_path):
    judged, want = train_data.waveform_teacher_on_variant(tones, tmp_path, mix_variants=1)
    np.testing.assert_allclose(judged, want, atol=1e-4)


@pytest.mark.slow
def test_cli_distill_with_mixture_variants(tones, tmp_path):
    teacher = tmp_path / "teacher"
    base = [sys.executable, "-m", "tinyear.host.cli"]
    done = subprocess.run([*base, "teacher", str(tones), "--words", "low", "high", "--epochs", "1", "--out",
                           str(teacher), "--quiet", "--variants", "1"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([*base, "distill", str(tones), "--words", "low", "high", "--teacher", str(teacher),
                           "--teacher-cache", "--mix-variants", "1", "--variants", "1", "--epochs", "2",
                           "--student", "dscnn-s", "--out", str(tmp_path / "s"), "--quiet", "--json"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["options"]["data"]["mix_variants"] == 1
    done = subprocess.run([*base, "distill", str(tones), "--words", "low", "high", "--teacher", str(teacher),
                           "--mix-variants", "1", "--mixup", "0.5", "--out", str(tmp_path / "s2"), "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 and "choose one" in done.stderr and "Traceback" not in done.stderr


def test_mixed_label_term_with_partner_labels():
    from tinyear.host.kd import distillation_loss

    s = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    y = torch.tensor([0, 1])
    other, lam = torch.tensor([2, 1]), torch.tensor([0.6, 1.0])
    ce = torch.nn.functional.cross_entropy
    loss, _, _ = distillation_loss(s, y, mix=(other, lam))
    want = (0.6 * ce(s[:1], y[:1]) + 0.4 * ce(s[:1], torch.tensor([2])) + ce(s[1:], y[1:])) / 2
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
