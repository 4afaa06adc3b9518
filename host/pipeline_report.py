"""The Markdown report of `tinyear pipeline`: what was made, how each step did, per-class recall, time.

`tinyear.host.pipeline` orders the steps and hands their results here; this module only writes them
down (the plots and the page itself come from `tinyear.host.report`). Validation accuracy chose every
checkpoint, and the report says so; test and real-speech numbers are shown, never used.
"""

from __future__ import annotations

import os
from pathlib import Path

from .choice import recorded_rule_applies
from .progress import format_seconds


def val_percent(info: dict) -> float:
    """A finished run's validation accuracy in percent."""
    return 100.0 * info["metrics"]["validation"]["accuracy"]


def _recorded(info: dict) -> tuple[float, int] | None:
    """A run's accuracy on the validation split's recorded clips (people, and silence cut from recorded
    noise) and their count, where the split also holds synthetic clips and at least `choice.RECORDED_MIN` clips
    of people; None otherwise (or for a run recorded before runs kept accuracy per source)."""
    by = info["metrics"]["validation"].get("by_source") or {}
    if not recorded_rule_applies(by.get("real", {}).get("count", 0), by.get("synthetic", {}).get("count", 0)):
        return None
    parts = [part for source, part in by.items() if source != "synthetic"]  # people and recorded noise
    count = sum(p["count"] for p in parts)
    return 100.0 * sum(p["accuracy"] * p["count"] for p in parts) / count, count


def choice_accuracies(student_info: dict, baseline_info: dict) -> tuple[float, float, str]:
    """The validation accuracies (percent) of the distilled and the baseline student that choose which
    one ships, and what they were measured on ("the validation split", or "the validation split's N
    recorded clips").

    Where real clips are filled with synthetic speech, only the recorded clips of validation choose.
    Synthetic validation clips score a student on agreeing with the synthetic labels, and a teacher that
    has heard people disagrees with them on purpose (DS-CNN-L agrees with 83% of the labels of the
    shipped recipe's validation split): there the DS-CNN-L-taught dscnn-m lost the whole split to the
    untaught bundle on 3 seeds of 3 (int8, 91.4% vs 94.3%) and won its recorded clips on 3 of 3 (94.2 +-
    0.4% vs 93.3%), and on synthetic speech alone the synthetic split ranked every taught student 1-8
    points below its baseline while real clips put them 3.5-12.7 above (docs/BENCHMARKS.md, "Choosing
    the shipped student"). Test and real-speech numbers play no part."""
    s, b = _recorded(student_info), _recorded(baseline_info)
    if s is None or b is None or s[1] != b[1]:
        return val_percent(student_info), val_percent(baseline_info), "the validation split"
    return s[0], b[0], f"the validation split's {s[1]:,} recorded clips"


def offset_line(metrics: dict) -> list[str]:
    """The report's line on the export's `_unknown_` offset (`tinyear.host.offset`), when it moved."""
    o = metrics.get("unknown_offset") or {}
    if not o.get("offset"):
        return []
    how = (f", the best fit to {o['chosen_on']} (float student: log-loss {o['nll_before']:.3f} -> "
           f"{o['nll_after']:.3f}, accuracy {o['accuracy_before']:.1f}% -> {o['accuracy_after']:.1f}%)"
           if o.get("nll_before") is not None else f" ({o.get('chosen_on')})")
    return [f"- `_unknown_` offset: {o['offset']:g} added to its logit before the int8 conversion{how}; "
            "the validation accuracies above include it."]


