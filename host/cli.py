"""`tinyear`: the command line of the workstation half (synth, teacher, distill, export, evaluate,
pipeline, deploy).

Needs the `host` extra. Each command lives in `tinyear.host.commands.<name>` and is imported only when
it runs, so `tinyear --help` answers without loading torch.
"""

from __future__ import annotations

from tinyear.device import __version__
from tinyear.device.cliutil import Command, run_cli

DESCRIPTION = """\
Distill a large audio classifier into a tiny int8 keyword model and package it for a device.

The main job, on the embedded default (synthetic speech, no download):
  tinyear pipeline --out runs/default
Step by step:
  tinyear synth data/synth
  tinyear teacher data/synth --out runs/teacher
  tinyear distill data/synth --teacher runs/teacher --out runs/student
  tinyear export runs/student --out keywords.tinyear
  tinyear calibrate keywords.tinyear data/synth --fa-per-hour 5
  tinyear evaluate keywords.tinyear data/synth --split test
  tinyear mine runs/student data/synth --out data/mined      # then distill on data/synth data/mined
  tinyear deploy keywords.tinyear --to pi@raspberrypi.local
"""

COMMANDS: list[Command] = [
    Command("data", "tinyear.host.commands.data", "show a dataset's clips per split and label"),
    Command("synth", "tinyear.host.commands.synth", "write a synthetic keyword dataset, or fill a real one's gaps"),
    Command("teacher", "tinyear.host.commands.teacher", "train the built-in large CNN teacher on a dataset"),
    Command("distill", "tinyear.host.commands.distill", "train a small student from a teacher, or alone (--no-teacher)"),
    Command("export", "tinyear.host.commands.export", "convert a trained student to a verified int8 bundle"),
    Command("calibrate", "tinyear.host.commands.calibrate", "per-class thresholds for a false-accept budget, chosen on validation streams"),
    Command("mine", "tinyear.host.commands.mine", "hard negatives: the windows a model fires on in streams of training non-keywords"),
    Command("evaluate", "tinyear.host.commands.evaluate", "score a bundle or run on a dataset: accuracy, per-class F1, confusion matrix"),
    Command("pipeline", "tinyear.host.commands.pipeline", "the main job: data, teacher, student, baseline, int8 export, evaluation, report"),
    Command("deploy", "tinyear.host.commands.deploy", "copy a bundle and the device half to a Raspberry Pi over SSH, verify it there, switch to it"),
]


def main(argv=None) -> int:
    return run_cli("tinyear", DESCRIPTION, COMMANDS, __version__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
