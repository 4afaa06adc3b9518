"""torch module -> TFLite flatbuffer bytes, float or full-integer int8, through litert-torch.

The int8 path is litert-torch's PT2E route: export the module with `torch.export` (strict mode: the
quantizer finds additions by the source-function metadata only strict tracing records; in non-strict
mode every residual add stays float), annotate it with litert-torch's quantizer (static int8
activations, symmetric per-channel int8 weights), run calibration batches through the observers,
convert, and lower with litert-torch. The result takes an int8 input and gives an int8 output whose
scale and zero point are in the interpreter's tensor details. `check_full_int8` then reads the
flatbuffer back and refuses a model in which any op stayed float, naming the op and the torch layer it
came from; a layer the converter cannot lower at all is named the same way.

Before either conversion every `nn.Linear` is rewritten as the equivalent 1x1 convolution
(`linear_as_conv`, identical in float): LiteRT 2.3 builds its FULLY_CONNECTED int8 kernels with single
rounding and TFLite Micro with gemmlowp's double rounding, so a linear classifier gives outputs one step
apart on a few inputs in a thousand; their CONV_2D kernels agree bit for bit (measured in
docs/BENCHMARKS.md, "Int8 export").

The caller supplies the calibration features: `tinyear export` makes them with the shared frontend.
Quantization-aware training (`tinyear.host.qat`) prepares the same quantizer in QAT mode and lowers its
result with `lower_int8`. Imports torch and litert-torch lazily; never `tinyear.device` runtime code
beyond the interpreter used to read models back.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from tinyear.device.errors import TinyearError, first_line
from tinyear.device.fileio import quiet_fd

# Ops that only move or requantize int8 data; every other op must compute on int8 tensors too.
_PASS_THROUGH = {"QUANTIZE", "DEQUANTIZE"}
_INTEGER_KINDS = "iu"


# torchao logs a warning for each optional CUDA kernel library it cannot load on a CPU machine, and torch
# one deprecation warning for torchao's enum registration: a screenful on every export, none of it ours
# to fix. Quieted here, where the converter's dependencies are first imported.
for _name in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_name).setLevel(logging.ERROR)


class ConversionError(TinyearError):
    """The model cannot become a full-integer int8 TFLite model; the message names the layer and op."""


@contextlib.contextmanager
def quiet_converter():
    """litert-torch and its converter print pages of progress through Python logging, Python streams and
    C++ (file descriptors 1 and 2); keep all of it out of our output."""
    loggers = [logging.getLogger(n) for n in ("", "absl", "litert_torch", "torch._export")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with quiet_fd(1, 2), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_bytes(edge_model) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.tflite")
        edge_model.export(path)
        with open(path, "rb") as f:
            return f.read()


# -- the model as the converter should see it --------------------------------------------------------------


class LinearAsConv(torch.nn.Module):
    """`nn.Linear` computed as a 1x1 convolution: the same numbers in float, and a CONV_2D in TFLite,
    whose int8 kernel rounds the same way in LiteRT and TFLite Micro (see the module docstring)."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.conv = torch.nn.Conv2d(linear.in_features, linear.out_features, 1, bias=linear.bias is not None)
        with torch.no_grad():
            self.conv.weight.copy_(linear.weight[:, :, None, None])  # (out, in) -> (out, in, 1, 1)
            if linear.bias is not None:
                self.conv.bias.copy_(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = self.conv(x.reshape(-1, x.shape[-1], 1, 1))  # (N, in, 1, 1) -> (N, out, 1, 1)
        return y.reshape(*lead, -1)  # (..., out)


def linear_as_conv(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of `model` in eval mode with every `nn.Linear` replaced by `LinearAsConv`."""
    model = copy.deepcopy(model).eval()
    if isinstance(model, torch.nn.Linear):
        return LinearAsConv(model).eval()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(parent, name, LinearAsConv(child).eval())
    return model


def _as_batch(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


def export_graph(model: torch.nn.Module, example: torch.Tensor, *, dynamic_batch: bool = False):
    """`torch.export` in strict mode -> the exported program's GraphModule. With `dynamic_batch` the
    first axis is symbolic, so calibration and fine-tuning can run whole batches. A module torch cannot
    export (data-dependent control flow, ...) raises ConversionError with torch's first line."""
    kwargs = {}
    if dynamic_batch:
        example = torch.cat([example, example])[:2]  # a batch of 2: batch 1 would be specialised
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    try:
        return torch.export.export(model, (example,), strict=True, **kwargs).module()
    except Exception as exc:  # torch raises many types here (Unsupported, UserError, ...)
        raise ConversionError(
            f"torch.export cannot trace the model ({type(exc).__name__}: {first_line(exc)}); int8 conversion "
            "needs a forward pass without data-dependent Python control flow"
        ) from None


def ptq_quantizer(*, qat: bool = False):
    """litert-torch's PT2E quantizer: static int8 activations, per-channel symmetric int8 weights."""
    with quiet_converter():  # the first import loads TensorFlow, whose absl and oneDNN banners go to fd 2
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    return PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))


