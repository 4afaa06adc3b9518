"""`tinyear-device bench BUNDLE`: what listening with this bundle costs on this machine (the
measurement itself is `tinyear.device.bench.measure`)."""

from __future__ import annotations

import sys

from ..cliutil import add_json_option, add_threads_option, positive_float, positive_int, print_json

HELP = "measure inference latency, feature cost, CPU share and memory of a bundle"
DESCRIPTION = """\
Benchmark a bundle on this machine the way `listen` runs it:

  inference     per-call latency of the model (p50, p95, p99, in ms)
  features      CPU time per hop of the incremental frontend and of recomputing the whole window
  detector      CPU time per second of audio of the whole path (features + model + smoothing), as a
                share of one core: what listening in real time costs (below 100% it keeps up)
  memory        peak resident set size of this process

Timings on a machine that is busy with other work are noisy: compare figures from one run.

examples:
  tinyear-device bench models/keywords.tinyear
  tinyear-device bench models/keywords.tinyear --seconds 120 --json
"""


def add_arguments(parser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE", help="a .tinyear bundle")
    parser.add_argument("--seconds", type=positive_float, default=60.0, metavar="S",
                        help="seconds of audio to stream through the detector")
    parser.add_argument("--inferences", type=positive_int, default=500, metavar="N", help="timed model calls")
    parser.add_argument("--hop", type=positive_float, default=None, metavar="MS", help="model hop (default: the bundle's, at most 100)")
    add_threads_option(parser)
    add_json_option(parser, "one JSON object")


def run(args) -> int:
    from ..bench import measure
    from ..bundle import read_bundle

    bundle = read_bundle(args.bundle)
    print(f"tinyear-device: benchmarking {args.bundle} ({args.seconds:g} s of audio, {args.inferences} inferences)...",
          file=sys.stderr, flush=True)
    result = measure(bundle, seconds=args.seconds, inferences=args.inferences, hop_ms=args.hop, num_threads=args.threads)
    if args.json:
        print_json(result)
        return 0
    inf, feat, det = result["inference_ms"], result["features"], result["detector"]
    print(f"bundle      {args.bundle} ({result['model_bytes']:,} byte model, {result['runtime']}, {result['num_threads']} thread)")
    print(f"inference   p50 {inf['p50']:.3f} ms   p95 {inf['p95']:.3f} ms   p99 {inf['p99']:.3f} ms")
    if "ms_per_hop" in feat:  # a backbone bundle embeds the whole last clip each hop
        print(f"features    {feat['kind']}: {feat['ms_per_hop']:.3f} ms/hop ({feat['core_percent']:.1f}% of one core), "
              f"hop {result['hop_ms']:g} ms")
    else:
        print(f"features    incremental {feat['incremental_ms_per_hop']:.3f} ms/hop, recompute window "
              f"{feat['recompute_ms_per_hop']:.3f} ms/hop ({feat['recompute_over_incremental']:.1f}x), hop {result['hop_ms']:g} ms")
    print(f"detector    {det['core_percent']:.2f}% of one core to keep up with real time "
          f"({det['realtime_factor']:.0f}x faster than real time; features {100 * det['feature_share']:.0f}% of it)")
    print(f"memory      peak RSS {result['peak_rss_mb']:.1f} MB")
    return 0
