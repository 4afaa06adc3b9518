"""The student registry: families and sizes, parameters and MACs computed two ways, shapes, and that every
registered student converts to a full-integer int8 TFLite model (int8 input and output, no float op)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tinyear.host.students import INPUT_SHAPE, STUDENTS, build_student, count_macs, count_params, describe


def _macs_by_flop_counter(model: nn.Module, input_shape) -> int:
    """MACs from torch's FLOP counter (convolutions and matrix products; FLOPs / 2): an independent
    check of count_macs, which counts with forward hooks."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape))
    return counter.get_total_flops() // 2


def test_registry_has_two_families_in_three_sizes():
    families = {}
    for name in STUDENTS:
        families.setdefault(name.rsplit("-", 1)[0], []).append(name)
    assert len(families) >= 2
    assert all(len(sizes) >= 3 for sizes in families.values())
    for sizes in families.values():
        params = [count_params(build_student(n, 12)) for n in sizes]
        assert params == sorted(params) and len(set(params)) == len(params)  # sizes really grow
        assert params[0] <= 25_000 and params[1] <= 25_000  # small and medium fit MLPerf Tiny's budget


@pytest.mark.parametrize("name", list(STUDENTS))
def test_shapes_params_and_macs(name):
    torch.manual_seed(0)
    model = build_student(name, 7)
    out = model.eval()(torch.randn(3, *INPUT_SHAPE))
    assert out.shape == (3, 7)
    assert count_params(model) == sum(p.numel() for p in model.parameters())
    macs = count_macs(model)
    assert macs == _macs_by_flop_counter(model, INPUT_SHAPE)
    assert 100_000 < macs < 100_000_000
    info = describe(name, 7)
    assert info["params"] == count_params(model) and info["macs"] == macs


def test_the_default_students_are_registered():
    from tinyear.host.pipeline import PipelineConfig
    from tinyear.host.students import DEFAULT_STUDENT, PIPELINE_STUDENT

    assert DEFAULT_STUDENT in STUDENTS and PIPELINE_STUDENT in STUDENTS
    assert PipelineConfig().student == PIPELINE_STUDENT


def test_unknown_student_names_the_registered_ones():
    with pytest.raises(KeyError, match="dscnn-m"):
        build_student("resnet-9000", 12)


@pytest.mark.slow
def test_every_student_converts_to_full_int8():
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from tinyear.host.convert import convert_int8

    rng = np.random.default_rng(0)
    calibration = (rng.standard_normal((4, *INPUT_SHAPE)) * 3 - 8).astype(np.float32)  # log-mel-like values
    for name in STUDENTS:
        torch.manual_seed(0)
        model = build_student(name, 12).eval()
        data = convert_int8(model, torch.from_numpy(calibration[:1]), [calibration])
        interp = Interpreter(model_content=data,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interp.allocate_tensors()
        assert interp.get_input_details()[0]["dtype"] == np.int8, name
        assert interp.get_output_details()[0]["dtype"] == np.int8, name
        ops = {op["op_name"] for op in interp._get_ops_details()}
        assert not ops & {"DEQUANTIZE", "QUANTIZE"}, f"{name} keeps float ops inside: {sorted(ops)}"
        inp = interp.get_input_details()[0]
        interp.set_tensor(inp["index"], np.zeros(inp["shape"], np.int8))
        interp.invoke()
        assert interp.get_tensor(interp.get_output_details()[0]["index"]).shape == (1, 12)
