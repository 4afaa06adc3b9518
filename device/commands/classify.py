"""`tinyear-device classify BUNDLE FILE...`: the top labels of audio files.

Each file is read, downmixed (or one channel picked), resampled to the bundle's rate, fitted to one
model window and classified. A file that cannot be used gets one error line on stderr and the others
are still classified; the exit status is 1 if any file failed.
"""

from __future__ import annotations

import sys

from ..cliutil import add_json_option, add_threads_option, positive_int, print_json
from ..errors import TinyearError
from ._options import add_detection_options, add_runtime_option

HELP = "classify audio files with a bundle"
DESCRIPTION = """\
Print the most likely label of each audio file (any format soundfile reads, any sample rate, any
channel count). Clips shorter than the model's window are zero-padded around the middle; longer ones
are cut to their loudest window.

examples:
  tinyear-device classify models/keywords.tinyear yes.wav
  tinyear-device classify models/keywords.tinyear clips/*.flac --top 3 --json

--stream runs one long recording through the live detector instead (as `listen` would hear it, but
faster than real time) and prints its detections; with --truth (a CSV of start,end,label rows in
seconds, e.g. from scripts/make_stream.py) it also reports hits, misses, false accepts per hour and the
latency from the end of each word to its detection:
  tinyear-device classify --stream models/keywords.tinyear long.wav --truth long.csv
"""


def add_arguments(parser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE", help="a .tinyear bundle")
    parser.add_argument("files", metavar="FILE", nargs="+", help="audio files to classify")
    parser.add_argument("--top", type=positive_int, default=1, metavar="K", help="show the K most likely labels")
    parser.add_argument("--channel", type=int, default=None, metavar="C", help="use channel C (0-based) instead of the average of all")
    add_threads_option(parser)
    add_runtime_option(parser)
    add_json_option(parser, "one JSON object per file (file, label, score, top)")
    parser.add_argument("--stream", action="store_true", help="detect keywords along one long FILE as the live listener would")
    parser.add_argument("--truth", default=None, metavar="CSV", help="with --stream: score the detections against start,end,label rows")
    add_detection_options(parser)


def run(args) -> int:
    if args.stream:
        from ..streameval import run_stream_command

        return run_stream_command(args)
    if args.truth:
        raise TinyearError("--truth scores a stream: add --stream")
    from ..classify import Classifier

    classifier = Classifier(args.bundle, num_threads=args.threads, runtime=args.runtime)
    failed = 0
    for name in args.files:
        try:
            probs = classifier.classify_file(name, channel=args.channel)
        except TinyearError as exc:
            failed += 1
            print(f"tinyear-device: error: {exc}", file=sys.stderr)
            if args.json:
                print_json({"file": name, "error": str(exc)})
            continue
        top = classifier.top(probs, args.top)
        if args.json:
            print_json({"file": name, "label": top[0][0], "score": round(top[0][1], 6),
                        "top": [{"label": l, "score": round(s, 6)} for l, s in top]})
        else:
            print(f"{name}\t" + "  ".join(f"{l} {s:.3f}" for l, s in top), flush=True)
    if failed:
        print(f"tinyear-device: {failed} of {len(args.files)} files could not be classified", file=sys.stderr)
    return 1 if failed else 0
