"""Verification at export: float vs int8 statistics, TFLite Micro parity and arena, the int8 checks.

Uses the session's tiny tone models (built with the real converter by conftest) where a converted model
is needed; the arithmetic of the comparisons is checked on arrays whose answer is known.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")


def test_compare_float_int8_counts_agreement_and_drop():
    from tinyear.host.verify import compare_float_int8

    float_out = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [2.0, 1.9, 0.0]])
    int8_out = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [1.9, 2.0, 0.0]])
    labels = np.array([0, 1, 2, 0])
    r = compare_float_int8(float_out, int8_out, labels)
    assert r["agreement_percent"] == 75.0
    assert r["float_accuracy"] == 100.0 and r["int8_accuracy"] == 75.0 and r["accuracy_drop_points"] == 25.0
    assert r["logit_error"]["max_abs"] == pytest.approx(0.1)
    assert r["logit_error"]["mean_abs"] == pytest.approx(0.2 / 12, abs=1e-5)
    assert 0 < r["probability_error"]["max_abs"] < 0.1


def test_compare_refuses_an_empty_validation_split():
    from tinyear.device.errors import TinyearError
    from tinyear.host.verify import compare_float_int8

    with pytest.raises(TinyearError, match="validation split is empty"):
        compare_float_int8(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, dtype=np.int64))


def test_pick_spread_is_balanced_and_deterministic():
    from tinyear.host.verify import pick_spread

    labels = np.array([0] * 50 + [1] * 5 + [2] * 20)
    pick = pick_spread(labels, 12, seed=3)
    counts = np.bincount(labels[pick], minlength=3)
    assert len(pick) == 12 and counts.tolist() == [4, 4, 4]
    assert np.array_equal(pick, pick_spread(labels, 12, seed=3))
    assert len(pick_spread(labels, 1000)) == len(labels)


def test_linear_as_conv_computes_the_same_numbers():
    import torch

    from tinyear.host.convert import LinearAsConv, linear_as_conv

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    rewritten = linear_as_conv(net)
    assert all(not isinstance(m, torch.nn.Linear) for m in rewritten.modules())
    assert sum(isinstance(m, LinearAsConv) for m in rewritten.modules()) == 2
    for shape in ((5, 6), (2, 7, 6)):
        x = torch.randn(shape)
        torch.testing.assert_close(rewritten(x), net(x), rtol=1e-6, atol=1e-6)
    assert isinstance(net[0], torch.nn.Linear)  # the original is untouched


def test_tiny_int8_model_is_full_integer(tiny_models):
    from tinyear.host.convert import check_full_int8

    summary = check_full_int8(tiny_models["int8"].read_bytes())
    assert summary.input_dtype == "int8" and summary.output_dtype == "int8" and not summary.float_ops
    # the classifier is a 1x1 convolution: the kernel LiteRT and TFLite Micro round alike
    assert "FULLY_CONNECTED" not in summary.ops and "CONV_2D" in summary.ops


def test_float_model_fails_the_int8_check_naming_the_op(tiny_models):
    from tinyear.host.convert import ConversionError, check_full_int8

    with pytest.raises(ConversionError, match=r"op \w+ in .* stays float32 after int8 conversion"):
        check_full_int8(tiny_models["float"].read_bytes())


@pytest.mark.slow
def test_tflm_is_bit_identical_to_litert_reference_kernels(tiny_models, artifacts):
    from tinyear.host.verify import check_tflm, quantize_inputs, tflm_arena, _tflm_runs

    data = tiny_models["int8"].read_bytes()
    inputs = quantize_inputs(data, np.load(artifacts / "torch_inputs.npy"))
    assert inputs.dtype == np.int8 and len(inputs) >= 10
    r = check_tflm(data, inputs)
    assert r["samples"] == len(inputs)
    assert r["bit_exact"] and r["litert_reference"]["identical"] and r["litert_reference"]["mismatched_values"] == 0
    for key in ("litert_builtin", "litert_default"):  # measured, not required: other kernels may round differently
        assert r[key]["max_abs_diff_steps"] <= 2 and r[key]["top1_agreement_percent"] >= 90.0
    # the arena found by bisection is the smallest that runs, and agrees with TFLM's own recording
    arena = tflm_arena(data, inputs[:1])
    assert arena == {k: r[k] for k in ("arena_bytes", "arena_recorded_bytes")}
    assert _tflm_runs(data, arena["arena_bytes"], inputs[:1])
    assert not _tflm_runs(data, arena["arena_bytes"] - 1, inputs[:1])
    assert abs(arena["arena_bytes"] - arena["arena_recorded_bytes"]) <= 16


@pytest.mark.slow
def test_float_input_is_refused_at_conversion():
    """An op on the raw input that the quantizer does not annotate leaves the model's input float."""
    import torch

    from tinyear.host.convert import ConversionError, convert_int8

    class Normalised(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, stride=2)
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            x = torch.exp(x / 8.0)  # (B, frames, bins): no int8 pattern for exp
            return self.fc(self.conv(x.unsqueeze(1)).mean(dim=(2, 3)))

    calib = np.random.default_rng(0).normal(-8, 3, (8, 98, 40)).astype(np.float32)
    with pytest.raises(ConversionError, match="stays float32"):
        convert_int8(Normalised().eval(), torch.from_numpy(calib[:1]), [calib])
