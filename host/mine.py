"""Hard-negative mining: run a model over negative streams made of training material and keep the
1 s windows on which it fires, as `_unknown_` clips to train the next round on.

`mine` builds a stream from the TRAINING split of the data folders (`negative_stream`): `_unknown_`
clips (distractor words), other speech (any folder that is no keyword of the model, e.g.
`../shared/data/other-speech`'s wake phrases), keyword clips cut so that only a part of the word
remains (at most `windows.FRAGMENT_SHARE` of its active energy: what the window rule of
`tinyear.host.windows` calls no keyword), one every 1.5-3 s over the training part of the background
noise (a bed at an average word's level less 17.5 dB: 10-25 dB SNR), with stretches of noise alone. Every word is trimmed and levelled as
`tinyear.host.streams` does for validation streams. The model runs over the stream with the live
detector and its own detection settings (a bundle's; a run folder gets the kit's defaults): the real
`DecisionGate`, so every event is one the device would raise. Each event's deciding window (the 1 s
before the event's time) is written as a 1 s FLAC into `<out>/_unknown_/`.

Names keep the training split. A mined clip is `<word>_<speaker>_nohash_<model>-<seed>-<n>.flac`:
`tinyear.host.data`'s rule reads the speaker key after the word in `_unknown_/` and hashes it
(`speakers.speaker_split`) into a split, so a window keyed by its source clip's speaker lands in the
split that speaker's hash says; when that is not "train" (a root split by list files, where the hash
is not what put the speaker in training) or the window holds no word (it fired on noise), the key gets
a suffix (`m1`, `m2`, ...) until it hashes into train. The source word is the one the window holds
most of (letters and digits only, since `_` separates word and speaker). A mined clip can thus never
land in validation or test, whatever its source, at the default 10/10 split percentages.

Imports numpy, soundfile and the device half; torch only to score a run folder.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyear.device.errors import TinyearError

MINE_VERSION = 1
SHARES = {"distractor": 0.4, "other": 0.3, "fragment": 0.3}
GAP_S = (1.5, 3.0)
NOISE_ONLY = 0.1  # chance that a slot holds no word (noise alone)
DEFAULT_MINUTES = 20.0
KINDS = ("distractor", "other", "fragment", "noise")


@dataclass
class Placed:
    start: int  # samples
    end: int
    kind: str
    word: str
    speaker: str
    clip: str


def _fragment(x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """A keyword clip's word cut at a random point so that the part kept (its start or its end) holds
    at most FRAGMENT_SHARE of the word's active energy."""
    from .windows import FRAGMENT_SHARE, HOP, active_energy

    e = active_energy(x[None], HOP * sr // 16000)[0]
    hop = len(x) // max(1, len(e))
    total = e.sum()
    if total <= 0:
        return x[: len(x) // 4]
    keep = rng.uniform(0.1, FRAGMENT_SHARE) * total
    if rng.random() < 0.5:  # the onset only: the word cut off at its end
        frames = int(np.searchsorted(np.cumsum(e), keep, side="right"))
        return x[: max(1, frames) * hop]
    frames = int(np.searchsorted(np.cumsum(e[::-1]), keep, side="right"))
    return x[len(x) - max(1, frames) * hop :]


def negative_pools(data, keywords, *, seed: int = 0, quiet: bool = True):
    """({"distractor": [Clip], "other": [...], "fragment": [...]}, noise recordings, sample rate) of the
    training split of `data`; a one-line error when it has no training clips or no `_unknown_` ones."""
    from .data import UNKNOWN, load_dataset

    roots = [str(r) for r in (data if isinstance(data, (list, tuple)) else [data])]
    for r in roots:
        if not Path(r).is_dir():
            raise TinyearError(f"{r}: no such dataset folder")
    try:
        dataset = load_dataset(roots, tuple(keywords), seed=seed, unknown_ratio=None, silence_ratio=None,
                               allow_missing=True, quiet=quiet)
    except TinyearError as exc:
        raise TinyearError(f"{', '.join(roots)}: {exc}") from None
    clips = [c for c in dataset.clips_in("train") if c.path is not None]
    if not clips:
        raise TinyearError(f"{', '.join(roots)}: no training clips; mining takes the training split only")
    pools = {"distractor": [c for c in clips if c.label == UNKNOWN and c.path.parent.name == UNKNOWN],
             "other": [c for c in clips if c.label == UNKNOWN and c.path.parent.name != UNKNOWN],
             "fragment": [c for c in clips if c.label in keywords]}
    if not pools["distractor"] and not pools["other"]:
        raise TinyearError(f"{', '.join(roots)}: no _unknown_ clips (non-keyword speech) in the training split; "
                           "give a folder with _unknown_/ or other speech (e.g. ../shared/data/other-speech)")
    noise = [x for x in dataset.noise_by_split.get("train", []) if len(x)]
    if not noise:
        from .noise import noise_bank

        noise = [x for _, x in noise_bank(60.0, dataset.sample_rate, seed)]
    return pools, noise, dataset.sample_rate


def negative_stream(pools, noise, sr: int, *, minutes: float, seed: int):
    """(waveform float32, [Placed]) of a `minutes`-long negative stream (see the module docstring)."""
    from tinyear.device.audio import load_audio
    from tinyear.device.streameval import mix_word

    from .streams import SNR_DB, WORD_DB, _noise_piece, _rms_db, active_span

    rng = np.random.default_rng([seed, 0x6D696E65])
    shares = {k: v for k, v in SHARES.items() if pools.get(k)}
    kinds = sorted(shares)
    p = np.array([shares[k] for k in kinds]) / sum(shares.values())
    queues = {k: [] for k in kinds}
    n = int(minutes * 60 * sr)
    stream = np.zeros(n, np.float32)
    # Background: the training noise under everything, at the level of an average word less the
    # average SNR of the validation streams; each word's level then sets its own SNR against it.
    bed_db = float(np.mean(WORD_DB) - np.mean(SNR_DB))
    for s in range(0, n, 10 * sr):
        piece = _noise_piece(noise, min(10 * sr, n - s), rng)
        stream[s : s + len(piece)] += piece * np.float32(10 ** ((bed_db - _rms_db(piece)) / 20))
    placed: list[Placed] = []
    loaded: dict = {}
    onset = 1.0 + rng.uniform(0, GAP_S[0])
    while True:
        start = int(onset * sr)
        onset += rng.uniform(*GAP_S)
        if start + 2 * sr > n:
            break
        if rng.random() < NOISE_ONLY:
            continue
        kind = kinds[int(rng.choice(len(kinds), p=p))]
        if not queues[kind]:
            queues[kind] = [pools[kind][i] for i in rng.permutation(len(pools[kind]))]
        clip = queues[kind].pop()
        if clip.path not in loaded:
            loaded[clip.path] = load_audio(clip.path, sr)
        x = loaded[clip.path]
        if kind == "fragment":
            x = _fragment(x, rng, sr)
        a, b = active_span(x, sr)
        word = x[a:b]
        if len(word) == 0 or not np.any(word):
            continue
        word = word * np.float32(10 ** ((rng.uniform(*WORD_DB) - _rms_db(word)) / 20))
        word = mix_word(stream, start, word)
        spoken = clip.word or clip.path.parent.name
        placed.append(Placed(start, start + len(word), kind, spoken, clip.speaker or clip.path.stem, str(clip.path)))
    return np.clip(stream, -1.0, 1.0), placed


def train_key(speaker: str, validation_percent: float = 10.0, testing_percent: float = 10.0) -> str:
    """`speaker`, or `speaker` + "m<k>" for the smallest k that hashes into the train split."""
    from .data.speakers import speaker_split

    key = re.sub(r"[^A-Za-z0-9-]", "", speaker) or "noise"
    if speaker_split(key, validation_percent, testing_percent) == "train":
        return key
    k = 1
    while speaker_split(f"{key}m{k}", validation_percent, testing_percent) != "train":
        k += 1
    return f"{key}m{k}"


def _model(model_path, num_threads: int):
    """(Detector, model tag) for a bundle file or a run folder (its float model, the kit's default
    detection settings)."""
    from tinyear.device.bundle import Bundle, read_bundle
    from tinyear.device.detection import DetectionConfig, default_detection
    from tinyear.device.detector import Detector

    path = Path(model_path)
    if path.is_dir():
        from tinyear.device.runtime import softmax

        from .evaluate import load_scorer

        if not (path / "best.pt").exists():
            raise TinyearError(f"{path}: not a run folder (no best.pt) nor a .tinyear bundle")
        scorer = load_scorer(path)
        bundle = Bundle(model_bytes=b"", labels=scorer.labels, frontend=scorer.frontend, detection=default_detection())

        def probabilities(features):
            return softmax(scorer.logits(np.asarray(features, np.float32)[None])[0])

        tag = hashlib.sha1((path / "best.pt").read_bytes()).hexdigest()[:6]
        return Detector(bundle, DetectionConfig.from_bundle(bundle), scorer=probabilities), tag
    if not path.is_file():
        raise TinyearError(f"{path}: no such bundle or run folder")
    bundle = read_bundle(path)
    return Detector(bundle, DetectionConfig.from_bundle(bundle), num_threads=num_threads), bundle.model_sha256[:6]


def mine(model_path, data, out_dir, *, minutes: float = DEFAULT_MINUTES, seed: int = 0, num_threads: int = 1,
         progress: bool = True) -> dict:
    """Mine hard negatives of `model_path` on the training split of `data` into `out_dir`/_unknown_/;
    returns the summary (also written to `out_dir`/mine-<model>-<seed>.json)."""
    import soundfile as sf

    from tinyear.device.detector import detect_array
    from tinyear.device.fileio import atomic_path, atomic_write_text

    from .data import UNKNOWN
    from .progress import SecondsBar

    if not minutes > 0:
        raise TinyearError(f"--minutes {minutes:g}: a stream needs a positive length")
    detector, tag = _model(model_path, num_threads)
    if UNKNOWN not in detector.labels:
        raise TinyearError(f"{model_path}: the model has no _unknown_ label to mine for")
    keywords = [lab for lab in detector.labels if lab not in detector.config.ignore]
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TinyearError(f"--out {out}: exists and is not a folder")
    pools, noise, sr = negative_pools(data, keywords, seed=seed, quiet=not progress)
    if sr != detector.frontend_config.sample_rate:
        raise TinyearError(f"the data is at {sr} Hz, the model takes {detector.frontend_config.sample_rate} Hz")
    wave, placed = negative_stream(pools, noise, sr, minutes=minutes, seed=seed)
    with SecondsBar(len(wave) / sr, sr, "scoring the negative stream", enabled=progress) as shown:
        events = detect_array(detector, wave, chunk_samples=sr // 10, progress=shown.update)
    clip_samples = detector.frontend_config.clip_samples
    starts = np.array([p.start for p in placed], np.int64)
    ends = np.array([p.end for p in placed], np.int64)
    folder = out / UNKNOWN
    folder.mkdir(parents=True, exist_ok=True)
    written, fired, by_kind = [], {}, {k: 0 for k in KINDS}
    for i, ev in enumerate(events):
        end = min(len(wave), int(round(ev.time * sr)))
        begin = max(0, end - clip_samples)
        window = np.zeros(clip_samples, np.float32)
        window[clip_samples - (end - begin):] = wave[begin:end]
        overlap = np.clip(np.minimum(ends, end) - np.maximum(starts, begin), 0, None) if len(placed) else np.zeros(0)
        if len(overlap) and overlap.max() > 0:
            src = placed[int(overlap.argmax())]
            word, speaker, kind, clip = re.sub(r"[^A-Za-z0-9]", "", src.word) or "word", src.speaker, src.kind, src.clip
        else:
            word, speaker, kind, clip = "noise", "noise", "noise", ""
        key = train_key(speaker)
        name = f"{word}_{key}_nohash_{tag}-{seed}-{i:05d}.flac"
        with atomic_path(folder / name) as tmp:
            sf.write(str(tmp), window, sr, format="FLAC", subtype="PCM_16")
        written.append({"file": f"{UNKNOWN}/{name}", "time_s": round(ev.time, 3), "label": ev.label,
                        "score": round(float(ev.score), 4), "kind": kind, "source": clip})
        fired[ev.label] = fired.get(ev.label, 0) + 1
        by_kind[kind] += 1
    hours = len(wave) / sr / 3600
    summary = {"model": str(model_path), "data": [str(d) for d in (data if isinstance(data, (list, tuple)) else [data])],
               "out": str(out), "split": "train", "seed": seed, "version": MINE_VERSION,
               "stream": {"minutes": round(len(wave) / sr / 60, 2),
                          "words": {k: sum(p.kind == k for p in placed) for k in SHARES},
                          "pools": {k: len(v) for k, v in pools.items()}},
               "detection": detector.config.to_dict(), "count": len(written),
               "windows_per_hour": round(len(written) / hours, 1) if hours else 0.0,
               "fired_labels": dict(sorted(fired.items(), key=lambda kv: -kv[1])), "fired_on": by_kind,
               "clips": written}
    atomic_write_text(out / f"mine-{tag}-{seed}.json", json.dumps(summary, indent=1) + "\n")
    return summary


def format_summary(s: dict) -> list[str]:
    labels = ", ".join(f"{k} {v}" for k, v in s["fired_labels"].items()) or "none"
    kinds = ", ".join(f"{k} {v}" for k, v in s["fired_on"].items() if v) or "nothing"
    return [f"{s['model']} fired {s['count']} times on a {s['stream']['minutes']:g}-minute negative stream of "
            f"{', '.join(s['data'])} [train] ({s['windows_per_hour']:g} per hour)",
            f"  labels that fired: {labels}",
            f"  on: {kinds}",
            f"  {s['count']} windows written to {Path(s['out']) / '_unknown_'}; train on them with "
            f"`tinyear distill DATA ... {s['out']}`"]
