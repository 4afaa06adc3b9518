"""`tinyear evaluate` and the comparison report, on tone data written by the test.

The bundles are the session's tiny tone models (labels low/high/noise); the run folder is the tiny
DS-CNN of test_export's helpers. Every metric is checked against a count made here from the same
predictions, not against a stored number.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from test_export import SPLIT_COUNTS, TONES, error_line, make_tone_dataset, tinyear, train_tiny_run  # noqa: E402


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return make_tone_dataset(tmp_path_factory.mktemp("eval") / "tones", seed=5)


def test_classification_metrics_by_hand():
    from tinyear.host.evaluate import classification_metrics

    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 1, 0])
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(100 * 4 / 6, abs=1e-3)
    assert m["per_class"]["a"] == {"precision": pytest.approx(2 / 3, abs=1e-4), "recall": pytest.approx(2 / 3, abs=1e-4),
                                   "f1": pytest.approx(2 / 3, abs=1e-4), "support": 3}
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3, abs=1e-4) and m["per_class"]["b"]["recall"] == 1.0
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["confusion"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]


@pytest.mark.slow
def test_evaluate_bundle_on_a_folder(tiny_bundles, tones, tmp_path):
    from tinyear.device.classify import Classifier

    out = tmp_path / "eval"
    proc = tinyear("evaluate", tiny_bundles["int8"], tones, "--split", "test", "--json", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["kind"] == "int8 bundle" and r["split"] == "test" and r["labels"] == TONES
    assert r["clips"] == 3 * 12  # the test list of each folder, nothing generated for a model without _silence_
    # the same numbers by hand, through the device's classifier
    clf = Classifier(tiny_bundles["int8"])
    test_names = (tones / "testing_list.txt").read_text().split()
    truth = np.array([TONES.index(n.split("/")[0]) for n in test_names])
    pred = np.array([clf.classify_file(tones / n).argmax() for n in test_names])
    assert r["accuracy"] == pytest.approx(100 * float(np.mean(truth == pred)), abs=1e-3)
    assert sum(map(sum, r["confusion"])) == 36
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "metrics.json").read_text())["accuracy"] == r["accuracy"]
    # text mode: headline and a per-class table
    text = tinyear("evaluate", tiny_bundles["int8"], tones, "--split", "all")
    assert text.returncode == 0 and "accuracy" in text.stdout and f"on {3 * sum(SPLIT_COUNTS.values())} clips" in text.stdout
    assert all(label in text.stdout for label in TONES)


@pytest.mark.slow
def test_evaluate_refuses_labels_the_bundle_lacks(tiny_bundles, tones, tmp_path):
    import shutil

    data = tmp_path / "more"
    shutil.copytree(tones, data)
    for extra in ("chirp", "_silence_"):
        shutil.copytree(data / "high", data / extra)
    proc = tinyear("evaluate", tiny_bundles["int8"], data, "--split", "all")
    line = error_line(proc)
    assert "has clips of chirp, _silence_, which the model cannot name" in line
    assert "low, high, noise" in line and proc.stderr.count("\n") == 1


@pytest.mark.slow
def test_evaluate_run_folder_and_comparison_report(tones, tiny_bundles, tmp_path):
    """A float run folder scores like its torch model; `compare` puts the run and a bundle side by side."""
    from tinyear.host.evaluate import evaluate
    from tinyear.host.report import Row, compare, markdown_table, plot_comparison, write_markdown

    run = train_tiny_run(tmp_path / "run", tones, steps=60)
    r = evaluate(run, tones, split="validation", progress=False)
    assert r["kind"] == "float student run" and r["labels"] == TONES + ["_unknown_", "_silence_"]
    assert r["clips"] == sum(r["per_class"][k]["support"] for k in r["per_class"])

    rows = compare(teacher=run, baseline=None, student=run, bundle=None,
                   eval_sets={"tones test": (tones, "test"), "tones all": (tones, "all")},
                   latency_repeats=20, progress=False)
    assert [row.name for row in rows] == ["teacher", "distilled student"]
    for row in rows:
        assert row.params > 0 and row.macs > 0 and row.size_bytes > 1000 and row.latency_ms > 0
        assert set(row.accuracy) == {"tones test", "tones all"}
    # the same model in both rows: same accuracy, size ratio 1
    assert rows[0].accuracy == rows[1].accuracy and rows[1].size_x == 1.0
    table = markdown_table(rows + [Row("int8 bundle", "int8", size_bytes=2048)])
    assert table.count("\n") == 4 and "| teacher (float) |" in table and "n/a" in table
    png = plot_comparison(rows, tmp_path / "cmp.png")
    report = write_markdown(tmp_path / "report.md", "Tiny", rows, sections=[("Notes", "measured here")],
                            images=[("comparison", png)])
    text = report.read_text()
    assert text.startswith("# Tiny") and "![comparison](cmp.png)" in text and "## Notes" in text


@pytest.mark.slow
def test_median_latencies_side_by_side(tiny_models):
    from tinyear.host.report import median_latencies

    lat = median_latencies({k: p.read_bytes() for k, p in tiny_models.items()}, repeats=30, warmup=3)
    assert set(lat) == {"int8", "float"} and all(v > 0 for v in lat.values())


def test_evaluate_refuses_a_missing_model(tmp_path, tones):
    proc = tinyear("evaluate", tmp_path / "nothing.tinyear", tones)
    assert "no such bundle or run folder" in error_line(proc)


def _copy_without_lists(src, dst):
    import shutil

    shutil.copytree(src, dst)
    for name in ("validation_list.txt", "testing_list.txt"):
        (dst / name).unlink()
    return dst


@pytest.mark.slow
def test_evaluate_auto_split_scores_an_evaluation_set_whole_and_says_so(tiny_bundles, tones, tmp_path):
    from tinyear.host.evaluate import evaluate

    r = evaluate(tiny_bundles["int8"], tones, progress=False)  # list files: their test split
    assert r["split"] == "test" and r["clips"] == 3 * 12 and "test list" in r["split_reason"]
    plain = _copy_without_lists(tones, tmp_path / "recordings")  # no lists, looks like training data
    r = evaluate(tiny_bundles["int8"], plain, progress=False)
    assert r["split"] == "test" and "speaker-hash" in r["split_reason"] and r["clips"] < 3 * sum(SPLIT_COUNTS.values())
    named = _copy_without_lists(tones, tmp_path / "tones-test")  # no lists and a test name: every clip
    proc = tinyear("evaluate", tiny_bundles["int8"], named, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["split"] == "all" and r["clips"] == 3 * sum(SPLIT_COUNTS.values())
    assert r["split_reason"].startswith("auto: every clip") and "'test' in its name" in r["split_reason"]
    text = tinyear("evaluate", tiny_bundles["int8"], named)
    assert text.returncode == 0 and "  split: all (auto: every clip, an evaluation set" in text.stdout
    assert tinyear("evaluate", tiny_bundles["int8"], named, "--split", "test", "--json").returncode == 0


@pytest.mark.slow
def test_evaluate_lists_every_class_it_scores_as_unknown(tones, tmp_path):
    import shutil

    from tinyear.host.evaluate import evaluate, format_result

    run = train_tiny_run(tmp_path / "run", tones, steps=20)  # labels low, high, noise, _unknown_, _silence_
    data = tmp_path / "many-test"
    shutil.copytree(tones, data)
    others = [f"word{i:02d}" for i in range(14)]
    for i, word in enumerate(others):
        (data / word).mkdir()
        for clip in sorted((tones / "noise").iterdir())[: i % 3 + 1]:
            shutil.copyfile(clip, data / word / clip.name)
    r = evaluate(run, data, split="all", progress=False)
    assert r["folded_into_unknown"] == {w: i % 3 + 1 for i, w in enumerate(others)}
    note = [n for n in r["notes"] if n.startswith("scored as _unknown_")]
    assert len(note) == 1 and "(14 classes of the data)" in note[0] and "..." not in note[0]
    assert all(f"{w} ({i % 3 + 1})" in note[0] for i, w in enumerate(others))
    assert any(note[0] in line for line in format_result(r))


def test_evaluate_refuses_data_with_none_of_the_models_words(tiny_bundles, tones, tmp_path):
    import shutil

    data = tmp_path / "other-words"
    for word in ("chirp", "buzz"):
        shutil.copytree(tones / "high", data / word)
    proc = tinyear("evaluate", tiny_bundles["int8"], data)
    line = error_line(proc)
    assert "has no clips of any of the model's words (low, high, noise)" in line
    assert "its word folders are buzz, chirp" in line and proc.stderr.count("\n") == 1


def test_a_folder_whose_lists_hold_every_clip_evaluates_but_does_not_train(tones, tmp_path):
    """Every clip listed as test: evaluate scores it (no train split needed); training is refused with a
    line that says where the clips went, not a bare "no clips fall in the train split"."""
    import shutil

    from tinyear.device.errors import TinyearError
    from tinyear.host.data import load_dataset
    from tinyear.host.evaluate import load_eval_set

    data = tmp_path / "all-listed"
    shutil.copytree(tones, data)
    names = [f"{t}/{p.name}" for t in TONES for p in sorted((data / t).iterdir())]
    (data / "testing_list.txt").write_text("\n".join(names) + "\n")
    (data / "validation_list.txt").write_text("")
    eval_set = load_eval_set(data, TONES, "test", progress=False)
    assert len(eval_set.labels) == len(names)
    with pytest.raises(TinyearError) as info:
        load_dataset(data, TONES, quiet=True)
    message = str(info.value)
    assert "none of its clips fall in the train split (validation 0, test " in message
    assert "tinyear evaluate --split all" in message
