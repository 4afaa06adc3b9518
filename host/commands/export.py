"""`tinyear export RUN --out MODEL.tinyear`: a trained student -> a verified full-integer int8 bundle."""

from __future__ import annotations

from tinyear.device.cliutil import add_json_option, positive_int, print_json

HELP = "convert a trained student to a verified int8 bundle"
DESCRIPTION = """\
Convert the student of a run folder (from `tinyear distill`) to a full-integer int8 TFLite model and
write a .tinyear bundle: the model, labels, frontend, detection defaults, the metrics measured here,
provenance, and a self-test clip.

How: litert-torch's PT2E quantizer (static int8 activations, per-channel int8 weights, int8 input and
output), calibrated on a class-balanced sample of the run's TRAINING clips, with features from the
same frontend the device runs. --qat first fine-tunes the student for a few epochs through int8 fake
quantization (still distilling from the run's teacher when it had one); slower, for students whose
int8 copy loses accuracy.

Verified before the bundle is written, printed, and stored in the bundle's metrics: top-1 agreement of
the float student and the int8 model on the validation split (target >= 98%), the accuracy drop
(target <= 1 point, 0.5 with --qat), output error statistics, size, ops; and the int8 model under the
TFLite Micro interpreter, whose outputs must be bit-identical to LiteRT's reference kernels, with the
tensor arena it needs ("microcontroller-ready" is printed only when that holds). A model with an op
that stays float is refused, naming the op and the layer.

The _unknown_ offset (--unknown-offset, off by default): a constant added to the _unknown_ logit
before converting, for a device that hears far more other words than its training data held (a
model that heard 20 other words calls unfamiliar short ones keywords). auto takes the offset under
which the float student fits the validation split's recorded clips best (the whole split when it has
no synthetic clips or fewer than 100 of people); a number sets it. On the shipped recipe auto finds
0-0.2: its validation clips of other words are words it trained on, so it cannot see the shift;
docs/BENCHMARKS.md ("The _unknown_ offset") has what larger offsets did. The bundle's metrics keep it.

examples:
  tinyear export runs/student --out keywords.tinyear
  tinyear export runs/student --out keywords.tinyear --calibration 1000 --data data/synth
  tinyear export runs/student --out keywords-qat.tinyear --qat --qat-epochs 3
  tinyear export runs/student --out keywords.tinyear --unknown-offset auto   # an _unknown_ offset
"""


def add_arguments(parser) -> None:
    from tinyear.host.export import DEFAULT_CALIBRATION
    from tinyear.host.qat import QatConfig

    defaults = QatConfig()
    parser.add_argument("run", metavar="RUN", help="a student run folder (tinyear distill --out)")
    parser.add_argument("--out", required=True, metavar="MODEL.tinyear", help="the bundle to write")
    parser.add_argument("--calibration", type=int, default=DEFAULT_CALIBRATION, metavar="N",
                        help="training clips (class-balanced) that set the int8 activation ranges")
    parser.add_argument("--data", action="append", metavar="DIR",
                        help="dataset folder to use instead of the run's (repeat for several)")
    parser.add_argument("--qat", action="store_true", help="quantization-aware fine-tune before converting")
    parser.add_argument("--qat-epochs", type=positive_int, default=defaults.epochs, metavar="N",
                        help="epochs of the --qat fine-tune")
    parser.add_argument("--qat-lr", type=float, default=defaults.lr, metavar="LR",
                        help="peak learning rate of the --qat fine-tune")
    parser.add_argument("--tflm-samples", type=positive_int, default=50, metavar="N",
                        help="validation inputs compared between TFLite Micro and LiteRT")
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration sample")
    parser.add_argument("--unknown-offset", default="0", metavar="X|auto",
                        help="added to the _unknown_ logit before converting: 0 (none, the default), a number, or "
                             "auto (the best fit to the validation split)")
    add_json_option(parser, "one JSON object: the bundle path and every metric")


def run(args) -> int:
    from dataclasses import replace

    from tinyear.host.export import ExportOptions, export_run
    from tinyear.host.offset import parse_offset
    from tinyear.host.qat import QatConfig

    options = ExportOptions(calibration=args.calibration, qat=args.qat,
                            qat_config=replace(QatConfig(), epochs=args.qat_epochs, lr=args.qat_lr),
                            data=tuple(args.data or ()), tflm_samples=args.tflm_samples, seed=args.seed,
                            unknown_offset=parse_offset(args.unknown_offset), progress=not args.json)
    result = export_run(args.run, args.out, options)
    if args.json:
        print_json({k: v for k, v in result.items() if k != "report"})
        return 0
    m = result["metrics"]
    for line in result["report"]:
        print(line)
    v = m["verification"]["validation"]
    for name, met in (("agreement", v["targets"]["agreement_met"]), ("accuracy drop", v["targets"]["drop_met"])):
        if not met:
            print(f"warning: the int8 model misses the {name} target; try --calibration with more clips or --qat")
    offset = m.get("unknown_offset") or {}
    if offset.get("offset"):
        print(f"_unknown_ offset {offset['offset']:g} ({offset['chosen_on']})")
    print(f"wrote {result['bundle']} ({result['bundle_bytes']:,} bytes; {m['quantization'].upper()}, "
          f"{len(result['labels'])} labels, self-test clip '{(result['selftest'] or {}).get('label', 'none')}') "
          f"in {result['seconds']:.0f} s")
    return 0
