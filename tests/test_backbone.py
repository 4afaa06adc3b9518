"""The speech_embedding backbone teacher: embeddings of clips, `tinyear teacher --backbone` on the tone
set through the CLI, a student distilled from it and exported, and the pipeline choosing between the
CNN and the backbone head on validation, and taking given teachers with --teacher.

Needs the `backbone` extra (pyopen-wakeword, for its model files); skipped with a message without it.
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyopen_wakeword", reason="the backbone extra is not installed: pip install 'tinyear[backbone]'")

sys.path.insert(0, str(Path(__file__).parent))
import train_data  # noqa: E402

from tinyear.host.backbone import BACKBONES, SpeechEmbedding, is_backbone_run  # noqa: E402
from tinyear.host.teachers import load_teacher, teacher_kind  # noqa: E402

pytestmark = pytest.mark.slow
WORDS = train_data.WORDS


def tinyear(*args):
    return subprocess.run([sys.executable, "-m", "tinyear.host.cli", *map(str, args)], capture_output=True, text=True)


def test_embeddings_are_nine_windows_and_batch_independent():
    net = SpeechEmbedding()
    spec = BACKBONES["speech-embedding"]
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    waves = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.05 * rng.standard_normal(16000)]).astype(np.float32)
    both = net(waves)
    assert both.shape == (2, spec.windows, spec.dim) and both.dtype == np.float32
    assert np.isfinite(both).all()
    np.testing.assert_allclose(net(waves[1:]), both[1:], rtol=1e-4, atol=1e-4)  # a clip's embedding is its own
    assert np.abs(both[0] - both[1]).mean() > 1e-3  # a tone and noise differ
    short = net(waves[:1, :8000])  # clips are fitted to the clip length as in training
    assert short.shape == (1, spec.windows, spec.dim)


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return train_data.make_dataset(tmp_path_factory.mktemp("tones") / "data", per_word=30)


@pytest.fixture(scope="module")
def backbone_run(tones, tmp_path_factory):
    out = tmp_path_factory.mktemp("bb") / "teacher-se"
    done = tinyear("teacher", tones, "--words", *WORDS, "--out", out, "--backbone", "speech-embedding",
                   "--head-epochs", "30", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads(done.stdout)


def test_backbone_teacher_run_through_the_cli(backbone_run, tones):
    out, info = backbone_run
    assert info["kind"] == "backbone" and info["name"] == "speech-embedding"
    assert (out / "run.json").is_file() and is_backbone_run(out)
    # the tones are easy: the head over frozen speech embeddings learns them well above chance (1/4)
    assert info["metrics"]["validation"]["accuracy"] > 0.6, info["metrics"]
    assert teacher_kind(str(out)) == ("backbone", str(out))  # before the plain run check (run.json is there too)
    teacher = load_teacher(str(out))
    assert teacher.kind == "backbone" and teacher.labels == [*WORDS, "_unknown_", "_silence_"]
    assert not teacher.accepts_features()  # it hears waveforms, through its own front end
    rng = np.random.default_rng(1)
    logits = teacher((0.1 * rng.standard_normal((3, 16000))).astype(np.float32))
    assert tuple(logits.shape) == (3, 4)
    # a second training into the same folder is refused without --force, in one line
    again = tinyear("teacher", tones, "--words", *WORDS, "--out", out / "run.json", "--backbone", "speech-embedding")
    assert again.returncode != 0 and len(again.stderr.strip().splitlines()) == 1


def test_distill_from_the_backbone_teacher_then_export(backbone_run, tones, tmp_path):
    teacher_dir, info = backbone_run
    student = tmp_path / "student"
    done = tinyear("distill", tones, "--words", *WORDS, "--teacher", teacher_dir, "--teacher-cache",
                   "--student", "dscnn-s", "--epochs", "3", "--variants", "1", "--out", student, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads(done.stdout)
    assert run["teacher"]["kind"] == "backbone"
    assert run["teacher"]["source"] == str(teacher_dir.resolve())
    # the distillation measured the teacher on validation as the teacher run did
    assert abs(run["teacher"]["validation_accuracy"] - info["metrics"]["validation"]["accuracy"]) < 0.05
    bundle = tmp_path / "tones.tinyear"
    exported = tinyear("export", student, "--out", bundle, "--calibration", "20")
    assert exported.returncode == 0, exported.stderr[-3000:]
    shown = subprocess.run([sys.executable, "-m", "tinyear.device.cli", "info", bundle, "--json"], capture_output=True,
                           text=True)
    assert shown.returncode == 0 and json.loads(shown.stdout)["labels"] == [*WORDS, "_unknown_", "_silence_"]


QUICK = ("--quick", "--per-word", "20", "--teacher-epochs", "2", "--student-epochs", "2", "--no-real-test", "--json")


@pytest.fixture(scope="module")
def default_pipeline(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipe") / "default"
    done = tinyear("pipeline", *QUICK, "--ship", "student", "--out", out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads(done.stdout.strip().splitlines()[-1])


def test_synthetic_speech_alone_the_backbone_head_teaches_and_the_distilled_student_ships(default_pipeline):
    """--ship student on the synthetic default: no CNN contest, the head teaches, the distilled student ships
    whatever the synthetic validation split says (what carries to people, it cannot see)."""
    out, summary = default_pipeline
    choice = summary["teacher"]
    assert choice["chosen"] == "backbone" and set(choice["validation"]) == {"backbone"} and "rule" in choice
    assert not (out / "teacher").exists()
    student = json.loads((out / "student" / "run.json").read_text())
    assert student["teacher"]["source"] == str((out / "teacher-backbone").resolve())
    assert summary["bundle_student"] == "distilled"
    assert [r["name"] for r in summary["rows"]] == ["teacher", "baseline student", "distilled student", "int8 bundle"]
    assert "head teaches and the distilled student ships" in (out / "report.md").read_text()


def test_pipeline_with_data_trains_both_teachers_and_keeps_the_better_on_validation(tones, tmp_path):
    out = tmp_path / "data"
    done = tinyear("pipeline", *QUICK, "--data", tones, "--out", out)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    choice = summary["teacher"]
    assert set(choice["validation"]) == {"cnn", "backbone"}
    for name, folder in (("cnn", "teacher"), ("backbone", "teacher-backbone")):
        run = json.loads((out / folder / "run.json").read_text())
        assert choice["validation"][name] == pytest.approx(run["metrics"]["validation"]["accuracy"], abs=1e-12)
    expected = "backbone" if choice["validation"]["backbone"] > choice["validation"]["cnn"] else "cnn"
    assert choice["chosen"] == expected
    student = json.loads((out / "student" / "run.json").read_text())
    folder = out / ("teacher-backbone" if expected == "backbone" else "teacher")
    assert student["teacher"]["source"] == str(folder.resolve())
    assert summary["rows"][0]["name"] == "teacher"


def test_pipeline_with_given_teacher_skips_the_teacher_step(default_pipeline, tmp_path):
    given = default_pipeline[0] / "teacher-backbone"
    out = tmp_path / "given"
    done = tinyear("pipeline", *QUICK, "--teacher", given, "--teacher-class", "_silence_=labels", "--out", out)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert "no teacher training" in done.stderr
    assert not (out / "teacher").exists() and not (out / "teacher-backbone").exists()
    recorded = json.loads((out / "pipeline.json").read_text())
    assert recorded["settings"]["teachers"] == [str(given.resolve())]
    assert summary["teacher"]["chosen"] == "given" and summary["teacher"]["specs"] == [str(given.resolve())]
    student = json.loads((out / "student" / "run.json").read_text())
    # --teacher-class passed through to distill: the given teacher, wrapped with _silence_ from the labels
    assert student["options"]["teacher_classes"] == ["_silence_=labels"]
    teacher = student["teacher"]
    assert teacher["kind"] == "ensemble" and teacher["class_sources"] == {"_silence_": "labels"}
    assert [(m["kind"], m["source"]) for m in teacher["members"]] == [("backbone", str(given.resolve()))]
    assert [r["name"] for r in summary["rows"]] == ["teacher", "baseline student", "distilled student", "int8 bundle"]
    # synthetic speech alone, a given teacher: the distilled student ships whatever synthetic validation says
    assert summary["bundle_student"] == "distilled"
    report = (out / "report.md").read_text()
    assert "given (teacher-backbone)" in report and "the given teacher teaches and the distilled student ships" in report
    # a teacher that names nothing is one line, before any work; so is --teacher-class without a teacher
    bad = tinyear("pipeline", *QUICK, "--teacher", tmp_path / "nothing", "--out", tmp_path / "bad")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
    bad = tinyear("pipeline", *QUICK, "--teacher-class", "_silence_=labels", "--out", tmp_path / "bad2")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "give a --teacher" in bad.stderr
    assert not (tmp_path / "bad2").exists()


def test_pipeline_words_from_text_ship_a_backbone_bundle(tmp_path):
    """--words without --data: the bundle runs an int8 head over the backbone it carries (ship auto)."""
    out = tmp_path / "words"
    done = tinyear("pipeline", "--quick", "--words", "red", "green", "--per-word", "24", "--no-real-test", "--json",
                   "--out", out)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["bundle_student"] == "backbone head" and summary["teacher"]["ship"] == "backbone"
    assert [r["name"] for r in summary["rows"]] == ["teacher", "int8 bundle"]
    assert not (out / "student").exists() and not (out / "baseline").exists()
    assert "[2/6] training the head over the speech-embedding backbone" in done.stderr
    assert "absl::InitializeLog" not in done.stderr and "oneDNN" not in done.stderr  # the converter's banners
    from tinyear.device import read_bundle

    bundle = read_bundle(out / "keywords.tinyear")
    assert bundle.backbone["name"] == "speech-embedding" and bundle.labels == ["red", "green", "_unknown_", "_silence_"]
    assert bundle.provenance["student"]["arch"] == "backbone-head"
    assert bundle.metrics["int8_accuracy"] > 0 and bundle.metrics["backbone_bytes"] > 1_000_000
    selftest = subprocess.run([sys.executable, "-m", "tinyear.device.cli", "selftest", out / "keywords.tinyear"],
                              capture_output=True, text=True)
    assert selftest.returncode == 0 and "self-test passed" in selftest.stdout, selftest.stdout + selftest.stderr
    report = (out / "report.md").read_text()
    assert "int8 head" in report and "speech-embedding backbone's float TFLite files" in report
    # the head run is an ordinary backbone teacher run, and tinyear export turns it into the same kind of bundle
    again = tmp_path / "again.tinyear"
    exported = tinyear("export", out / "teacher-backbone", "--out", again, "--json")
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert read_bundle(again).model_sha256 == read_bundle(out / "keywords.tinyear").model_sha256


def test_ship_auto_picks_the_backbone_for_synthetic_speech_alone(monkeypatch):
    """auto: the backbone where the data is synthetic only (default set, words from text), the student with
    real data or given teachers; a given teacher with --ship backbone is a contradiction, refused."""
    from tinyear.device.errors import TinyearError
    from tinyear.host import backbone
    from tinyear.host.pipeline import PipelineConfig, resolve_ship

    monkeypatch.setattr(backbone, "available", lambda name: True)
    auto = PipelineConfig()
    assert resolve_ship(auto, None) == "backbone"
    assert resolve_ship(dataclasses.replace(auto, words=("red",)), None) == "backbone"
    assert resolve_ship(auto, "data/real") == "student"
    assert resolve_ship(auto, None, ["runs/teacher"]) == "student"
    assert resolve_ship(dataclasses.replace(auto, backbone=None), None) == "student"
    assert resolve_ship(dataclasses.replace(auto, ship="student"), None) == "student"
    assert resolve_ship(dataclasses.replace(auto, ship="backbone"), "data/real") == "backbone"
    with pytest.raises(TinyearError, match="leave out one of them"):
        resolve_ship(dataclasses.replace(auto, ship="backbone"), None, ["runs/teacher"])
    monkeypatch.setattr(backbone, "available", lambda name: False)
    assert resolve_ship(auto, None) == "student"  # without the wheel: the student, as before


def test_ship_backbone_without_the_backbone_is_one_line(tmp_path):
    done = tinyear("pipeline", "--quick", "--ship", "backbone", "--no-backbone", "--out", tmp_path / "x")
    assert done.returncode != 0 and done.stderr.strip().splitlines() == [
        "tinyear: error: --ship backbone needs the backbone; leave out --no-backbone"]
    assert not (tmp_path / "x").exists()


def test_augmented_embeddings_are_cached_copies_of_the_training_clips(tones, tmp_path):
    from tinyear.host.backbone import augmented_embeddings, split_embeddings
    from tinyear.host.data import load_dataset

    net = SpeechEmbedding()
    dataset = load_dataset([tones], list(WORDS), quiet=True)
    clean, y = split_embeddings(net, dataset, "train", cache_dir=tmp_path)
    x, ya = augmented_embeddings(net, dataset, 2, seed=3, cache_dir=tmp_path)
    assert x.shape == (2 * len(y), *clean.shape[1:]) and list(ya) == list(y) * 2
    assert np.abs(x[: len(y)] - clean).mean() > 1e-3  # augmented, not the clean clips again
    assert np.abs(x[: len(y)] - x[len(y):]).mean() > 1e-3  # two different copies
    cached = list((tmp_path / "backbone").glob("aug-*.npy"))
    assert len(cached) == 1
    again, _ = augmented_embeddings(net, dataset, 2, seed=3, cache_dir=tmp_path)
    np.testing.assert_array_equal(again, x)
    other, _ = augmented_embeddings(net, dataset, 2, seed=4, cache_dir=tmp_path)
    assert np.abs(other - x).mean() > 1e-3 and len(list((tmp_path / "backbone").glob("aug-*.npy"))) == 2
