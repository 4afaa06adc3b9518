"""Options shared by several `tinyear-device` commands, each defined once: the detection flags of
`listen` and `classify --stream`, and the `--runtime` choice of `classify` and `selftest`.

Every detection option defaults to None, meaning "the bundle's value": the bundle's detection defaults
hold unless a flag overrides them. The runtime names come from `tinyear.device.runtime`.
"""

from __future__ import annotations

import argparse

from ..cliutil import non_negative_float, positive_float, positive_int, unit_float


def add_detection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("detection (defaults: the bundle's; see tinyear-device info BUNDLE)")
    group.add_argument("--threshold", type=unit_float, default=None, metavar="X",
                       help="smoothed probability a keyword must reach; replaces the bundle's per-class thresholds")
    group.add_argument("--smoothing", type=non_negative_float, default=None, metavar="MS",
                       help="average the scores of the model runs of the last MS milliseconds")
    group.add_argument("--refractory", type=non_negative_float, default=None, metavar="MS",
                       help="after a detection, the same label stays quiet for MS milliseconds")
    group.add_argument("--hop", type=positive_float, default=None, metavar="MS",
                       help="run the model every MS milliseconds of audio (a multiple of 10; default the bundle's, at most 100)")
    group.add_argument("--unknown-margin", type=non_negative_float, default=None, metavar="X",
                       help="a keyword fires only if its smoothed score beats _unknown_'s by X (0: off)")
    group.add_argument("--unknown-window", type=non_negative_float, default=None, metavar="MS",
                       help="... _unknown_'s highest smoothed score over the last MS milliseconds (0: the current run)")
    group.add_argument("--min-runs", type=positive_int, default=None, metavar="N",
                       help="a keyword must hold its threshold for N model runs in a row (1: fire at once; each more adds a hop)")
    group.add_argument("--peak", action=argparse.BooleanOptionalAction, default=None,
                       help="fire when the smoothed score starts to fall, at its peak (one hop later; the stronger of "
                            "two keywords on one word wins)")


def detection_config(bundle, args):
    """The DetectionConfig for `bundle` with the flags in `args` applied (TinyearError if unusable)."""
    from ..detection import DetectionConfig

    return DetectionConfig.from_bundle(bundle, threshold=args.threshold, smoothing_ms=args.smoothing,
                                       refractory_ms=args.refractory, hop_ms=args.hop,
                                       unknown_margin=args.unknown_margin, unknown_window_ms=args.unknown_window,
                                       min_runs=args.min_runs, peak=args.peak)


def add_runtime_option(parser: argparse.ArgumentParser) -> None:
    from ..runtime import RUNTIME_NAMES

    parser.add_argument("--runtime", choices=RUNTIME_NAMES, default=None,
                        help="force a TFLite runtime (default: the first installed)")
