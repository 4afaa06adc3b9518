"""`tinyear pipeline`: the main job, every workstation step in order, resumable.

data (synthesize the default set, or fill what a given real set lacks) -> teacher (the built-in CNN and,
when its wheel is installed, a head over the pretrained speech_embedding backbone: the one with the higher
validation accuracy teaches; on synthetic speech alone the head, and then the distilled student ships; or
teachers given with --teacher, no training) -> distilled student
-> baseline student (same student, same data and epochs, no teacher) -> int8 export, with verification, of
the student with the higher validation accuracy -> per-class thresholds calibrated to a false-accept
budget on validation streams (`calibrate`; the bundle keeps its defaults if the budget cannot be met)
-> comparison on the synthetic test split and on real speech when it is available -> a Markdown report
with plots, and the bundle. When the bundle is to run the backbone (`PipelineConfig.ship`; by default
for synthetic speech alone: the default set and your own words from text), the steps are data -> the
head over the backbone -> its int8 export with the backbone's files -> calibration -> comparison ->
report, and no student is trained.

Each step writes its result so that its presence means it finished (a run's `run.json`, the bundle,
the report: all written last and atomically), and a rerun skips what is finished and resumes an
interrupted training from its last epoch. `pipeline.json` records the settings; rerunning into the same
folder with other settings is refused rather than mixing two recipes. This module only orders and
records steps: the work is in `synth`, `distill`, `export` and `calibrate`; `pipeline_report` writes the
report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tinyear.device.errors import TinyearError
from tinyear.device.fileio import atomic_write_text

from .defaults import DEFAULT_MAX_LATENCY_MS, PIPELINE_STUDENT
from .progress import Steps
from .pipeline_report import choice_accuracies, val_percent as _val, write_report
from .trainconfig import TrainConfig, teacher_config

PIPELINE_JSON = "pipeline.json"
BUNDLE_NAME = "keywords.tinyear"
REPORT_NAME = "report.md"
RUN_FOLDERS = ("teacher", "student", "baseline")  # the run folders in OUT (tinyear.host.runs' layout)
BACKBONE_FOLDER = "teacher-backbone"  # the backbone teacher's run folder in OUT (tinyear.host.backbone)
EVAL_FOLDER = "eval"
# The real-speech evaluation set, when this checkout sits beside the project's shared data. Evaluation
# only: nothing in the pipeline trains, calibrates, tunes or picks a checkpoint on it.
SHARED_REAL_TEST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "speech-commands-v2-test-public"


@dataclass(frozen=True)
class PipelineConfig:
    """Every setting of a pipeline run (recorded in pipeline.json)."""

    per_word: int = 500
    """Synthetic clips per keyword when synthesizing the default set (and `_unknown_` clips the same)."""
    min_real_per_word: int = 200
    """With --data: words with fewer real clips than this are filled with synthetic speech."""
    fill_per_word: int | None = None
    """With --data: synthetic clips given to each such thin word (None: the median real count of the
    other words, at least min_real_per_word; `tinyear.host.fill`)."""
    mix_per_word: int = 0
    """With --data: synthetic clips added to each word that has enough real ones, so that sounding
    synthetic does not predict the label (0: none)."""
    teacher_arch: str = "cnn-teacher"
    teacher_epochs: int = 30
    """30, not fewer: on the real + synthetic recipe a 10-epoch teacher (85.8% validation) was weaker
    than its own student; 30 epochs gave 95.2% (docs/BENCHMARKS.md). The default run still fits in
    15 minutes on 2 cores."""
    student: str = PIPELINE_STUDENT
    student_epochs: int = 30
    student_patience: int = TrainConfig.patience
    """The student and baseline stop after this many epochs without a better validation accuracy; at
    least `student_epochs` runs the whole one-cycle schedule (80 epochs so run gave +0.7 on people where
    patience 8 stopped at epoch 29: docs/BENCHMARKS.md, "Eighty epochs")."""
    variants: int = 4
    """Augmented variants per training clip (features computed once, shared by every run)."""
    window_variants: int = 0
    """Stream-aware windows per training clip for the teacher, student and baseline
    (`tinyear.host.windows`); 0: none, as before (docs/BENCHMARKS.md has what 2 did on streams)."""
    level_norm_db: float = 30.0
    """The frontend's level normalisation for every model (FrontendConfig.level_norm_db; DataOptions says
    what 30 did); 0: off, as runs before it."""
    alpha: float = 0.5
    temperature: float = 4.0
    kd_loss: str = "kl"
    backbone: str = "speech-embedding"
    """The pretrained backbone whose head is trained beside the CNN teacher; the one with the higher
    validation accuracy teaches ("" for the CNN alone; skipped, in one line, when its wheel is missing)."""
    calibration: int = 500
    qat: bool = False
    unknown_offset: float | None = 0.0
    """Added to the `_unknown_` logit at export (`tinyear.host.offset`); None: chosen on validation, 0: none."""
    seed: int = 0
    words: tuple[str, ...] | None = None
    """The keywords as given (`--words`: words, phrases, [[phonemes]], name=...); None: the ten Speech
    Commands words, or with --data the dataset's word folders (`tinyear.host.keywords.dataset_keywords`)."""
    fold_unknown: bool = False
    """With --data and --words: train the dataset's other word folders as `_unknown_` (else refused)."""
    fa_per_hour: float | None = 5.0
    """Calibrate the bundle's per-class thresholds to this many false accepts per hour on validation
    streams (`tinyear calibrate`); None: keep the default thresholds."""
    max_latency_ms: float | None = DEFAULT_MAX_LATENCY_MS
    """Calibration takes no operating point whose median detection delay on the validation stream is
    longer, unless no point within the budget is shorter (`tinyear calibrate --max-latency`); None: no bound."""
    quick: bool = False
    """The `--quick` smoke test (`quick_config`): its numbers show the kit works, not what a model can do."""
    ship: str = "auto"
    """What the bundle runs: "student" (the int8 student over the shared log-mels), "backbone" (an int8
    head over the speech_embedding backbone, which the bundle carries), or "auto": the backbone for
    synthetic speech alone (no `data`: the default set, your own words from text) when its wheel is
    installed, else the student. On people, a head over the backbone trained on synthetic wake phrases
    finds 99-100% of them where a student distilled from it finds almost none, and on the default set it
    scores 81% on the ten keywords against 67% (docs/BENCHMARKS.md, "Your own words", "The default
    pipeline")."""
    other_speech: tuple[str, ...] = ()
    """Folders of real speech with none of the keywords (e.g. ../shared/data/speech-commands-mini-train
    for your own words): their validation clips join the calibration stream as other speech, so the
    thresholds meet the budget on people talking, not only on synthetic words."""
    near_miss: int = 0
    """Synthetic near-miss `_unknown_` clips per keyword (`tinyear synth --near-miss`; 0: none)."""
    teacher_classes: tuple[str, ...] = ()
    """With given teachers: LABEL=labels or LABEL=N, where a class's target comes from (`tinyear distill
    --teacher-class`; e.g. _silence_=labels, which the pretrained keyword teachers get wrong)."""


