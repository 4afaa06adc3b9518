"""The main job end to end: `tinyear pipeline --quick` from nothing to a report and a bundle the device
half uses, then a rerun that skips every finished step, and a rerun with other settings refused."""

import json
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def tinyear(*args, **kw):
    return subprocess.run([sys.executable, "-m", "tinyear.host.cli", *map(str, args)], capture_output=True, text=True, **kw)


def device(*args):
    return subprocess.run([sys.executable, "-m", "tinyear.device.cli", *map(str, args)], capture_output=True, text=True)


# --no-backbone: these tests are about the steps with the built-in CNN teacher; the backbone choice is
# tests/test_backbone.py's.
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline") / "quick"
    proc = tinyear("pipeline", "--quick", "--no-backbone", "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_pipeline_makes_report_and_bundle(quick_run):
    out, summary, log = quick_run
    for step in range(1, 9):
        assert f"[{step}/8]" in log
    assert summary["finished"] is True
    assert summary["smoke_test"].startswith("a --quick smoke test")  # --quick says what its numbers are
    names = [r["name"] for r in summary["rows"]]
    assert names == ["teacher", "baseline student", "distilled student", "int8 bundle"]
    report = (out / "report.md").read_text()
    assert "| teacher (float) |" in report and "| int8 bundle (int8) |" in report
    assert "## Per class (int8 bundle)" in report and "## Time" in report
    # step 6 calibrated the thresholds on validation streams, or said why it kept the defaults
    assert "- Detection: " in report and ("calibrating thresholds" in log)
    assert "## Smoke test" in report and "not how accurate a model can be" in report
    for image in ("comparison.png", "teacher/curves.png", "student/curves.png", "baseline/curves.png"):
        assert (out / image).stat().st_size > 1000, image
    rows = {r["name"]: r for r in summary["rows"]}
    # even the quick recipe learns: the teacher is well above chance (1/12) on held-out synthetic voices
    test_set = next(iter(rows["teacher"]["accuracy"]))
    assert rows["teacher"]["accuracy"][test_set] > 2 * 100 / 12
    # the student is far smaller and faster than the teacher, and int8 shrinks it again
    assert rows["int8 bundle"]["size_bytes"] < rows["distilled student"]["size_bytes"] < rows["teacher"]["size_bytes"]
    assert rows["distilled student"]["params"] < rows["teacher"]["params"] / 20
    # the bundle holds the student that did better on the validation split, and the report names it
    runs = {"distilled": out / "student", "baseline": out / "baseline"}
    val = {k: json.loads((d / "run.json").read_text())["metrics"]["validation"]["accuracy"] for k, d in runs.items()}
    expected = "baseline" if val["baseline"] > val["distilled"] else "distilled"  # synthetic only: the whole split
    validation = json.loads((out / "student" / "run.json").read_text())["metrics"]["validation"]
    assert "synthetic" in validation["by_source"] and "real" not in validation["by_source"]
    assert sum(s["count"] for s in validation["by_source"].values()) == validation["count"]
    assert summary["bundle_student"] == expected
    assert f"int8 model of the {expected} student" in report


def test_bundle_works_on_the_device_side(quick_run, tmp_path):
    out, summary, _ = quick_run
    bundle = out / "keywords.tinyear"
    info = json.loads(device("info", bundle, "--json").stdout)
    assert info["input"]["dtype"] == "int8" and len(info["labels"]) == 12
    assert info["metrics"]["microcontroller_ready"] is True
    m = info["metrics"]  # measured at export on the validation split; targets are checked on real models
    assert m["accuracy_drop_points"] == pytest.approx(m["float_accuracy"] - m["int8_accuracy"], abs=0.01)
    assert 0 < m["agreement_percent"] <= 100 and m["model_bytes"] == info["model_bytes"]
    selftest = device("selftest", bundle)
    assert selftest.returncode == 0, selftest.stdout + selftest.stderr
    clip = sorted((out / "data" / "synth" / "yes").glob("*.wav"))[0]
    proc = device("classify", bundle, clip, "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["label"] in info["labels"]


def test_pick_shipped_goes_by_validation_only():
    from tinyear.host.pipeline import pick_shipped

    def info(val, test):
        return {"metrics": {"validation": {"accuracy": val}, "test": {"accuracy": test}}}

    assert pick_shipped(info(0.90, 0.50), info(0.89, 0.99)) == "student"  # test accuracy plays no part
    assert pick_shipped(info(0.88, 0.99), info(0.90, 0.50)) == "baseline"
    assert pick_shipped(info(0.90, 0.80), info(0.90, 0.90)) == "student"  # ties go to the distilled student


def test_real_clips_filled_with_synthetic_ones_are_chosen_on_the_recorded_clips():
    from tinyear.host.choice import RECORDED_MIN
    from tinyear.host.pipeline import pick_shipped
    from tinyear.host.pipeline_report import choice_accuracies

    def info(whole, real, synthetic, noise=(1.0, 50), real_count=400):
        by = {"real": {"accuracy": real, "count": real_count}, "synthetic": {"accuracy": synthetic, "count": 200},
              "noise": {"accuracy": noise[0], "count": noise[1]}}
        return {"metrics": {"validation": {"accuracy": whole, "by_source": by}}}

    # The taught student loses the whole split (its synthetic clips) and wins on people: it ships.
    taught, baseline = info(0.914, 0.95, 0.80), info(0.943, 0.93, 0.97)
    student_pct, baseline_pct, basis = choice_accuracies(taught, baseline)
    assert basis == "the validation split's 450 recorded clips"  # people and recorded silence, not synthetic
    assert student_pct == pytest.approx(100 * (0.95 * 400 + 50) / 450)
    assert baseline_pct == pytest.approx(100 * (0.93 * 400 + 50) / 450)
    assert pick_shipped(taught, baseline) == "student"
    assert pick_shipped(baseline, taught) == "baseline"
    # Too few clips of people to read alone: the whole split decides.
    few = RECORDED_MIN - 1
    assert choice_accuracies(info(0.914, 0.95, 0.80, real_count=few), info(0.943, 0.93, 0.97, real_count=few))[2] \
        == "the validation split"
    assert pick_shipped(info(0.914, 0.95, 0.80, real_count=few), info(0.943, 0.93, 0.97, real_count=few)) == "baseline"
    # No synthetic clips (all real), or a run recorded before runs kept accuracy per source: the whole split.
    all_real = {"metrics": {"validation": {"accuracy": 0.9, "by_source": {"real": {"accuracy": 0.9, "count": 500}}}}}
    assert choice_accuracies(all_real, all_real)[2] == "the validation split"
    old = {"metrics": {"validation": {"accuracy": 0.95}}}
    assert choice_accuracies(info(0.914, 0.95, 0.80), old) == (pytest.approx(91.4), pytest.approx(95.0), "the validation split")


def test_rerun_skips_finished_steps(quick_run):
    out, _, _ = quick_run
    before = (out / "keywords.tinyear").read_bytes()
    proc = tinyear("pipeline", "--quick", "--no-backbone", "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for step in ("[1/8]", "[2/8]", "[3/8]", "[4/8]", "[5/8]"):
        line = next(l for l in proc.stderr.splitlines() if step in l)
        assert "already done" in line or step == "[1/8]", line
    assert (out / "keywords.tinyear").read_bytes() == before


def test_other_settings_are_refused(quick_run):
    out, _, _ = quick_run
    proc = tinyear("pipeline", "--out", out, "--student-epochs", "1")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "holds a pipeline made with other settings" in proc.stderr
    assert "--force" in proc.stderr


def test_out_that_cannot_be_a_folder(tmp_path):
    """A file where the output folder should go: refused in one line before any work (root included)."""
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    proc = tinyear("pipeline", "--quick", "--out", blocker / "run")
    assert proc.returncode == 1 and "cannot write there" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_a_run_recorded_before_a_setting_existed_still_resumes(tmp_path):
    """pipeline.json written before a setting was added (here the tuple-valued ones) holds it at its
    default: resuming is not refused as "other settings" (a tuple default and the recorded list match)."""
    import json
    from dataclasses import asdict

    from tinyear.device.errors import TinyearError
    from tinyear.host.pipeline import PipelineConfig, _check_settings

    record = json.loads(json.dumps({**asdict(PipelineConfig()), "data": None, "teachers": None}))
    old = {k: v for k, v in record.items() if k not in ("teacher_classes", "other_speech")}
    (tmp_path / "pipeline.json").write_text(json.dumps({"settings": old, "finished": False}))
    _check_settings(tmp_path, record, force=False)  # no error
    changed = {**record, "teacher_classes": ["_silence_=labels"]}
    with pytest.raises(TinyearError, match="teacher_classes"):
        _check_settings(tmp_path, changed, force=False)


def test_each_epoch_logs_its_accuracy_on_the_recorded_clips_where_the_rule_reads_them():
    """train._Loop._recorded_accuracy: the recorded clips (every source but synthetic) where validation holds
    >= RECORDED_MIN clips of people and some synthetic ones; None otherwise (the log leaves it empty)."""
    from types import SimpleNamespace

    from tinyear.host.choice import RECORDED_MIN
    from tinyear.host.data import SOURCES
    from tinyear.host.train import _Loop

    real, synthetic, noise = (SOURCES.index(s) for s in ("real", "synthetic", "noise"))
    n = RECORDED_MIN
    source = np.array([real] * n + [noise] * 10 + [synthetic] * 50)
    y = np.zeros(len(source), dtype=np.int64)
    logits = np.zeros((len(source), 2), np.float32)
    logits[: n // 2, 1] = 1.0  # half the people wrong; recorded silence and every synthetic clip right
    loop = SimpleNamespace(features=SimpleNamespace(eval_source={"validation": source}))
    assert _Loop._recorded_accuracy(loop, logits, y) == pytest.approx((n - n // 2 + 10) / (n + 10))
    few = SimpleNamespace(features=SimpleNamespace(eval_source={"validation": source[1:]}))  # n - 1 people
    assert _Loop._recorded_accuracy(few, logits[1:], y[1:]) is None
    assert _Loop._recorded_accuracy(SimpleNamespace(features=SimpleNamespace(eval_source=None)), logits, y) is None


def test_student_patience_and_the_latency_bound_reach_training_and_calibration(quick_run, tmp_path):
    """--student-patience is the student's and the baseline's patience (recorded in their run.json);
    the calibration's latency bound is a setting of the run; --no-calibrate with a bound is refused."""
    import dataclasses

    from tinyear.host.keywords import SPEECH_COMMANDS_WORDS, parse_keywords
    from tinyear.host.pipeline import PipelineConfig, _Pipeline

    out, summary, _ = quick_run
    assert summary["settings"]["student_patience"] == 8 and summary["settings"]["max_latency_ms"] == 300
    for run in ("student", "baseline"):
        assert json.loads((out / run / "run.json").read_text())["options"]["train"]["patience"] == 8
    job = _Pipeline(tmp_path / "p", None, PipelineConfig(student_epochs=80, student_patience=80), None,
                    parse_keywords(SPEECH_COMMANDS_WORDS), progress=False, jobs=1, command="")
    assert job._student_config().patience == 80 and job._student_config().epochs == 80
    proc = tinyear("pipeline", "--quick", "--no-calibrate", "--max-latency", "200", "--out", tmp_path / "r")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "--no-calibrate" in proc.stderr
    assert not (tmp_path / "r").exists()
