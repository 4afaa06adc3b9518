"""`tinyear pipeline`: the main job, from nothing (or a real dataset) to a verified keyword bundle."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from tinyear.device.cliutil import add_json_option, positive_float, positive_int, print_json

INTERRUPTED = "run the same command again to resume"

HELP = "the main job: data, teacher, distilled student, baseline, int8 export, evaluation, report"
DESCRIPTION = """\
Run every workstation step in order and write a report and a bundle. What the bundle runs (--ship):

  backbone  the default for synthetic speech alone (the default set, or your own words from text: no
            --data), when the backbone extra is installed: a head over the frozen speech_embedding
            (three seeds averaged), exported to int8 with the backbone's own files in the bundle. On
            the real ten keywords 81%, where a student trained on the same synthetic speech gets
            67-71%; it costs 3.4 MB and ~5 ms a 100 ms hop (a Pi, not a microcontroller)
  student   the default with --data, or --ship student: a ~30 KB int8 student over the shared
            log-mel features, distilled from a teacher; also runs on a microcontroller

  1. data      synthesize the default keyword set with espeak-ng/flite (or, with --data, use that
               real set and synthesize only what it lacks: thin words, _unknown_, _silence_)
  2. teacher   backbone: train the head, which is the model (steps 3-4 are skipped).
               student: train the built-in large CNN and, with the backbone extra, the head; the one
               better on the validation split teaches (--teacher PATH: the given teachers instead, no
               teacher training). On synthetic speech alone the head teaches without that contest, and
               step 5 takes the distilled student of the head or of given teachers: a synthetic
               validation split cannot see what carries to people (their students are 4-13 points
               ahead on real clips; a dscnn-m taught by ../shared/teachers' DS-CNN-L reaches 81%)
  3. student   distill the student from the teacher (cached teacher outputs)
  4. baseline  the same student on labels alone: what distillation has to beat
  5. export    the head, or the student that did better on the validation split (the distilled one,
               unless the baseline beat it; with --data, on its recorded clips alone, whose labels a
               teacher that has heard people does not dispute), to full-integer int8 TFLite
               (litert-torch PT2E), verified: float vs int8, TFLite Micro
  5b. calibrate per-class thresholds for --fa-per-hour false accepts/hour (default 5) on validation
               streams built from the data (tinyear calibrate); --no-calibrate keeps the defaults
  6. evaluate  teacher, baseline, student and bundle side by side: accuracy on the test split and on
               real speech (the shared Speech Commands test part, when present), size, MACs, latency
  7. report    OUT/report.md with the table and plots; the bundle is OUT/keywords.tinyear

Rerunning the same command resumes: finished steps are skipped, an interrupted training continues
from its last epoch. --quick is a small version for CI and a first look (a few minutes, with --data
too: it fills thin words with 100 synthetic clips): a smoke test, and its output and report say so.

examples:
  tinyear pipeline                                     # synthetic speech, into runs/default
  tinyear pipeline --ship student --out runs/mcu       # the ~30 KB student, for a microcontroller
  tinyear pipeline --quick --out runs/quick
  tinyear pipeline --words "lights on" "lights off" lamp=[[l'amp]] --out runs/home   # your own words
  tinyear pipeline --words computer jarvis snowboy --other-speech ../shared/data/speech-commands-mini-train
  tinyear pipeline --ship student --student dscnn-m --teacher ../shared/teachers/dscnn-l/model.pb \\
      --teacher-class _silence_=labels --out runs/syn-dscnnl   # synthetic speech, a pretrained teacher: 81%
  tinyear pipeline --data ../shared/data/speech-commands-mini-train --out runs/real
  tinyear pipeline --out runs/default --force          # redo everything with these settings
  tinyear pipeline --out runs/default --nproc 2        # each training step in two processes (DDP)
  tinyear pipeline --data ../shared/data/speech-commands-mini-train --out runs/ship --student dscnn-m \\
      --student-epochs 80 --student-patience 80 --no-backbone --teacher ../shared/teachers/dscnn-l/model.pb \\
      --teacher-class _silence_=labels                 # the shipped models/keywords.tinyear's student
"""


def add_arguments(parser) -> None:
    from tinyear.host.pipeline import PipelineConfig

    d = PipelineConfig()
    parser.add_argument("--out", default="runs/default", metavar="DIR", help="where runs, bundle and report go")
    parser.add_argument("--data", default=None, metavar="DIR",
                        help="a real dataset (Speech Commands layout) to train on; what it lacks is synthesized")
    parser.add_argument("--words", nargs="+", default=None, metavar="WORD",
                        help="your keywords, from text alone: words, quoted phrases (\"lights on\"), espeak-ng phonemes "
                             "([[l'aIts]]) or NAME=either; synthesized like `tinyear synth --words` (default: the ten "
                             "Speech Commands words; with --data, its word folders)")
    parser.add_argument("--fold-unknown", action="store_true",
                        help="with --data and --words: train the dataset's other word folders as _unknown_")
    parser.add_argument("--quick", action="store_true", help="small data and few epochs: a smoke test (CI, a first look)")
    parser.add_argument("--real-test", default=None, metavar="DIR",
                        help="real-speech evaluation folder (default: ../shared/data/speech-commands-v2-test-public "
                             "beside this checkout, when present); evaluation only")
    parser.add_argument("--no-real-test", action="store_true", help="do not evaluate on real speech")
    parser.add_argument("--student", default=None, help=f"registered student (default {d.student})")
    parser.add_argument("--per-word", type=positive_int, default=None, metavar="N",
                        help=f"synthetic clips per word for the default set (default {d.per_word})")
    parser.add_argument("--synth-mix", type=int, default=None, metavar="N",
                        help="with --data: also N synthetic clips of each word that has enough real ones, so that a "
                             f"synthetic voice does not predict the label (default {d.mix_per_word})")
    parser.add_argument("--window-variants", type=int, default=None, metavar="W",
                        help="stream-aware windows per training clip for every training step (word off-centre, cut "
                             f"off, beside another word; tinyear distill --help; default {d.window_variants})")
    parser.add_argument("--level-norm", type=float, default=None, metavar="DB",
                        help="level-normalise each model window by at most DB dB (a quiet or hot microphone looks "
                             f"nominal; tinyear distill --help; default {d.level_norm_db:g}; 0: off)")
    parser.add_argument("--teacher-epochs", type=positive_int, default=None, metavar="N",
                        help=f"teacher epochs (default {d.teacher_epochs})")
    parser.add_argument("--student-epochs", type=positive_int, default=None, metavar="N",
                        help=f"student and baseline epochs (default {d.student_epochs})")
    parser.add_argument("--student-patience", type=positive_int, default=None, metavar="N",
                        help=f"stop the student and baseline after N epochs without a better validation accuracy "
                             f"(default {d.student_patience}); N >= --student-epochs runs the whole schedule")
    parser.add_argument("--teacher", action="append", default=None, metavar="SPEC",
                        help="distill from this teacher instead of training one (any spec tinyear distill --teacher "
                             "takes, options after commas; repeat for an ensemble); recorded in pipeline.json")
    parser.add_argument("--teacher-class", nargs="+", default=None, metavar="LABEL=SOURCE",
                        help="with --teacher: where a class's target comes from, LABEL=labels (no teacher) or "
                             "LABEL=N (teacher N), as tinyear distill takes it (e.g. _silence_=labels)")
    parser.add_argument("--no-backbone", action="store_true",
                        help=f"train only the built-in CNN teacher, not also the {d.backbone} head")
    parser.add_argument("--ship", choices=("auto", "student", "backbone"), default=None,
                        help="what the bundle runs: the int8 student, or an int8 head over the speech_embedding "
                             "backbone carried in the bundle (bigger, ~5 ms a hop; what works on people for words "
                             "nobody recorded); auto (default): the backbone for synthetic speech alone (no --data, "
                             "no --teacher), when installed")
    parser.add_argument("--other-speech", nargs="+", default=None, metavar="DIR",
                        help="real speech without your keywords (e.g. ../shared/data/speech-commands-mini-train): "
                             "its validation clips join the calibration stream, so thresholds hold on people talking")
    parser.add_argument("--near-miss", type=int, default=None, metavar="N",
                        help=f"N synthetic near-miss _unknown_ clips per keyword (tinyear synth --help; default "
                             f"{d.near_miss})")
    parser.add_argument("--qat", action="store_true", help="quantization-aware fine-tune before int8 conversion")
    parser.add_argument("--unknown-offset", default=None, metavar="X|auto",
                        help="added to the student's _unknown_ logit at export: 0 (none, the default), auto "
                             "(chosen on the validation split: tinyear export --help) or a number")
    parser.add_argument("--seed", type=int, default=None, help="seed of data, training and calibration (default 0)")
    parser.add_argument("--jobs", type=positive_int, default=None, help="processes for synthesis and features "
                        "(default: all cores)")
    parser.add_argument("--nproc", type=positive_int, default=1, metavar="N",
                        help="processes for each training step (DistributedDataParallel on this machine: gloo on "
                             "the CPU, a GPU each on CUDA; docs/SCALE.md)")
    parser.add_argument("--fa-per-hour", type=float, default=None, metavar="X",
                        help=f"calibrate the bundle's thresholds to X false accepts per hour (default {d.fa_per_hour:g})")
    parser.add_argument("--max-latency", type=positive_float, default=None, metavar="MS",
                        help="calibration takes no point whose median detection delay on the validation stream is "
                             f"longer, unless no point within the budget is shorter (tinyear calibrate --help; default {d.max_latency_ms:g})")
    parser.add_argument("--any-latency", action="store_true", help="calibrate with no bound on the detection delay")
    parser.add_argument("--no-calibrate", action="store_true", help="keep the default detection thresholds")
    parser.add_argument("--force", action="store_true", help="redo every step (the data is reused if identical)")
    add_json_option(parser, "the summary as one JSON object at the end")


def run(args) -> int:
    from tinyear.device.errors import TinyearError
    from tinyear.host import dist
    from tinyear.host.commands._trainopts import check_level_norm
    from tinyear.host.pipeline import PipelineConfig, quick_config, run_pipeline

    if dist.launched():
        raise TinyearError("the pipeline starts its own training processes: run it once with --nproc N, not under "
                           "torchrun (for several machines, run its steps under torchrun: docs/SCALE.md)")

    overrides = {k: v for k, v in (("student", args.student), ("per_word", args.per_word),
                                   ("teacher_epochs", args.teacher_epochs), ("student_epochs", args.student_epochs),
                                   ("student_patience", args.student_patience),
                                   ("seed", args.seed), ("mix_per_word", args.synth_mix),
                                   ("window_variants", args.window_variants), ("level_norm_db", args.level_norm),
                                   ("words", tuple(args.words) if args.words else None), ("ship", args.ship),
                                   ("near_miss", args.near_miss),
                                   ("other_speech", tuple(str(Path(d).resolve()) for d in args.other_speech)
                                    if args.other_speech else None)) if v is not None}
    for folder in args.other_speech or ():
        if not Path(folder).is_dir():
            raise TinyearError(f"--other-speech {folder}: no such folder")
    if args.near_miss is not None and args.near_miss < 0:
        raise TinyearError("--near-miss must be 0 or more")
    if args.window_variants is not None and args.window_variants < 0:
        raise TinyearError("--window-variants must be 0 or more")
    if args.level_norm is not None:
        check_level_norm(args.level_norm)
    if args.qat:
        overrides["qat"] = True
    if args.unknown_offset is not None:
        from tinyear.host.offset import parse_offset

        overrides["unknown_offset"] = parse_offset(args.unknown_offset)
    if args.fold_unknown:
        overrides["fold_unknown"] = True
    if args.no_calibrate and args.fa_per_hour is not None:
        from tinyear.device.errors import TinyearError

        raise TinyearError("--no-calibrate and --fa-per-hour contradict each other; give one")
    if args.no_calibrate and (args.max_latency is not None or args.any_latency):
        raise TinyearError("--no-calibrate keeps the default thresholds: --max-latency/--any-latency bound a calibration")
    if args.max_latency is not None or args.any_latency:
        from tinyear.host.commands.calibrate import latency_bound

        overrides["max_latency_ms"] = latency_bound(args)
    if args.no_calibrate:
        overrides["fa_per_hour"] = None
    elif args.fa_per_hour is not None:
        if not args.fa_per_hour >= 0:
            from tinyear.device.errors import TinyearError

            raise TinyearError(f"--fa-per-hour {args.fa_per_hour:g}: give 0 or more false accepts per hour")
        overrides["fa_per_hour"] = args.fa_per_hour
    if args.teacher_class:
        if not args.teacher:
            raise TinyearError("--teacher-class says where a given teacher's classes come from: give a --teacher too")
        overrides["teacher_classes"] = tuple(args.teacher_class)
    if args.no_backbone:
        overrides["backbone"] = ""
    config = quick_config(**overrides) if args.quick else PipelineConfig(**overrides)
    real_test = False if args.no_real_test else args.real_test
    summary = run_pipeline(args.out, data=args.data, config=config, real_test=real_test, teachers=args.teacher,
                           force=args.force,
                           progress=True, jobs=args.jobs, command=shlex.join(["tinyear", *sys.argv[1:]]),
                           nproc=args.nproc)
    if args.json:
        print_json(summary)
        return 0
    print(f"report: {summary['report']}")
    print(f"bundle: {summary['bundle']}")
    for row in summary["rows"]:
        acc = ", ".join(f"{k} {v:.1f}%" for k, v in row["accuracy"].items())
        print(f"  {row['name']:<18} {acc}")
    print(f"took {summary['seconds'] / 60:.1f} min")
    if summary.get("smoke_test"):
        print(f"note: this was {summary['smoke_test']}")
    return 0
