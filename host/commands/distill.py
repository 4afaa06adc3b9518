"""`tinyear distill DATA --teacher T --out DIR`: train a small student from a teacher (or, with
`--no-teacher`, the same student on labels alone: the baseline).

A thin shell over `tinyear.host.distill.distill`.
"""

from __future__ import annotations

from tinyear.device.cliutil import unit_float, positive_float
from tinyear.device.errors import TinyearError

from ..defaults import DEFAULT_STUDENT
from ._trainopts import how_to_resume as INTERRUPTED  # what Ctrl-C's line adds
from ._trainopts import (add_data_arguments, add_loop_arguments, command_line, data_options, launch, report,
                         train_config, train_defaults)


HELP = "train a small student from a teacher (knowledge distillation), or alone with --no-teacher"
DESCRIPTION = """\
Train a registered student (a small model over the shared log-mel features) with

    loss = (1 - alpha) * CE(student, labels) + alpha * T^2 * KL(teacher_T || student_T)

where _T is a softmax at temperature T. --kd-loss mse puts the mean squared difference of teacher and
student logits in place of the KL term. --no-teacher trains the same student on labels alone through
the same code (alpha = 0): the baseline a distilled student has to beat.

The teacher (--teacher) is a run folder from `tinyear teacher`, a TFLite file (raw audio or the shared
features in; float or int8), a TensorFlow frozen graph (.pb; needs the tensorflow extra) or SavedModel
folder, a TorchScript file, a local Hugging Face audio-classification folder, or a module:function
factory (prefix with run:, tflite:, tf:, savedmodel:, torchscript:, huggingface: or factory: where the
file does not tell). Options follow the path after commas: labels=FILE (default: labels.txt beside the
model), scores=logits|probs (default: detected), input=TENSOR and output=TENSOR for a graph (default
wav_data:0 -> labels_softmax:0, the Speech Commands convention), weight=W in an ensemble.
Its labels are mapped to the student's by name; the probabilities of teacher labels the student lacks
are summed into _unknown_ (--label-map TEACHER=STUDENT to map others by hand, N:TEACHER=STUDENT for
teacher N only).

--teacher may be repeated: the teachers' probabilities, in the student's labels, are averaged with their
weights. --teacher-class LABEL=labels leaves a class to the labels (e.g. _silence_, which pretrained
keyword models often get wrong); LABEL=N takes it from teacher N alone. Choose among such settings on
the validation split (the run's report has the teacher's validation accuracy).

By default the teacher runs online, on the very batch the student sees; --teacher-cache computes its
outputs once per dataset and augmentation and reuses them for every student (faster, and the only
sensible choice for a teacher that costs milliseconds a clip; the teacher then does not see
SpecAugment's masks). --synthetic-alpha sets another weight for synthetic clips, on which a teacher
trained on people is less sure than on real ones.

Choice of checkpoint, early stopping and every tuning decision use the validation split only.

students: dscnn-s, dscnn-m, dscnn-l (depthwise-separable CNN, as Hello Edge / MLPerf Tiny),
          bcresnet-1, bcresnet-2, bcresnet-3 (broadcasted residual)

examples:
  tinyear distill data/synth --teacher runs/teacher --out runs/student
  tinyear distill data/synth --no-teacher --out runs/baseline                  # same student, no teacher
  tinyear distill data/synth --teacher runs/teacher --out runs/s-mse --kd-loss mse --teacher-cache
  tinyear distill data/synth --teacher hf_model_dir/ --label-map "backward=_unknown_" --out runs/s-hf
  tinyear distill data/real data/fill --teacher-cache --out runs/s-ens \
      --teacher ../shared/teachers/kwt1/model.tflite --teacher ../shared/teachers/dscnn-l/model.pb,weight=0.5 \
      --teacher-class _silence_=labels
  tinyear distill data/synth --teacher runs/teacher --out runs/student --resume    # after an interruption
  tinyear distill data/synth --teacher runs/teacher --out runs/student --nproc 2   # two processes (DDP)
"""


def add_arguments(parser) -> None:
    add_data_arguments(parser)
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--teacher", metavar="T", action="append",
                     help="teacher: run folder, .tflite, .pb, SavedModel, TorchScript file, Hugging Face folder or "
                          "module:function, with ,key=value options; repeat for an ensemble")
    who.add_argument("--no-teacher", action="store_true", help="the baseline: labels only, same code, alpha = 0")
    parser.add_argument("--student", default=DEFAULT_STUDENT, help="registered student (see above)")
    parser.add_argument("--alpha", type=unit_float, default=None,
                        help="weight of the distillation term, 0..1 (default 0.5 with a teacher)")
    parser.add_argument("--temperature", type=positive_float, default=None, metavar="T",
                        help="softmax temperature of the KL term (default 4)")
    parser.add_argument("--kd-loss", choices=["kl", "mse"], default=None,
                        help="distillation term: KL divergence at temperature T, or MSE between logits (default kl)")
    parser.add_argument("--teacher-cache", action="store_true",
                        help="compute the teacher's outputs once per dataset and augmentation and reuse them")
    parser.add_argument("--label-map", nargs="+", default=None, metavar="[N:]TEACHER=STUDENT",
                        help="map teacher labels to student labels by hand (the rest: by name, else _unknown_); "
                             "N: for teacher N only")
    parser.add_argument("--teacher-class", nargs="+", default=None, metavar="LABEL=SOURCE",
                        help="where a class's target comes from: LABEL=labels (no teacher) or LABEL=N (teacher N)")
    parser.add_argument("--synthetic-alpha", type=unit_float, default=None, metavar="A",
                        help="alpha on synthetic clips (default: --alpha)")
    add_loop_arguments(parser)


def run(args) -> int:
    data = data_options(args)  # bad --words refused before torch loads
    from tinyear.host.distill import distill
    if args.no_teacher:
        given = [name for name, value in (("--alpha", args.alpha), ("--temperature", args.temperature),
                                          ("--kd-loss", args.kd_loss), ("--label-map", args.label_map),
                                          ("--teacher-class", args.teacher_class),
                                          ("--synthetic-alpha", args.synthetic_alpha))
                 if value is not None] + (["--teacher-cache"] if args.teacher_cache else [])
        if given:
            raise TinyearError(f"{', '.join(given)} need a teacher, but --no-teacher was given; drop them or name "
                               "a --teacher")
    defaults = train_defaults()
    alpha = 0.0 if args.no_teacher else (0.5 if args.alpha is None else args.alpha)
    mode = "none" if args.no_teacher else ("cached" if args.teacher_cache else "online")
    config = train_config(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                         patience=args.patience, seed=args.seed, alpha=alpha,
                         temperature=args.temperature if args.temperature is not None else defaults["temperature"],
                         kd_loss=args.kd_loss or defaults["kd_loss"], label_smoothing=args.label_smoothing, balance=args.balance,
                         teacher_mode=mode, mixup=args.mixup, source_adversary=args.source_adversary, synthetic_alpha=args.synthetic_alpha)
    teacher = None if args.no_teacher else (args.teacher[0] if len(args.teacher) == 1 else list(args.teacher))
    info = launch(args, distill, args.data, args.out, student=args.student, teacher=teacher,
                  data=data, config=config, label_overrides=list(args.label_map or []),
                  teacher_classes=args.teacher_class,
                  resume=args.resume, force=args.force, device=args.device, progress=not args.quiet,
                  command=command_line())
    report(info, args)
    return 0
