"""`tinyear teacher DATA --out DIR`: train the built-in large CNN teacher on a dataset.

A thin shell over `tinyear.host.distill.train_teacher` (the same loop `tinyear distill` runs).
"""

from __future__ import annotations

from tinyear.device.cliutil import positive_int

from ..trainconfig import TEACHER_RECIPE
from ._trainopts import how_to_resume as INTERRUPTED  # what Ctrl-C's line adds
from ._trainopts import (add_data_arguments, add_loop_arguments, command_line, data_options, launch, report,
                         train_config)


HELP = "train the built-in large CNN teacher (>= 1M parameters), or a head over a pretrained backbone"
DESCRIPTION = """\
Train tinyear's built-in teacher, a plain CNN of about 1.4 million parameters over the shared log-mel
features, on labels alone. It is large in parameters but cheap in work (it halves the feature map four
times early), so two CPU cores train it in a few minutes. The result is a run folder that
`tinyear distill --teacher DIR` learns from.

Training features are made once: --variants augmented copies of every training clip (background
noise, time shift, gain, room reverb, speed), computed by the same frontend the device runs and
cached, with SpecAugment applied on the fly. The best epoch on the validation split is kept (best.pt);
training stops early after --patience epochs without improvement; every epoch writes last.pt (for
--resume), log.csv and curves.png; run.json is written last, when the run is finished.

examples:
  tinyear teacher data/synth --out runs/teacher
  tinyear teacher ../shared/data/speech-commands-mini-train data/fill --out runs/teacher-real --epochs 16
  tinyear teacher data/synth --out runs/teacher --resume          # after an interruption
  tinyear teacher data/synth --out runs/teacher --nproc 2          # two processes (DDP), this machine
  torchrun --nproc-per-node 4 -m tinyear.host.cli teacher data/synth --out runs/teacher --device cuda
  tinyear teacher data/synth --out runs/teacher-se --backbone speech-embedding

--backbone speech-embedding trains a small MLP head over Google's frozen speech_embedding instead
(its model files come in the pyopen-wakeword wheel: pip install 'tinyear[backbone]'; nothing is
downloaded). Clean-clip embeddings are cached; the head trains in seconds, chosen on validation. The
run folder (head.pt, run.json) is a teacher for `tinyear distill --teacher DIR` like any other.
"""


def add_arguments(parser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--arch", default="cnn-teacher", help="built-in teacher architecture (cnn-teacher)")
    add_loop_arguments(parser, **{k: TEACHER_RECIPE[k] for k in ("epochs", "patience", "lr")})
    from tinyear.host.backbone_spec import BACKBONES, HeadConfig

    parser.add_argument("--backbone", choices=list(BACKBONES), default=None,
                        help="train a head over this frozen pretrained backbone instead of the CNN")
    parser.add_argument("--head-epochs", type=int, default=HeadConfig().epochs, metavar="N",
                        help=f"with --backbone: epochs of the head (default {HeadConfig().epochs})")
    parser.add_argument("--head-variants", type=int, default=HeadConfig().variants, metavar="K",
                        help="with --backbone: also K augmented copies of each training clip (noise, reverb, shift, "
                             f"gain, as the students'), embedded once and cached (default {HeadConfig().variants})")
    parser.add_argument("--head-members", type=positive_int, default=HeadConfig().members, metavar="K",
                        help=f"with --backbone: heads trained from K seeds and averaged, exported as one int8 model "
                             f"(default {HeadConfig().members})")


def run(args) -> int:
    data = data_options(args)  # bad --words refused before torch loads
    if args.backbone:
        from tinyear.device.errors import TinyearError
        from tinyear.host.backbone import train_backbone_teacher
        from tinyear.host.backbone_spec import HeadConfig

        if args.head_variants < 0:
            raise TinyearError(f"--head-variants {args.head_variants}: give 0 or more augmented copies")

        info = train_backbone_teacher(args.data, args.out, backbone=args.backbone, data=data,
                                      config=HeadConfig(epochs=args.head_epochs, seed=args.seed, members=args.head_members,
                                                        variants=args.head_variants), force=args.force,
                                      progress=not args.quiet, command=command_line())
        report(info, args)
        return 0
    from tinyear.host.distill import train_teacher
    config = train_config(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                         patience=args.patience, seed=args.seed, label_smoothing=args.label_smoothing,
                         balance=args.balance, mixup=args.mixup, source_adversary=args.source_adversary)
    info = launch(args, train_teacher, args.data, args.out, arch=args.arch, data=data, config=config,
                  resume=args.resume, force=args.force, device=args.device, progress=not args.quiet,
                  command=command_line())
    report(info, args)
    return 0
