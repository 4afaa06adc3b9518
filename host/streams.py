"""Long test streams built from one split of a dataset, for calibrating and scoring the detector.

`build_stream` reads the dataset folders as `tinyear.host.data` splits them (speaker hash or list
files; every clip of the split, no ratios) and lays words end to end over background noise, one word
every 2.5-5 s (onset to onset): keywords (the model's words), distractor words (clips of a `_unknown_/`
folder: other short words) and other speech (any other folder, e.g. `other-speech`'s wake phrases:
multi-syllable speech that holds keyword-like sounds), in `shares`. Each word is trimmed to its active
part, set to a level in `word_db`, and laid over background at a signal-to-noise ratio drawn from
`snr_db` (the background under each word's slot is scaled to that SNR, with 50 ms crossfades). The
background is the split's own stretch of the `_background_noise_/` recordings, else the split's
`_silence_/` clips, else coloured noise. Distractors and other speech are false accepts if a keyword
fires on them; the truth rows name them `_unknown_`.

`negatives`: more folders of speech without the keywords that the model never trained on (e.g.
`other-speech` for a bundle trained without it): EVERY clip of them joins the distractor (a `_unknown_/`
folder) or other-speech pool, not only their validation split; a keyword clip among them is refused. A
clip is used at most `max_uses` times (each time at another level, SNR and noise); a split too small for
the stream asked for is a one-line error naming the pool that ran out and the longest stream it allows.
`part=(i, n)` keeps the i-th of n speaker-disjoint parts of the split (to check a calibration on voices
it did not see). Calibration uses the validation split (speakers disjoint from training); never build
one from a test set for tuning. The same data, split, seed and options give the same stream. Imports
numpy and the device half; never torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyear.device.audio import load_audio
from tinyear.device.errors import TinyearError
from tinyear.device.streameval import TruthWord, mix_word, write_truth

SHARES = {"keyword": 0.6, "distractor": 0.2, "other": 0.2}
GAP_S = (2.5, 5.0)
WORD_DB = (-26.0, -12.0)
SNR_DB = (5.0, 30.0)
MAX_USES = 3
MIN_FIT_MINUTES = 3.0
LEAD_S = 1.5
POOL_NAMES = {"keyword": "keyword clips", "distractor": "distractor words (_unknown_/)", "other": "other speech"}


@dataclass
class Stream:
    """A built stream: float32 `waveform` at `sample_rate`, its `truth` rows, and what went into it."""

    waveform: np.ndarray
    truth: list
    sample_rate: int
    split: str
    seed: int
    counts: dict = field(default_factory=dict)  # kind -> words placed
    pools: dict = field(default_factory=dict)  # kind -> distinct clips available
    noise: str = ""

    @property
    def duration_s(self) -> float:
        return len(self.waveform) / self.sample_rate

    def summary(self) -> dict:
        return {"split": self.split, "seed": self.seed, "minutes": round(self.duration_s / 60, 2),
                "words": self.counts, "pools": self.pools, "noise": self.noise}

    def write(self, wav_path, csv_path=None) -> tuple[Path, Path]:
        """Write the stream (16-bit WAV) and its truth CSV atomically."""
        import soundfile as sf

        from tinyear.device.fileio import atomic_path

        wav_path = Path(wav_path)
        csv_path = Path(csv_path) if csv_path else wav_path.with_suffix(".csv")
        wav_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(wav_path) as tmp_wav, atomic_path(csv_path) as tmp_csv:
            sf.write(str(tmp_wav), self.waveform, self.sample_rate, subtype="PCM_16", format="WAV")
            write_truth(tmp_csv, self.truth)
        return wav_path, csv_path


def refuse_test_sets(roots) -> None:
    """Calibration data must not be a test set: refuse a folder whose name says it is one."""
    for r in roots:
        if "test" in Path(r).resolve().name.lower():
            raise TinyearError(f"{r}: looks like a test set (its name says test); calibrate on training/validation "
                               "data (its validation split is used), and keep test data for tinyear evaluate")


def split_pools(data, keywords, split: str = "validation", *, seed: int = 0, quiet: bool = True, part=None,
                negatives=()):
    """({"keyword": [Clip], "distractor": [...], "other": [...]}, noise recordings [float32], noise source
    name) of `split` ("all": every clip of the folders) of the dataset folder(s) `data`, with every clip of
    the `negatives` folders among the distractors and other speech."""
    from .data import SILENCE, UNKNOWN, load_dataset

    roots = [str(r) for r in (data if isinstance(data, (list, tuple)) else [data])]
    whole = split == "all"
    use = "test" if whole else split
    dataset = load_dataset(roots, tuple(keywords), seed=seed, only_split="test" if whole else None,
                           unknown_ratio=None, silence_ratio=None, allow_missing=True, quiet=quiet)
    clips = dataset.clips_in(use) + _negative_clips(negatives, keywords, seed=seed, quiet=quiet)
    if part is not None:  # (i, n): the i-th of n speaker-disjoint parts of the split
        import hashlib

        clips = [c for c in clips if int(hashlib.sha1(f"part:{c.speaker}".encode()).hexdigest(), 16) % part[1] == part[0]]
    pools = {"keyword": [c for c in clips if c.label in keywords],
             "distractor": [c for c in clips if c.label == UNKNOWN and c.path.parent.name == UNKNOWN],
             "other": [c for c in clips if c.label == UNKNOWN and c.path.parent.name != UNKNOWN]}
    if not pools["keyword"]:
        raise TinyearError(f"{', '.join(roots)}: no keyword clips ({', '.join(keywords)}) in the {use} split; "
                           "give data with recordings of the model's words")
    noise = [x for x in dataset.noise_by_split.get(use, []) if len(x)]
    source = dataset.noise_source
    silence = [c for c in clips if c.label == SILENCE and c.path is not None]
    if source == "generated" and silence:
        noise = [load_audio(c.path, dataset.sample_rate) for c in silence]
        source = "_silence_ clips"
    return pools, noise, source, dataset.sample_rate


def _negative_clips(negatives, keywords, *, seed: int = 0, quiet: bool = True) -> list:
    """Every clip of the `negatives` folders (all splits), refused where one is a keyword's."""
    from .data import load_dataset

    if not negatives:
        return []
    roots = [str(r) for r in negatives]
    dataset = load_dataset(roots, tuple(keywords), seed=seed, only_split="test", unknown_ratio=None, silence_ratio=None,
                           allow_missing=True, quiet=quiet)
    clips = [c for c in dataset.clips_in("test") if c.path is not None]
    said = sorted({c.label for c in clips if c.label in keywords})
    if said:
        raise TinyearError(f"--negatives {', '.join(roots)}: holds clips of the model's keywords ({', '.join(said)}); "
                           "give folders of speech WITHOUT its keywords (e.g. other-speech), or pass the folder as DATA")
    return clips