def calibrate(graph, calibration: Iterable, *, batch_size: int = 64) -> int:
    """Run calibration batches (float32 (B, frames, bins), any B) through a prepared graph's observers;
    returns how many inputs it saw."""
    seen = 0
    with torch.no_grad():
        for batch in calibration:
            batch = _as_batch(batch)
            for i in range(0, len(batch), batch_size):
                graph(batch[i : i + batch_size])
            seen += len(batch)
    return seen


def convert_float(model: torch.nn.Module, example: torch.Tensor, *, quiet: bool = True) -> bytes:
    """A float32 TFLite model of `model`, traced at `example`'s shape (batch 1)."""
    with quiet_converter() if quiet else contextlib.nullcontext():
        import litert_torch

        try:
            edge = litert_torch.convert(model.eval(), (example,))
        except Exception as exc:
            raise _lowering_error(exc, model, example) from None
        return _export_bytes(edge)


def convert_int8(
    model: torch.nn.Module,
    example: torch.Tensor,
    calibration: Iterable[np.ndarray | torch.Tensor],
    *,
    quiet: bool = True,
    check: bool = True,
    linear_to_conv: bool = True,
) -> bytes:
    """A full-integer int8 TFLite model: int8 input and output, static int8 activations, per-channel
    int8 weights (post-training quantization). `calibration` yields float32 input batches
    (B, frames, bins), any B, that drive the observers. Raises ConversionError when there is no
    calibration data, when a layer cannot be lowered, or (with `check`) when an op stays float.
    `linear_to_conv=False` keeps linear layers as FULLY_CONNECTED (to measure why the default does not)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    example = _as_batch(example)[:1]
    model_c = linear_as_conv(model) if linear_to_conv else copy.deepcopy(model).eval()
    quantizer = ptq_quantizer()
    with quiet_converter() if quiet else contextlib.nullcontext():
        graph = export_graph(model_c, example, dynamic_batch=True)
        graph = prepare_pt2e(graph, quantizer)
        seen = calibrate(graph, calibration)
        if seen == 0:
            raise ConversionError("the calibration set is empty: int8 conversion needs at least one input "
                                  "to measure activation ranges")
        graph = convert_pt2e(graph, fold_quantize=False)
    data = lower_int8(graph, example, quantizer, source=model, quiet=quiet)
    if check:
        check_full_int8(data, model)
    return data


def lower_int8(graph, example: torch.Tensor, quantizer, *, source: torch.nn.Module | None = None,
               quiet: bool = True) -> bytes:
    """Lower a converted (quantize/dequantize-annotated) PT2E graph to TFLite bytes. `source`, the
    float module, is used to name the layer when an op has no lowering."""
    with quiet_converter() if quiet else contextlib.nullcontext():
        import litert_torch
        from litert_torch.quantize.quant_config import QuantConfig

        try:
            edge = litert_torch.convert(graph, (example,), quant_config=QuantConfig(pt2e_quantizer=quantizer))
        except Exception as exc:
            raise _lowering_error(exc, source, example) from None
        return _export_bytes(edge)


# -- what went wrong, in the user's terms ------------------------------------------------------------------


def _lowering_error(exc: Exception, model: torch.nn.Module | None, example: torch.Tensor) -> TinyearError:
    """Turn litert-torch's "Lowering not found: <op>" into a line that names the torch layer."""
    if isinstance(exc, TinyearError):
        return exc
    text = str(exc)
    match = re.search(r"Lowering not found: (\S+)", text)
    if not match:
        return ConversionError(f"litert-torch cannot convert the model ({type(exc).__name__}: {first_line(exc)})")
    op = match.group(1)
    where = _layer_of_op(model, example, op) if model is not None else None
    layer = f"layer '{where[0]}' ({where[1]})" if where else "a layer"
    return ConversionError(
        f"{layer} uses {op}, which litert-torch cannot lower to TFLite; replace it with ops that have "
        "TFLite kernels (conv, linear, pooling, add, mul, relu)"
    )


