"""Calibration: per-class thresholds (and the smoothing, if another one pays) that give the most recall
within a false-accept budget on validation streams, written into the bundle.

`calibrate` builds a validation stream from the data (`tinyear.host.streams`: keywords, distractor
words, other speech, noise at a range of SNRs; speakers disjoint from training), runs the bundle's
model over it ONCE (`tinyear.device.sweep.record_scores`), and then works on the recorded scores
alone: for each set of detection rules in `RULE_GRID` (the `_unknown_` margin, sustain over
`min_runs`; and the bundle's own rules) and each smoothing in `SMOOTHING_MS` (and the
bundle's own) it tabulates every keyword's hits and false accepts at each threshold of
`sweep.THRESHOLD_GRID`, and picks one threshold per keyword by an exact knapsack over the false
accepts (the most hits with at most budget x hours false accepts in all; ties go to the higher
threshold, which is quieter on speech never heard). A keyword with no words in the stream can only
get stricter than the bundle's shared threshold, and only as strict as its false accepts there need.
Each such choice is replayed through the real decision gate over the trace (`sweep.replay_scored`), and
the one with the most hits within the budget wins (ties: fewer false accepts, then the bundle's own
rules and smoothing, then the simpler rules), among those whose median detection delay on the stream is
within `max_latency_ms` (300 ms by default; a slower choice is taken only when no choice within the
budget is quicker, and the report says so). `held_out_check` then says how such thresholds hold on
voices they were not chosen on: chosen on one half of the validation speakers, scored on the other.
Thresholds fitted to a stream's few false accepts fire more often on new voices (docs/BENCHMARKS.md, "A
keyword calibration switched off, and the held-out check"), so the report's "held out" line is the guide
to them.

A budget that cannot be met (even the strictest thresholds fire more often) raises
`BudgetNotMet`, which carries the quietest operating point found and the recall possible at a few
budgets; the bundle is not touched. A bundle without `_unknown_` is refused (it has no way to reject
speech that is not a keyword, so its thresholds would only hide that). The calibrated bundle is
rewritten atomically (`tinyear.host.bundle.write_bundle`: checksums renewed) with the calibration
record under `metrics["detection_calibration"]` (`metrics["calibration"]` is the int8 export's). Imports the device half and numpy; never torch.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from tinyear.device.bundle import read_bundle
from tinyear.device.detection import DetectionConfig, describe_rules
from tinyear.device.errors import TinyearError
from tinyear.device.labels import UNKNOWN

from . import streams
from .defaults import DEFAULT_MAX_LATENCY_MS
from .progress import SecondsBar

SMOOTHING_MS = (100.0, 300.0, 500.0, 700.0)
# The detection rules searched with the thresholds and smoothing (`DetectionConfig`, `DecisionGate`):
# every combination of these, plus the bundle's own. Peak-then-fall is not searched by default: on the
# validation streams of the shipped bundle it never found a word more (only a hop later; see
# docs/BENCHMARKS.md), so it is left to `listen --peak` and `rule_grid(peak=(False, True))`.
RULE_KEYS = ("unknown_margin", "unknown_window_ms", "min_runs", "peak")
UNKNOWN_MARGINS = (0.0, 0.1, 0.3)
UNKNOWN_WINDOWS_MS = (0.0, 500.0)
MIN_RUNS = (1, 2)
PEAK = (False,)


def rule_grid(margins=UNKNOWN_MARGINS, windows=UNKNOWN_WINDOWS_MS, min_runs=MIN_RUNS, peak=PEAK) -> list[dict]:
    """The rule sets to search: each margin with each window (a margin of 0 needs no window), each
    min_runs, with and without peak-then-fall; the rules off first."""
    out = []
    for m, w, n, p in itertools.product(margins, windows, min_runs, peak):
        rule = {"unknown_margin": float(m), "unknown_window_ms": float(w if m > 0 else 0.0), "min_runs": int(n), "peak": bool(p)}
        if rule not in out:
            out.append(rule)
    out.sort(key=lambda r: (r["unknown_margin"] > 0, r["min_runs"], r["peak"], r["unknown_margin"], r["unknown_window_ms"]))
    return out


RULE_GRID = tuple(rule_grid())
DEFAULT_FA_PER_HOUR = 5.0
DEFAULT_MINUTES = 30.0


class BudgetNotMet(TinyearError):
    """The false-accept budget is below what any thresholds reach on the stream; `best` says what can."""

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result


def pareto(rows, words: int, floor: float | None = None):
    """One label's options [(false_accepts, hits, threshold)]: for each false-accept count the most hits,
    and among thresholds that tie on both, the highest (quieter on speech the stream never held). Only
    thresholds >= floor when given. A label with no words in the stream (`words` 0) takes the LOWEST of
    its tied thresholds instead: the stream says only what its false accepts need, nothing about the
    words a stricter threshold would lose, so it gets as strict as they need and no stricter (taking
    the highest switched such a keyword off: `off` at 0.999 in the bundle of 2026-12-07)."""
    best: dict = {}
    for th, hits, fa in rows:
        if floor is not None and th < floor - 1e-9:
            continue
        prev = best.get(fa)
        if prev is None or hits > prev[1] or (hits == prev[1] and (th < prev[2] if words == 0 else th > prev[2])):
            best[fa] = (fa, hits, th)
    options, top = [], -1
    for fa in sorted(best):  # drop options that cost more false accepts for no more hits
        if best[fa][1] > top:
            options.append(best[fa])
            top = best[fa][1]
    return options


def choose(table: dict, budget: int, floors: dict):
    """Exact multiple-choice knapsack: one option per label, total false accepts <= budget, most hits.
    Returns ({label: threshold}, hits, false_accepts) or None when no choice fits."""
    labels = list(table)
    options = {lab: pareto(table[lab]["rows"], table[lab]["words"], floors.get(lab)) for lab in labels}
    if any(not o for o in options.values()):
        return None
    NEG = -1
    dp = np.full(budget + 1, NEG, dtype=np.int64)
    dp[0] = 0
    picks = []
    for lab in labels:
        new = np.full(budget + 1, NEG, dtype=np.int64)
        pick = np.full(budget + 1, -1, dtype=np.int64)
        for k, (fa, hits, _) in enumerate(options[lab]):
            if fa > budget:
                continue
            for b in range(budget, fa - 1, -1):
                if dp[b - fa] != NEG and dp[b - fa] + hits > new[b]:
                    new[b], pick[b] = dp[b - fa] + hits, k
        picks.append(pick)
        dp = new
    if (dp == NEG).all():
        return None
    b = int(np.argmax(dp))  # the fewest false accepts among the most hits (argmax takes the first)
    hits_total = int(dp[b])
    chosen, fa_total = {}, 0
    for lab, pick in zip(reversed(labels), reversed(picks)):
        k = int(pick[b])
        fa, hits, th = options[lab][k]
        chosen[lab] = th
        fa_total += fa
        b -= fa  # the previous label's dp is indexed by what is left
    return chosen, hits_total, fa_total


def calibrate(bundle_path, data, *, fa_per_hour: float = DEFAULT_FA_PER_HOUR, minutes: float = DEFAULT_MINUTES,
              seed: int = 0, out=None, smoothing=SMOOTHING_MS, rules=RULE_GRID, num_threads: int = 1, progress: bool = True,
              write: bool = True, fit: bool = False, max_smoothing_ms: float | None = None,
              max_latency_ms: float | None = DEFAULT_MAX_LATENCY_MS, held_out: bool = True, negatives=()) -> dict:
    """Calibrate `bundle_path` on validation streams of `data` and (with `write`) write the result to
    `out` (default: the bundle itself). `fit`: a validation split too small for `minutes` gives the
    longest stream it allows (the pipeline's choice) instead of an error. `max_latency_ms`: a choice
    whose median detection delay on the stream is longer ranks below every choice within it (None: no
    bound). `held_out`: also measure how the chosen rules hold on voices they were not chosen on
    (`held_out_check`). `negatives`: folders of speech without the keywords that the model never trained
    on, every clip of which joins the streams (`streams.build_stream`); one that the bundle records among
    its training data is refused. Returns the report dict."""
    from tinyear.device.detector import Detector
    from tinyear.device.sweep import label_table, record_scores, replay_scored

    if not (fa_per_hour >= 0 and math.isfinite(fa_per_hour)):
        raise TinyearError(f"--fa-per-hour {fa_per_hour}: give a number of false accepts per hour, 0 or more (e.g. 5)")
    if max_latency_ms is not None and not (max_latency_ms > 0 and math.isfinite(max_latency_ms)):
        raise TinyearError(f"--max-latency {max_latency_ms}: give a delay in milliseconds above 0 (e.g. 300)")
    bundle = read_bundle(bundle_path)
    if write and out is not None:
        _check_out(Path(out))
    if UNKNOWN not in bundle.labels:
        raise TinyearError(f"{bundle_path}: has no {UNKNOWN} label, so it cannot reject other speech and no threshold "
                           f"keeps its false accepts to a budget; retrain it with {UNKNOWN} (tinyear distill does by default)")
    roots = [str(r) for r in (data if isinstance(data, (list, tuple)) else [data])]
    negatives = [str(r) for r in negatives]
    streams.refuse_test_sets([*roots, *negatives])
    _refuse_trained_on(bundle, negatives)
    base = DetectionConfig.from_bundle(bundle)
    keywords = [lab for lab in bundle.labels if lab not in base.ignore]
    t0 = time.perf_counter()
    stream = streams.build_stream(roots, keywords, minutes=minutes, split="validation", seed=seed,
                                  fit=fit, progress=progress, negatives=negatives)
    detector = Detector(bundle, base, num_threads=num_threads)
    rate = bundle.sample_rate
    with SecondsBar(stream.duration_s, rate, "scoring the stream", enabled=progress) as shown:
        trace = record_scores(detector, stream.waveform, progress=shown.update)
    seconds_model = time.perf_counter() - t0
    hours = trace.duration_s / 3600.0
    budget = int(math.floor(fa_per_hour * hours + 1e-9))
    floors = _floors(stream.truth, keywords, base)  # its keys: the keywords the stream has no words of
    before = replay_scored(trace, base, stream.truth, keywords)
    base_rules = _rules_of(base)
    rule_sets = [base_rules] + [r for r in map(dict, rules) if r != base_rules]
    candidates = []
    smoothings = smoothing_candidates(smoothing, base.smoothing_ms, max_smoothing_ms)
    for rule in rule_sets:
        shape = replace(base, **rule)
        for sm in smoothings:
            table = label_table(trace, stream.truth, keywords, smoothing_ms=sm, refractory_ms=base.refractory_ms, rules=shape)
            picked = choose(table, budget, floors)
            config = None
            if picked:
                config = replace(shape, per_class_threshold={lab: round(th, 4) for lab, th in picked[0].items()},
                                 smoothing_ms=sm)
            candidates.append({"smoothing_ms": sm, "rules": rule, "table": table, "picked": picked, "config": config})
    # Ties: fewer false accepts, then the bundle's own rules and smoothing (nothing changes without a
    # gain), then the simpler rules (grid order) and the shorter smoothing (less latency).
    def rank(c, hits, fa):
        return (hits, -fa, c["rules"] == base_rules, c["smoothing_ms"] == base.smoothing_ms,
                -rule_sets.index(c["rules"]), -c["smoothing_ms"])

    # Each per-label choice is confirmed by the real gate over the trace, best by the tables first. The
    # gate fires one label per run, so it finds at most what the tables count (up to a hop's delay);
    # once a confirmed point within budget and the latency bound ranks above the next choice's tables,
    # none can beat it. Only the gate's replay measures delay, so a slow choice just lets the loop go on.
    ordered = sorted((c for c in candidates if c["picked"]), key=lambda c: rank(c, c["picked"][1], c["picked"][2]), reverse=True)
    best = None
    for c in ordered:
        if best is not None and all(best[0][:2]) and best[0][2:] >= rank(c, c["picked"][1], c["picked"][2]):
            break
        c["scored"] = replay_scored(trace, c["config"], stream.truth, keywords)
        key = (c["scored"]["false_accepts"] <= budget, within_latency(c["scored"], max_latency_ms),
               *rank(c, c["scored"]["hits"], c["scored"]["false_accepts"]))
        if best is None or key > best[0]:
            best = (key, c, c["scored"])
    result = {
        "bundle": str(bundle_path), "data": roots, "negatives": negatives, "fa_per_hour_budget": fa_per_hour,
        "stream": stream.summary(), "false_accepts_allowed": budget,
        "before": _point(base, before), "seconds": round(time.perf_counter() - t0, 1),
        "model_pass_seconds": round(seconds_model, 1), "missing_keywords": sorted(floors),
        "tried": _tried(candidates, base_rules), "max_latency_ms": max_latency_ms,
    }
    if best is None:
        result["possible"] = _possible(candidates, trace, keywords, hours)
        q = result["possible"][0]
        raise BudgetNotMet(
            f"no thresholds keep false accepts within {fa_per_hour:g}/h on the {trace.duration_s / 60:.0f}-minute "
            f"validation stream: the quietest point is recall {q['recall']:.2f} at {q['false_accepts_per_hour']:.1f} FA/h "
            f"(smoothing {q['smoothing_ms']:g} ms); raise --fa-per-hour; the bundle's thresholds are kept", result)
    key, chosen, after = best
    config = chosen["config"]
    result["after"] = _point(config, after)
    result["latency_bound_met"] = bool(key[1])
    result["detection"] = config.to_dict()
    if held_out:
        result["held_out"] = held_out_check(bundle, roots, keywords, config, fa_per_hour, minutes=minutes, seed=seed,
                                            num_threads=num_threads, progress=progress, negatives=negatives)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if write:
        result["written"] = str(write_calibrated(bundle, config, result, out or bundle_path))
    return result


def held_out_check(bundle, roots, keywords, config: DetectionConfig, fa_per_hour: float, *, minutes: float,
                   seed: int = 0, num_threads: int = 1, progress: bool = False, negatives=()) -> dict:
    """How the chosen rules hold on voices they were not chosen on: the validation speakers split in two
    (`streams.build_stream(part=(i, 2))`, half the minutes each, as long as each half allows), per-class
    thresholds chosen on one half as `calibrate` chooses them (the same budget, smoothing and rules) and
    scored by the real gate on the other, both ways; the counts summed. The chosen thresholds themselves
    were fitted on every voice of the stream, so this is what to expect of them on new voices, not a
    measure of them. {"recall", "false_accepts_per_hour", "hits", "keywords", "false_accepts", "minutes",
    "directions": [...]}, or {"skipped": why} when a half is too small for a stream."""
    from tinyear.device.detector import Detector
    from tinyear.device.sweep import label_table, record_scores, replay_scored

    shape = replace(config, per_class_threshold={})
    halves = []
    try:
        for part in (0, 1):
            s = streams.build_stream(roots, keywords, minutes=minutes / 2, split="validation", seed=seed,
                                     part=(part, 2), fit=True, negatives=negatives)
            with SecondsBar(s.duration_s, bundle.sample_rate, f"held-out check {part + 1}/2", enabled=progress) as shown:
                trace = record_scores(Detector(bundle, config, num_threads=num_threads), s.waveform, progress=shown.update)
            halves.append((trace, s.truth))
    except TinyearError as exc:
        return {"skipped": str(exc)}
    directions, sums = [], {"hits": 0, "keywords": 0, "false_accepts": 0, "seconds": 0.0}
    for cal, chk in ((0, 1), (1, 0)):
        (t, truth), (t2, truth2) = halves[cal], halves[chk]
        budget = int(math.floor(fa_per_hour * t.duration_s / 3600 + 1e-9))
        floors = _floors(truth, keywords, config)
        table = label_table(t, truth, keywords, smoothing_ms=config.smoothing_ms, refractory_ms=config.refractory_ms,
                            rules=shape)
        picked = choose(table, budget, floors)
        if picked is None:
            directions.append({"chosen_on": cal, "scored_on": chk, "budget_met": False})
            continue
        there = replay_scored(t2, replace(shape, per_class_threshold=picked[0]), truth2, keywords)
        directions.append({"chosen_on": cal, "scored_on": chk, "budget_met": True, "recall": there["recall"],
                           "false_accepts_per_hour": there["false_accepts_per_hour"]})
        for k in ("hits", "keywords", "false_accepts"):
            sums[k] += there[k]
        sums["seconds"] += t2.duration_s
    if not sums["seconds"]:
        return {"skipped": f"no thresholds keep false accepts within {fa_per_hour:g}/h on either half", "directions": directions}
    return {"recall": round(sums["hits"] / max(1, sums["keywords"]), 4),
            "false_accepts_per_hour": round(sums["false_accepts"] * 3600 / sums["seconds"], 1),
            "hits": sums["hits"], "keywords": sums["keywords"], "false_accepts": sums["false_accepts"],
            "minutes": round(sum(t.duration_s for t, _ in halves) / 120, 1), "directions": directions}


def _floors(truth, keywords, config: DetectionConfig) -> dict:
    """{keyword: lowest threshold} for the keywords without words in `truth`: the config's shared
    threshold, not their own (a calibrated bundle's own would only ratchet up with each calibration)."""
    present = {w.label for w in truth}
    return {lab: config.threshold for lab in keywords if lab not in present}


def _refuse_trained_on(bundle, negatives) -> None:
    """A --negatives folder the bundle records among its training data would flatter the thresholds:
    refuse it (the record's paths, resolved from here; a folder named differently is not recognised)."""
    trained = (bundle.provenance.get("data") or {}).get("roots") or []
    seen = {Path(r).resolve() for r in trained}
    for folder in negatives:
        if Path(folder).resolve() in seen:
            raise TinyearError(f"--negatives {folder}: the bundle was trained on it, so its clips say nothing about "
                               "speech the model never heard; pass it as DATA (its validation split is used) instead")


def held_out_phrase(check: dict | None) -> str | None:
    """The report's line on the held-out check, or None where there is none."""
    if not check:
        return None
    if "skipped" in check:
        return f"  held out: not measured ({check['skipped']})"
    return (f"  held out: recall {check['recall']:.3f} at {check['false_accepts_per_hour']:.1f} FA/h on validation voices "
            f"the thresholds were not chosen on (chosen on one half of the speakers, scored on the other, both ways; "
            f"{check['minutes']:g}-minute halves): what to expect on new voices")


def delay_phrase(point: dict) -> str:
    """", median delay N ms" of an operating point (`_point`), or "" where it has none (a record written
    before the delay was measured, or a point that found nothing)."""
    lat = point.get("latency_ms")
    return f", median delay {lat['p50']:g} ms" if lat else ""


def within_latency(scored: dict, max_latency_ms: float | None) -> bool:
    """Whether a replayed operating point's median detection delay is within `max_latency_ms` (a point
    that finds nothing has no delay to exceed)."""
    lat = scored.get("latency_ms")
    return max_latency_ms is None or lat is None or lat["p50"] <= max_latency_ms


def smoothing_candidates(smoothing, own: float, max_smoothing_ms: float | None = None) -> list[float]:
    """The smoothings searched: `smoothing` and the bundle's `own`, none above `max_smoothing_ms` (the
    smoothing window is most of a detection's delay: held to 300-500 ms, the 80-epoch bundles of
    docs/BENCHMARKS.md came back from 365-423 ms p50 to 244-277 ms); the bound itself when it is below
    them all."""
    out = sorted({*map(float, smoothing), float(own)})
    if max_smoothing_ms is not None:
        out = [sm for sm in out if sm <= max_smoothing_ms] or [float(max_smoothing_ms)]
    return out


def _rules_of(config: DetectionConfig) -> dict:
    """The searched rules of a config (per-class refractory times stay as the bundle has them)."""
    r = config.rules()
    return {k: r[k] for k in RULE_KEYS}


def _tried(candidates, base_rules) -> list[dict]:
    """For each rule set, its best operating point over the smoothings by the per-label tables (and the
    real gate's count where it was replayed), for the report."""
    best: dict = {}
    for c in candidates:
        if not c["picked"]:
            continue
        hits, fa = c["picked"][1], c["picked"][2]
        words = sum(t["words"] for t in c["table"].values()) or 1
        row = {**c["rules"], "smoothing_ms": c["smoothing_ms"], "hits": hits, "false_accepts": fa,
               "recall": round(hits / words, 4), "bundle_rules": c["rules"] == base_rules}
        if "scored" in c:
            row["gate"] = {k: c["scored"][k] for k in ("hits", "false_accepts", "recall")}
            row["gate"]["latency_p50_ms"] = (c["scored"]["latency_ms"] or {}).get("p50")
        key = tuple(sorted(c["rules"].items()))
        if key not in best or (hits, -fa) > (best[key]["hits"], -best[key]["false_accepts"]):
            best[key] = row
    return list(best.values())


def _check_out(out: Path) -> None:
    """Refuse an --out that cannot be written before the long run, not after it."""
    import os

    from tinyear.device.bundle import SUFFIX

    if out.suffix != SUFFIX:
        raise TinyearError(f"--out {out}: a bundle file name must end in {SUFFIX}")
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir() or (folder.exists() and not os.access(folder, os.W_OK)):
        raise TinyearError(f"--out {out}: cannot write there; choose another --out")


def _point(config, scored: dict) -> dict:
    return {"recall": scored["recall"], "false_accepts_per_hour": scored["false_accepts_per_hour"],
            "hits": scored["hits"], "keywords": scored["keywords"], "false_accepts": scored["false_accepts"],
            "threshold": config.threshold, "per_class_threshold": dict(config.per_class_threshold),
            "smoothing_ms": config.smoothing_ms, **_rules_of(config), "per_label": scored["per_label"],
            "latency_ms": scored["latency_ms"]}


def _possible(candidates, trace, keywords, hours) -> list[dict]:
    """The quietest operating point and the recall at a few looser budgets, for the error message."""
    out = []
    for c in candidates:
        sm, table = c["smoothing_ms"], c["table"]
        quiet = sum(min(fa for _, _, fa in t["rows"]) for t in table.values())
        for fa_h in (None, 10, 20, 50, 100):
            b = quiet if fa_h is None else int(fa_h * hours)
            picked = choose(table, b, {})
            if picked:
                words = sum(t["words"] for t in table.values()) or 1
                out.append({"smoothing_ms": sm, "false_accepts_per_hour": round(picked[2] / hours, 1),
                            "recall": round(picked[1] / words, 3), "per_class_threshold": picked[0]})
    out.sort(key=lambda r: (r["false_accepts_per_hour"], -r["recall"]))
    return out


def write_calibrated(bundle, config: DetectionConfig, result: dict, path) -> Path:
    """Rewrite `bundle` at `path` with `config`'s detection values and the calibration record."""
    from .bundle import rewrite_bundle

    detection = {**bundle.detection, **config.to_dict()}
    record = {k: result[k] for k in ("fa_per_hour_budget", "stream", "false_accepts_allowed", "missing_keywords", "tried",
                                     "max_latency_ms", "latency_bound_met")}
    if "held_out" in result:
        record["held_out"] = result["held_out"]
    record["after"] = {k: v for k, v in result["after"].items() if k != "per_label"}
    record["data"] = [Path(r).name for r in result["data"]]
    if result.get("negatives"):
        record["negatives"] = [Path(r).name for r in result["negatives"]]
    metrics = {**bundle.metrics, "detection_calibration": record}
    return rewrite_bundle(bundle, path, detection=detection, metrics=metrics)


def format_report(result: dict) -> list[str]:
    """The calibration as lines for people."""
    b, s = result["before"], result["stream"]
    negatives = f"; every clip of {', '.join(Path(r).name for r in result['negatives'])}" if result.get("negatives") else ""
    lines = [f"{result['bundle']}: calibrated on a {s['minutes']:g}-minute validation stream "
             f"({', '.join(f'{v} {k}' for k, v in s['words'].items())}; seed {s['seed']}{negatives})",
             f"  budget {result['fa_per_hour_budget']:g} false accepts/hour ({result['false_accepts_allowed']} on this stream)",
             f"  before: recall {b['recall']:.3f} at {b['false_accepts_per_hour']:.1f} FA/h "
             f"(threshold {b['threshold']:g}, smoothing {b['smoothing_ms']:g} ms)"]
    if "after" in result:
        a = result["after"]
        lines.append(f"  after:  recall {a['recall']:.3f} at {a['false_accepts_per_hour']:.1f} FA/h "
                     f"(smoothing {a['smoothing_ms']:g} ms, {describe_rules(a)}{delay_phrase(a)})")
        lines.append("  thresholds: " + ", ".join(f"{k} {v:g}" for k, v in sorted(a["per_class_threshold"].items())))
        held = held_out_phrase(result.get("held_out"))
        if held:
            lines.append(held)
    for t in sorted(result.get("tried", []), key=lambda t: (-t["hits"], t["false_accepts"])):
        lines.append(f"  tried:  {t['hits']} hits, {t['false_accepts']} false accepts with {describe_rules(t)} "
                     f"(smoothing {t['smoothing_ms']:g} ms)")
    if result.get("latency_bound_met") is False:
        lines.append(f"  note: no choice within the budget kept the median delay within {result['max_latency_ms']:g} ms; "
                     "this one finds the most words (--max-latency sets the bound)")
    if result.get("missing_keywords"):
        lines.append(f"  note: no validation words of {', '.join(result['missing_keywords'])}: their thresholds "
                     f"could only rise from {b['threshold']:g}, as far as their false accepts on the stream need; "
                     "give validation clips of them to calibrate them")
    if result.get("written"):
        lines.append(f"  written: {result['written']}")
    lines.append(f"  one model pass over the stream, {result['model_pass_seconds']:g} s; {result['seconds']:g} s in all")
    return lines
