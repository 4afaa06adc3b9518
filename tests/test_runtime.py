"""The LiteRT runner: runtime choice, quantization from tensor details, int8 and float models."""

import subprocess
import sys

import numpy as np
import pytest

import tiny_model
from tinyear.device.errors import RuntimeMissingError
from tinyear.device.runtime import Model, find_interpreter

pytestmark = pytest.mark.device


@pytest.fixture(scope="module")
def clips():
    x, y = tiny_model.dataset(8, seed=11)
    return x, y


def test_picks_the_first_runtime_that_imports():
    import importlib.util

    _, name = find_interpreter()
    expected = next(pkg for mod, pkg in [("ai_edge_litert", "ai-edge-litert"), ("tflite_runtime", "tflite-runtime"),
                                          ("tensorflow", "tensorflow")] if importlib.util.find_spec(mod))
    assert name == expected


def test_int8_model_uses_interpreter_quantization(tiny_models, clips):
    m = Model(tiny_models["int8"])
    assert m.quantized and m.input_dtype == np.int8 and m.output_dtype == np.int8
    details = m._interp.get_input_details()[0]
    assert (m.input_scale, m.input_zero_point) == (float(details["quantization"][0]), int(details["quantization"][1]))
    assert m.input_scale > 0
    x = clips[0][0]
    q = m.quantize_input(x)
    assert q.dtype == np.int8
    assert np.array_equal(q, np.clip(np.round(x / m.input_scale) + m.input_zero_point, -128, 127).astype(np.int8))
    raw = m.predict_raw(q[None])
    out = m.predict(x)
    assert np.allclose(out, (raw[0].astype(np.float32) - m.output_zero_point) * m.output_scale)


def test_int8_and_float_agree_and_are_right(tiny_models, clips):
    x, y = clips
    q, f = Model(tiny_models["int8"]), Model(tiny_models["float"])
    assert not f.quantized
    pq, pf = q.predict(x), f.predict(x)
    assert pq.shape == pf.shape == (len(x), 3)
    assert (pq.argmax(1) == pf.argmax(1)).mean() >= 0.9
    assert (pf.argmax(1) == y).mean() >= 0.9
    assert np.allclose(q.probabilities(x).sum(axis=1), 1.0, atol=1e-5)


def test_batch_equals_single(tiny_models, clips):
    m = Model(tiny_models["int8"])
    x = clips[0][:5]
    assert np.array_equal(m.predict(x), np.stack([m.predict(xi) for xi in x]))


def test_threads_do_not_change_results(tiny_models, clips):
    x = clips[0][:4]
    assert np.array_equal(Model(tiny_models["int8"], num_threads=1).predict(x), Model(tiny_models["int8"], num_threads=2).predict(x))


def test_model_from_bytes_or_path(tiny_models, clips):
    x = clips[0][0]
    assert np.array_equal(Model(tiny_models["int8"].read_bytes()).predict(x), Model(str(tiny_models["int8"])).predict(x))


def test_no_runtime_says_what_to_install(tiny_models):
    """Run in a fresh interpreter where none of the three runtimes can be imported."""
    code = (
        "import sys\n"
        "for m in ('ai_edge_litert', 'ai_edge_litert.interpreter', 'tflite_runtime', 'tflite_runtime.interpreter', "
        "'tensorflow', 'tensorflow.lite'):\n"
        "    sys.modules[m] = None\n"
        "from tinyear.device.runtime import Model\n"
        f"Model({str(tiny_models['int8'])!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "RuntimeMissingError: no TFLite interpreter is installed: pip install ai-edge-litert" in proc.stderr


def test_unknown_runtime_name():
    with pytest.raises(Exception, match="unknown runtime 'onnx'"):
        find_interpreter("onnx")


def test_garbage_model():
    with pytest.raises(Exception, match="does not load|re-export"):
        Model(b"TFL3" + b"\0" * 64)
