"""`tinyear mine MODEL DATA [DATA ...] --out DIR`: the windows a model fires on in negative streams."""

from __future__ import annotations

from tinyear.device.cliutil import add_json_option, add_threads_option, print_json

HELP = "hard negatives: the 1 s windows a model fires on in streams of training non-keywords, as _unknown_ clips"
DESCRIPTION = """\
Build a negative stream from the TRAINING split of DATA (its _unknown_ clips, other speech such as
../shared/data/other-speech's wake phrases, keyword clips cut so that only a fragment of the word
remains, and background noise), run MODEL over it with its own detection settings (the live
detector's decision gate; a run folder gets the kit's defaults), and write each window that fires as
a 1 s FLAC into DIR/_unknown_/, with a summary (how many, per hour of stream, which labels fired) in
DIR/mine-<model>-<seed>.json.

Each clip's name keeps its source clip's speaker key (suffixed when needed so that it hashes into the
train split), so DIR given as one more DATA folder to `tinyear distill` or `tinyear teacher` adds the
mined windows to the training split only, never to validation or test. Mine, retrain, mine again
with the new model: each round's clips are named by the model that fired, so rounds do not overwrite
each other. _unknown_ is capped per split by the dataset's unknown ratio, so a large DIR is sampled.

examples:
  tinyear mine runs/student ../shared/data/speech-commands-mini-train ../shared/data/other-speech --out data/mined
  tinyear mine keywords.tinyear data/real --out data/mined --minutes 60 --json
  tinyear distill data/real data/mined --no-teacher --out runs/student-2
"""


def add_arguments(parser) -> None:
    from tinyear.device.cliutil import positive_float
    from tinyear.host.mine import DEFAULT_MINUTES

    parser.add_argument("model", metavar="MODEL", help="a run folder (tinyear distill/teacher) or a .tinyear bundle")
    parser.add_argument("data", metavar="DATA", nargs="+", help="dataset folder(s) whose training split is used")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write _unknown_/ clips and the summary into")
    parser.add_argument("--minutes", type=positive_float, default=DEFAULT_MINUTES,
                        help="length of the negative stream (its clips are reused when it is longer than the pools)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the negative stream")
    add_threads_option(parser)
    add_json_option(parser, "one JSON object: the summary, with every clip written")


def run(args) -> int:
    from tinyear.host.mine import format_summary, mine

    result = mine(args.model, args.data, args.out, minutes=args.minutes, seed=args.seed, num_threads=args.threads,
                  progress=not args.json)
    if args.json:
        print_json(result)
    else:
        print("\n".join(format_summary(result)))
    return 0
