"""DDP benchmark: the same `tinyear distill` (or `tinyear teacher`) run on 1 and on N processes of this
machine (`--nproc`, torch's launcher, gloo on the CPU or NCCL with --device cuda), training throughput
and validation accuracy side by side, as the Markdown rows of docs/BENCHMARKS.md.

Data: a few words of the shared speech-commands-mini-train (real speech; validation split only, no
test set is read), or `--tones` (the tests' tone dataset, made here). The feature cache is made by a
warm-up epoch first, so every timed run reads the same cached features and only training is compared.
Throughput is training clips x epochs / train seconds (run.json's train_seconds: the epochs, their
validation included; not feature making, not start-up).

    nice -n 15 python scripts/bench_ddp.py --out /tmp/bench-ddp              # dscnn-m, 1 vs 2 processes
    nice -n 15 python scripts/bench_ddp.py --out /tmp/bench-ddp --kind teacher --epochs 2
    python scripts/bench_ddp.py --out /tmp/bench-ddp --nproc 1 2 4 8 --device cuda   # a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MINI = ROOT.parent / "shared" / "data" / "speech-commands-mini-train"


def run(args, nproc: int, out: Path, epochs: int, env: dict) -> dict:
    kind = ["teacher"] if args.kind == "teacher" else ["distill", "--no-teacher", "--student", args.student]
    cmd = [sys.executable, "-m", "tinyear.host.cli", *kind, str(args.data), "--words", *args.words, "--out", str(out),
           "--epochs", str(epochs), "--patience", str(epochs), "--variants", str(args.variants),
           "--batch-size", str(args.batch_size), "--device", args.device, "--nproc", str(nproc),
           "--force", "--quiet", "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return {"info": json.loads(proc.stdout.strip().splitlines()[-1]), "wall": time.perf_counter() - t0}


def train_clips(info: dict) -> int:
    return sum(info["data"]["summary"]["per_split"]["train"].values())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="scratch folder for the runs (and the tone data)")
    p.add_argument("--kind", choices=["student", "teacher"], default="student")
    p.add_argument("--student", default="dscnn-m")
    p.add_argument("--tones", action="store_true", help="the tests' tone dataset instead of the mini-train words")
    p.add_argument("--words", nargs="+", default=["yes", "no", "up", "down"])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--variants", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.tones:
        sys.path.insert(0, str(ROOT / "tests"))
        import train_data

        args.data = train_data.make_dataset(args.out / "tones", per_word=200)
        args.words = list(train_data.WORDS)
    else:
        if not MINI.is_dir():
            sys.exit(f"{MINI} is missing; use --tones")
        args.data = MINI
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.setdefault("TINYEAR_CACHE", str(args.out / "cache"))
    run(args, 1, args.out / "warmup", 1, env)  # makes the feature cache every timed run reads
    rows = []
    for n in args.nproc:
        r = run(args, n, args.out / f"{args.kind}-np{n}", args.epochs, env)
        info = r["info"]
        clips = train_clips(info)
        rate = clips * info["epochs_run"] / info["train_seconds"]
        rows.append({"nproc": n, "clips_per_s": rate, "train_seconds": info["train_seconds"],
                     "val_acc": info["metrics"]["validation"]["accuracy"], "wall": r["wall"],
                     "distributed": info["distributed"], "train_clips": clips, "epochs": info["epochs_run"],
                     "name": info["name"], "params": info["params"]})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    base = rows[0]["clips_per_s"]
    print(f"\n{args.kind} {rows[0]['name']} ({rows[0]['params']:,} parameters), {rows[0]['train_clips']} training "
          f"clips x {args.epochs} epochs, batch {args.batch_size} (global), {args.device}, {os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()}\n")
    print("| processes | backend | training clips/s | speed-up | train time | validation accuracy | wall (incl. start-up) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['nproc']} | {r['distributed']['backend'] or '-'} | {r['clips_per_s']:.0f} | "
              f"{r['clips_per_s'] / base:.2f}x | {r['train_seconds']:.1f} s | {100 * r['val_acc']:.1f}% | "
              f"{r['wall']:.0f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