def write_report(path: Path, rows, confusions, teacher_info, student_info, baseline_info, export_info,
                 times: dict, config, data, real_test, shipped: str = "student", *, bundle: Path,
                 run_folders: tuple = (), smoke_test: str | None = None, taught_by_rule: str | None = None) -> Path:
    """The report at `path`: the comparison table, the plots, what each step did and how long it took.
    `config` is the run's PipelineConfig; `shipped` names the student in the bundle ("student" or
    "baseline"); `run_folders` are the run folders beside the report whose training curves it shows;
    `taught_by_rule`: who taught when the distilled student shipped by rule (synthetic speech alone, a
    teacher that has heard people), whatever the validation split said, as words ("the given teacher
    teaches"); None otherwise."""
    from .report import plot_comparison, write_markdown
    from .runs import CURVES

    out = path.parent
    plot = plot_comparison(rows, out / "comparison.png")
    m = export_info["metrics"]
    bundle_row = next(r for r in rows if r.name == "int8 bundle")
    recipe = ("synthetic speech only (espeak-ng and flite, `tinyear synth`), the embedded default" if data is None else
              f"real clips from `{data}`, with what they lack filled by synthetic speech")
    if shipped == "backbone":
        made = (f"- Bundle: `{bundle.name}`, {m.get('model_bytes', 0):,} byte int8 head ({bundle_row.params or 0:,} "
                f"parameters, {config.backbone} embeddings in) and the {config.backbone} backbone's float TFLite files "
                f"({m.get('backbone_bytes', 0):,} bytes), which the device runs before the head"
                + (": synthetic speech carries to people this way, a student over log-mels trained on it much less "
                   "(docs/BENCHMARKS.md)" if data is None else "")
                + "; `--ship student` makes the small student instead, for a microcontroller.")
    else:
        choice = choice_accuracies(student_info, baseline_info)
        tied = choice[0] == choice[1]
        made = (f"- Bundle: `{bundle.name}`, {m.get('model_bytes', 0):,} byte int8 model of the "
                f"{'distilled' if shipped == 'student' else 'baseline'} student ({config.student}, "
                f"{bundle_row.params or 0:,} parameters, {(bundle_row.macs or 0) / 1e6:.2f} M MACs)"
                + ((f": on synthetic speech alone {taught_by_rule} "
                    f"and the distilled student ships whatever the synthetic validation split says (here "
                    f"{val_percent(student_info):.1f}% vs {val_percent(baseline_info):.1f}% for the baseline): on real "
                    "clips such students beat their baselines (docs/BENCHMARKS.md).") if taught_by_rule else
                   f": it {'tied' if tied else 'beat'} the baseline on {choice[2]} ({choice[0]:.1f}% vs "
                   f"{choice[1]:.1f}%{'; ties go to the distilled student' if tied else ''})."
                   if shipped == "student" else
                   f": the baseline beat the distilled student on {choice[2]} ({choice[1]:.1f}% vs "
                   f"{choice[0]:.1f}%), so distillation did not pay with this teacher "
                   f"({val_percent(teacher_info):.1f}% on the whole validation split)."))
    trained = (("backbone head", teacher_info),) if shipped == "backbone" else (
        ("teacher", teacher_info), ("distilled student", student_info), ("baseline student", baseline_info))
    sections = [
        ("What was made", "\n".join([
            made,
            f"- Data: {recipe}.",
            f"- Int8: float {m.get('float_accuracy')}% -> int8 {m.get('int8_accuracy')}% on the validation split "
            f"(drop {m.get('accuracy_drop_points')} points, top-1 agreement {m.get('agreement_percent')}%), "
            f"{m.get('quantization', 'ptq').upper()}.",
            *offset_line(m),
            calibration_line(m),
            f"- Microcontroller-ready (TFLite Micro output bit-identical to LiteRT): "
            f"{'yes, arena ' + format(m.get('tflm_arena_bytes') or 0, ',') + ' bytes' if m.get('microcontroller_ready') else 'no'}.",
            f"- Try it: `tinyear-device classify {bundle} clip.wav` or `tinyear-device listen {bundle}`.",
        ])),
        ("Training", "\n".join(
            f"- teacher: given ({info.get('name')}), not trained here; validation accuracy "
            f"{100 * info['metrics']['validation']['accuracy']:.1f}%"
            if info.get("given") else
            f"- {name}: {info.get('name')} ({info.get('params', 0):,} parameters), best epoch {info.get('best_epoch')} of "
            f"{info.get('epochs_run')}, validation accuracy {100 * info['metrics']['validation']['accuracy']:.1f}%"
            f"{'' if name != 'distilled student' else f' (alpha {config.alpha}, T {config.temperature}, {config.kd_loss})'}, "
            f"{format_seconds(info.get('wall_seconds', 0))}"
            for name, info in trained
        ) + "\n\nValidation accuracy chose every checkpoint; the test split and real speech were only measured."),
        ("Per class (int8 bundle)", "\n".join(per_class_table(confusions))),
        ("Time", "| step | wall time |\n|---|---|\n" + "\n".join(f"| {k} | {format_seconds(v)} |" for k, v in times.items())
         + f"\n| total | {format_seconds(sum(times.values()))} |\n\nOn {os.cpu_count()} CPU cores. Steps shown as 0 s were "
         "already done and were skipped."),
    ]
    if smoke_test:
        sections.insert(0, ("Smoke test", f"This is {smoke_test}."))
    if real_test is None:
        sections.insert(1 + config.quick, ("Real speech", "No real-speech evaluation folder was found, so accuracy on people is not "
                            "measured here; give one with `--real-test DIR`."))
    images = [("accuracy and latency", plot)]
    images += [(f"confusion matrix, {k}", v["confusion_png"]) for k, v in confusions.items() if v.get("confusion_png")]
    images += [(f"training curves, {name}", out / name / CURVES) for name in run_folders
               if (out / name / CURVES).exists()]
    return write_markdown(path, "tinyear pipeline report", rows, sections=sections, images=images,
                          footer="Accuracy in percent. Latency: median single-thread LiteRT invoke, all models measured "
                                 "side by side in one run (a backbone bundle's: the backbone and the head). Real speech: "
                                 + ("none" if real_test is None else f"`{Path(real_test).name}`") + " (evaluation only).")


