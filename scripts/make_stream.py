#!/usr/bin/env python3
"""Build a long test stream from a dataset folder: words at random times over background noise, and
the truth CSV (`start,end,label` of each word's active part) that `tinyear-device classify --stream
--truth` scores against.

    python scripts/make_stream.py DATASET OUT.wav [--minutes 15] [--seed 0] [--truth OUT.csv]

DATASET has one folder per label holding clips (any format soundfile reads): the keyword folders
(every folder except the special ones below, or those named by --words), `_unknown_` (other words:
they replace --unknown of the words and count as nothing to detect), and for the background
`_background_noise_` (long recordings) or else `_silence_` (short background clips), or any folder given
with --noise. Defaults follow FINDINGS.md: a word every 2.5-5 s (onset to onset), 20% of them other
words, each word at -26..-12 dBFS RMS over its active part, background at -50..-30 dBFS RMS, nothing
clipped. The same arguments give the same stream. Written as 16 kHz 16-bit WAV, atomically (temporary
files renamed at the end).

Device-side code only (tinyear.device, numpy, soundfile): it runs where the detector runs. Use the
evaluation set (`speech-commands-v2-test-public`) only to evaluate, never to tune thresholds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from tinyear.device.audio import load_audio
from tinyear.device.errors import TinyearError
from tinyear.device.fileio import atomic_path
from tinyear.device.streameval import ProgressLine, TruthWord, mix_word, write_truth

SR = 16000
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}
SPECIAL = {"_unknown_", "_silence_", "_background_noise_"}


def clips_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES) if folder.is_dir() else []


def active_span(x: np.ndarray, floor_db: float = 30.0) -> tuple[int, int]:
    """(start, end) samples of the part of a clip within floor_db of its loudest 10 ms frame."""
    hop = SR // 100
    n = max(1, len(x) // hop)
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1) + 1e-20)
    on = np.nonzero(rms >= rms.max() * 10 ** (-floor_db / 20))[0]
    return int(on[0] * hop), int(min(len(x), (on[-1] + 1) * hop))


def rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.asarray(x, dtype=np.float64) ** 2) + 1e-20)


def background(noise_files: list[Path], n: int, rng: np.random.Generator, level_db: tuple[float, float]) -> np.ndarray:
    """n samples of background: segments of 5-15 s, each from one recording (or consecutive short clips)
    at its own level, joined with 50 ms crossfades."""
    cache: dict[Path, np.ndarray] = {}

    def audio(path: Path) -> np.ndarray:
        if path not in cache:
            cache[path] = load_audio(path, SR)
        return cache[path]

    fade = SR // 20
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    out = np.zeros(n + fade, dtype=np.float32)
    pos = 0
    while pos < n:
        length = int(rng.uniform(5, 15) * SR) + fade
        pieces, have = [], 0
        while have < length:
            x = audio(noise_files[rng.integers(len(noise_files))])
            start = int(rng.integers(0, max(1, len(x) - (length - have))))
            piece = x[start : start + length - have]
            pieces.append(piece)
            have += len(piece)
        seg = np.concatenate(pieces)[:length]
        seg = seg * np.float32(10 ** ((rng.uniform(*level_db) - rms_db(seg)) / 20))
        seg[:fade] *= ramp
        seg[-fade:] *= ramp[::-1]
        end = min(pos + length, len(out))
        out[pos:end] += seg[: end - pos]
        pos += length - fade
    return out[:n]


def build(dataset: Path, minutes: float, rng: np.random.Generator, *, words=None, unknown_share=0.2,
          gap=(2.5, 5.0), word_db=(-26.0, -12.0), noise_db=(-50.0, -30.0), noise_dir: Path | None = None,
          lead_s: float = 1.5, progress=None):
    """(waveform float32 at 16 kHz, [TruthWord]) for a stream of `minutes` minutes."""
    if not dataset.is_dir():
        raise TinyearError(f"{dataset}: no such dataset folder")
    folders = sorted(p for p in dataset.iterdir() if p.is_dir())
    keywords = list(words) if words else [p.name for p in folders if p.name not in SPECIAL]
    pools = {w: clips_in(dataset / w) for w in keywords}
    empty = [w for w, files in pools.items() if not files]
    if empty or not keywords:
        raise TinyearError(f"{dataset}: no clips for {', '.join(empty) or 'any keyword'}; expected one folder of clips per label")
    unknown = clips_in(dataset / "_unknown_") if unknown_share > 0 else []
    if noise_dir is not None:
        noise = clips_in(noise_dir)
    else:
        noise = clips_in(dataset / "_background_noise_") or clips_in(dataset / "_silence_")
    if not noise:
        raise TinyearError(f"{dataset}: no background recordings (_background_noise_/ or _silence_/); give --noise DIR")

    n = int(minutes * 60 * SR)
    stream = background(noise, n, rng, noise_db)
    truth = []
    onset = lead_s + rng.uniform(0, gap[0])
    while True:
        is_other = bool(unknown) and rng.uniform() < unknown_share
        label = "_unknown_" if is_other else keywords[rng.integers(len(keywords))]
        path = (unknown if is_other else pools[label])[rng.integers(len(unknown if is_other else pools[label]))]
        clip = load_audio(path, SR)
        a, b = active_span(clip)
        word = clip[a:b]
        start = int(onset * SR)
        if start + len(word) > n - SR:
            break
        word = word * np.float32(10 ** ((rng.uniform(*word_db) - rms_db(word)) / 20))
        word = mix_word(stream, start, word)
        truth.append(TruthWord(start / SR, (start + len(word)) / SR, label))
        if progress is not None:
            progress(onset)
        onset += rng.uniform(*gap)
    return stream, truth


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, help="folder with one sub-folder of clips per label")
    parser.add_argument("out", type=Path, help="the stream to write (.wav)")
    parser.add_argument("--truth", type=Path, default=None, help="truth CSV to write (default: OUT with .csv)")
    parser.add_argument("--minutes", type=float, default=15.0, help="length of the stream")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--words", default=None, help="comma-separated keyword folders (default: all but the special ones)")
    parser.add_argument("--unknown", type=float, default=0.2, help="share of words taken from _unknown_")
    parser.add_argument("--gap", type=float, nargs=2, default=(2.5, 5.0), metavar=("MIN", "MAX"), help="seconds from one word's onset to the next")
    parser.add_argument("--word-level", type=float, nargs=2, default=(-26.0, -12.0), metavar=("MIN", "MAX"), help="word RMS over its active part, dBFS")
    parser.add_argument("--noise-level", type=float, nargs=2, default=(-50.0, -30.0), metavar=("MIN", "MAX"), help="background RMS, dBFS")
    parser.add_argument("--noise", type=Path, default=None, help="folder of background recordings (default: DATASET/_background_noise_ or _silence_)")
    args = parser.parse_args(argv)
    truth_path = args.truth or args.out.with_suffix(".csv")
    try:
        bar = ProgressLine(args.minutes * 60, "placing words")
        stream, truth = build(args.dataset, args.minutes, np.random.default_rng(args.seed),
                              words=args.words.split(",") if args.words else None, unknown_share=args.unknown,
                              gap=tuple(args.gap), word_db=tuple(args.word_level), noise_db=tuple(args.noise_level),
                              noise_dir=args.noise, progress=lambda t: bar.update(t - bar.done))
        bar.close()
    except TinyearError as exc:
        print(f"make_stream: error: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp_wav, atomic_path(truth_path) as tmp_csv:
        sf.write(str(tmp_wav), stream, SR, subtype="PCM_16", format="WAV")
        write_truth(tmp_csv, truth)
    counts = {}
    for w in truth:
        counts[w.label] = counts.get(w.label, 0) + 1
    print(f"{args.out}: {len(stream) / SR / 60:.1f} min, {len(truth)} words "
          f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}); truth in {truth_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
