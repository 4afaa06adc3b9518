"""tinyear's workstation half: data, synthetic speech, teachers, students, distillation, int8 export,
evaluation, the one-command pipeline and deploy. It needs the `host` extra (torch, litert-torch) and
builds on `tinyear.device` for features and bundles, never the other way round.

Importing this package sets OMP_WAIT_POLICY=PASSIVE (unless the user set it) before anything here can
load torch: torch's OpenMP worker threads spin-wait between parallel regions by default, and on a
machine whose cores are shared with other busy processes a spinning thread steals the core the other
thread needs (training a 23k-parameter student took 23 ms per clip with two threads against 3.5 ms with
PASSIVE, measured side by side, and no slower on an idle core). The setting only counts if it is in the
environment when the OpenMP runtime loads, that is when torch is first imported; every host module is
imported through this package, so every path (commands, scripts, a user's own code) gets it.

What a user's own script needs for distillation and export is importable from here, and loaded only
when first used (importing `tinyear.host` itself loads neither torch nor numpy):

    load_dataset(roots, words) -> Dataset      a keyword dataset folder (or several, as one)
    synthesize(out, words) / fill_missing(...) synthetic speech, or what a real dataset lacks
    TrainConfig, DataOptions                   every number of a training run; which clips, which features
    train_teacher(roots, out, ...)             the built-in CNN teacher into a run folder
    distill_student(roots, out, student=..., teacher=...)   a student from a teacher (None: the baseline)
    load_teacher(spec), load_run(folder)       a teacher of any kind; a finished run's model and record
    STUDENTS, DEFAULT_STUDENT                  the registered students
    export_run(run, out.tinyear, ExportOptions(...))         the verified int8 bundle
    evaluate_model(model, data, split=...)     accuracy, per-class F1, confusion of a bundle or run
    run_pipeline(out, config=PipelineConfig()) the whole job
"""

from __future__ import annotations

import os
from tinyear.device.lazy import public_api

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# public name -> (module that defines it, its name there). Two are renamed here: `distill` and
# `evaluate` are also submodule names, and importing a submodule rebinds the package attribute.
_PUBLIC = {
    "Dataset": ("data", "Dataset"),
    "load_dataset": ("data", "load_dataset"),
    "synthesize": ("synth", "synthesize"),
    "fill_missing": ("fill", "fill_missing"),
    "TrainConfig": ("trainconfig", "TrainConfig"),
    "AugmentConfig": ("augment", "AugmentConfig"),
    "DataOptions": ("trainconfig", "DataOptions"),
    "train_teacher": ("distill", "train_teacher"),
    "distill_student": ("distill", "distill"),
    "load_teacher": ("teachers", "load_teacher"),
    "load_run": ("runs", "load_run"),
    "STUDENTS": ("students", "STUDENTS"),
    "DEFAULT_STUDENT": ("defaults", "DEFAULT_STUDENT"),
    "ExportOptions": ("export", "ExportOptions"),
    "export_run": ("export", "export_run"),
    "evaluate_model": ("evaluate", "evaluate"),
    "PipelineConfig": ("pipeline", "PipelineConfig"),
    "run_pipeline": ("pipeline", "run_pipeline"),
}

__all__ = list(_PUBLIC)


__getattr__, __dir__ = public_api(__name__, _PUBLIC)
