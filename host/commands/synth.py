"""`tinyear synth OUT`: write a synthetic keyword dataset, or fill the gaps of a real one.

A thin shell over `tinyear.host.synth`: options in, one line per outcome out, `--json` for programs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tinyear.device.cliutil import add_json_option, positive_int, print_json, unit_float

HELP = "write a synthetic keyword dataset (espeak-ng, flite), or fill a real one's gaps"
DESCRIPTION = """\
Write a dataset in the Speech Commands layout (a folder per word, `_unknown_/` with other words,
`_background_noise_/`), spoken by text-to-speech engines: espeak-ng's English accents and voice
variants, and flite's voices when flite is installed (apt-get install flite). Every speaker gets its
own vocal-tract factor and pitch; every clip its own rate, intonation, level and placement. The same
--seed gives bit-identical files. Clips are written to a staging folder beside OUT (.OUT.*.part) and
renamed to OUT when complete.

`tinyear teacher` and `tinyear distill` read the result like any real dataset, split by speaker.

With --fill-from REAL, only what the real dataset lacks is synthesized: words with fewer than
--min-per-word real clips, `_unknown_` up to as many clips as an average word, and background noise if
it has none. The summary says what was filled; train on both folders together (the union).

examples:
  tinyear synth data/synth                                   # the twelve Speech Commands classes
  tinyear synth data/colours --words red green blue --per-word 800 --seed 3
  tinyear synth data/home --words "lights on" "lights off" lamp=[[l'amp]]   # phrases, phonemes
  tinyear synth data/fill --fill-from ../shared/data/speech-commands-mini-train
  tinyear synth data/synth --noise my_kitchen_recordings/ --jobs 2 --json
"""


def add_arguments(parser) -> None:
    from tinyear.host.data import WORDS

    parser.add_argument("out", metavar="OUT", help="folder to create (must not exist, unless --force)")
    parser.add_argument("--words", nargs="+", default=list(WORDS), metavar="WORD",
                        help="the keywords: words, quoted phrases (\"lights on\" -> label lights_on), espeak-ng "
                             "phonemes ([[l'aIts]]), or NAME=either (lights=[[l'aIts]]); default the ten Speech "
                             "Commands words")
    parser.add_argument("--per-word", type=positive_int, default=None, metavar="N",
                        help="clips per word (default 500; with --fill-from, per filled word, default the median "
                             "real count of the other words)")
    parser.add_argument("--unknown", type=int, default=None, metavar="N",
                        help="clips of other words for _unknown_ (default: --per-word)")
    parser.add_argument("--near-miss", type=int, default=0, metavar="N",
                        help="also N _unknown_ clips per keyword of words close to it: the words of a phrase, longer "
                             "words holding it (yes -> yesterday), one-phoneme swaps of its espeak-ng phonemes "
                             "(yes -> [[j'Is]]); default 0")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same files")
    parser.add_argument("--jobs", type=positive_int, default=None, metavar="J", help="processes (default: all cores)")
    parser.add_argument("--engines", nargs="+", choices=["espeak-ng", "flite"], default=None,
                        help="speech engines (default: espeak-ng, plus flite when installed)")
    parser.add_argument("--flite-share", type=unit_float, default=None, metavar="F",
                        help="fraction of clips spoken by flite (default 0.35)")
    parser.add_argument("--noise", metavar="DIR", default=None,
                        help="background recordings to copy into _background_noise_ (default: synthetic noise)")
    parser.add_argument("--fill-from", metavar="REAL", nargs="+", default=None,
                        help="real dataset folder(s): synthesize only what they lack")
    parser.add_argument("--min-per-word", type=positive_int, default=200, metavar="N",
                        help="with --fill-from: fill words with fewer real clips than this")
    parser.add_argument("--mix", type=int, default=0, metavar="N",
                        help="with --fill-from: also N synthetic clips of each word the real data covers, so that a "
                             "synthetic voice does not predict the label (default 0; see docs/DATA.md)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it holds another synthetic dataset")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_json_option(parser, "one JSON object: the dataset summary")


def run(args) -> int:
    from dataclasses import replace

    from tinyear.host.data import SYNTH_MANIFEST, load_dataset
    from tinyear.host.fill import fill_missing
    from tinyear.host.synth import DEFAULT_SYNTH, synthesize

    from tinyear.device.errors import TinyearError
    from tinyear.host.keywords import parse_keywords
    from tinyear.host.tts import require_espeak

    keywords = parse_keywords(args.words)
    require_espeak()
    keywords = parse_keywords(keywords, check_speech=True)
    words = [k.label for k in keywords]
    config = DEFAULT_SYNTH if args.flite_share is None else replace(DEFAULT_SYNTH, flite_share=args.flite_share)
    engines = args.engines or "auto"
    progress = not args.quiet
    if args.near_miss < 0:
        raise TinyearError("--near-miss counts clips per keyword: give 0 or more")
    if args.fill_from and args.near_miss:
        raise TinyearError("--near-miss works without --fill-from for now; synthesize near misses into their own folder")
    if args.fill_from:
        dataset = fill_missing(args.fill_from, args.out, keywords, min_per_word=args.min_per_word,
                               per_word=args.per_word, mix_per_word=args.mix, seed=args.seed,
                               jobs=args.jobs, engines=engines, config=config, progress=progress,
                               force=args.force)
    else:
        synthesize(args.out, keywords, per_word=args.per_word or 500, unknown=args.unknown, seed=args.seed,
                   jobs=args.jobs, engines=engines, noise_dir=args.noise, config=config, force=args.force,
                   progress=progress, near_miss=args.near_miss)
        dataset = load_dataset(args.out, words, seed=args.seed, quiet=True)
    summary = dataset.summary()
    if args.json:
        print_json({"out": args.out, **summary, "keywords": [vars(k) for k in keywords]})
        return 0
    per = summary["per_split"]
    name = " + ".join([*(args.fill_from or []), args.out])
    print(f"{name}: {summary['clips']} clips ({', '.join(f'{s} {sum(per[s].values())}' for s in per)}), "
          f"labels {' '.join(summary['labels'])}, fingerprint {summary['fingerprint']}", file=sys.stdout)
    print("spoken: " + ", ".join(_spoken(k) for k in keywords), file=sys.stdout)
    if args.near_miss:
        near = json.loads((Path(args.out) / SYNTH_MANIFEST).read_text()).get("near_misses", {})
        print("near misses in _unknown_: " + "; ".join(f"{label}: {' '.join(texts)}" for label, texts in near.items()),
              file=sys.stdout)
    return 0



def _spoken(keyword) -> str:
    """What was said for a keyword: `label "text" /phonemes/`, phonemes by espeak-ng only."""
    said = f'{keyword.label} "{keyword.text}"' if keyword.text != keyword.label else keyword.label
    only = " (espeak-ng only)" if keyword.is_phonemes else ""
    return f"{said} /{keyword.phonemes}/{only}"
