"""`tinyear data DIR...`: show what the loader makes of dataset folders, before training on them.

A thin shell over `tinyear.host.data.load_dataset`: clips per split and label, where they come from,
the noise, the fingerprint; unreadable files are counted; a missing word or an empty folder is one line.
"""

from __future__ import annotations

from tinyear.device.cliutil import add_json_option, print_json

HELP = "show a dataset's clips per split and label (what teacher/distill will train on)"
DESCRIPTION = """\
Load one or more dataset folders the way `tinyear teacher` and `tinyear distill` do and print what
they hold: clips per split (train / validation / test) and label, whether each label's clips are real,
synthetic or cut from background noise, the noise recordings, the dataset fingerprint, and where its
caches go (the user's cache folder, never the dataset folder) and how big that folder is.

Layout: a folder per word (any audio format), `_unknown_/` and other folders for non-keywords,
`_background_noise_/` for long noise recordings, and optionally Speech Commands' validation_list.txt /
testing_list.txt. Without the lists, clips are split by speaker (the file name part before `_nohash_`).
Several folders load as one dataset (e.g. your recordings plus a synthetic fill).

examples:
  tinyear data ../shared/data/speech-commands-mini-train --allow-missing
  tinyear data my_recordings data/fill --words yes no stop go --json
"""


def add_arguments(parser) -> None:
    from tinyear.host.data import WORDS

    parser.add_argument("roots", metavar="DIR", nargs="+", help="dataset folder(s); several load as their union")
    parser.add_argument("--words", nargs="+", default=list(WORDS), metavar="WORD", help="the keywords")
    parser.add_argument("--seed", type=int, default=0, help="seed of the _unknown_ / _silence_ picks")
    parser.add_argument("--allow-missing", action="store_true", help="report words without clips instead of failing")
    parser.add_argument("--strict", action="store_true", help="fail on unreadable files instead of skipping them")
    add_json_option(parser, "one JSON object: the dataset summary")


def run(args) -> int:
    from tinyear.host.data import SPLITS, load_dataset

    from tinyear.host.cache import RULE, cache_root, folder_bytes

    from tinyear.host.keywords import parse_keywords

    words = [k.label for k in parse_keywords(args.words)]  # "lights on" names the lights_on folder
    dataset = load_dataset(args.roots, words, seed=args.seed, allow_missing=args.allow_missing,
                           skip_unreadable=not args.strict)
    folder = cache_root(dataset.cache_dir)
    summary = {**dataset.summary(), "cache": {"folder": str(folder) if folder else None,
                                              "bytes": folder_bytes(folder) if folder else 0, "rule": RULE}}
    if args.json:
        print_json(summary)
        return 0
    print(f"{', '.join(summary['roots'])}: {summary['clips']} clips, fingerprint {summary['fingerprint']}")
    print(f"{'label':<12}" + "".join(f"{s:>12}" for s in SPLITS) + "   source")
    for label in summary["labels"]:
        source = ", ".join(f"{k} {v}" for k, v in sorted(summary["sources"][label].items())) or "none"
        print(f"{label:<12}" + "".join(f"{summary['per_split'][s][label]:>12}" for s in SPLITS) + f"   {source}")
    noise = summary["noise"]
    print(f"background noise: {noise['recordings']} {noise['source']} recordings, {noise['train_seconds']} s in train")
    if summary["skipped_unreadable"]:
        print(f"skipped {summary['skipped_unreadable']} unreadable files")
    cache = summary["cache"]
    print(f"caches: {cache['folder']} ({cache['bytes'] / 2**20:,.0f} MB of waveforms there now)" if cache["folder"]
          else "caches: none (no writable cache folder; arrays are computed every time)")
    return 0
