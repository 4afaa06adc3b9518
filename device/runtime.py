"""Running a TFLite model on features: interpreter choice, quantization, and nothing else.

The interpreter comes from the first of `ai_edge_litert` (LiteRT, numpy 2, wheels for Python 3.9-3.13
on x86_64 and aarch64), `tflite_runtime` (needs numpy<2; Pi OS releases with Python <= 3.11) or
`tensorflow.lite` that imports; when none does, the error says which package to install. Input scale
and zero point, and the output's, are read from the interpreter's tensor details every time a model is
loaded, never assumed: an int8 and a float model run through the same code.

No torch, no tensorflow unless it is the last resort the user installed.
"""

from __future__ import annotations

import importlib

import numpy as np

from .errors import RuntimeMissingError, TinyearError
from .fileio import quiet_fd

# (import name, interpreter attribute, pip package): the order of preference.
RUNTIMES = [
    ("ai_edge_litert.interpreter", "Interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "Interpreter", "tflite-runtime"),
    ("tensorflow.lite", "Interpreter", "tensorflow"),
]
# What a model's output is: "logits" (softmax applied by `Model.probabilities`) or "probabilities".
OUTPUT_KINDS = ("logits", "probabilities")
RUNTIME_NAMES = tuple(package for _, _, package in RUNTIMES)
"""The names `--runtime` and `find_interpreter(prefer=...)` accept, in order of preference."""


def find_interpreter(prefer: str | None = None):
    """Return (Interpreter class, runtime name). `prefer` (one of `RUNTIME_NAMES`) forces one;
    otherwise the first that imports wins."""
    candidates = [r for r in RUNTIMES if prefer in (None, r[2])]
    if prefer is not None and not candidates:
        raise TinyearError(f"unknown runtime '{prefer}'; choose one of: " + ", ".join(RUNTIME_NAMES))
    errors = []
    for module_name, attr, package in candidates:
        try:
            module = importlib.import_module(module_name)
            return getattr(module, attr), package
        except Exception as exc:  # ImportError, or a wheel built for another numpy (AttributeError, ...)
            errors.append(f"{package}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    if prefer is not None:
        raise RuntimeMissingError(f"runtime {prefer} does not import ({errors[0]}); pip install {prefer}")
    raise RuntimeMissingError(
        "no TFLite interpreter is installed: pip install ai-edge-litert "
        "(or, with numpy<2 on Python <= 3.11, pip install tflite-runtime)"
    )


class Model:
    """A TFLite classifier over one clip of features.

    `predict(features)` takes float32 (frames, bins) or (batch, frames, bins) and returns float32
    (num_outputs,) or (batch, num_outputs): the model's dequantized outputs. `probabilities()` is the
    one features -> probabilities step of the device half (classification, detection, self-test): the
    softmax of those outputs when `output` is "logits" (tinyear students), the outputs themselves when
    the model already emits "probabilities". A bundle's `load_model` sets `output` from the bundle."""

    def __init__(self, model: bytes | str, *, num_threads: int = 1, runtime: str | None = None, output: str = "logits"):
        if output not in OUTPUT_KINDS:
            raise ValueError(f"output must be one of {OUTPUT_KINDS}, not {output!r}")
        self.output = output
        Interpreter, self.runtime = find_interpreter(runtime)
        try:
            with quiet_fd():  # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate" on fd 2
                if isinstance(model, (bytes, bytearray)):
                    self._interp = Interpreter(model_content=bytes(model), num_threads=num_threads)
                else:
                    self._interp = Interpreter(model_path=str(model), num_threads=num_threads)
                self._interp.allocate_tensors()
        except ValueError as exc:
            raise TinyearError(f"the TFLite model does not load ({str(exc).splitlines()[0]}); re-export it") from None
        inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise TinyearError(f"expected a model with one input and one output, got {len(inputs)} and {len(outputs)}")
        self._in, self._out = inputs[0], outputs[0]
        self.num_threads = num_threads
        self.input_dtype = np.dtype(self._in["dtype"])
        self.output_dtype = np.dtype(self._out["dtype"])
        self.input_scale, self.input_zero_point = _quant(self._in)
        self.output_scale, self.output_zero_point = _quant(self._out)
        self._batch_shape = list(self._in["shape"])

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one input, without the batch dimension."""
        return tuple(int(d) for d in self._in["shape"][1:])

    @property
    def num_outputs(self) -> int:
        return int(self._out["shape"][-1])

    @property
    def quantized(self) -> bool:
        return self.input_dtype.kind in "iu"

    def quantize_input(self, features: np.ndarray) -> np.ndarray:
        """float features -> the input tensor's dtype, with the interpreter's scale and zero point."""
        x = np.asarray(features, dtype=np.float32)
        if not self.quantized:
            return x
        info = np.iinfo(self.input_dtype)
        q = np.round(x / self.input_scale) + self.input_zero_point
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def dequantize_output(self, raw: np.ndarray) -> np.ndarray:
        if self.output_dtype.kind not in "iu":
            return raw.astype(np.float32)
        return ((raw.astype(np.float32) - self.output_zero_point) * self.output_scale).astype(np.float32)

    def predict_raw(self, tensor: np.ndarray) -> np.ndarray:
        """One invoke on an already-quantized input of shape (1, frames, bins); the raw output tensor."""
        self._interp.set_tensor(self._in["index"], tensor)
        self._interp.invoke()
        return self._interp.get_tensor(self._out["index"]).copy()

    def predict(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float32)
        single = x.ndim == len(self.feature_shape)
        batch = x[None] if single else x
        if tuple(batch.shape[1:]) != self.feature_shape:
            raise TinyearError(f"features of shape {tuple(batch.shape[1:])} do not fit the model's input {self.feature_shape}")
        q = self.quantize_input(batch)
        out = np.stack([self.dequantize_output(self.predict_raw(q[i : i + 1]))[0] for i in range(len(q))])
        return out[0] if single else out

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Like `predict`: (frames, bins) -> (labels,), or (batch, frames, bins) -> (batch, labels), float32."""
        out = self.predict(features)
        return softmax(out) if self.output == "logits" else out


def _quant(detail: dict) -> tuple[float, int]:
    params = detail.get("quantization_parameters") or {}
    scales = params.get("scales")
    if scales is not None and len(scales) > 1:
        raise TinyearError("per-channel quantized input/output tensors are not supported; export with per-tensor I/O")
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return float(scale), int(zero_point)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, float32, stable for large logits."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)
