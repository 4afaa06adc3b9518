"""Int8 export benchmark: post-training quantization (PTQ) vs quantization-aware fine-tuning (QAT) of
one trained student, side by side in one run, and the "## Int8 export" section of docs/BENCHMARKS.md.

For each student run given, it exports a PTQ bundle and a QAT bundle (`tinyear export`, same run, same
seed), then scores the float student and both int8 models on the run's test split and on real speech
(the public Speech Commands test part: evaluation only; the verification numbers printed by export
are on the validation split). Columns: float -> int8 agreement and drop (validation), test and real
accuracy, model bytes, TFLite Micro arena, export wall time.

    python scripts/bench_export.py runs/real/baseline runs/real/student [--qat-epochs 2] [--out docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from datetime import date
from pathlib import Path

from tinyear.device.fileio import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
REAL_TEST = ROOT.parent / "shared" / "data" / "speech-commands-v2-test-public"
SECTION = "## Int8 export"


def replace_section(text: str, section: str, body: str) -> str:
    """`text` with the Markdown section titled `section` replaced by `body` (appended when absent)."""
    pattern = re.compile(rf"^{re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    block = body.rstrip() + "\n\n"
    return pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block


def bench_one(run: Path, args):
    """PTQ and QAT exports of one student run, scored: (table rows, run meta, data roots, TFLM bit-exact)."""
    from tinyear.host.evaluate import evaluate
    from tinyear.host.export import ExportOptions, export_run
    from tinyear.host.qat import QatConfig
    from tinyear.host.runs import load_run

    _, meta = load_run(run, "student")
    roots = list((meta.get("data") or {}).get("roots") or [])
    work = args.work / run.name
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for kind in ("ptq", "qat"):
        options = ExportOptions(calibration=args.calibration, qat=kind == "qat",
                                qat_config=QatConfig(epochs=args.qat_epochs))
        t0 = time.time()
        info = export_run(run, work / f"{kind}.tinyear", options)
        info["export_seconds"] = time.time() - t0
        results[kind] = info
        print(f"{run} {kind}: exported in {info['export_seconds']:.0f} s", file=sys.stderr)

    scores = {}
    for name, model in (("float", run), ("ptq", work / "ptq.tinyear"), ("qat", work / "qat.tinyear")):
        test = evaluate(model, roots, split="test", progress=False)
        real = evaluate(model, [str(REAL_TEST)], split="all", progress=False) if REAL_TEST.exists() else None
        scores[name] = {"test": test["accuracy"], "real": None if real is None else real["accuracy"]}
        print(f"{run} {name}: test {test['accuracy']:.2f}%, real {scores[name]['real']}", file=sys.stderr)
    atomic_write_text(work / "results.json", json.dumps({"scores": scores, "exports": {
        k: {kk: vv for kk, vv in v.items() if kk != "report"} for k, v in results.items()}}, indent=1) + "\n")

    def real(name):
        return "–" if scores[name]["real"] is None else f"{scores[name]['real']:.1f}%"

    m = {k: results[k]["metrics"] for k in results}
    rows = [f"| float student | – | – | {scores['float']['test']:.1f}% | {real('float')} | – | – | – |"]
    for kind, title in (("ptq", "int8, PTQ"), ("qat", f"int8, QAT ({args.qat_epochs} epochs)")):
        v = m[kind]
        rows.append(f"| {title} | {v['agreement_percent']:.1f}% | {v['accuracy_drop_points']:+.2f} | "
                    f"{scores[kind]['test']:.1f}% | {real(kind)} | {v['model_bytes']:,} | {v['tflm_arena_bytes']:,} | "
                    f"{results[kind]['export_seconds']:.0f} s |")
    return rows, meta, roots, all(m[k]["microcontroller_ready"] for k in m)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, nargs="+", help="student run folders (tinyear distill --out)")
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--calibration", type=int, default=500)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-export")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    args = parser.parse_args()

    blocks, tflm = [], True
    for run in args.run:
        rows, meta, roots, ok = bench_one(run, args)
        tflm = tflm and ok
        blocks += [f"Student `{run}` ({meta.get('name')}), trained on {', '.join(Path(r).name for r in roots)}"
                   + (f", distilled from `{(meta.get('teacher') or {}).get('source') or 'a teacher'}` (QAT distils from it too)"
                      if meta.get("teacher") else ", no teacher") + ":", "",
                   "| model | agreement | drop (points) | test acc | real speech acc | model bytes | TFLM arena | export time |",
                   "|---|---|---|---|---|---|---|---|", *rows, ""]
    command = "python scripts/bench_export.py " + " ".join(sys.argv[1:])
    body = "\n".join([
        SECTION, "",
        f"Command: `{command}` ({date.today()}, {platform.machine()}, 2 cores, Python {platform.python_version()}). "
        "Agreement and drop are float vs int8 top-1 on the validation split (what export verifies); test is the "
        "dataset's own test split; real is the public Speech Commands test part (evaluation only). Same student, "
        "same seed, PTQ and QAT exported one after the other.", "",
        *blocks,
        "Targets: agreement >= 98%, drop <= 1 point (PTQ), <= 0.5 (QAT). "
        + ("Every int8 model ran under the TFLite Micro interpreter with outputs bit-identical to LiteRT's "
           "reference kernels." if tflm else "TFLite Micro did NOT match LiteRT for at least one model (see results.json)."),
    ])
    atomic_write_text(args.out, replace_section(args.out.read_text() if args.out.exists() else "# Benchmarks\n", SECTION, body))
    print(body)


if __name__ == "__main__":
    main()
