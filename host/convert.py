"""torch module -> TFLite flatbuffer bytes, float or full-integer int8, through litert-torch.

The int8 path is litert-torch's PT2E route: export the module with `torch.export`, annotate it with
litert-torch's quantizer (static int8 activations, symmetric per-channel int8 weights), run calibration
batches through the observers, convert, and lower with litert-torch. The result takes an int8 input
and gives an int8 output whose scale and zero point are in the interpreter's tensor details. The
caller supplies the calibration features: `tinyear export` makes them with the shared frontend.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterable

import numpy as np
import torch


@contextlib.contextmanager
def _quiet():
    """litert-torch and its converter print pages of progress; keep them out of our output."""
    loggers = [logging.getLogger(n) for n in ("", "absl", "litert_torch", "torch._export")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    saved = os.dup(2), os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        os.dup2(devnull, 1)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        os.dup2(saved[0], 2)
        os.dup2(saved[1], 1)
        for fd in (*saved, devnull):
            os.close(fd)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_bytes(edge_model) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.tflite")
        edge_model.export(path)
        with open(path, "rb") as f:
            return f.read()


def convert_float(model: torch.nn.Module, example: torch.Tensor, *, quiet: bool = True) -> bytes:
    """A float32 TFLite model of `model`, traced at `example`'s shape (batch 1)."""
    import litert_torch

    with _quiet() if quiet else contextlib.nullcontext():
        edge = litert_torch.convert(model.eval(), (example,))
        return _export_bytes(edge)


def convert_int8(
    model: torch.nn.Module,
    example: torch.Tensor,
    calibration: Iterable[np.ndarray | torch.Tensor],
    *,
    quiet: bool = True,
) -> bytes:
    """A full-integer int8 TFLite model: int8 input and output, static int8 activations, per-channel
    int8 weights. `calibration` yields input batches (any batch size) that drive the observers."""
    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    with _quiet() if quiet else contextlib.nullcontext():
        graph = torch.export.export(model.eval(), (example,)).module()
        graph = prepare_pt2e(graph, quantizer)
        seen = 0
        with torch.no_grad():
            for batch in calibration:
                batch = torch.as_tensor(np.asarray(batch, dtype=np.float32))
                for i in range(len(batch)):  # the graph was traced at batch 1
                    graph(batch[i : i + 1])
                    seen += 1
        if seen == 0:
            raise ValueError("no calibration data: int8 conversion needs at least one input")
        graph = convert_pt2e(graph, fold_quantize=False)
        edge = litert_torch.convert(graph, (example,), quant_config=QuantConfig(pt2e_quantizer=quantizer))
        return _export_bytes(edge)
