"""`tinyear-device selftest`: the bundle's own clip, classified here, against what the workstation stored.

Runs the real interpreter on the tiny tone models' bundles. A bundle whose stored scores disagree with
its model is made by re-packing the same model with other expected scores (valid checksums, so only the
self-test can catch it).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinyear.device.bundle import SelfTest, pack_bundle, read_bundle
from tinyear.device.cli import main
from tinyear.device.selftest import compare, run_selftest

pytestmark = pytest.mark.device


def _repack(src, dst, *, expected=None, selftest=True, labels=None):
    b = read_bundle(src)
    st = None
    if selftest:
        st = SelfTest(audio=b.selftest.audio, expected=list(b.selftest.expected if expected is None else expected),
                      label=b.selftest.label)
    dst.write_bytes(pack_bundle(b.model_bytes, labels or b.labels, b.frontend, detection=b.detection, metrics=b.metrics,
                                provenance=b.provenance, selftest=st, output=b.output))
    return dst


@pytest.fixture(scope="module")
def exact_bundles(tiny_bundles, tmp_path_factory):
    """The tiny bundles with their expected scores computed on the clip as stored (16-bit PCM), the way
    an export must do it. (The shared fixture scores the float clip before it is rounded to 16 bits, so
    its expected scores are close to, but not exactly, what any device computes.)"""
    from tinyear.device.classify import Classifier

    out = tmp_path_factory.mktemp("exact")
    paths = {}
    for kind, path in tiny_bundles.items():
        b = read_bundle(path)
        scores = Classifier(b).scores(b.selftest.audio)
        paths[kind] = _repack(path, out / f"exact_{kind}.tinyear", expected=scores.tolist())
    return paths


@pytest.mark.parametrize("kind", ["int8", "float"])
def test_shared_fixture_bundles_pass_within_tolerance(tiny_bundles, kind):
    report = run_selftest(tiny_bundles[kind])
    assert report["ok"] is True and report["max_abs_diff"] < report["tolerance"]


@pytest.mark.parametrize("kind", ["int8", "float"])
def test_selftest_passes_identically_on_the_machine_that_made_it(exact_bundles, kind, capsys):
    tiny_bundles = exact_bundles
    assert main(["selftest", str(tiny_bundles[kind]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["identical"] is True and report["max_abs_diff"] == 0.0
    assert report["label"] == report["expected_label"] == "high" == report["clip_label"]
    assert len(report["scores"]) == 3 and abs(sum(report["scores"]) - 1) < 1e-5
    assert report["model_sha256"] == read_bundle(tiny_bundles[kind]).model_sha256


def test_text_output_says_passed(exact_bundles, capsys):
    assert main(["selftest", str(exact_bundles["int8"])]) == 0
    out = capsys.readouterr().out
    assert "self-test passed: 'high'" in out and "identical" in out


def test_int8_tolerances_come_from_the_output_quantization_step(tiny_bundles):
    from tinyear.device.classify import Classifier

    model = Classifier(tiny_bundles["int8"]).model
    report = run_selftest(tiny_bundles["int8"])
    assert model.output_dtype == np.int8
    assert report["tolerance"] == pytest.approx(model.output_scale)
    assert report["log_tolerance"] == pytest.approx(4 * model.output_scale)
    assert 0 < report["tolerance"] < 0.2
    report = run_selftest(tiny_bundles["float"])
    assert (report["tolerance"], report["log_tolerance"]) == (pytest.approx(1e-4), pytest.approx(1e-3))


def test_a_saturated_softmax_miscomputation_is_caught_by_the_log_check(exact_bundles, tmp_path, capsys):
    """The scores ai-edge-litert 2.3 gave under qemu's SME-enabled `max` CPU (scripts/arm64_check.sh):
    same top label, probabilities within one output step, but the runner-up 2800x less likely."""
    b = read_bundle(exact_bundles["int8"])
    tol = run_selftest(exact_bundles["int8"])["tolerance"]
    expected = np.array(b.selftest.expected, dtype=np.float64)
    top = int(np.argmax(expected))
    saturated = np.full(3, 1e-9)
    saturated[top] = 1 - 2e-9
    assert np.abs(saturated - expected).max() < tol  # the probability check alone would pass this
    bad = _repack(exact_bundles["int8"], tmp_path / "saturated.tinyear", expected=saturated)
    assert main(["selftest", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "its log differs by" in err and err.count("\n") == 1


def test_scores_off_by_more_than_the_tolerance_fail_with_one_line(exact_bundles, tmp_path, capsys):
    tiny_bundles = exact_bundles
    b = read_bundle(tiny_bundles["int8"])
    tol = run_selftest(tiny_bundles["int8"])["tolerance"]
    expected = np.array(b.selftest.expected, dtype=np.float64)
    top = int(np.argmax(expected))
    shifted = expected.copy()
    shifted[top] -= 1.5 * tol  # same top label, moved past the tolerance
    shifted[(top + 1) % 3] += 1.5 * tol
    assert int(np.argmax(shifted)) == top
    bad = _repack(tiny_bundles["int8"], tmp_path / "off.tinyear", expected=shifted)
    assert main(["selftest", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "self-test failed" in err[0] and "more than the tolerance" in err[0] and "apart" in err[0]


def test_another_top_label_fails_even_with_a_huge_tolerance(tiny_bundles, tmp_path, capsys):
    b = read_bundle(tiny_bundles["float"])
    flipped = list(np.roll(b.selftest.expected, 1))  # "high" (the middle label) now scores as "noise"
    bad = _repack(tiny_bundles["float"], tmp_path / "flip.tinyear", expected=flipped)
    assert main(["selftest", str(bad), "--tolerance", "1", "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["ok"] is False and "top label 'high'" in report["reason"]
    assert captured.err.count("\n") == 1


@pytest.mark.parametrize("kind", ["int8", "float"])
def test_a_bundle_with_swapped_labels_is_refused_though_its_scores_are_identical(exact_bundles, kind, tmp_path, capsys):
    """Labels reordered after export, every checksum recomputed by the bundle writer: the model computes
    exactly the stored scores, but its top label for the "high" clip is now called "low"."""
    b = read_bundle(exact_bundles[kind])
    swapped = ["high", "low", "noise"]
    assert b.labels == ["low", "high", "noise"] and b.selftest.label == "high"
    bad = _repack(exact_bundles[kind], tmp_path / "swapped.tinyear", labels=swapped)
    assert read_bundle(bad).labels == swapped  # a valid bundle: only the self-test can tell
    report = run_selftest(bad)
    assert report["ok"] is False and report["identical"] is True and report["label"] == "low"
    assert main(["selftest", str(bad)]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert captured.out == "" and len(err) == 1
    assert "self-test clip is a 'high' clip but the model's top label for it is 'low'" in err[0]
    assert "re-export" in err[0]
    assert main(["selftest", str(bad), "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["mislabelled"] is True and captured.err.count("\n") == 1


def test_no_selftest_clip_and_unreadable_bundle_are_one_line_errors(tiny_bundles, tmp_path, capsys):
    bare = _repack(tiny_bundles["int8"], tmp_path / "bare.tinyear", selftest=False)
    assert main(["selftest", str(bare), "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["ok"] is False
    assert captured.err.strip().count("\n") == 0 and "holds no self-test clip" in captured.err

    damaged = tmp_path / "damaged.tinyear"
    data = bytearray(tiny_bundles["int8"].read_bytes())
    data[-40] ^= 0xFF
    damaged.write_bytes(bytes(data))
    assert main(["selftest", str(damaged)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("checksum" in err or "sha256" in err)


def test_compare_is_symmetric_and_exact():
    labels = ["a", "b"]
    assert compare([0.25, 0.75], [0.25, 0.75], labels, 0.0)["identical"] is True
    r = compare([0.3, 0.7], [0.25, 0.75], labels, 0.01)
    assert r["ok"] is False and r["max_abs_diff"] == pytest.approx(0.05)
    assert compare([0.3, 0.7], [0.25, 0.75], labels, 0.06)["ok"] is True
    r = compare([0.3, 0.7], [0.25, 0.75], labels, 0.06, 0.1)
    assert r["ok"] is False and r["max_abs_logprob_diff"] == pytest.approx(np.log(0.3 / 0.25))
    assert compare([0.0, 1.0], [1e-40, 1.0], labels, 0.01, 0.01)["ok"] is True  # both underflow: equal
    assert compare([0.5], [0.25, 0.75], labels, 1.0)["ok"] is False
