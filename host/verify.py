"""Checks an int8 model must pass at export: agreement with its float original, and TFLite Micro parity.

`compare_float_int8` runs the float torch student and the int8 TFLite model (through the device's own
runner, `tinyear.device.runtime.Model`, so the numbers are the ones a Pi gets) on the same features:
top-1 agreement, both accuracies and the drop between them in points, and the error of the dequantized
logits and of the probabilities. `check_tflm` runs the int8 model under the TFLite Micro Python
interpreter and compares its raw int8 outputs with LiteRT's, input for input: against LiteRT's
reference kernels (the bit-exactness check; TFLM's kernels are ports of them), and, for information,
against LiteRT's optimised builtin kernels and its default XNNPACK delegate, which may round
differently. It also finds the smallest tensor arena the model runs in. `verify_int8` does both and
returns one JSON-ready dict for the bundle's metrics.

Imports torch, numpy, ai-edge-litert and tflite-micro; never the training code.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile

import numpy as np

from tinyear.device.errors import TinyearError

# Targets from the project's definition of done (percent of clips, accuracy points).
AGREEMENT_TARGET = 98.0
DROP_TARGET_PTQ = 1.0
DROP_TARGET_QAT = 0.5

# LiteRT op resolvers compared with TFLite Micro: (key in the result, OpResolverType name).
LITERT_RESOLVERS = (
    ("litert_reference", "BUILTIN_REF"),
    ("litert_builtin", "BUILTIN_WITHOUT_DEFAULT_DELEGATES"),
    ("litert_default", "AUTO"),
)


def float_logits(model, features: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """(N, frames, bins) float32 -> (N, labels) float32 logits of a torch module in eval mode."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(features), batch_size):
            out.append(model(torch.from_numpy(np.ascontiguousarray(features[i : i + batch_size], dtype=np.float32))).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def int8_logits(model_bytes: bytes, features: np.ndarray, *, num_threads: int = 1) -> np.ndarray:
    """(N, frames, bins) float32 -> (N, labels) dequantized outputs of a TFLite model (device runner)."""
    from tinyear.device.runtime import Model

    model = Model(model_bytes, num_threads=num_threads)
    return model.predict(features) if len(features) else np.zeros((0, model.num_outputs), np.float32)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def compare_float_int8(float_out: np.ndarray, int8_out: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Agreement and error between float and int8 logits, both (N, num_labels); accuracies and the drop
    when the true `labels` (N,) are given. Percentages in percent, errors in logit units."""
    n = len(float_out)
    if n == 0:
        raise TinyearError("no validation clips to compare the float and int8 models on; the dataset's validation "
                           "split is empty")
    pf, pq = float_out.argmax(1), int8_out.argmax(1)
    err = int8_out.astype(np.float64) - float_out.astype(np.float64)
    prob_err = np.abs(_softmax(int8_out.astype(np.float64)) - _softmax(float_out.astype(np.float64)))
    result = {
        "clips": int(n),
        "agreement_percent": round(100.0 * float(np.mean(pf == pq)), 3),
        "logit_error": {
            "mean_abs": round(float(np.mean(np.abs(err))), 5),
            "rms": round(float(np.sqrt(np.mean(err**2))), 5),
            "max_abs": round(float(np.max(np.abs(err))), 5),
            "float_logit_range": [round(float(float_out.min()), 3), round(float(float_out.max()), 3)],
        },
        "probability_error": {
            "mean_abs": round(float(np.mean(prob_err)), 6),
            "max_abs": round(float(np.max(prob_err)), 6),
        },
    }
    if labels is not None:
        acc_f = 100.0 * float(np.mean(pf == labels))
        acc_q = 100.0 * float(np.mean(pq == labels))
        result.update(float_accuracy=round(acc_f, 3), int8_accuracy=round(acc_q, 3),
                      accuracy_drop_points=round(acc_f - acc_q, 3))
    return result


# -- TFLite Micro ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _capture_fd2():
    """Collect what C++ code writes to file descriptor 2 (TFLM prints allocation reports and errors there)."""
    captured = {"text": ""}
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured["text"] = tmp.read().decode(errors="replace")


def _tflm(model_bytes: bytes, arena: int):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(bytes(model_bytes), arena_size=int(arena))


def _tflm_runs(model_bytes: bytes, arena: int, probe: np.ndarray) -> bool:
    try:
        with _capture_fd2():
            interp = _tflm(model_bytes, arena)
            interp.set_input(probe, 0)
            interp.invoke()
        return True
    except (RuntimeError, ValueError):
        return False


def tflm_arena(model_bytes: bytes, probe: np.ndarray) -> dict:
    """The tensor arena TFLite Micro needs: what its recording allocator reports after one invoke, and
    the smallest size (to the byte) that still allocates and runs, found by bisection."""
    from tflite_micro.python.tflite_micro import runtime  # noqa: F401  (fails early if missing)

    upper = max(64 * 1024, len(model_bytes) * 10)
    while not _tflm_runs(model_bytes, upper, probe):
        upper *= 2
        if upper > 256 * 1024 * 1024:
            raise TinyearError("TFLite Micro cannot allocate the model even with a 256 MB arena; an op it lacks?")
    with _capture_fd2() as report:
        interp = _tflm(model_bytes, upper)
        interp.set_input(probe, 0)
        interp.invoke()
        interp.print_allocations()
    match = re.search(r"Arena allocation total (\d+) bytes", report["text"])
    recorded = int(match.group(1)) if match else None
    lo, hi = 0, upper  # invariant: hi runs, lo does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _tflm_runs(model_bytes, mid, probe):
            hi = mid
        else:
            lo = mid
    return {"arena_bytes": int(hi), "arena_recorded_bytes": recorded}


def _litert_raw(model_bytes: bytes, resolver: str, inputs: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from tinyear.device.fileio import quiet_fd

    with quiet_fd():
        interp = Interpreter(model_content=bytes(model_bytes), num_threads=1,
                             experimental_op_resolver_type=getattr(OpResolverType, resolver))
        interp.allocate_tensors()
    i, o = interp.get_input_details()[0], interp.get_output_details()[0]
    out = []
    for x in inputs:
        interp.set_tensor(i["index"], x[None])
        interp.invoke()
        out.append(interp.get_tensor(o["index"])[0].copy())
    return np.stack(out)


def check_tflm(model_bytes: bytes, inputs: np.ndarray) -> dict:
    """Run quantized `inputs` (N, frames, bins) in the model's input dtype under TFLite Micro and under
    LiteRT with each resolver in LITERT_RESOLVERS; compare the raw outputs element for element.
    `bit_exact` is the verdict against LiteRT's reference kernels."""
    try:
        from tflite_micro.python.tflite_micro import runtime  # noqa: F401
    except ImportError:
        raise TinyearError("tflite-micro is not installed, so the microcontroller check cannot run: "
                           "pip install tflite-micro (it is in the host extra)") from None
    arena = tflm_arena(model_bytes, inputs[:1])
    with _capture_fd2():
        interp = _tflm(model_bytes, arena["arena_bytes"])
        micro = []
        for x in inputs:
            interp.set_input(x[None], 0)
            interp.invoke()
            micro.append(np.asarray(interp.get_output(0))[0].copy())
    micro = np.stack(micro)
    result: dict = {"samples": int(len(inputs)), **arena}
    for key, resolver in LITERT_RESOLVERS:
        lite = _litert_raw(model_bytes, resolver, inputs)
        diff = np.abs(lite.astype(np.int32) - micro.astype(np.int32))
        result[key] = {
            "resolver": resolver,
            "identical": bool(not diff.any()),
            "mismatched_values": int(np.count_nonzero(diff)),
            "values": int(diff.size),
            "max_abs_diff_steps": int(diff.max()) if diff.size else 0,
            "top1_agreement_percent": round(100.0 * float(np.mean(lite.argmax(1) == micro.argmax(1))), 3),
        }
    result["bit_exact"] = result["litert_reference"]["identical"]
    return result


def quantize_inputs(model_bytes: bytes, features: np.ndarray) -> np.ndarray:
    """float32 features -> the model's input tensor values, with its own scale and zero point."""
    from tinyear.device.runtime import Model

    return Model(model_bytes).quantize_input(features)


def pick_spread(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of up to n items spread evenly over the classes in `labels` (round robin over shuffled
    per-class lists), sorted. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    picked: list[int] = []
    depth = 0
    while len(picked) < min(n, len(labels)):
        for q in queues:
            if depth < len(q) and len(picked) < n:
                picked.append(int(q[depth]))
        depth += 1
    return np.array(sorted(picked), dtype=np.int64)


def verify_int8(float_model, model_bytes: bytes, features: np.ndarray, labels: np.ndarray, *,
                qat: bool = False, tflm_samples: int = 50) -> dict:
    """Everything measured at export, JSON-ready: float vs int8 on `features` (N, frames, bins) with
    true `labels` (N,), targets and whether they were met, size and ops, and the TFLite Micro check on
    `tflm_samples` inputs spread over the classes."""
    from .convert import summarize_tflite

    summary = summarize_tflite(model_bytes)
    result = {
        "model_bytes": summary.size_bytes,
        "ops": summary.op_counts,
        "input": {"dtype": summary.input_dtype, "shape": summary.input_shape},
        "output": {"dtype": summary.output_dtype, "shape": summary.output_shape},
    }
    comparison = compare_float_int8(float_logits(float_model, features), int8_logits(model_bytes, features), labels)
    drop_target = DROP_TARGET_QAT if qat else DROP_TARGET_PTQ
    comparison["targets"] = {
        "agreement_percent": AGREEMENT_TARGET, "accuracy_drop_points": drop_target,
        "agreement_met": comparison["agreement_percent"] >= AGREEMENT_TARGET,
        "drop_met": comparison["accuracy_drop_points"] <= drop_target,
    }
    result["validation"] = comparison
    sample = pick_spread(labels, tflm_samples)
    result["tflm"] = check_tflm(model_bytes, quantize_inputs(model_bytes, features[sample]))
    result["microcontroller_ready"] = bool(result["tflm"]["bit_exact"])
    return result


def format_report(v: dict) -> list[str]:
    """The verification as lines for people."""
    c, t = v["validation"], v["tflm"]
    ok = lambda flag: "ok" if flag else "MISSED"  # noqa: E731
    lines = [
        f"int8 model: {v['model_bytes']:,} bytes, input {v['input']['dtype']} {tuple(v['input']['shape'])}, "
        f"output {v['output']['dtype']} {tuple(v['output']['shape'])}",
        "ops: " + ", ".join(f"{op} x{n}" for op, n in v["ops"].items()),
        f"validation ({c['clips']} clips): float {c['float_accuracy']:.2f}%  int8 {c['int8_accuracy']:.2f}%  "
        f"drop {c['accuracy_drop_points']:+.2f} points (target <= {c['targets']['accuracy_drop_points']}: "
        f"{ok(c['targets']['drop_met'])})",
        f"top-1 agreement float vs int8: {c['agreement_percent']:.2f}% (target >= {c['targets']['agreement_percent']:g}%: "
        f"{ok(c['targets']['agreement_met'])})",
        f"logit error: mean {c['logit_error']['mean_abs']:.4f}, rms {c['logit_error']['rms']:.4f}, max "
        f"{c['logit_error']['max_abs']:.4f}; probability error: mean {c['probability_error']['mean_abs']:.5f}, "
        f"max {c['probability_error']['max_abs']:.5f}",
    ]
    for key, _ in LITERT_RESOLVERS:
        r = t[key]
        lines.append(
            f"TFLite Micro vs LiteRT {r['resolver']}: {'bit-identical' if r['identical'] else 'differs'} on "
            f"{t['samples']} inputs ({r['mismatched_values']}/{r['values']} values differ, max {r['max_abs_diff_steps']} "
            f"step; top-1 agreement {r['top1_agreement_percent']:.1f}%)"
        )
    lines.append(f"TFLite Micro arena: {t['arena_bytes']:,} bytes (smallest that runs; recorded "
                 f"{t['arena_recorded_bytes'] if t['arena_recorded_bytes'] is not None else 'n/a'})")
    if v["microcontroller_ready"]:
        lines.append("microcontroller-ready: TFLite Micro runs it with outputs bit-identical to LiteRT's reference kernels")
    else:
        lines.append("NOT microcontroller-verified: TFLite Micro's outputs differ from LiteRT's reference kernels")
    return lines
