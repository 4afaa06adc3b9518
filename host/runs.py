"""Run folders: what `tinyear teacher` and `tinyear distill` write, and what `tinyear export` reads.

A run folder holds
- `best.pt`: the checkpoint chosen on the validation split, a dict with "kind" ("student" or
  "teacher"), "arch" (a class name in `ARCHS`), "arch_kwargs", "state_dict", "labels", "frontend"
  (`FrontendConfig.to_dict()`), "frontend_fingerprint", "data" (roots and fingerprint), "teacher"
  (what distilled it, or None), "metrics" (validation accuracy, ...), "name" (registry name) and
  "format" (CHECKPOINT_FORMAT);
- `last.pt`: the state to resume from (model, optimizer, schedule, epoch, early-stopping counters,
  log rows);
- `log.csv`: one row per epoch, `curves.png`: the training curves;
- `run.json`: options, wall time and final metrics, written LAST: a folder without it is a run that
  has not finished (still training, interrupted or crashed), and `load_run` says so.

Every file is written atomically (`tinyear.device.fileio`), so none is ever seen half-written. Every model
in a run folder (student or teacher) takes the shared log-mel features (B, frames, bins); a teacher
run's waveform-level wrapper is `tinyear.host.teachers.load_teacher(run_dir)`.

Imports torch, `tinyear.device` and `tinyear.host.students` / `tinyear.host.teacher_arch` (for the
architectures); never the training or data modules.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from tinyear.device.errors import TinyearError
from tinyear.device.features import FrontendConfig
from tinyear.device.fileio import atomic_path, atomic_write_text

CHECKPOINT_FORMAT = 1
BEST, LAST, LOG, CURVES, RUN_JSON = "best.pt", "last.pt", "log.csv", "curves.png", "run.json"
KINDS = ("student", "teacher")


def archs() -> dict[str, type]:
    """Architecture class name -> class, for every model a run folder may hold (students and the
    built-in teacher). Explicit: a checkpoint can only name a class listed here."""
    from .students import ARCHS as STUDENT_ARCHS
    from .teacher_arch import ARCHS as TEACHER_ARCHS

    return {**STUDENT_ARCHS, **TEACHER_ARCHS}


# -- writing --------------------------------------------------------------------------------------------


def save_checkpoint(path: Path, payload: dict) -> None:
    """torch.save, atomically (`tinyear.device.fileio.atomic_path`): a checkpoint that exists is whole."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def write_run_json(run_dir: Path, info: dict) -> None:
    """The last file of a finished run."""
    atomic_write_text(Path(run_dir) / RUN_JSON, json.dumps(info, indent=1, sort_keys=True, default=str) + "\n")


def check_writable(folder: Path, what: str = "--out") -> None:
    """Create `folder` if needed and prove it takes a file; else a TinyearError naming it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise TinyearError(f"cannot write to {folder}: {exc.strerror or exc}; choose a writable {what}") from None


def remove_if_empty(folder: Path) -> None:
    """Remove `folder` when nothing is in it (a command that failed before writing anything there)."""
    try:
        Path(folder).rmdir()  # only succeeds on an empty folder
    except OSError:
        pass


# -- reading --------------------------------------------------------------------------------------------


def run_state(run_dir: Path) -> str:
    """"finished" (run.json is there), "resume" (last.pt but no run.json: interrupted, or still
    training) or "fresh" (neither)."""
    run_dir = Path(run_dir)
    if (run_dir / RUN_JSON).exists():
        return "finished"
    if (run_dir / LAST).exists():
        return "resume"
    return "fresh"


def read_checkpoint(path: Path) -> dict:
    """torch.load a checkpoint dict on the CPU, with a one-line error when it is not one of ours."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # zip/pickle errors come in many types
        raise TinyearError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                           "rerun training into a fresh folder") from None
    if not isinstance(payload, dict) or "state_dict" not in payload or "kind" not in payload:
        raise TinyearError(f"{path}: not a tinyear checkpoint (no kind/state_dict); give a folder written by "
                           "tinyear teacher or tinyear distill")
    return payload


def build_model(checkpoint: dict) -> torch.nn.Module:
    """The module a checkpoint describes, with its weights, in eval mode."""
    known = archs()
    arch = checkpoint.get("arch")
    if arch not in known:
        raise TinyearError(f"checkpoint architecture {arch!r} is unknown to this tinyear (known: "
                           f"{', '.join(sorted(known))}); update tinyear")
    model = known[arch](len(checkpoint["labels"]), **checkpoint.get("arch_kwargs", {}))
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        raise TinyearError(f"checkpoint weights do not fit {arch} {checkpoint.get('arch_kwargs')}: "
                           f"{str(exc).splitlines()[0]}") from None
    return model.eval()


def load_run(run_dir, kind: str | None = None, *, allow_unfinished: bool = False):
    """Load a run folder's best checkpoint: (model in eval mode, meta dict).

    The model takes shared log-mel features (B, frames, bins) and returns logits (B, len(labels)).
    `meta` is the checkpoint without its weights ("kind", "name", "arch", "arch_kwargs", "labels",
    "frontend" (the config as a dict), "frontend_fingerprint", "data", "teacher", "metrics", "params",
    "macs") plus "frontend_config" (a FrontendConfig), "run" (run.json as a dict, or None when
    unfinished and allowed) and "run_dir".
    kind: "student" or "teacher" to insist on one (else either). allow_unfinished: accept a folder
    without run.json (training still running or interrupted), e.g. to look at its best epoch so far.
    Raises TinyearError (one line) for a missing folder, no checkpoint, a half-finished run, the wrong
    kind, or a checkpoint this version cannot read."""
    run_dir = Path(run_dir)
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not run_dir.exists():
        raise TinyearError(f"{run_dir}: no such run folder; train one with tinyear distill (or tinyear teacher)")
    if not run_dir.is_dir():
        raise TinyearError(f"{run_dir}: is a file, not a run folder (give the folder tinyear distill --out wrote)")
    best = run_dir / BEST
    finished = (run_dir / RUN_JSON).exists()
    if not best.exists():
        if (run_dir / LAST).exists():
            raise TinyearError(f"{run_dir}: half-finished run with no best checkpoint yet; finish it with "
                               "--resume")
        raise TinyearError(f"{run_dir}: no checkpoint ({BEST}); it is not a finished tinyear run folder")
    if not finished and not allow_unfinished:
        raise TinyearError(f"{run_dir}: half-finished run (no {RUN_JSON}): training was interrupted or is "
                           "still running; finish it with the same command plus --resume")
    checkpoint = read_checkpoint(best)
    if checkpoint.get("format", CHECKPOINT_FORMAT) > CHECKPOINT_FORMAT:
        raise TinyearError(f"{best}: made by a newer tinyear (checkpoint format {checkpoint['format']}); update tinyear")
    if kind is not None and checkpoint["kind"] != kind:
        raise TinyearError(f"{run_dir} holds a {checkpoint['kind']} run, not a {kind}; give a "
                           f"{'tinyear distill' if kind == 'student' else 'tinyear teacher'} output folder")
    model = build_model(checkpoint)
    meta = {k: v for k, v in checkpoint.items() if k != "state_dict"}
    meta["frontend_config"] = FrontendConfig.from_dict(checkpoint["frontend"])  # meta["frontend"] stays a dict
    meta["run"] = json.loads((run_dir / RUN_JSON).read_text()) if finished else None
    meta["run_dir"] = str(run_dir)
    return model, meta
