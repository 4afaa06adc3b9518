"""Options that `tinyear teacher` and `tinyear distill` share (data, features, the loop), defined once.

The loop options' defaults are read from `TrainConfig` (`tinyear.host.trainconfig`, which loads no
torch), never typed here. Imports only the standard library, `tinyear.device.cliutil` and torch-free
host modules at module level, so `--help` is cheap.
"""

from __future__ import annotations

import argparse
import sys

from tinyear.device.cliutil import add_json_option, positive_float, positive_int, print_json, unit_float
from tinyear.device.errors import TinyearError
from tinyear.host.cache import RULE as CACHE_RULE
from tinyear.host.trainconfig import BALANCE, DataOptions, TrainConfig, defaults as train_defaults


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    d = train_defaults(DataOptions)
    parser.add_argument("data", metavar="DATA", nargs="+",
                        help="dataset folder(s), a folder per word (several: their union, e.g. real + synthetic fill)")
    parser.add_argument("--out", required=True, metavar="DIR", help="run folder to write (best.pt, last.pt, log.csv, "
                        "curves.png, run.json)")
    parser.add_argument("--words", nargs="+", default=None, metavar="WORD",
                        help="keywords: the dataset's folders to learn (\"lights on\" names the lights_on folder; "
                             "default: yes no up down left right on off stop go)")
    parser.add_argument("--variants", type=positive_int, default=d["variants"], metavar="K",
                        help="augmented copies of each training clip, made once and cached (noise, shift, gain, "
                             "reverb, speed); each epoch draws one per clip")
    parser.add_argument("--no-augment", action="store_true",
                        help="no waveform augmentation and no SpecAugment (then --variants 1 is enough)")
    parser.add_argument("--gain-db", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                        help="range of the random gain of each variant, dB (default %g %g); microphones are 20-30 dB "
                             "quieter or hotter than training data, e.g. --gain-db -30 10 (clipped to [-1, 1])"
                             % _augment_default("gain_db"))
    parser.add_argument("--clip-prob", type=unit_float, default=0.0, metavar="P",
                        help="share of variants driven into clipping (peak %g..%g dB above full scale), as a hot "
                             "microphone clips (default 0: off)" % _augment_default("clip_drive_db"))
    parser.add_argument("--mix-variants", type=int, default=d["mix_variants"], metavar="M",
                        help="mixture variants per clip on top of --variants: two clips added at a random energy "
                             "share, labels mixed alike; a teacher judges the mixed waveform itself, cached")
    parser.add_argument("--unknown-ratio", type=positive_float, default=d["unknown_ratio"], metavar="R",
                        help="_unknown_ clips per split as a multiple of the mean keyword count, spread evenly over "
                             "the other words (default %(default)g; e.g. 2 to use more of a large set of real "
                             "non-keyword speech)")
    parser.add_argument("--window-variants", type=int, default=d["window_variants"], metavar="W",
                        help="stream-aware windows per clip on top: 1 s cut from the clip between neighbours (another "
                             "clip, noise or nothing), the word's onset anywhere, cut off at an edge, two words in "
                             "one window; labelled by the share of the word's active energy inside (>= 0.8 the word, "
                             "<= 0.3 _unknown_, soft between) or judged by a --teacher-cache teacher; cached")
    parser.add_argument("--level-norm", type=float, default=d["level_norm_db"], metavar="DB",
                        help="level-normalise each model window in the frontend: its loudest value moved to a fixed "
                             "level by at most DB dB either way, so a quiet or hot microphone looks nominal (0: off, "
                             "the features of runs made before it). The bundle carries it; the device applies it")
    parser.add_argument("--data-seed", type=int, default=d["data_seed"], metavar="S",
                        help="seed of the dataset's _unknown_/_silence_ picks and of the augmented variants")
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help=f"where cached features go (the rule: {CACHE_RULE})")
    parser.add_argument("--jobs", type=positive_int, default=None, metavar="J",
                        help="processes for feature making (default: all cores)")


def add_loop_arguments(parser: argparse.ArgumentParser, *, epochs: int | None = None, patience: int | None = None,
                       lr: float | None = None) -> None:
    """The training loop's options, defaults from TrainConfig; a command may give its own recipe's
    epochs, patience and lr (the teacher's differ)."""
    d = train_defaults()
    parser.add_argument("--epochs", type=positive_int, default=d["epochs"] if epochs is None else epochs,
                        help="most epochs")
    parser.add_argument("--patience", type=positive_int, default=d["patience"] if patience is None else patience,
                        help="stop after this many epochs without a better validation accuracy")
    parser.add_argument("--batch-size", type=positive_int, default=d["batch_size"], metavar="B")
    parser.add_argument("--lr", type=positive_float, default=d["lr"] if lr is None else lr,
                        help="peak learning rate (AdamW, one-cycle)")
    parser.add_argument("--weight-decay", type=float, default=d["weight_decay"], metavar="WD")
    parser.add_argument("--label-smoothing", type=unit_float, default=d["label_smoothing"], metavar="E")
    parser.add_argument("--balance", choices=list(BALANCE), default=d["balance"],
                        help="how epochs draw clips: each class equally and, within a class, real and synthetic "
                             "equally (source); each class equally (class); every clip once, shuffled (none)")
    parser.add_argument("--mixup", type=unit_float, default=d["mixup"], metavar="P",
                        help="fraction of each batch mixed with another clip (energies added; labels mixed alike; "
                             "an online teacher judges the mixture)")
    parser.add_argument("--source-adversary", type=float, default=d["source_adversary"], metavar="W",
                        help="strength of the source adversary (default %(default)g: off; 1 measured, "
                             "docs/BENCHMARKS.md): a head tries to tell real from synthetic clips of the same word by "
                             "the model's features and the model learns, by a reversed gradient, not to let it, so "
                             "what synthetic clips teach carries over to people. Needs words with both real and "
                             "synthetic clips (tinyear synth OUT --fill-from REAL --mix 300)")
    parser.add_argument("--seed", type=int, default=d["seed"], help="seed of the weights, batches and masks: the same "
                        "seed gives the same weights on the CPU")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:1, ...; "
                        "under torchrun or --nproc each process takes the GPU of its local rank")
    parser.add_argument("--nproc", type=positive_int, default=1, metavar="N",
                        help="train in N processes on this machine (DistributedDataParallel, started by torch's "
                             "launcher as torchrun --nproc-per-node N would; gloo on the CPU, a GPU each on CUDA; "
                             "--batch-size stays the global batch); for several machines run the same command under "
                             "torchrun instead (docs/SCALE.md)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --out (same options)")
    parser.add_argument("--force", action="store_true", help="start over in an --out that holds a run")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    add_json_option(parser, "one JSON object: the run summary (run.json)")