# --data too: a thin word gets 100 synthetic clips (not the other words' median, ~600 for the shared
# mini-train), so filling synthesizes a few hundred clips rather than about 1,500.
QUICK = dict(per_word=100, fill_per_word=100, min_real_per_word=100, teacher_epochs=6, student_epochs=10,
             variants=2, calibration=200, quick=True)
SMOKE_TEST = ("a --quick smoke test (small data, few epochs): it shows that every step works, not how accurate a "
              "model can be; run without --quick for real numbers")


def quick_config(**overrides) -> PipelineConfig:
    """The `--quick` settings: a few minutes on two cores, for CI and a first look (with --data too)."""
    return PipelineConfig(**{**QUICK, **overrides})


class _Steps(Steps):
    """The pipeline's numbered step lines ("tinyear: [2/7] training the teacher ..."), each step's wall
    time recorded; a finished step is skipped."""

    def __init__(self, total: int, progress: bool):
        super().__init__(total, sys.stderr if progress else None, prefix="tinyear: ", inline=False)

    def run(self, name: str, what: str, fn, done: bool = False):
        if done:
            self.skip(what, name)
            return fn(skip=True)
        self.start(what, name)
        result = fn(skip=False)
        self.done("done")
        return result


def _check_settings(out: Path, record: dict, force: bool) -> None:
    path = out / PIPELINE_JSON
    if not path.exists() or force:
        return
    try:
        old = json.loads(path.read_text()).get("settings")
    except (OSError, ValueError):
        old = None
    if old is not None:  # a setting added since that run was recorded had its default then
        defaults = json.loads(json.dumps({**asdict(PipelineConfig()), "teachers": None}))  # tuples as recorded: lists
        old = {**{k: v for k, v in defaults.items() if k not in old}, **old}
    if old is not None and old != record:
        changed = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
        raise TinyearError(f"{out} holds a pipeline made with other settings ({', '.join(changed)}); choose another "
                           "--out, or add --force to redo it with these")