def _layer_of_op(model: torch.nn.Module, example: torch.Tensor, op: str) -> tuple[str, str] | None:
    """(dotted module path, class name) of the first node calling `op` in the exported float graph."""
    try:
        with quiet_converter():
            graph = torch.export.export(model.eval(), (_as_batch(example)[:1],), strict=True).module()
    except Exception:
        return None
    for node in graph.graph.nodes:
        if node.op == "call_function" and str(node.target) == op:
            stack = node.meta.get("nn_module_stack") or {}
            if stack:
                path, cls = list(stack.values())[-1]
                cls = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
                return (path or "<top>", cls.rsplit(".", 1)[-1])
    return None


def _layer_of_tensor(model: torch.nn.Module | None, name: str) -> str | None:
    """The torch layer a TFLite tensor came from. litert-torch names tensors by the module scope:
    `pkg.Net/pkg.Block_blocks/torch...Conv2d_0;12` = class_attribute pairs from the top module down."""
    if model is None or "/" not in name:
        return None
    path, module = [], model
    for segment in name.split(";")[0].split("/")[1:]:
        tail = segment.rsplit(".", 1)[-1]
        for attr, child in module.named_children():
            # the exact class match first; the attribute alone where export swapped the class (LinearAsConv)
            if tail == f"{type(child).__name__}_{attr}" or tail.endswith(f"_{attr}"):
                path.append(attr)
                module = child
                break
        else:
            break
    if not path:
        return None
    return f"'{'.'.join(path)}' ({type(module).__name__})"


# -- reading a TFLite model back ---------------------------------------------------------------------------


@dataclass
class TfliteSummary:
    """What a TFLite model is made of, as the interpreter reads it (no delegate)."""

    size_bytes: int
    ops: list[str]  # one per node, in execution order
    input_dtype: str
    output_dtype: str
    input_shape: list[int]
    output_shape: list[int]
    float_ops: list[tuple[str, str, str]] = field(default_factory=list)  # (op, dtype, tensor name)

    @property
    def op_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.ops).items()))


def _interpreter(model_bytes: bytes, resolver: str = "BUILTIN_WITHOUT_DEFAULT_DELEGATES"):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with quiet_fd():
        return Interpreter(model_content=bytes(model_bytes),
                           experimental_op_resolver_type=getattr(OpResolverType, resolver))


def summarize_tflite(model_bytes: bytes) -> TfliteSummary:
    """Ops, I/O dtypes and shapes, and every op computing on a non-integer tensor (DEQUANTIZE and
    QUANTIZE excluded: they only move data between the int8 and float worlds)."""
    interp = _interpreter(model_bytes)
    details = {t["index"]: t for t in interp.get_tensor_details()}
    ops, float_ops = [], []
    for op in interp._get_ops_details():  # the interpreter's op table; no public equivalent in LiteRT 2.3
        ops.append(op["op_name"])
        if op["op_name"] in _PASS_THROUGH:
            continue
        for idx in op["outputs"]:
            t = details.get(int(idx))
            if t is not None and np.dtype(t["dtype"]).kind not in _INTEGER_KINDS:
                float_ops.append((op["op_name"], np.dtype(t["dtype"]).name, t["name"]))
                break
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    return TfliteSummary(
        size_bytes=len(model_bytes), ops=ops,
        input_dtype=np.dtype(inp["dtype"]).name, output_dtype=np.dtype(out["dtype"]).name,
        input_shape=[int(d) for d in inp["shape"]], output_shape=[int(d) for d in out["shape"]],
        float_ops=float_ops,
    )


def check_full_int8(model_bytes: bytes, model: torch.nn.Module | None = None) -> TfliteSummary:
    """Refuse (ConversionError) a model whose input, output or any op is not int8, naming the op and,
    from the tensor names, the torch layer it came from. Returns the summary when it passes."""
    summary = summarize_tflite(model_bytes)
    if summary.float_ops:
        op, dtype, tensor = summary.float_ops[0]
        layer = _layer_of_tensor(model, tensor)
        where = f"layer {layer}" if layer else f"tensor '{tensor.split(';')[0][-80:]}'"
        more = f" (and {len(summary.float_ops) - 1} more float ops)" if len(summary.float_ops) > 1 else ""
        raise ConversionError(
            f"op {op} in {where} stays {dtype} after int8 conversion{more}: the quantizer has no int8 pattern "
            "for it; replace that layer with ops that quantize (conv, linear, pooling, add, relu)"
        )
    for what, dtype in (("input", summary.input_dtype), ("output", summary.output_dtype)):
        if dtype != "int8":
            raise ConversionError(
                f"the converted model's {what} is {dtype}, not int8: an op at the model's {what} is not quantized "
                "(start the student with a conv or linear, and end it with one)"
            )
    return summary
