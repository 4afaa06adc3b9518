"""`tinyear-device selftest BUNDLE`: check that this device computes the bundle's self-test clip as the
workstation did (the check itself, and why its tolerances are what they are: `tinyear.device.selftest`).
"""

from __future__ import annotations

import sys

from ..cliutil import add_json_option, add_threads_option, non_negative_float, print_json
from ..errors import TinyearError
from ._options import add_runtime_option

HELP = "check that this device computes the bundle's self-test clip as the workstation did"
DESCRIPTION = """\
Classify the short clip stored inside the bundle and compare the probabilities with the ones the
workstation stored when it exported the bundle: the most likely label must be the same, and be the
clip's own label (a bundle whose labels were reordered after export is refused), and no probability
(and no log-probability) may differ by more than its tolerance. Exit status 0 when it passes, 1 (with
one line saying what differs) when it does not, or when the bundle cannot be read or has no self-test
clip.

The default tolerances come from the model: for an int8 model with output scale s, s on probabilities
and 4 s on log-probabilities (what two quantization steps of rounding in every logit can do); 1e-4 and
1e-3 for a float model. Same CPU and runtime give a difference of exactly 0 ("identical").

examples:
  tinyear-device selftest models/keywords.tinyear
  tinyear-device selftest models/keywords.tinyear --json
  tinyear-device selftest models/keywords.tinyear --runtime tflite-runtime --tolerance 0 --log-tolerance 0
"""


def add_arguments(parser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE", help="a .tinyear bundle with a self-test clip")
    parser.add_argument("--tolerance", type=non_negative_float, default=None, metavar="P",
                        help="largest allowed absolute difference of a probability (default: from the model, see above)")
    parser.add_argument("--log-tolerance", type=non_negative_float, default=None, metavar="L",
                        help="largest allowed absolute difference of a log-probability (default: from the model)")
    add_threads_option(parser)
    add_runtime_option(parser)
    add_json_option(parser, "one JSON object (ok, scores, expected, max_abs_diff, tolerance, ...)")


def run(args) -> int:
    from ..selftest import run_selftest

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
        remedy = ("re-export the bundle with tinyear export" if report.get("mislabelled") else
                  "this device does not compute what the workstation did: check the runtime (tinyear-device info) "
                  "or re-export the bundle")
        print(f"tinyear-device: error: {args.bundle}: self-test failed: {report['reason']}; {remedy}", file=sys.stderr)
        return 1
    return 0