def active_span(x: np.ndarray, sr: int, floor_db: float = 30.0) -> tuple[int, int]:
    """(start, end) samples of the part of a clip within floor_db of its loudest 10 ms frame."""
    hop = sr // 100
    n = max(1, len(x) // hop)
    rms = np.sqrt(np.mean(np.pad(x, (0, max(0, n * hop - len(x))))[: n * hop].reshape(n, hop).astype(np.float64) ** 2,
                          axis=1) + 1e-20)
    on = np.nonzero(rms >= rms.max() * 10 ** (-floor_db / 20))[0]
    return int(on[0] * hop), int(min(len(x), (on[-1] + 1) * hop))


def _rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, dtype=np.float64) ** 2) + 1e-20))


def _noise_piece(noise: list, n: int, rng: np.random.Generator) -> np.ndarray:
    x = noise[int(rng.integers(len(noise)))]
    if len(x) >= n:
        start = int(rng.integers(0, len(x) - n + 1))
        return x[start : start + n].astype(np.float32)
    return np.resize(x, n).astype(np.float32)  # a short recording loops


def build_stream(data, keywords, *, minutes: float = 30.0, split: str = "validation", seed: int = 0,
                 shares: dict | None = None, gap_s=GAP_S, word_db=WORD_DB, snr_db=SNR_DB,
                 max_uses: int = MAX_USES, part=None, fit: bool = False, progress: bool = False,
                 negatives=()) -> Stream:
    """A `minutes`-long stream of `split` of `data` (see the module docstring). With `fit`, a split too
    small for `minutes` gives the longest stream it allows instead (an error under MIN_FIT_MINUTES)."""
    from .data import UNKNOWN

    if minutes <= 0:
        raise TinyearError(f"--minutes {minutes:g}: a stream needs a positive length")
    keywords = list(keywords)
    pools, noise, noise_source, sr = split_pools(data, keywords, split, seed=seed, part=part, negatives=negatives)
    shares = dict(SHARES if shares is None else shares)
    shares = {k: v for k, v in shares.items() if v > 0 and pools.get(k)}
    total = sum(shares.values())
    shares = {k: v / total for k, v in shares.items()}
    mean_gap = sum(gap_s) / 2
    longest = min(len(pools[k]) * max_uses / share * mean_gap / 60 for k, share in shares.items())
    if fit and minutes > longest:  # as long as the split allows
        if longest < MIN_FIT_MINUTES:
            raise TinyearError(f"the {split} split is too small for a stream of even {MIN_FIT_MINUTES:g} minutes "
                               f"({', '.join(f'{len(v)} {POOL_NAMES[k]}' for k, v in pools.items())}); give more data")
        minutes = math.floor(longest * 10) / 10
    slots = int((minutes * 60 - LEAD_S - 1.0) / mean_gap) + 1
    for kind, share in shares.items():
        need = int(np.ceil(share * slots))
        have = len(pools[kind]) * max_uses
        if need > have:
            longest = have / share * (sum(gap_s) / 2) / 60
            raise TinyearError(f"the {split} split has {len(pools[kind])} {POOL_NAMES[kind]}, too few for a {minutes:g}-minute "
                               f"stream (it needs about {need} words of that kind, each clip used at most {max_uses} "
                               f"times); ask for --minutes {max(1, int(longest))} or less, or give more data")
    rng = np.random.default_rng([seed, 0x5754])
    kinds = sorted(shares)
    queues = {k: [] for k in kinds}

    def next_clip(kind):
        if not queues[kind]:  # each pass over a pool is a fresh permutation
            queues[kind] = [pools[kind][i] for i in rng.permutation(len(pools[kind]))]
        return queues[kind].pop()

    n = int(minutes * 60 * sr)
    if not noise:
        raise TinyearError("no background noise for the stream")
    stream = np.zeros(n, dtype=np.float32)
    fade = sr // 20
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    truth, counts = [], {k: 0 for k in kinds}
    slot_start, onset = 0, LEAD_S + rng.uniform(0, gap_s[0])
    cache: dict = {}
    from .progress import bar

    with bar(slots, "building stream", enabled=progress, unit="word", at_least=200) as shown:
        while True:
            kind = kinds[int(rng.choice(len(kinds), p=[shares[k] for k in kinds]))]
            clip = next_clip(kind)
            if clip.path not in cache:
                cache[clip.path] = load_audio(clip.path, sr)
            x = cache[clip.path]
            a, b = active_span(x, sr)
            word = x[a:b]
            start = int(onset * sr)
            next_onset = onset + rng.uniform(*gap_s)
            if start + len(word) > n - sr:
                break
            level = rng.uniform(*word_db)
            word = word * np.float32(10 ** ((level - _rms_db(word)) / 20))
            # Background for this word's slot (previous slot's end to the next onset), at the drawn SNR.
            slot_end = min(n, int(next_onset * sr) + fade)
            bg = _noise_piece(noise, slot_end - slot_start, rng)
            bg = bg * np.float32(10 ** ((level - rng.uniform(*snr_db) - _rms_db(bg)) / 20))
            bg[:fade] *= ramp
            bg[-fade:] *= ramp[::-1]
            stream[slot_start:slot_end] += bg
            word = mix_word(stream, start, word)
            label = clip.label if kind == "keyword" else UNKNOWN
            truth.append(TruthWord(start / sr, (start + len(word)) / sr, label))
            counts[kind] += 1
            shown.update(1)
            slot_start = slot_end - fade
            onset = next_onset
    if slot_start < n:  # the tail after the last word
        bg = _noise_piece(noise, n - slot_start, rng)
        stream[slot_start:] += bg * np.float32(10 ** ((np.mean(word_db) - np.mean(snr_db) - _rms_db(bg)) / 20))
    stream = np.clip(stream, -1.0, 1.0)
    return Stream(stream, truth, sr, split, seed, counts, {k: len(v) for k, v in pools.items()}, noise_source)