def _write_json(path: Path, obj: dict) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, default=str) + "\n")


def run_pipeline(out="runs/default", *, data=None, config: PipelineConfig = PipelineConfig(), real_test=None,
                 teachers: list[str] | None = None, force: bool = False, progress: bool = True,
                 jobs: int | None = None, command: str = "", nproc: int = 1) -> dict:
    """Run (or resume) every step into `out`. `data`: a real dataset folder to fill and train on instead
    of the synthetic default; `real_test`: a real-speech evaluation folder (default: the shared Speech
    Commands test part when present; False: none); `teachers`: teacher specs (`tinyear distill
    --teacher`'s, several for an ensemble: `ensemble.load_teachers`) to distill from instead of training
    one. nproc: processes for each training step (DDP on this machine, `dist.launch`). Returns the
    summary written to pipeline.json."""
    started = time.perf_counter()
    out = Path(out)
    created = not out.exists()
    try:
        return _run_pipeline(out, started, data=data, config=config, real_test=real_test, teachers=teachers,
                             force=force, progress=progress, jobs=jobs, command=command, nproc=nproc)
    except BaseException:
        _discard_if_nothing_made(out, created)
        raise


def _discard_if_nothing_made(out: Path, created: bool) -> None:
    """After a failure: when the pipeline made nothing in `out` but its pipeline.json (and empty
    folders), remove those too, so a mistake leaves no half-made output folder to explain."""
    if not out.is_dir():
        return
    files = [p for p in out.rglob("*") if not p.is_dir()]
    if any(p != out / PIPELINE_JSON for p in files):
        return
    (out / PIPELINE_JSON).unlink(missing_ok=True)
    for folder in sorted((p for p in out.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()
    if created:
        with contextlib.suppress(OSError):
            out.rmdir()


def _run_pipeline(out: Path, started: float, *, data, config: PipelineConfig, real_test, teachers, force: bool,
                  progress: bool, jobs, command: str, nproc: int) -> dict:
    if data is not None and not Path(data).is_dir():
        raise TinyearError(f"{data}: no such dataset folder")
    keywords = resolve_keywords(config, data)
    _check_writable(out)
    labels = [k.label for k in keywords]
    default_test = real_test is None
    real_test = (SHARED_REAL_TEST if SHARED_REAL_TEST.is_dir() else None) if real_test is None else (real_test or None)
    if real_test is not None and not Path(real_test).is_dir():
        raise TinyearError(f"{real_test}: no such evaluation folder")
    lacking = [w for w in labels if real_test is not None and not (Path(real_test) / w).is_dir()]
    if lacking and default_test:  # the shared Speech Commands test has only its own words
        if progress:
            print(f"tinyear: no real-speech evaluation: {real_test} has no {', '.join(lacking)}", file=sys.stderr)
        real_test = None
    elif lacking:
        raise TinyearError(f"{real_test} has no clips of {', '.join(lacking)}; give a --real-test folder with every "
                           "keyword, or --no-real-test")
    if teachers:
        from .teachers import resolved_spec

        teachers = [resolved_spec(t) for t in teachers]  # a spec that names nothing fails here, in one line
    settings = json.loads(json.dumps({**asdict(config), "data": None if data is None else str(Path(data).resolve()),
                                      "teachers": list(teachers) if teachers else None}))
    _check_settings(out, settings, force)
    if force:
        _clear(out)
    _write_json(out / PIPELINE_JSON, {"settings": settings, "finished": False, "command": command})

    job = _Pipeline(out, data, config, real_test, keywords, teachers=teachers, progress=progress, jobs=jobs,
                    command=command, nproc=nproc)
    job.run()
    summary = {
        "settings": settings, "finished": True, "command": command, "seconds": round(time.perf_counter() - started, 1),
        "step_seconds": job.steps.times, "bundle": str(job.paths["bundle"]), "report": str(job.paths["report"]),
        "bundle_student": job.shipped_name, "teacher": job.teacher_choice, "rows": [r.to_dict() for r in job.rows],
        "keywords": [{"label": k.label, "text": k.text, "phonemes": k.phonemes} for k in keywords],
        "smoke_test": SMOKE_TEST if config.quick else None,
    }
    _write_json(out / PIPELINE_JSON, summary)
    return summary


def resolve_keywords(config: PipelineConfig, data) -> list:
    """The run's keywords (`tinyear.host.keywords.Keyword`): config.words, checked with espeak-ng, or the
    default ten; with `data`, as `dataset_keywords` decides from its folders."""
    from .keywords import SPEECH_COMMANDS_WORDS, dataset_keywords, parse_keywords
    from .tts import require_espeak

    if data is not None:
        keywords = dataset_keywords(data, config.words, fold_unknown=config.fold_unknown)
    else:
        keywords = parse_keywords(config.words if config.words is not None else SPEECH_COMMANDS_WORDS)
    if config.words is not None:  # the user's words: refuse what espeak-ng cannot say before any work
        require_espeak()
        keywords = parse_keywords(keywords, check_speech=True)
    return keywords


def _check_writable(out: Path) -> None:
    from . import runs

    try:
        out.mkdir(parents=True, exist_ok=True)
        runs.check_writable(out)
    except OSError as exc:
        raise TinyearError(f"{out}: cannot write there ({exc.strerror}); choose another --out") from None


def _clear(out: Path) -> None:
    """--force: remove every step's result (the data is kept: synthesis reuses an identical set)."""
    import shutil

    for name in (*RUN_FOLDERS, BACKBONE_FOLDER, EVAL_FOLDER, BUNDLE_NAME, REPORT_NAME, PIPELINE_JSON):
        target = out / name
        shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)


class _Pipeline:
    """One pipeline run: the seven steps (eight when it calibrates) in order (`run`), each a method taking `skip` (the step's result
    is there: read it back instead of redoing it)."""

    def __init__(self, out: Path, data, config: PipelineConfig, real_test, keywords, *, teachers=None,
                 progress: bool, jobs, command: str, nproc: int = 1):
        self.out, self.data, self.config, self.real_test = out, data, config, real_test
        self.keywords, self.labels = keywords, tuple(k.label for k in keywords)
        self.given = list(teachers) if teachers else None
        self.progress, self.jobs, self.command, self.nproc = progress, jobs, command, nproc
        self.ship = resolve_ship(config, data, self.given)
        # Whether the teacher step trains the backbone head (set, and its wheel is installed).
        self.backbone_wanted = bool(config.backbone) and _backbone_available(config.backbone)
        # On synthetic speech alone, a teacher that has heard people (that head, or the teachers given: the
        # pretrained KWT-1 and DS-CNN-L) teaches and the distilled student ships (`pick_shipped`). The
        # synthetic validation split cannot see what carries to people and misjudges that choice every
        # time it was measured: on speech-commands-mini-train (real, never trained on here; the public test
        # played no part) such students beat their baselines by 3.5-12.7 points over 3 seeds (dscnn-s,
        # dscnn-m) while synthetic validation ranks them 1-8 points below, and the CNN wins it over the
        # head (docs/BENCHMARKS.md, "A student taught by the backbone", "Pretrained teachers on synthetic
        # speech alone"). A CNN trained on the same synthetic speech taught nothing there: give none.
        self.taught_by_rule = self.ship == "student" and data is None and (bool(self.given) or self.backbone_wanted)
        # ... and with no teacher given, that is the head: it teaches without a contest with the CNN.
        self.head_teaches = self.taught_by_rule and not self.given
        self.steps = _Steps((7 if self.ship == "student" else 5) + (config.fa_per_hour is not None), progress)
        self.paths = {**{name: out / name for name in RUN_FOLDERS}, "bundle": out / BUNDLE_NAME,
                      "report": out / REPORT_NAME, "backbone": out / BACKBONE_FOLDER}

    def run(self) -> None:
        from . import runs

        config, paths = self.config, self.paths
        what = (f"synthesizing the {'default ' if config.words is None else ''}keyword set ({', '.join(self.labels)})"
                if self.data is None else f"filling what {self.data} lacks ({', '.join(self.labels)})")
        self.roots = self.steps.run("data", what, self.make_data)
        if self.ship == "backbone":
            self.run_backbone()
            return
        if self.given:
            self.teacher_specs = self.given
            self.steps.run("teacher", f"using the given teacher{'s' if len(self.given) > 1 else ''} "
                           f"({', '.join(Path(_spec_path(t)).name for t in self.given)}): no teacher training",
                           lambda skip: None)
        else:
            self.teacher_info = self.steps.run("teacher", self._teacher_title(), self.train_teacher,
                                               self._teachers_finished())
        self.student_info = self.steps.run("student", f"distilling the student ({config.student}) from the teacher",
                                           self.train_student, runs.run_state(paths["student"]) == "finished")
        if self.given:  # what the given teachers scored on validation, as the student's run measured it
            val = (self.student_info.get("teacher") or {}).get("validation_accuracy")
            self.teacher_info = {"name": " + ".join(Path(_spec_path(t)).name for t in self.given), "given": True,
                                 "metrics": {"validation": {"accuracy": val if val is not None else float("nan")}}}
            self.teacher_choice = {"chosen": "given", "specs": self.given, "validation": {"given": val}}
        self.baseline_info = self.steps.run("baseline", f"training the baseline ({config.student}, no teacher)",
                                            self.train_baseline, runs.run_state(paths["baseline"]) == "finished")
        # The bundle gets the student with the higher VALIDATION accuracy: the distilled one unless the
        # baseline beat it (then distillation did not pay with this teacher, and the report says so); on
        # synthetic speech alone with a teacher that has heard people, the distilled one (`pick_shipped`).
        self.shipped = pick_shipped(self.student_info, self.baseline_info, self.taught_by_rule)
        self.shipped_name = "distilled" if self.shipped == "student" else "baseline"
        self.export_info = self.steps.run("export", f"exporting the {self.shipped_name} student to int8 and verifying it",
                                          self.export, _bundle_is_from(paths["bundle"], paths[self.shipped]))
        if config.fa_per_hour is not None:
            self.steps.run("calibrate", f"calibrating thresholds to {config.fa_per_hour:g} false accepts/hour on "
                           "validation streams", self.calibrate, self._calibrated())
        self.rows, self.confusions = self.steps.run("evaluate", "comparing teacher, students and the int8 bundle",
                                                    self.evaluate)
        self.steps.run("report", "writing the report", self.report)

    def run_backbone(self) -> None:
        """The steps after the data when the bundle runs the backbone: the head (three seeds averaged),
        its int8 export with the backbone's files, calibration, evaluation, report. No student."""
        from . import runs
        from .backbone import HEAD_FILE

        c, paths = self.config, self.paths
        self.teacher_info = self.steps.run(
            "head", f"training the head over the {c.backbone} backbone that the bundle runs", self.train_head,
            runs.run_state(paths["backbone"]) == "finished")
        self.teacher_specs = [str(paths["backbone"])]
        self.teacher_choice = {"chosen": "backbone", "validation": {"backbone": _val(self.teacher_info) / 100},
                               "specs": self.teacher_specs, "ship": "backbone"}
        self.student_info = self.baseline_info = None
        self.shipped, self.shipped_name = "backbone", "backbone head"
        self.export_info = self.steps.run("export", f"exporting the head to int8, with the {c.backbone} backbone, "
                                          "and verifying it", self.export,
                                          _bundle_is_from(paths["bundle"], paths["backbone"], HEAD_FILE))
        if c.fa_per_hour is not None:
            if not c.other_speech and self.progress:
                # the example holds none of the words: wake phrases for the default ten, those ten for yours
                example = "other-speech" if c.words is None else "speech-commands-mini-train"
                print("tinyear: note: no --other-speech, so the thresholds are calibrated among synthetic words only "
                      "and fire more often on people (9.3% of other phrases against 1.1%, docs/BENCHMARKS.md); give "
                      f"real speech without your words, e.g. --other-speech ../shared/data/{example}", file=sys.stderr)
            self.steps.run("calibrate", f"calibrating thresholds to {c.fa_per_hour:g} false accepts/hour on "
                           "validation streams", self.calibrate, self._calibrated())
        self.rows, self.confusions = self.steps.run("evaluate", "comparing the float head and the int8 bundle",
                                                    self.evaluate)
        self.steps.run("report", "writing the report", self.report)

    def train_head(self, skip: bool) -> dict:
        """The head over the backbone (`backbone.train_backbone_teacher`, which returns a finished run as
        it is): the model a backbone bundle runs, or the second teacher beside the CNN."""
        from . import runs
        from .backbone import train_backbone_teacher
        from .backbone_spec import HeadConfig
        from .trainconfig import DataOptions

        if skip:
            return json.loads((self.paths["backbone"] / runs.RUN_JSON).read_text())
        c = self.config
        data = DataOptions(roots=tuple(self.roots), words=self.labels, variants=c.variants, data_seed=c.seed,
                           jobs=self.jobs)
        return train_backbone_teacher(self.roots, self.paths["backbone"], backbone=c.backbone, data=data,
                                      config=HeadConfig(seed=c.seed), progress=self.progress, command=self.command)

    # -- 1. data --------------------------------------------------------------------------------------------

    def make_data(self, skip: bool) -> list[str]:
        from .fill import fill_missing
        from .synth import synthesize

        config = self.config
        if self.data is None:
            target = self.out / "data" / "synth"
            synthesize(target, self.keywords, per_word=config.per_word, near_miss=config.near_miss, seed=config.seed,
                       jobs=self.jobs, progress=self.progress)
            return [str(target)]
        target = self.out / "data" / "fill"
        dataset = fill_missing(self.data, target, self.keywords, min_per_word=config.min_real_per_word,
                               per_word=config.fill_per_word, mix_per_word=config.mix_per_word, seed=config.seed, jobs=self.jobs,
                               progress=self.progress)
        return [str(r) for r in dataset.roots]

    # -- 2-4. training --------------------------------------------------------------------------------------

    def _train(self, run_dir: Path, skip: bool, fn, **kw) -> dict:
        from . import runs
        from .dist import launch
        from .trainconfig import DataOptions

        if skip:
            return json.loads((run_dir / runs.RUN_JSON).read_text())
        data = DataOptions(roots=tuple(self.roots), words=self.labels, variants=self.config.variants, data_seed=self.config.seed,
                           jobs=self.jobs, window_variants=self.config.window_variants,
                           level_norm_db=self.config.level_norm_db)
        return launch(self.nproc, fn, self.roots, run_dir, data=data, resume=runs.run_state(run_dir) == "resume",
                      progress=self.progress, command=self.command, **kw)

    def _teacher_title(self) -> str:
        c = self.config
        if self.head_teaches:
            return f"training the teacher ({c.backbone} head: on synthetic speech alone it teaches what carries to people)"
        if self.backbone_wanted:
            return f"training the teachers ({c.teacher_arch}, {c.backbone} head) and keeping the better one"
        return f"training the teacher ({c.teacher_arch})"

    def _teachers_finished(self) -> bool:
        from . import runs

        head_done = runs.run_state(self.paths["backbone"]) == "finished"
        if self.head_teaches:
            return head_done
        return runs.run_state(self.paths["teacher"]) == "finished" and (not self.backbone_wanted or head_done)

    def train_teacher(self, skip: bool) -> dict:
        """The CNN, then the backbone head when it can be had; the one with the higher validation
        accuracy teaches (ties to the CNN). Sets `teacher_specs` and `teacher_choice`."""
        from .distill import train_teacher

        c = self.config
        if self.head_teaches:
            head = self.train_head(skip=False)  # a finished head run is read back, not retrained
            self.teacher_specs = [str(self.paths["backbone"])]
            self.teacher_choice = {"chosen": "backbone", "validation": {"backbone": _val(head) / 100},
                                   "rule": "synthetic speech alone: the backbone head teaches", "specs": self.teacher_specs}
            return head
        cfg = teacher_config(epochs=c.teacher_epochs, seed=c.seed)
        cnn = self._train(self.paths["teacher"], skip, train_teacher, arch=c.teacher_arch, config=cfg)
        choice = {"chosen": "cnn", "validation": {"cnn": _val(cnn) / 100}}
        self.teacher_specs, info = [str(self.paths["teacher"])], cnn
        if c.backbone and not self.backbone_wanted:
            note = f"the {c.backbone} backbone is not installed (pip install 'tinyear[backbone]'): the built-in CNN teaches"
            choice["note"] = note
            if self.progress:
                print(f"tinyear: {note}", file=sys.stderr)
        elif c.backbone:
            head = self.train_head(skip=False)  # a finished head run is read back, not retrained
            choice["validation"]["backbone"] = _val(head) / 100
            if _val(head) > _val(cnn):
                choice["chosen"] = "backbone"
                self.teacher_specs, info = [str(self.paths["backbone"])], head
            if self.progress:
                print(f"tinyear: teacher on validation: {c.teacher_arch} {_val(cnn):.1f}%, {c.backbone} head "
                      f"{_val(head):.1f}%: the {'backbone head' if choice['chosen'] == 'backbone' else 'CNN'} teaches",
                      file=sys.stderr)
        self.teacher_choice = {**choice, "specs": self.teacher_specs}
        return info

    def _student_config(self):
        c = self.config
        return TrainConfig(epochs=c.student_epochs, patience=c.student_patience, seed=c.seed, alpha=c.alpha,
                           temperature=c.temperature,
                           kd_loss=c.kd_loss, teacher_mode="cached")

    def train_student(self, skip: bool) -> dict:
        from .distill import distill

        specs = self.teacher_specs
        return self._train(self.paths["student"], skip, distill, student=self.config.student,
                           teacher=specs[0] if len(specs) == 1 else specs, config=self._student_config(),
                           teacher_classes=list(self.config.teacher_classes) if self.given else None)

    def train_baseline(self, skip: bool) -> dict:
        from .distill import distill

        cfg = dataclasses.replace(self._student_config(), alpha=0.0, teacher_mode="none")
        return self._train(self.paths["baseline"], skip, distill, student=self.config.student, teacher=None,
                           config=cfg)

    # -- 5. int8 export -------------------------------------------------------------------------------------

    def export(self, skip: bool) -> dict:
        from tinyear.device.bundle import read_bundle

        bundle = self.paths["bundle"]
        if skip:
            return {"bundle": str(bundle), "metrics": read_bundle(bundle).metrics}
        from .export import ExportOptions, export_run

        if self.progress and self.shipped == "baseline":
            student, baseline, basis = choice_accuracies(self.student_info, self.baseline_info)
            print(f"tinyear: the baseline student beat the distilled one on {basis} "
                  f"({baseline:.1f}% vs {student:.1f}%), so the bundle gets the baseline", file=sys.stderr)
        source = self.paths["backbone"] if self.shipped == "backbone" else self.paths[self.shipped]
        result = export_run(source, bundle,
                            ExportOptions(calibration=self.config.calibration, qat=self.config.qat,
                                          unknown_offset=self.config.unknown_offset, progress=self.progress))
        if self.progress:
            for line in result["report"]:
                print(f"  {line}", file=sys.stderr)
        return result

    # -- 5b. calibration ------------------------------------------------------------------------------------

    def _calibrated(self) -> bool:
        from tinyear.device.bundle import read_bundle

        cal = read_bundle(self.paths["bundle"]).metrics.get("detection_calibration") or {}
        return cal.get("fa_per_hour_budget") == self.config.fa_per_hour

    def calibrate(self, skip: bool):
        from tinyear.device.bundle import read_bundle

        from .calibrate import BudgetNotMet, calibrate, format_report

        if not skip:
            try:
                result = calibrate(self.paths["bundle"], [*self.roots, *self.config.other_speech],
                                   fa_per_hour=self.config.fa_per_hour, max_latency_ms=self.config.max_latency_ms,
                                   seed=self.config.seed, fit=True, progress=self.progress)
                lines = format_report(result)
            except (BudgetNotMet, TinyearError) as exc:  # the bundle keeps its thresholds; the run goes on
                lines = [f"calibration skipped, the bundle keeps its thresholds: {exc}"]
            if self.progress:
                for line in lines:
                    print(f"  {line.strip()}", file=sys.stderr)
        self.export_info["metrics"] = read_bundle(self.paths["bundle"]).metrics

    # -- 6. evaluation --------------------------------------------------------------------------------------

    def eval_sets(self) -> dict:
        """Display name -> (folder or folders, split): the test split, and real speech when there is some."""
        sets = {"synthetic test" if self.data is None else "test split (real + synthetic)": (self.roots, "test")}
        if self.real_test is not None:
            sets["real speech"] = (str(self.real_test), "all")
        return sets

    def evaluate(self, skip: bool):
        from .evaluate import evaluate as evaluate_one
        from .report import compare

        paths, eval_sets = self.paths, self.eval_sets()
        cnn = self.teacher_choice["chosen"] == "cnn"  # a run folder of features; else teachers of waveforms
        students = self.shipped != "backbone"
        rows = compare(teacher=paths["teacher"] if cnn else None, baseline=paths["baseline"] if students else None,
                       student=paths["student"] if students else None, bundle=paths["bundle"], eval_sets=eval_sets,
                       progress=self.progress, teacher_specs=None if cnn else self.teacher_specs)
        confusions = {}
        for set_name, (where, split) in eval_sets.items():
            folder = self.out / EVAL_FOLDER / set_name.split(" ")[0]
            confusions[set_name] = evaluate_one(paths["bundle"], where, split=split, out_dir=folder,
                                                progress=self.progress)
        return rows, confusions

    # -- 7. report ------------------------------------------------------------------------------------------

    def report(self, skip: bool) -> Path:
        return write_report(self.paths["report"], self.rows, self.confusions, self.teacher_info, self.student_info,
                            self.baseline_info, self.export_info, self.steps.times, self.config, self.data,
                            self.real_test, self.shipped, bundle=self.paths["bundle"], run_folders=RUN_FOLDERS,
                            smoke_test=SMOKE_TEST if self.config.quick else None,
                            taught_by_rule=self._rule_teacher())

    def _rule_teacher(self) -> str | None:
        """Who taught a student shipped by the synthetic-speech rule, as the report's words (None: no rule)."""
        if not self.taught_by_rule:
            return None
        if self.given:
            return "the given teachers teach" if len(self.given) > 1 else "the given teacher teaches"
        return f"the {self.config.backbone} head teaches"


def _spec_path(spec: str) -> str:
    """A teacher spec's path, without its kind prefix and options."""
    from .teachers import split_options, teacher_kind

    return teacher_kind(split_options(spec)[0])[1]


def _backbone_available(name: str) -> bool:
    from .backbone import available  # torch comes with it: imported only when a backbone is asked for

    return available(name)


def pick_shipped(student_info: dict, baseline_info: dict, taught_by_rule: bool = False) -> str:
    """"student" (distilled) or "baseline": the one with the higher validation accuracy, read on the
    recorded clips alone where real clips were filled with synthetic ones (`choice_accuracies`), ties to
    the distilled student; with `taught_by_rule` (synthetic speech alone, a teacher that has heard people:
    `_Pipeline.taught_by_rule`) the distilled one. Test and real-speech numbers play no part."""
    if taught_by_rule:
        return "student"
    student, baseline, _ = choice_accuracies(student_info, baseline_info)
    return "baseline" if baseline > student else "student"


def resolve_ship(config: PipelineConfig, data, teachers=None) -> str:
    """"student" or "backbone": what the bundle runs (`PipelineConfig.ship`; "auto" decides here). Given
    teachers are there to teach a student, so with them auto means the student."""
    if config.ship not in ("auto", "student", "backbone"):
        raise TinyearError(f"--ship {config.ship}: choose auto, student or backbone")
    if config.ship == "student" or (config.ship == "auto" and teachers):
        return "student"
    if teachers:
        raise TinyearError("--teacher distills a student, --ship backbone trains none: leave out one of them")
    from .backbone import MISSING, available

    if config.ship == "backbone":
        if not config.backbone:
            raise TinyearError("--ship backbone needs the backbone; leave out --no-backbone")
        if not available(config.backbone):
            raise TinyearError(f"--ship backbone: {MISSING}")
        return "backbone"
    # auto: synthetic speech alone (no --data) goes through the backbone. Its validation split is synthetic
    # too, so it cannot show what carries to people; measured on people, the head over the backbone does
    # (wake phrases 99-100% vs almost none; the ten keywords 81% vs 67%) and the student does not.
    return "backbone" if data is None and config.backbone and available(config.backbone) else "student"


def _bundle_is_from(bundle: Path, run_dir: Path, checkpoint: str | None = None) -> bool:
    """Whether `bundle` exists and was exported from `run_dir`'s current checkpoint (best.pt, or the
    file named)."""
    if not bundle.exists():
        return False
    from tinyear.device.bundle import read_bundle
    from tinyear.device.fileio import sha256_file

    from .runs import BEST

    try:
        run = read_bundle(bundle).provenance.get("run") or {}
    except Exception:  # an unreadable bundle is redone
        return False
    best = run_dir / (checkpoint or BEST)
    return (run.get("dir") == str(run_dir.resolve()) and best.exists()
            and run.get("checkpoint_sha256") == sha256_file(best))
