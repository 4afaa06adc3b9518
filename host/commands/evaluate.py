"""`tinyear evaluate MODEL DATA`: accuracy, per-class precision/recall/F1 and a confusion matrix."""

from __future__ import annotations

from tinyear.device.cliutil import add_json_option, add_threads_option, print_json

HELP = "score a bundle or run on a dataset: accuracy, per-class precision/recall/F1, confusion matrix"
DESCRIPTION = """\
Score a model on labelled clips: accuracy, precision, recall and F1 per class, macro F1, and (with
--out) a confusion-matrix PNG and metrics.json.

MODEL is a .tinyear bundle (run exactly as a device runs it: int8, LiteRT) or a run folder from
`tinyear distill` (its float student). DATA is a dataset folder (a folder per word) or several.
The model's labels decide how the data is read: its words are keyword folders, other word folders count
as _unknown_ when the model has that label, _silence_ likewise. Data with classes the model cannot name
is refused, naming them.

--split picks the dataset's own split (train, validation, test: list files or speaker hash, with
_unknown_ and _silence_ at the training ratios), or `all`: every clip of the folder as it is (for a
folder that IS an evaluation set, such as the public part of the Speech Commands test set). The
default, `auto`, takes `all` for a folder without validation/testing lists that looks like an
evaluation set (a "test" in its name, or _silence_ clips but no _background_noise_), else `test`; the
output says which split it scored and why ("split" and "split_reason" in --json). Every class of the
data scored as _unknown_ is listed, with its clip count ("folded_into_unknown"). Data with none of
the model's words is refused.

--stream scores the bundle as a listener hears it instead: a long stream built from the clips of
--split (keywords, other words and other speech over background noise; see tinyear calibrate), run
through the live detector once, its own operating point and a sweep of one threshold for every keyword:
recall against false accepts per hour (with --out: curve.csv, curve.png, the stream and its truth).
--peer adds the MLPerf Tiny reference model's curve on the same stream (../shared/tools/README.md).

examples:
  tinyear evaluate keywords.tinyear data/synth --split test
  tinyear evaluate keywords.tinyear ../shared/data/speech-commands-v2-test-public --out report/real   # auto: all
  tinyear evaluate runs/student data/synth --json
  tinyear evaluate keywords.tinyear ../shared/data/speech-commands-v2-test-public --split all --stream --out report/stream
"""


def add_arguments(parser) -> None:
    from tinyear.host.evaluate import SPLIT_CHOICES

    parser.add_argument("model", metavar="MODEL", help="a .tinyear bundle or a run folder")
    parser.add_argument("data", metavar="DATA", nargs="+", help="dataset folder(s); several load as their union")
    parser.add_argument("--split", choices=SPLIT_CHOICES, default="auto",
                        help="which clips: a split of the dataset, all of them as they are, or auto (default: "
                             "all for an evaluation-set folder, else test; see above)")
    parser.add_argument("--out", metavar="DIR", help="write confusion.png and metrics.json here")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dataset's _unknown_ / _silence_ picks")
    stream = parser.add_argument_group("streams (--stream)")
    stream.add_argument("--stream", action="store_true", help="score detection on a long stream: recall vs false accepts/hour")
    stream.add_argument("--minutes", type=float, default=15.0, help="with --stream: length of the stream")
    stream.add_argument("--peer", metavar="TFLITE", help="with --stream: the MLPerf Tiny kws_ref_model.tflite, for its curve beside ours")
    stream.add_argument("--peer-python", metavar="PY", help="with --peer: a Python with tensorflow, soundfile and ai-edge-litert")
    stream.add_argument("--peer-tools", metavar="DIR", help="with --peer: the folder of peer_mlperf_kws.py (default ../shared/tools)")
    add_threads_option(parser)
    add_json_option(parser, "one JSON object with every metric")


def run(args) -> int:
    if args.stream:
        return run_stream(args)
    from tinyear.host.evaluate import evaluate, format_result, load_scorer

    scorer = load_scorer(args.model, num_threads=args.threads)
    result = evaluate(args.model, args.data, split=args.split, out_dir=args.out, seed=args.seed,
                      progress=not args.json, scorer=scorer)
    if args.json:
        print_json(result)
    else:
        print("\n".join(format_result(result)))
    return 0


def run_stream(args) -> int:
    from tinyear.host.streamcurve import evaluate_stream, format_stream_result

    result = evaluate_stream(args.model, args.data, split=args.split, minutes=args.minutes, seed=args.seed,
                             out_dir=args.out, peer_model=args.peer, peer_python=args.peer_python,
                             peer_tools=args.peer_tools, num_threads=args.threads, progress=not args.json)
    if args.json:
        print_json(result)
    else:
        print("\n".join(format_stream_result(result)))
    return 0
