#!/usr/bin/env python3
"""Does a calibration hold on voices it did not see? Split the VALIDATION speakers of DATA in two
(`tinyear.host.streams.build_stream(part=(i, 2))`), calibrate on a stream of one half, and score the
chosen thresholds on a stream of the other half (and the other way round); beside it, the best single
shared threshold chosen the same way. Prints a Markdown table. No test data is read.
With --rules, one row per detection rule set of `calibrate.RULE_GRID` (per-class thresholds and the
smoothing chosen with each, as calibrate does) instead: do the rules that pay on one half pay on the other?

    python scripts/bench_calibrate.py BUNDLE DATA [DATA ...] [--minutes 15] [--budgets 5,10,20] [--rules]
"""

from __future__ import annotations

import argparse
import sys

from tinyear.device.bundle import read_bundle
from tinyear.device.detection import DetectionConfig
from tinyear.device.detector import Detector
from tinyear.device.errors import TinyearError
from tinyear.device.sweep import curve, label_table, record_scores, replay_scored
from dataclasses import replace

from tinyear.device.detection import describe_rules
from tinyear.host.calibrate import RULE_GRID, SMOOTHING_MS, choose
from tinyear.host.streams import build_stream


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("data", nargs="+")
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--budgets", default="5,10,20")
    ap.add_argument("--rules", action="store_true", help="compare the detection rule sets calibrate searches")
    args = ap.parse_args(argv)
    try:
        b = read_bundle(args.bundle)
        base = DetectionConfig.from_bundle(b)
        kw = [lab for lab in b.labels if lab not in base.ignore]
        halves = []
        for part in (0, 1):
            s = build_stream(args.data, kw, minutes=args.minutes, part=(part, 2))
            halves.append((record_scores(Detector(b, base), s.waveform), s.truth))
    except TinyearError as exc:
        print(f"bench_calibrate: error: {exc}", file=sys.stderr)
        return 1
    if args.rules:
        return rule_table(halves, kw, base, [float(x) for x in args.budgets.split(",")])
    print("| budget (FA/h) | calibrated on | method | smoothing | recall there | FA/h there | recall on the other half | FA/h on the other half |")
    print("|---|---|---|---|---|---|---|---|")
    for budget_h in (float(x) for x in args.budgets.split(",")):
        for cal, chk in ((0, 1), (1, 0)):
            (t, truth), (t2, truth2) = halves[cal], halves[chk]
            budget = int(budget_h * t.duration_s / 3600 + 1e-9)
            best = {"per-class": None, "shared": None}
            for sm in SMOOTHING_MS:
                picked = choose(label_table(t, truth, kw, smoothing_ms=sm, refractory_ms=base.refractory_ms), budget, {})
                if picked and (best["per-class"] is None or picked[1] > best["per-class"][0]):
                    best["per-class"] = (picked[1], DetectionConfig(per_class_threshold=picked[0], smoothing_ms=sm,
                                                                     refractory_ms=base.refractory_ms, hop_ms=base.hop_ms))
                ok = [r for r in curve(t, truth, kw, smoothing_ms=sm, refractory_ms=base.refractory_ms)
                      if r["false_accepts"] <= budget]
                if ok:
                    r = max(ok, key=lambda r: (r["hits"], r["threshold"]))
                    if best["shared"] is None or r["hits"] > best["shared"][0]:
                        best["shared"] = (r["hits"], DetectionConfig(threshold=r["threshold"], smoothing_ms=sm,
                                                                      refractory_ms=base.refractory_ms, hop_ms=base.hop_ms))
            for method, found in best.items():
                if found is None:
                    print(f"| {budget_h:g} | half {cal} | {method} | – | budget not met | | | |")
                    continue
                here, there = replay_scored(t, found[1], truth, kw), replay_scored(t2, found[1], truth2, kw)
                print(f"| {budget_h:g} | half {cal} | {method} | {found[1].smoothing_ms:g} ms | {here['recall']:.3f} | "
                      f"{here['false_accepts_per_hour']:.1f} | {there['recall']:.3f} | {there['false_accepts_per_hour']:.1f} |")
    return 0


def rule_table(halves, kw, base, budgets) -> int:
    """Per rule set: calibrated on each half (smoothing and per-class thresholds, most hits within the
    budget by the tables, ties to fewer false accepts), scored by the real gate on both halves."""
    print("| budget (FA/h) | calibrated on | rules | smoothing | hits there | false accepts there | hits on the other half | false accepts there |")
    print("|---|---|---|---|---|---|---|---|")
    for budget_h in budgets:
        for cal, chk in ((0, 1), (1, 0)):
            (t, truth), (t2, truth2) = halves[cal], halves[chk]
            budget = int(budget_h * t.duration_s / 3600 + 1e-9)
            for rule in RULE_GRID:
                best = None
                for sm in SMOOTHING_MS:
                    shape = replace(base, smoothing_ms=sm, per_class_threshold={}, **rule)
                    picked = choose(label_table(t, truth, kw, smoothing_ms=sm, refractory_ms=base.refractory_ms, rules=shape),
                                    budget, {})
                    if picked and (best is None or (picked[1], -picked[2]) > (best[0][1], -best[0][2])):
                        best = (picked, replace(shape, per_class_threshold=picked[0]))
                if best is None:
                    print(f"| {budget_h:g} | half {cal} | {describe_rules(rule)} | – | budget not met | | | |")
                    continue
                here, there = replay_scored(t, best[1], truth, kw), replay_scored(t2, best[1], truth2, kw)
                print(f"| {budget_h:g} | half {cal} | {describe_rules(rule)} | {best[1].smoothing_ms:g} ms | "
                      f"{here['hits']}/{here['keywords']} | {here['false_accepts']} | {there['hits']}/{there['keywords']} | "
                      f"{there['false_accepts']} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
