"""The LiteRT runner: runtime choice, quantization from tensor details, int8 and float models."""

import subprocess
import sys

import numpy as np
import pytest

import tiny_model
from tinyear.device.errors import RuntimeMissingError
from tinyear.device.runtime import RUNTIME_NAMES, Model, find_interpreter

pytestmark = pytest.mark.device


@pytest.fixture(scope="module")
def clips():
    x, y = tiny_model.dataset(8, seed=11)
    return x, y


FAKE_INTERPRETER = "class Interpreter:\n    pass\n"
BROKEN = "raise AttributeError('_ARRAY_API not found (built for numpy 1)')\n"


def _pick(tmp_path, fakes: dict, block=()) -> str:
    """The runtime find_interpreter() picks in a fresh interpreter where `fakes` (module path -> source)
    come first on sys.path and the modules in `block` cannot be imported. The fakes stand in for
    runtimes this environment does not have (tflite-runtime needs numpy<2), or for a broken wheel."""
    root = tmp_path / "fakes"
    for name, source in fakes.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    code = (f"import sys\nsys.path.insert(0, {str(root)!r})\n"
            f"for m in {tuple(block)!r}:\n    sys.modules[m] = None\n"
            "from tinyear.device.runtime import find_interpreter\n"
            "print(find_interpreter()[1])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_preference_order_is_the_documented_one():
    assert RUNTIME_NAMES == ("ai-edge-litert", "tflite-runtime", "tensorflow")


TFLITE_FAKE = {"tflite_runtime/__init__.py": "", "tflite_runtime/interpreter.py": FAKE_INTERPRETER}
TENSORFLOW_FAKE = {"tensorflow/__init__.py": "", "tensorflow/lite.py": FAKE_INTERPRETER}


def test_ai_edge_litert_comes_first(tmp_path):
    pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is not installed here")
    assert _pick(tmp_path, {**TFLITE_FAKE, **TENSORFLOW_FAKE}) == "ai-edge-litert"


def test_tflite_runtime_comes_before_tensorflow(tmp_path):
    assert _pick(tmp_path, {**TFLITE_FAKE, **TENSORFLOW_FAKE}, block=("ai_edge_litert",)) == "tflite-runtime"
    assert _pick(tmp_path, TENSORFLOW_FAKE, block=("ai_edge_litert", "tflite_runtime")) == "tensorflow"


def test_a_runtime_that_fails_to_import_is_passed_over(tmp_path):
    """A wheel built for another numpy raises AttributeError (not ImportError) on import."""
    broken = {"ai_edge_litert/__init__.py": BROKEN, "ai_edge_litert/interpreter.py": FAKE_INTERPRETER}
    assert _pick(tmp_path, {**broken, **TFLITE_FAKE}) == "tflite-runtime"


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