def train_config(**kwargs):
    """TrainConfig(**kwargs), its complaints as one-line user errors."""
    try:
        return TrainConfig(**kwargs)
    except ValueError as exc:
        raise TinyearError(f"{exc}; see --help") from None


def _augment_default(name: str):
    from tinyear.host.augment import AugmentConfig  # numpy and scipy: no torch

    return getattr(AugmentConfig, name)


def data_options(args):
    from tinyear.host.augment import AugmentConfig

    from tinyear.host.keywords import parse_keywords

    if args.mix_variants < 0 or args.window_variants < 0:
        raise TinyearError("--mix-variants and --window-variants must be 0 or more")
    if args.gain_db is not None and (args.no_augment or args.gain_db[0] > args.gain_db[1]):
        raise TinyearError("--gain-db LO HI needs LO <= HI and augmentation on (not --no-augment)")
    check_level_norm(args.level_norm)
    if args.clip_prob and args.no_augment:
        raise TinyearError("--clip-prob needs augmentation on (not --no-augment)")
    augment = AugmentConfig.off() if args.no_augment else AugmentConfig(
        **({"gain_db": tuple(args.gain_db)} if args.gain_db is not None else {}),
        **({"clipping": True, "clip_prob": args.clip_prob} if args.clip_prob else {}))
    # --words name folders here: "lights on" means the lights_on folder; nothing is spoken.
    words = tuple(k.label for k in parse_keywords(args.words)) if args.words is not None else None
    return DataOptions(roots=tuple(args.data), words=words,
                       data_seed=args.data_seed, variants=args.variants, augment=augment,
                       cache_dir=args.cache_dir, jobs=args.jobs, mix_variants=args.mix_variants,
                       unknown_ratio=args.unknown_ratio, window_variants=args.window_variants,
                       level_norm_db=args.level_norm)


def launch(args, fn, *fn_args, **fn_kwargs):
    """fn(*fn_args, **fn_kwargs) here, or in --nproc processes (tinyear.host.dist.launch): rank 0's result."""
    from tinyear.host.dist import launch as dist_launch

    return dist_launch(args.nproc, fn, *fn_args, **fn_kwargs)


def command_line() -> str:
    return " ".join(["tinyear", *sys.argv[1:]])


def report(info: dict, args) -> None:
    """The run's outcome: JSON for programs, else a few lines for people; from rank 0 alone under torchrun."""
    import os

    if os.environ.get("RANK", "0") != "0":
        return
    if args.json:
        print_json(info)
        return
    m = info["metrics"]
    parts = [f"{split} accuracy {100 * v['accuracy']:.1f}%" for split, v in m.items()]
    teacher = info.get("teacher")
    print(f"{args.out}: {info['kind']} {info['name']} ({info['params']:,} parameters, {info['macs'] / 1e6:.2f} M MACs), "
          f"best epoch {info['best_epoch']} of {info['epochs_run']}, {', '.join(parts)}"
          + (f"; teacher validation accuracy {100 * teacher['validation_accuracy']:.1f}%" if teacher else "")
          + f"; {info['wall_seconds']:.0f} s")


def how_to_resume(args) -> str:
    """What an interrupted training run says: --resume continues from the last finished epoch (last.pt
    in --out); before the first epoch there is nothing to continue and the same command starts again."""
    from pathlib import Path

    from tinyear.host import runs

    if (Path(args.out) / runs.LAST).exists():
        again = "run the same command again to resume" if args.resume else "add --resume to the same command to resume"
        return f"{again} (from the last finished epoch)"
    return "no epoch had finished; run the same command again to start over"


def check_level_norm(db: float) -> None:
    """--level-norm in range (the frontend's own limit), else one line."""
    from tinyear.device.features import LEVEL_NORM_MAX_DB

    if not 0.0 <= db <= LEVEL_NORM_MAX_DB:
        raise TinyearError(f"--level-norm {db:g}: give 0 (off) to {LEVEL_NORM_MAX_DB:g} dB, e.g. 30")
