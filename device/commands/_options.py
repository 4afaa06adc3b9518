"""Options shared by several `tinyear-device` commands, each defined once: the detection flags of
`listen` and `classify --stream`, and the `--runtime` choice of `classify` and `selftest`.

Every detection option defaults to None, meaning "the bundle's value": the bundle's detection defaults
hold unless a flag overrides them. The runtime names come from `tinyear.device.runtime`.
"""

from __future__ import annotations

import argparse

from ..cliutil import non_negative_float, positive_float, unit_float


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


def detection_config(bundle, args):
    """The DetectionConfig for `bundle` with the flags in `args` applied (TinyearError if unusable)."""
    from ..detection import DetectionConfig

    return DetectionConfig.from_bundle(bundle, threshold=args.threshold, smoothing_ms=args.smoothing,
                                       refractory_ms=args.refractory, hop_ms=args.hop)


def add_runtime_option(parser: argparse.ArgumentParser) -> None:
    from ..runtime import RUNTIME_NAMES

    parser.add_argument("--runtime", choices=RUNTIME_NAMES, default=None,
                        help="force a TFLite runtime (default: the first installed)")
