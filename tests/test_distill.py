"""Training and distillation on a real (tiny) dataset on disk: the KD arithmetic against a hand
computation, teacher training, distillation online and cached, the no-teacher baseline through the same
code, determinism, resume after an interruption, the run-folder contract, and the command line's bad
inputs (one line, non-zero exit, nothing that looks finished)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tinyear.device.errors import TinyearError
from tinyear.host import runs
from tinyear.host.augment import AugmentConfig
from tinyear.host.distill import DataOptions, distill, train_teacher
from tinyear.host.kd import distillation_loss
from tinyear.host.labelmap import LabelMap
from tinyear.host.train import TrainConfig

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import train_data  # noqa: E402

WORDS = train_data.WORDS
FAST = TrainConfig(epochs=2, batch_size=16, lr=3e-3, patience=5)


# -- arithmetic ----------------------------------------------------------------------------------------


def test_kd_loss_matches_a_hand_computation():
    s = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    t = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 0.0]])
    y = torch.tensor([0, 2])
    labels = ["a", "b", "_unknown_"]
    same = LabelMap.build(labels, labels)
    alpha, T = 0.3, 2.0

    def softmax(v, temp=1.0):
        e = [math.exp(x / temp) for x in v]
        return [x / sum(e) for x in e]

    total_ce = total_kd = total = 0.0
    for i in range(2):
        ce = -math.log(softmax(s[i].tolist())[y[i]])
        q, p = softmax(t[i].tolist(), T), softmax(s[i].tolist(), T)
        kd = T * T * sum(qj * math.log(qj / pj) for qj, pj in zip(q, p))
        total_ce, total_kd, total = total_ce + ce / 2, total_kd + kd / 2, total + ((1 - alpha) * ce + alpha * kd) / 2
    loss, ce, kd = distillation_loss(s, y, t, same, alpha=alpha, temperature=T, kind="kl")
    assert loss.item() == pytest.approx(total, rel=1e-6)
    assert ce.item() == pytest.approx(total_ce, rel=1e-6) and kd.item() == pytest.approx(total_kd, rel=1e-6)

    mse = sum(sum((a - b) ** 2 for a, b in zip(s[i].tolist(), t[i].tolist())) / 3 for i in range(2)) / 2
    loss, ce, kd = distillation_loss(s, y, t, same, alpha=alpha, kind="mse")
    assert kd.item() == pytest.approx(mse, rel=1e-6)
    assert loss.item() == pytest.approx((1 - alpha) * total_ce + alpha * mse, rel=1e-6)

    base, ce0, kd0 = distillation_loss(s, y)  # no teacher: cross-entropy alone
    assert base.item() == pytest.approx(total_ce, rel=1e-6) and kd0.item() == 0.0


def test_mixed_examples_mix_the_label_term():
    s = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    y = torch.tensor([0, 1])
    perm, lam = torch.tensor([1, 0]), torch.tensor([0.75, 1.0])  # example 0 mixed with 1; example 1 not mixed
    ce = torch.nn.functional.cross_entropy
    loss, c, _ = distillation_loss(s, y, mix=(y[perm], lam))
    want = (0.75 * ce(s[:1], y[:1]) + 0.25 * ce(s[:1], y[1:]) + ce(s[1:], y[1:])) / 2
    assert loss.item() == pytest.approx(want.item(), rel=1e-6) and c.item() == pytest.approx(want.item(), rel=1e-6)


def test_kd_skips_clips_the_teacher_cannot_speak_for():
    student_labels = ["a", "_unknown_", "_silence_"]
    m = LabelMap.build(["a", "zzz"], student_labels)  # zzz -> _unknown_; _silence_ uncovered
    s = torch.tensor([[0.2, 0.1, 0.3], [1.0, -1.0, 0.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([0, 2])  # the second clip is _silence_
    loss, ce, kd = distillation_loss(s, y, t, m, alpha=0.5, temperature=1.0)
    ce_each = torch.nn.functional.cross_entropy(s, y, reduction="none")
    q = torch.softmax(t[0], 0)
    p = torch.log_softmax(s[0], 0)
    kd0 = (q[0] * (q[0].log() - p[0]) + q[1] * (q[1].log() - p[1])).item()
    assert kd.item() == pytest.approx(kd0, rel=1e-5)
    assert loss.item() == pytest.approx(((0.5 * ce_each[0] + 0.5 * kd0) + ce_each[1]).item() / 2, rel=1e-5)


# -- training on a tiny dataset ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    root = train_data.make_dataset(tmp_path_factory.mktemp("tones") / "data", per_word=40)
    return root


def _data(root, **kw) -> DataOptions:
    # Light augmentation: the test is about behaviour, and tones under 0 dB noise need many epochs.
    return DataOptions(roots=(str(root),), words=WORDS, variants=2, augment=AugmentConfig.off(shift=True, gain=True),
                       jobs=1, cache_dir=str(root.parent / "cache"), **kw)


@pytest.fixture(scope="module")
def teacher_run(tones, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "t"
    info = train_teacher([tones], out, data=_data(tones), config=replace(FAST, epochs=4), progress=False)
    return out, info


@pytest.mark.slow
def test_teacher_run_folder_contract(teacher_run):
    out, info = teacher_run
    for name in (runs.BEST, runs.LAST, runs.LOG, runs.CURVES, runs.RUN_JSON):
        assert (out / name).is_file(), name
    assert info["params"] >= 1_000_000 and info["kind"] == "teacher"
    model, meta = runs.load_run(out)
    assert meta["kind"] == "teacher" and meta["labels"] == [*WORDS, "_unknown_", "_silence_"]
    assert meta["frontend_fingerprint"] == info["frontend_fingerprint"]
    assert model(torch.zeros(1, 98, 40)).shape == (1, 4)
    assert info["metrics"]["validation"]["accuracy"] > 0.5  # tones are easy; 4 epochs beat chance (0.25) clearly
    header = (out / runs.LOG).read_text().splitlines()[0].split(",")
    assert {"train_ce", "train_kd", "val_acc", "val_loss", "val_recorded_acc"} <= set(header)
    with pytest.raises(TinyearError, match="holds a teacher run, not a student"):
        runs.load_run(out, "student")


@pytest.mark.slow
def test_distill_online_cached_and_baseline(tones, teacher_run, tmp_path):
    teacher_dir, _ = teacher_run
    kd = replace(FAST, alpha=0.5, temperature=2.0, teacher_mode="online")
    online = distill([tones], tmp_path / "online", student="dscnn-s", teacher=str(teacher_dir), data=_data(tones),
                     config=kd, progress=False)
    cached = distill([tones], tmp_path / "cached", student="dscnn-s", teacher=str(teacher_dir), data=_data(tones),
                     config=replace(kd, teacher_mode="cached", kd_loss="mse"), progress=False)
    base = distill([tones], tmp_path / "base", student="dscnn-s", teacher=None, data=_data(tones), config=FAST,
                   progress=False)
    for info in (online, cached):
        assert info["teacher"]["kind"] == "run" and info["teacher"]["validation_accuracy"] > 0.5
        rows = (tmp_path / ("online" if info is online else "cached") / runs.LOG).read_text().splitlines()
        kd_col = rows[0].split(",").index("train_kd")
        assert all(float(r.split(",")[kd_col]) > 0 for r in rows[1:])  # the KD term was logged apart
    assert base["teacher"] is None
    base_rows = (tmp_path / "base" / runs.LOG).read_text().splitlines()
    kd_col = base_rows[0].split(",").index("train_kd")
    assert all(float(r.split(",")[kd_col]) == 0 for r in base_rows[1:])
    cache_files = list((tones.parent / "cache" / "features").glob("teacher-*.npy"))
    assert len(cache_files) == 1  # one teacher pass, keyed by data and teacher
    model, meta = runs.load_run(tmp_path / "online", "student")
    assert meta["teacher"]["source"] == str(teacher_dir.resolve()) and meta["name"] == "dscnn-s"


@pytest.mark.slow
def test_waveform_teacher_online_and_cached(tones, tmp_path):
    spec = f"{HERE / 'test_teachers.py'}:make_teacher"  # labels yes, no, cat: 'cat' -> _unknown_
    config = replace(FAST, epochs=1, alpha=0.5, teacher_mode="online")
    words = DataOptions(roots=(str(tones),), words=WORDS, variants=1, augment=AugmentConfig.off(shift=True), jobs=1,
                        cache_dir=str(tmp_path / "cache"))
    with pytest.raises(TinyearError, match="cannot be mapped.*yes, no, cat"):
        distill([tones], tmp_path / "x", student="dscnn-s", teacher=spec, data=words, config=config, progress=False)
    assert not (tmp_path / "x" / runs.RUN_JSON).exists()
    info = distill([tones], tmp_path / "online", student="dscnn-s", teacher=spec, data=words, config=config,
                   label_overrides={"yes": "low", "no": "high"}, progress=False)
    assert info["teacher"]["label_map"]["to_unknown"] == ["cat"]
    assert info["teacher"]["label_map"]["uncovered_student_labels"] == ["_silence_"]
    info = distill([tones], tmp_path / "cached", student="dscnn-s", teacher=spec, data=words,
                   config=replace(config, teacher_mode="cached"), label_overrides={"yes": "low", "no": "high"},
                   progress=False)
    assert info["epochs_run"] == 1


@pytest.mark.slow
def test_unknown_ratio_is_trained_on_and_reloaded_by_export(tones, tmp_path):
    from tinyear.host.export import load_data

    config = replace(FAST, epochs=1)
    info = distill([tones], tmp_path / "half", student="dscnn-s", teacher=None, data=_data(tones, unknown_ratio=0.5),
                   config=config, progress=False)
    full = distill([tones], tmp_path / "full", student="dscnn-s", teacher=None, data=_data(tones), config=config,
                   progress=False)
    half_unknown = info["data"]["summary"]["per_split"]["train"]["_unknown_"]
    assert 0 < half_unknown < full["data"]["summary"]["per_split"]["train"]["_unknown_"]
    _, meta = runs.load_run(tmp_path / "half")
    assert meta["data"]["unknown_ratio"] == 0.5 and meta["run"]["options"]["data"]["unknown_ratio"] == 0.5
    # export's calibration and verification read the clips the run trained on, not the default pick
    assert load_data(meta, progress=False).fingerprint() == info["data"]["fingerprint"]


@pytest.mark.slow
def test_same_seed_same_weights_and_resume_is_exact(tones, tmp_path):
    config = replace(FAST, epochs=3)
    distill([tones], tmp_path / "a", student="dscnn-s", teacher=None, data=_data(tones), config=config, progress=False)
    distill([tones], tmp_path / "b", student="dscnn-s", teacher=None, data=_data(tones), config=config, progress=False)
    a = torch.load(tmp_path / "a" / runs.LAST, weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "b" / runs.LAST, weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    class Interrupted(Exception):
        pass

    def stop_after_2(epoch, row):
        if epoch == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        distill([tones], tmp_path / "c", student="dscnn-s", teacher=None, data=_data(tones), config=config,
                progress=False, on_epoch=stop_after_2)
    assert (tmp_path / "c" / runs.LAST).exists() and not (tmp_path / "c" / runs.RUN_JSON).exists()
    with pytest.raises(TinyearError, match="half-finished run"):
        runs.load_run(tmp_path / "c")
    with pytest.raises(TinyearError, match="already holds an unfinished run"):
        distill([tones], tmp_path / "c", student="dscnn-s", teacher=None, data=_data(tones), config=config,
                progress=False)
    with pytest.raises(TinyearError, match="other training options.*lr"):
        distill([tones], tmp_path / "c", student="dscnn-s", teacher=None, data=_data(tones),
                config=replace(config, lr=1e-3), resume=True, progress=False)
    info = distill([tones], tmp_path / "c", student="dscnn-s", teacher=None, data=_data(tones), config=config,
                   resume=True, progress=False)
    c = torch.load(tmp_path / "c" / runs.LAST, weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert info["epochs_run"] == 3
    assert len((tmp_path / "c" / runs.LOG).read_text().splitlines()) == 1 + 3  # header + one row per epoch


def test_load_run_errors(tmp_path):
    with pytest.raises(TinyearError, match="no such run folder"):
        runs.load_run(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TinyearError, match="no checkpoint"):
        runs.load_run(tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / runs.BEST).write_bytes(b"not a checkpoint")
    (tmp_path / "junk" / runs.RUN_JSON).write_text("{}")
    with pytest.raises(TinyearError, match="not a readable checkpoint"):
        runs.load_run(tmp_path / "junk")


# -- command line --------------------------------------------------------------------------------------


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tinyear.host.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def _one_error_line(done, needle):
    assert done.returncode != 0, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tinyear: error:"), done.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_cli_bad_inputs(tones, tmp_path):
    _one_error_line(_cli("distill", tones, "--no-teacher", "--alpha", "0.5", "--out", tmp_path / "o"),
                    "--alpha need a teacher")
    done = _cli("distill", tones, "--no-teacher", "--teacher", "x", "--out", tmp_path / "o")
    assert done.returncode == 2 and "not allowed with" in done.stderr  # argparse's own conflict message
    _one_error_line(_cli("distill", tones, "--no-teacher", "--out", tmp_path / "o", "--resume"), "nothing to resume")
    _one_error_line(_cli("distill", tones, "--no-teacher", "--out", tmp_path / "o", "--words", "low", "zebra"),
                    "has no clips of zebra")
    _one_error_line(_cli("distill", tones, "--no-teacher", "--student", "huge", "--out", tmp_path / "o"),
                    "unknown student 'huge'")
    _one_error_line(_cli("distill", tones, "--teacher", "t", "--teacher-cache", "--mixup", "0.5", "--out", tmp_path / "o"),
                    "mixup needs the teacher online")
    _one_error_line(_cli("distill", tones, "--no-teacher", "--gain-db", "10", "-30", "--out", tmp_path / "o"),
                    "--gain-db LO HI needs LO <= HI")
    _one_error_line(_cli("distill", tones, "--teacher", f"{HERE / 'test_teachers.py'}:make_teacher",
                         "--words", *WORDS, "--out", tmp_path / "o", "--epochs", "1"),
                    "cannot be mapped onto the student's: none of yes, no, cat")
    assert not (tmp_path / "o").exists()  # every one failed before writing anything: no empty folder left
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root ignores mode bits; an immutable folder refuses even root
        if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
            pytest.skip("cannot make a read-only folder here (chattr +i failed and we are root)")
    else:
        locked.chmod(0o555)
    try:
        _one_error_line(_cli("teacher", tones, "--words", *WORDS, "--out", locked / "run"), f"cannot write to {locked}")
        assert not any(locked.iterdir())
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(locked)], check=False)
        else:
            locked.chmod(0o755)


@pytest.mark.slow
def test_cli_distill_json_and_finished_run(tones, teacher_run, tmp_path):
    teacher_dir, _ = teacher_run
    out = tmp_path / "s"
    done = _cli("distill", tones, "--words", *WORDS, "--teacher", teacher_dir, "--teacher-cache", "--student", "dscnn-s",
                "--epochs", "1", "--variants", "2", "--out", out, "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["options"]["train"]["teacher_mode"] == "cached" and info["options"]["train"]["alpha"] == 0.5
    assert "epoch 1/1" in done.stderr  # the progress bar
    _one_error_line(_cli("distill", tones, "--words", *WORDS, "--no-teacher", "--out", out), "already holds a finished run")
    again = _cli("distill", tones, "--words", *WORDS, "--teacher", teacher_dir, "--teacher-cache", "--student", "dscnn-s",
                 "--epochs", "1", "--variants", "2", "--out", out, "--resume")
    assert again.returncode == 0 and "already finished" in again.stderr


def test_source_balanced_draws():
    from tinyear.host.train import draw_weights

    y = np.array([0, 0, 0, 0, 1, 1])
    source = np.array([0, 1, 1, 1, 1, 1])  # class 0: one real clip, three synthetic
    w = draw_weights(y, source, "source").numpy()
    assert w[0] == pytest.approx(0.5) and w[1:4] == pytest.approx([1 / 6] * 3)  # real drawn as often as synthetic
    assert w[y == 0].sum() == pytest.approx(w[y == 1].sum())  # classes equally often
    assert draw_weights(y, source, "class").numpy() == pytest.approx([0.25] * 4 + [0.5] * 2)
    assert draw_weights(y, source, "none") is None


@pytest.mark.slow
def test_level_normalised_run_trains_exports_and_runs_on_the_device(tones, tmp_path):
    """--level-norm reaches the features the student trains on, the checkpoint, the bundle's frontend
    (a fingerprint of its own) and the device, where a clip 30 dB quieter scores as the clip does."""
    from tinyear.device.bundle import read_bundle
    from tinyear.device.classify import Classifier
    from tinyear.device.features import DEFAULT_CONFIG, FrontendConfig, fingerprint
    from tinyear.host.data import load_dataset

    run = tmp_path / "lv"
    distill([tones], run, student="dscnn-s", teacher=None, data=_data(tones, level_norm_db=30.0),
            config=replace(FAST, epochs=2), progress=False)
    _, meta = runs.load_run(run)
    level = FrontendConfig(level_norm_db=30.0)
    assert meta["frontend_config"] == level and meta["frontend_fingerprint"] == fingerprint(level) != fingerprint()
    out = tmp_path / "lv.tinyear"
    proc = subprocess.run([sys.executable, "-m", "tinyear.host.cli", "export", str(run), "--out", str(out),
                           "--calibration", "40", "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bundle = read_bundle(out)
    assert bundle.frontend == level
    classifier = Classifier(bundle)
    np.testing.assert_allclose(classifier.scores(bundle.selftest.audio), bundle.selftest.expected, atol=1e-6)
    waves, _ = load_dataset([tones], WORDS, quiet=True).arrays("validation", DEFAULT_CONFIG, progress=False)
    for wave in waves[:8]:
        loud, quiet = classifier.scores(wave), classifier.scores((wave * 10 ** (-30 / 20)).astype(np.float32))
        assert np.argmax(quiet) == np.argmax(loud) and np.abs(quiet - loud).max() < 0.1
