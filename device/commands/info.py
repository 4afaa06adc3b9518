"""`tinyear-device info BUNDLE`: verify a bundle and show what it holds."""

from __future__ import annotations

from ..cliutil import add_json_option, print_json

HELP = "verify a bundle and show its labels, frontend, metrics and provenance"
DESCRIPTION = """\
Read a .tinyear bundle, verify it (checksums, format, frontend fingerprint, labels against the model)
and print its contents. Exit status 1 with a one-line reason when it fails verification.
"""


def add_arguments(parser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE", help="a .tinyear bundle")
    add_json_option(parser, "one JSON object")


def run(args) -> int:
    from ..bundle import read_bundle
    from ..detection import describe_rules

    bundle = read_bundle(args.bundle)
    model = bundle.load_model()
    info = {
        "bundle": str(args.bundle),
        "labels": bundle.labels,
        "model_bytes": len(bundle.model_bytes),
        "model_sha256": bundle.model_sha256,
        "input": {"shape": list(model.feature_shape), "dtype": str(model.input_dtype), "scale": model.input_scale, "zero_point": model.input_zero_point},
        "output": {"kind": bundle.output, "dtype": str(model.output_dtype), "scale": model.output_scale, "zero_point": model.output_zero_point},
        "runtime": model.runtime,
        "frontend": bundle.frontend.to_dict(),
        "frontend_fingerprint": bundle.fingerprint,
        "backbone": None if bundle.backbone is None else {k: v for k, v in bundle.backbone.items() if k != "files"},
        "detection": bundle.detection,
        "metrics": bundle.metrics,
        "provenance": bundle.provenance,
        "selftest": None if bundle.selftest is None else {"label": bundle.selftest.label, "seconds": len(bundle.selftest.audio) / bundle.sample_rate},
    }
    if args.json:
        print_json(info)
        return 0
    print(f"{args.bundle}: verified ({info['model_bytes']:,} byte model, sha256 {bundle.model_sha256[:12]}…)")
    print(f"  labels     {', '.join(bundle.labels)}")
    print(f"  input      {info['input']['dtype']} {tuple(model.feature_shape)} scale {model.input_scale:.5g} zero point {model.input_zero_point}")
    print(f"  output     {bundle.output}, {info['output']['dtype']} scale {model.output_scale:.5g} zero point {model.output_zero_point}")
    fe = bundle.frontend
    if bundle.backbone is None:
        print(f"  frontend   {bundle.fingerprint}: {fe.sample_rate} Hz, {fe.window_ms:g}/{fe.hop_ms:g} ms window/hop, "
              f"{fe.num_mel_bins} mel bins {fe.lower_hz:g}-{fe.upper_hz:g} Hz, {fe.clip_ms:g} ms clip")
    else:
        print(f"  audio      {fe.sample_rate} Hz, {fe.clip_ms:g} ms clip (the backbone makes the features)")
    if bundle.backbone is not None:
        bb = bundle.backbone
        print(f"  backbone   {bb['name']} (version {bb['version']}, {sum(map(len, bundle.backbone_models.values())):,} bytes "
              f"of float TFLite in the bundle): 1 s clip + {bb['pad_seconds']:g} s padding each side -> {bb['windows']} x "
              f"{bb['dim']} embeddings, normalised per clip ({bb['normalize']}); the model is a head over them")
    d = bundle.detection
    print(f"  detection  threshold {d['threshold']}, smoothing {d['smoothing_ms']} ms, refractory {d['refractory_ms']} ms, hop {d['hop_ms']} ms"
          + (f", per class {d['per_class_threshold']}" if d.get("per_class_threshold") else ""))
    if describe_rules(d) != "no extra rules":
        print(f"  rules      {describe_rules(d)}")
    calibrated = calibration_line(bundle.metrics.get("detection_calibration"))
    if calibrated:
        print(f"  calibrated {calibrated}")
    for key, value in bundle.metrics.items():
        if key != "detection_calibration" or not calibrated:  # the whole record: --json
            print(f"  metric     {key}: {value}")
    for key, value in bundle.provenance.items():
        print(f"  made by    {key}: {value}")
    if bundle.selftest is not None:
        print(f"  self-test  {info['selftest']['seconds']:.2f} s clip of '{bundle.selftest.label}'")
    print(f"  runtime    {model.runtime}")
    return 0


def calibration_line(record: dict | None) -> str | None:
    """What `tinyear calibrate` recorded, in one line (None for a bundle it never calibrated, or a record
    it cannot read): the budget and stream, the point chosen there, and the held-out check."""
    try:
        after, stream = record["after"], record["stream"]
        line = (f"to {record['fa_per_hour_budget']:g} false accepts/hour on a {stream['minutes']:g}-minute validation "
                f"stream: recall {after['recall']:.3f} at {after['false_accepts_per_hour']:.1f} FA/h there")
    except (TypeError, KeyError):
        return None
    held = record.get("held_out") or {}
    if "recall" in held:
        line += (f"; on validation voices the thresholds were not chosen on (held out): recall {held['recall']:.3f} at "
                 f"{held['false_accepts_per_hour']:.1f} FA/h, what to expect on new voices (--json: the whole record)")
    return line
