"""The bundle self-test: run the bundle's embedded clip and compare with the workstation's output
stored beside it.

This is how a device proves, before it listens, that it computes what the workstation computed: the
same features, the same interpreter arithmetic, the same label. The clip's own label (stored with it)
must be the top label too: a bundle whose labels were reordered after export (checksums recomputed)
computes identical scores but names them wrongly, and is refused. `tinyear-device selftest` prints what
`run_selftest` returns; `tinyear deploy` runs that command on the device with `--json` and `compare`s
the scores it prints with the ones `run_selftest` computed on the workstation.

The tolerances (`selftest_tolerances`) are derived from the model, not picked: on the same CPU and
runtime the scores are bit-identical. Across CPUs, numpy builds and runtimes (ai-edge-litert's XNNPACK
kernels against tflite-runtime's), the float frontend may differ in the last bit and an int8 kernel may
round an intermediate the other way, so a dequantized logit can move by a quantization step or two
(k = 2 steps of the output scale s). Two checks follow from that bound:

- probabilities: softmax's Jacobian has rows whose absolute values sum to 2 p (1 - p) <= 1/2, so logits
  that each move by at most k s move every probability by at most k s / 2 = s;
- log-probabilities: log p_i = z_i - logsumexp(z), and logsumexp moves by at most the largest move of a
  logit, so every log-probability moves by at most 2 k s = 4 s.

The second is the one that catches a miscomputation hidden by a saturated softmax: under qemu's `max`
CPU (SME enabled) ai-edge-litert 2.3 gave 0.99997 where every other CPU gave 0.90668 for the same top
label, a probability difference of 0.093 (inside s = 0.175 of the tiny test model) but a log-probability
difference of 7.9 for the runner-up (45 steps). A model whose output is already a probability gets 2 s
on probabilities and no log check (a quantized probability of 0 has no logarithm). A float model's
kernels differ only by float32 rounding (~1e-6 relative): 1e-4 on probabilities, 1e-3 on
log-probabilities. The top label must be the same in every case.

Device-side only: imports nothing from `tinyear.host`, no torch, and no command module.
"""

from __future__ import annotations

import platform

import numpy as np

from .errors import TinyearError

FLOAT_TOLERANCES = (1e-4, 1e-3)  # float32 kernels differ by rounding only (see the module docstring)
QUANTIZED_LOGIT_STEPS = 2  # output quantization steps a logit may move across CPUs and runtimes
LOG_FLOOR = 1e-30  # probabilities below it (float32 underflow) compare as equal in the log check


def selftest_tolerances(model, output_kind: str) -> tuple[float, float | None]:
    """(probability, log-probability) tolerances for a model (a `runtime.Model`); None means no log
    check. See the module docstring for the derivation."""
    if model.output_dtype.kind not in "iu":
        return FLOAT_TOLERANCES
    step = float(model.output_scale)
    if output_kind == "probabilities":
        return QUANTIZED_LOGIT_STEPS * step, None
    return QUANTIZED_LOGIT_STEPS * step / 2, 2 * QUANTIZED_LOGIT_STEPS * step


def compare(scores, expected, labels: list[str], tolerance: float, log_tolerance: float | None = None) -> dict:
    """Compare two probability vectors over `labels`: top labels, max |difference| of probabilities
    and of log-probabilities; returns the verdict and a one-line reason."""
    scores = np.asarray(scores, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if scores.shape != expected.shape:
        return {"ok": False, "max_abs_diff": None, "max_abs_logprob_diff": None, "identical": False,
                "reason": f"{len(expected)} expected scores but the model gives {len(scores)}"}
    diff = np.abs(scores - expected)
    log_diff = np.abs(np.log(np.maximum(scores, LOG_FLOOR)) - np.log(np.maximum(expected, LOG_FLOOR)))
    top, top_expected = labels[int(np.argmax(scores))], labels[int(np.argmax(expected))]
    reason = None
    if top != top_expected:
        reason = f"top label '{top}' ({scores.max():.4f}) where '{top_expected}' ({expected.max():.4f}) was expected"
    elif diff.max() > tolerance:
        i = int(np.argmax(diff))
        reason = f"probability of '{labels[i]}' is {scores[i]:.4g} where {expected[i]:.4g} was expected, more than the tolerance {tolerance:.3g} apart"
    elif log_tolerance is not None and log_diff.max() > log_tolerance:
        i = int(np.argmax(log_diff))
        reason = (f"probability of '{labels[i]}' is {scores[i]:.4g} where {expected[i]:.4g} was expected: its log differs by "
                  f"{log_diff[i]:.3g}, more than the tolerance {log_tolerance:.3g}")
    return {"ok": reason is None, "max_abs_diff": float(diff.max()), "max_abs_logprob_diff": float(log_diff.max()),
            "identical": bool(np.array_equal(scores, expected)), "label": top, "expected_label": top_expected,
            "reason": reason}


def run_selftest(bundle_path, *, tolerance: float | None = None, log_tolerance: float | None = None,
                 num_threads: int = 1, runtime: str | None = None) -> dict:
    """Run the self-test of a bundle file; returns the report `tinyear-device selftest --json` prints:
    the verdict of `compare`, the tolerances used, the scores, and where they were computed."""
    from . import __version__
    from .bundle import FORMAT_VERSION
    from .classify import Classifier

    classifier = Classifier(bundle_path, num_threads=num_threads, runtime=runtime)
    bundle = classifier.bundle
    if bundle.selftest is None:
        raise TinyearError(f"{bundle_path}: the bundle holds no self-test clip; re-export it with tinyear export")
    scores = classifier.scores(bundle.selftest.audio)
    tol, log_tol = selftest_tolerances(classifier.model, bundle.output)
    tol = tol if tolerance is None else float(tolerance)
    log_tol = log_tol if log_tolerance is None else float(log_tolerance)
    verdict = compare(scores, bundle.selftest.expected, bundle.labels, tol, log_tol)
    if verdict["ok"] and verdict["label"] != bundle.selftest.label:  # same numbers, other names: labels edited
        verdict.update(ok=False, reason=(
            f"the self-test clip is a '{bundle.selftest.label}' clip but the model's top label for it is "
            f"'{verdict['label']}' ({float(np.max(scores)):.4f}): the bundle's labels do not fit its model "
            "(reordered or edited after export)"), mislabelled=True)
    return {
        "bundle": str(bundle_path),
        **verdict,
        "tolerance": tol,
        "log_tolerance": log_tol,
        "clip_label": bundle.selftest.label,
        "labels": bundle.labels,
        "scores": [float(v) for v in scores],
        "expected": [float(v) for v in bundle.selftest.expected],
        "model_sha256": bundle.model_sha256,
        "runtime": classifier.model.runtime,
        "tinyear": __version__,
        "bundle_format": FORMAT_VERSION,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "numpy": np.__version__,
    }
