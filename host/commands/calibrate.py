"""`tinyear calibrate BUNDLE DATA --fa-per-hour X`: per-class thresholds for a false-accept budget."""

from __future__ import annotations

import sys

from tinyear.device.cliutil import add_json_option, add_threads_option, print_json

HELP = "choose per-class thresholds on validation streams for the best recall within a false-accept budget"
DESCRIPTION = """\
Choose the detection thresholds of a bundle (one per keyword, and the smoothing and detection rules
if others pay: a margin over _unknown_, a score held for 2 model runs) that find the most keywords
while false accepts stay within --fa-per-hour, and write them into the bundle (checksums renewed,
atomically). The report lists each rule set tried with its best point; `tinyear-device info` shows
the rules a bundle carries, and `listen`/`classify --stream` flags override them.

The thresholds are chosen on a stream built from the VALIDATION split of DATA (speakers disjoint from
the training split): the model's keywords, distractor words (_unknown_/ clips), other speech (any
other folder, e.g. ../shared/data/other-speech) and background noise at 5-30 dB SNR, one word every
2.5-5 s. The model runs over the stream once; every threshold is then tried on the recorded scores.
Never calibrate on a test set: a number measured on it afterwards means nothing.

Among the choices within the budget, one whose median detection delay (after the word ends, on the
same stream) is over --max-latency (300 ms) is taken only when none is within it; the report says so.

--negatives DIR adds folders of speech without the bundle's keywords that it never trained on (the
shipped bundle never heard ../shared/data/other-speech): ALL their clips join the stream, not only a
validation split, so the few false accepts that decide the thresholds come from more voices. A folder
the bundle records among its training data is refused.

Thresholds fitted to one stream's few false accepts fire more often on voices they never heard. So
calibrate also splits the validation speakers in two, chooses thresholds on one half the same way,
scores them on the other (both ways) and reports that "held out" operating point beside the chosen
one (and in the bundle): it is what to expect on new voices. --no-held-out skips it.

If no thresholds meet the budget, it says what recall is possible at what false-accept rate, keeps
the bundle as it was and exits with status 1.

examples:
  tinyear calibrate keywords.tinyear ../shared/data/speech-commands-mini-train ../shared/data/other-speech
  tinyear calibrate keywords.tinyear data/mine --fa-per-hour 2 --out keywords-quiet.tinyear --json
  tinyear calibrate keywords.tinyear data/mine --max-latency 200         # answer sooner, find fewer
  tinyear calibrate keywords.tinyear ../shared/data/speech-commands-mini-train --negatives ../shared/data/other-speech
"""


def add_arguments(parser) -> None:
    from tinyear.device.cliutil import non_negative_float, positive_float
    from tinyear.host.calibrate import DEFAULT_FA_PER_HOUR, DEFAULT_MINUTES
    from tinyear.host.defaults import DEFAULT_MAX_LATENCY_MS

    parser.add_argument("bundle", metavar="BUNDLE", help="a .tinyear bundle (with an _unknown_ label)")
    parser.add_argument("data", metavar="DATA", nargs="+", help="dataset folder(s) whose validation split is used")
    parser.add_argument("--fa-per-hour", type=non_negative_float, default=DEFAULT_FA_PER_HOUR, metavar="X",
                        help="false accepts per hour of audio allowed on the validation stream")
    parser.add_argument("--minutes", type=positive_float, default=DEFAULT_MINUTES, help="length of the validation stream")
    parser.add_argument("--seed", type=int, default=0, help="seed of the validation stream")
    parser.add_argument("--out", metavar="FILE", help="write the calibrated bundle here instead of over BUNDLE")
    parser.add_argument("--dry-run", action="store_true", help="report the operating point, write nothing")
    parser.add_argument("--max-smoothing", type=positive_float, default=None, metavar="MS",
                        help="search no smoothing window longer than MS: it is most of a detection's delay (docs/BENCHMARKS.md, "
                             "\"Eighty epochs\"); default: 100-700 ms and the bundle's own")
    parser.add_argument("--max-latency", type=positive_float, default=None, metavar="MS",
                        help="choose no operating point whose median detection delay after a word's end is longer "
                             f"on the validation stream, unless no choice within the budget is (default {DEFAULT_MAX_LATENCY_MS:g} ms)")
    parser.add_argument("--any-latency", action="store_true", help="no bound on the detection delay")
    parser.add_argument("--negatives", nargs="+", default=(), metavar="DIR",
                        help="folders of speech without the keywords that the bundle never trained on: every clip "
                             "joins the stream's other speech (not only their validation split)")
    parser.add_argument("--no-held-out", dest="held_out", action="store_false",
                        help="skip the held-out check (two more model passes over half-length streams)")
    add_threads_option(parser)
    add_json_option(parser, "one JSON object: the operating points before and after, thresholds, stream")


def latency_bound(args) -> float | None:
    """The --max-latency / --any-latency pair as calibrate's bound (None: no bound)."""
    from tinyear.device.errors import TinyearError
    from tinyear.host.defaults import DEFAULT_MAX_LATENCY_MS

    if args.any_latency and args.max_latency is not None:
        raise TinyearError("--max-latency and --any-latency contradict each other; give one")
    if args.any_latency:
        return None
    return DEFAULT_MAX_LATENCY_MS if args.max_latency is None else args.max_latency


def run(args) -> int:
    from tinyear.host.calibrate import BudgetNotMet, calibrate, format_report

    try:
        result = calibrate(args.bundle, args.data, fa_per_hour=args.fa_per_hour, minutes=args.minutes, seed=args.seed,
                           out=args.out, num_threads=args.threads, progress=not args.json, write=not args.dry_run,
                           max_smoothing_ms=args.max_smoothing,
                           max_latency_ms=latency_bound(args), held_out=args.held_out, negatives=args.negatives)
    except BudgetNotMet as exc:
        if args.json:
            print_json({**exc.result, "error": str(exc)})
        else:
            for p in exc.result["possible"][:4]:
                print(f"  possible: recall {p['recall']:.3f} at {p['false_accepts_per_hour']:.1f} FA/h "
                      f"(smoothing {p['smoothing_ms']:g} ms)", file=sys.stderr)
        raise
    if args.json:
        print_json(result)
    else:
        print("\n".join(format_report(result)))
    return 0
