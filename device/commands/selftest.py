"""`tinyear-device selftest BUNDLE`: run the bundle's embedded self-test clip and compare with the
workstation's output stored beside it.

This is how a device proves, before it listens, that it computes what the workstation computed: the
same features, the same interpreter arithmetic, the same label. `tinyear deploy` runs it on the device
with `--json` and compares the scores it prints with the ones it computed itself.

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

Device-side only: imports nothing from `tinyear.host`, no torch.
"""

from __future__ import annotations

import platform
import sys

import numpy as np

from ..cliutil import add_json_option, add_threads_option, non_negative_float, print_json
from ..errors import TinyearError
from ._options import add_runtime_option

HELP = "check that this device computes the bundle's self-test clip as the workstation did"
DESCRIPTION = """\
Classify the short clip stored inside the bundle and compare the probabilities with the ones the
workstation stored when it exported the bundle: the most likely label must be the same, and no
probability (and no log-probability) may differ by more than its tolerance. Exit status 0 when it
passes, 1 (with one line saying what differs) when it does not, or when the bundle cannot be read or has
no self-test clip.

The default tolerances come from the model: for an int8 model with output scale s, s on probabilities
and 4 s on log-probabilities (what two quantization steps of rounding in every logit can do); 1e-4 and
1e-3 for a float model. Same CPU and runtime give a difference of exactly 0 ("identical").

examples:
  tinyear-device selftest models/keywords.tinyear
  tinyear-device selftest models/keywords.tinyear --json
  tinyear-device selftest models/keywords.tinyear --runtime tflite-runtime --tolerance 0 --log-tolerance 0
"""

FLOAT_TOLERANCES = (1e-4, 1e-3)  # float32 kernels differ by rounding only (see the module docstring)
QUANTIZED_LOGIT_STEPS = 2  # output quantization steps a logit may move across CPUs and runtimes
LOG_FLOOR = 1e-30  # probabilities below it (float32 underflow) compare as equal in the log check


def add_arguments(parser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE", help="a .tinyear bundle with a self-test clip")
    parser.add_argument("--tolerance", type=non_negative_float, default=None, metavar="P",
                        help="largest allowed absolute difference of a probability (default: from the model, see above)")
    parser.add_argument("--log-tolerance", type=non_negative_float, default=None, metavar="L",
                        help="largest allowed absolute difference of a log-probability (default: from the model)")
    add_threads_option(parser)
    add_runtime_option(parser)
    add_json_option(parser, "one JSON object (ok, scores, expected, max_abs_diff, tolerance, ...)")


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
    """Run the self-test of a bundle file; returns the report printed by `--json` (see DESCRIPTION)."""
    from .. import __version__
    from ..bundle import FORMAT_VERSION
    from ..classify import Classifier

    classifier = Classifier(bundle_path, num_threads=num_threads, runtime=runtime)
    bundle = classifier.bundle
    if bundle.selftest is None:
        raise TinyearError(f"{bundle_path}: the bundle holds no self-test clip; re-export it with tinyear export")
    scores = classifier.scores(bundle.selftest.audio)
    tol, log_tol = selftest_tolerances(classifier.model, bundle.output)
    tol = tol if tolerance is None else float(tolerance)
    log_tol = log_tol if log_tolerance is None else float(log_tolerance)
    verdict = compare(scores, bundle.selftest.expected, bundle.labels, tol, log_tol)
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


def run(args) -> int:
    try:
        report = run_selftest(args.bundle, tolerance=args.tolerance, log_tolerance=args.log_tolerance,
                              num_threads=args.threads, runtime=args.runtime)
    except TinyearError as exc:
        if args.json:  # a program reading stdout gets the reason too; the line on stderr follows
            print_json({"bundle": str(args.bundle), "ok": False, "error": str(exc)})
        raise
    if args.json:
        print_json(report)
    else:
        how = "identical" if report["identical"] else f"max difference {report['max_abs_diff']:.3g} <= {report['tolerance']:.3g}"
        if report["ok"]:
            print(f"{args.bundle}: self-test passed: '{report['label']}' {max(report['scores']):.4f} ({how}; "
                  f"{report['runtime']}, Python {report['python']}, {report['machine']})")
    if not report["ok"]:
        print(f"tinyear-device: error: {args.bundle}: self-test failed: {report['reason']}; this device does not "
              "compute what the workstation did: check the runtime (tinyear-device info) or re-export the bundle",
              file=sys.stderr)
        return 1
    return 0
