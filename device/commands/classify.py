"""`tinyear-device classify BUNDLE FILE...`: the top labels of audio files.

Each file is read, downmixed (or one channel picked), resampled to the bundle's rate, fitted to one
model window and classified. A file that cannot be used gets one error line on stderr and the others
are still classified; the exit status is 1 if any file failed.
"""

from __future__ import annotations

import sys

from ..cliutil import add_json_option, add_threads_option, positive_int, print_json
from ..errors import TinyearError
from ._options import add_detection_options, add_runtime_option, detection_config

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

--curve OUT.csv (with --stream and --truth) also sweeps one threshold for every keyword over the same
run (the model runs once; each threshold is replayed on its recorded scores) and writes recall against
false accepts per hour, one row per threshold:
  tinyear-device classify --stream models/keywords.tinyear long.wav --truth long.csv --curve curve.csv
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
    parser.add_argument("--curve", default=None, metavar="OUT", help="with --stream --truth: write recall vs false accepts/hour per threshold (CSV)")
    add_detection_options(parser)


def run(args) -> int:
    if args.stream:
        return run_stream(args)
    if args.truth or args.curve:
        raise TinyearError(f"{'--truth' if args.truth else '--curve'} scores a stream: add --stream")
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


def run_stream(args) -> int:
    """`tinyear-device classify --stream BUNDLE FILE [--truth CSV]`."""
    from ..bundle import read_bundle
    from ..detector import Detector
    from ..events import event_line
    from ..streameval import keyword_labels, read_truth, score_events, stream_file

    if len(args.files) != 1:
        raise TinyearError(f"--stream takes one audio file, got {len(args.files)}; run it once per file")
    bundle = read_bundle(args.bundle)
    config = detection_config(bundle, args)
    if args.curve and not args.truth:
        raise TinyearError("--curve needs --truth CSV: recall and false accepts are counted against it")
    truth = read_truth(args.truth) if args.truth else None  # a bad truth file fails before the long run
    detector = Detector(bundle, config, num_threads=args.threads, runtime=args.runtime)
    if args.curve:
        check_writable(args.curve, "--curve")  # before the long run, not after it
        detector.score_log = []
    path = args.files[0]
    events, duration = stream_file(detector, path, channel=args.channel, progress=True)
    for event in events:
        sys.stdout.write(event_line(event, as_json=args.json))
        sys.stdout.flush()
    report = {"type": "report", "stream": str(path), "duration_s": round(duration, 2), "events": len(events),
              "detection": config.to_dict()}
    if truth is not None:
        late = [w for w in truth if w.start > duration]
        if late:
            raise TinyearError(f"{args.truth}: {len(late)} truth row(s) start after the end of {path} ({duration:.1f} s), "
                               f"e.g. at {late[0].start:g} s: is it the truth file of this stream?")
        keywords = keyword_labels(bundle.labels, config.ignore)
        report.update(score_events(events, truth, keywords=keywords, duration_s=duration))
        if args.curve:
            report["curve"] = str(write_stream_curve(detector, truth, keywords, duration, args.curve, config))
    if args.json:
        print_json(report)
        return 0
    print(f"{path}: {duration:.1f} s of audio, {len(events)} detection{'s' * (len(events) != 1)}")
    if truth is not None:
        lat = report["latency_ms"]
        recall = "n/a" if report["recall"] is None else f"{100 * report['recall']:.1f}%"
        print(f"  hits {report['hits']} of {report['keywords']} keywords (recall {recall}), misses {report['misses']}")
        print(f"  false accepts {report['false_accepts']} ({report['false_accepts_per_hour']:.1f} per hour)")
        if lat:
            print(f"  latency end of word -> event: p50 {lat['p50']:.0f} ms, p90 {lat['p90']:.0f} ms")
        if args.curve:
            print(f"  detection curve (recall vs false accepts/hour per threshold): {report['curve']}")
    return 0


def check_writable(path, option: str) -> None:
    """TinyearError (one line) unless a file can be written at `path`."""
    import os
    from pathlib import Path

    folder = Path(path).parent
    if Path(path).is_dir():
        raise TinyearError(f"{option} {path}: is a folder; give a file name such as curve.csv")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise TinyearError(f"{option} {path}: cannot write in {folder} (missing or read-only); choose another path")


def write_stream_curve(detector, truth, keywords, duration, path, config):
    """The curve of the run just made, from the scores the detector recorded (no second model pass)."""
    import numpy as np

    from ..sweep import ScoreTrace, curve, write_curve_csv

    log, detector.score_log = detector.score_log, None
    probs = np.stack([p for _, p in log]) if log else np.zeros((0, len(detector.labels)), np.float32)
    trace = ScoreTrace(list(detector.labels), np.array([t for t, _ in log]), probs, config.hop_ms, duration)
    rows = curve(trace, truth, keywords, smoothing_ms=config.smoothing_ms, refractory_ms=config.refractory_ms, rules=config)
    write_curve_csv(path, rows, model=str(detector.bundle.path.name if detector.bundle.path else "bundle"))
    return path