def calibration_line(m: dict) -> str:
    """The report's line on the bundle's detection thresholds (metrics.detection_calibration)."""
    from tinyear.device.detection import describe_rules

    from .calibrate import delay_phrase

    cal = m.get("detection_calibration")
    if not cal:
        return "- Detection: default thresholds (not calibrated)."
    a = cal["after"]
    return (f"- Detection: per-class thresholds calibrated to {cal['fa_per_hour_budget']:g} false accepts/hour on a "
            f"{cal['stream']['minutes']:g}-minute validation stream: recall {a['recall']:.3f} at "
            f"{a['false_accepts_per_hour']:.1f} FA/h there (smoothing {a['smoothing_ms']:g} ms"
            + (f", {describe_rules(a)}" if describe_rules(a) != "no extra rules" else "") + f"{delay_phrase(a)}; `tinyear calibrate`)"
            + _held_out_clause(cal.get("held_out")) + ".")


def _held_out_clause(check: dict | None) -> str:
    """'; on validation voices they were not chosen on: recall R at F FA/h' where calibration measured it."""
    if not check or "skipped" in check:
        return ""
    return (f"; chosen on half of the validation speakers and scored on the other half: recall {check['recall']:.3f} at "
            f"{check['false_accepts_per_hour']:.1f} FA/h, what to expect on new voices")


def per_class_table(confusions: dict) -> list[str]:
    sets = list(confusions)
    if not sets:
        return ["(no evaluation)"]
    labels = confusions[sets[0]]["labels"]
    lines = ["| label | " + " | ".join(f"recall, {s}" for s in sets) + " |", "|---|" + "---|" * len(sets)]
    for label in labels:
        cells = []
        for s in sets:
            pc = confusions[s]["per_class"].get(label)
            cells.append("–" if not pc or not pc.get("support") else f"{100 * pc['recall']:.1f}%")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines
