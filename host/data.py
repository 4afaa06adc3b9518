"""Keyword datasets: a folder per class on disk -> labelled clips in train/validation/test, as arrays.

The on-disk layout is Google Speech Commands': one folder per word, any audio format soundfile reads,
`_background_noise_/` for long noise recordings, and optionally `validation_list.txt` /
`testing_list.txt` naming the clips of those splits. A real Speech Commands tree loads as is. What the
loader makes of it, for the words asked for:

- **splits**: the list files when the root has them; otherwise a stable split by speaker, the sha1 of
  the file name part before `_nohash_` (in `_unknown_/`, after the leading word) or of the whole name,
  so one speaker's clips never cross splits and adding files never moves old ones;
- **`_unknown_`**: clips of the folders that are not target words plus an `_unknown_/` folder, taken
  per split at `unknown_ratio` times the mean keyword count, spread evenly over the other words;
- **`_silence_`**: a `_silence_/` folder's clips plus clips cut from the background recordings at
  random levels (some near digital silence), `silence_ratio` times the mean keyword count; each
  recording is cut by time into train/validation/test parts so no stretch of noise crosses splits, and
  `Dataset.noise` (for augmentation) is the train part only. A dataset without recordings gets
  synthetic coloured noise and hum (`tinyear.host.noise`) instead, and says so in its summary;
- **class balance** is left to the trainer, with `class_weights(split)` (inverse frequency, for the
  loss) and `sample_weights(split)` (for a weighted sampler): arrays are never oversampled, so the
  validation and test numbers are measured on the real class mix, and a thin class is weighted up,
  not copied;
- **several roots** (say real recordings plus a synthetic fill) load as one dataset, the union.

`Dataset.arrays(split)` returns fixed-length waveforms (`fit_clip` applied) and label indices,
computed once and cached on disk (`.npy` in the user's cache folder, `tinyear.host.cache`, keyed by the
dataset and frontend fingerprints, written atomically). Unreadable files are skipped with a warning that counts them. Imports numpy, soundfile,
tqdm and `tinyear.device`; never torch.
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyear.device.audio import load_audio
from tinyear.device.errors import AudioError, TinyearError
from tinyear.device.features import DEFAULT_CONFIG, FrontendConfig, fingerprint as frontend_fingerprint, fit_clip
from tinyear.device.fileio import atomic_path

from .cache import cache_root, key as cache_key
from .progress import bar as progress_bar

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
BACKGROUND = "_background_noise_"
SPLITS = ("train", "validation", "test")
VALIDATION_LIST, TESTING_LIST = "validation_list.txt", "testing_list.txt"
SYNTH_MANIFEST = "tinyear-synth.json"  # written last by `tinyear synth`: marks a root as synthetic
AUDIO_SUFFIXES = frozenset(
    ".wav .wave .flac .ogg .oga .opus .mp3 .aif .aiff .aifc .au .snd .caf .w64 .rf64".split()
)
CACHE_VERSION = 1  # bump when arrays() computes different numbers from the same clips

# Levels of generated `_silence_` clips, RMS in dBFS. Most are background noise at ordinary room levels;
# a fraction is near digital silence (a muted or very quiet microphone), which a model must also call
# silence rather than guess a word from the quantisation floor.
SILENCE_RMS_DB = (-65.0, -25.0)
NEAR_SILENCE_RMS_DB = (-110.0, -85.0)
NEAR_SILENCE_FRACTION = 0.1


def default_labels(words=WORDS) -> list[str]:
    """The label list of a keyword model: [*words, "_unknown_", "_silence_"]."""
    return [*words, UNKNOWN, SILENCE]


@dataclass(frozen=True)
class Clip:
    """One labelled example.

    `path` is the audio file, or None for a `_silence_` clip generated from background noise, which is
    then `noise_clip` (index into the split's noise recordings), `noise_offset` (first sample) and
    `noise_rms_db` (RMS level it is scaled to, dBFS). `word` is what was said (for `_unknown_` the
    actual other word, for silence "_silence_"); `speaker` is the split key."""

    path: Path | None
    label: str
    split: str
    source: str  # "real" | "synthetic" | "noise"
    speaker: str
    word: str
    root: int = 0  # index into Dataset.roots
    noise_clip: int = -1
    noise_offset: int = 0
    noise_rms_db: float = 0.0


@dataclass
class Dataset:
    """Labelled clips of one or more roots, with their background noise; see the module docstring."""

    root: Path
    labels: list[str]
    clips: list[Clip]
    noise: list[np.ndarray]  # train part of each background recording, float32 (samples,) at sample_rate
    roots: list[Path] = field(default_factory=list)
    words: tuple[str, ...] = WORDS
    sample_rate: int = 16000
    noise_by_split: dict = field(default_factory=dict)  # split -> list of float32 (samples,)
    noise_source: str = "real"  # "real" recordings | "synthetic" (a synthetic root's) | "generated" (none found)
    noise_files: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # unreadable files, "path: reason"
    cache_dir: Path | None = None
    _fingerprint: str | None = None

    def clips_in(self, split: str) -> list[Clip]:
        """The clips of one split ("train", "validation" or "test"), in a fixed order."""
        _check_split(split)
        return [c for c in self.clips if c.split == split]

    def label_index(self, split: str) -> np.ndarray:
        """(N,) int64 label indices of `clips_in(split)`, without loading any audio."""
        index = {label: i for i, label in enumerate(self.labels)}
        return np.array([index[c.label] for c in self.clips_in(split)], dtype=np.int64)

    def counts(self, split: str | None = None) -> dict[str, int]:
        """Clips per label in one split (or all splits), every label present (0 when none)."""
        counter = Counter(c.label for c in self.clips if split is None or c.split == split)
        return {label: counter.get(label, 0) for label in self.labels}

    def class_weights(self, split: str = "train") -> np.ndarray:
        """(num_labels,) float32 inverse-frequency weights for a weighted loss: N / (K * count), where K
        is the number of labels present; 0 for a label with no clips. Equal classes give all ones."""
        counts = np.array(list(self.counts(split).values()), dtype=np.float64)
        present = counts > 0
        weights = np.zeros_like(counts)
        weights[present] = counts.sum() / (present.sum() * counts[present])
        return weights.astype(np.float32)

    def sample_weights(self, split: str = "train") -> np.ndarray:
        """(N,) float64 per-clip weights (its class weight) for torch's WeightedRandomSampler, in the
        order of clips_in(split): every class is then drawn equally often."""
        return self.class_weights(split).astype(np.float64)[self.label_index(split)]

    def fingerprint(self) -> str:
        """A short hash of what the dataset is (clip names, sizes, labels, splits, parameters), not of
        where it lies: the same files moved elsewhere give the same fingerprint."""
        if self._fingerprint is None:
            self._fingerprint = "data-" + _sha(self._identity())[:16]
        return self._fingerprint

    def _identity(self) -> dict:
        clips = []
        for c in self.clips:
            if c.path is None:
                clips.append([c.label, c.split, c.noise_clip, c.noise_offset, round(c.noise_rms_db, 6)])
            else:
                rel = c.path.relative_to(self.roots[c.root]).as_posix()
                clips.append([c.root, rel, _size(c.path), c.label, c.split])
        return {"labels": self.labels, "params": self.params, "clips": clips, "noise": self.noise_files,
                "noise_source": self.noise_source, "sample_rate": self.sample_rate}

    def summary(self) -> dict:
        """What was loaded, for people and run records: roots, fingerprint, clips per split and label,
        where each label's clips come from (real / synthetic / noise), noise, skipped files."""
        per_split = {s: self.counts(s) for s in SPLITS}
        sources: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for c in self.clips:
            sources[c.label][c.source] += 1
        return {
            "roots": [str(r) for r in self.roots],
            "fingerprint": self.fingerprint(),
            "labels": list(self.labels),
            "clips": len(self.clips),
            "per_split": per_split,
            "sources": {label: dict(sources[label]) for label in self.labels},
            "noise": {"source": self.noise_source, "recordings": len(self.noise),
                      "train_seconds": round(sum(len(n) for n in self.noise) / self.sample_rate, 1)},
            "skipped_unreadable": len(self.skipped),
            "params": dict(self.params),
        }

    def arrays(self, split: str, config: FrontendConfig = DEFAULT_CONFIG, *, progress: bool = True):
        """All clips of `split` as model-ready waveforms: (N, config.clip_samples) float32 (`fit_clip`
        applied; silence cut from noise) and (N,) int64 label indices into `labels`.

        Deterministic. Cached on disk the first time (see `cache_dir`); later calls read the cache."""
        _check_split(split)
        if config.sample_rate != self.sample_rate:
            raise TinyearError(f"the dataset was loaded at {self.sample_rate} Hz but the frontend wants "
                               f"{config.sample_rate} Hz; load it with sample_rate={config.sample_rate}")
        clips = self.clips_in(split)
        y = self.label_index(split)
        key = _sha({"v": CACHE_VERSION, "data": self.fingerprint(), "frontend": frontend_fingerprint(config),
                    "split": split, "mtimes": self._mtimes(clips)})[:24]
        folder = self._cache_folder()
        x_path = folder / f"{self.fingerprint()}-{split}-{key}.x.npy" if folder else None
        if x_path is not None and x_path.exists():
            try:
                x = np.load(x_path)
                if x.shape == (len(clips), config.clip_samples) and x.dtype == np.float32:
                    return x, y
            except (OSError, ValueError):
                pass  # a damaged cache file is recomputed below
        x = np.zeros((len(clips), config.clip_samples), dtype=np.float32)
        with progress_bar(len(clips), f"reading {split} clips", enabled=progress, at_least=200) as bar:
            for i, clip in enumerate(clips):
                x[i] = self._waveform(clip, config)
                bar.update(1)
        if x_path is not None:
            _save_cache(x_path, x)
        return x, y

    def waveform(self, clip: Clip, config: FrontendConfig = DEFAULT_CONFIG) -> np.ndarray:
        """One clip as float32 (config.clip_samples,), as arrays() computes it."""
        return self._waveform(clip, config)

    def _waveform(self, clip: Clip, config: FrontendConfig) -> np.ndarray:
        if clip.path is None:
            noise = self.noise_by_split[clip.split][clip.noise_clip]
            piece = np.take(noise, np.arange(clip.noise_offset, clip.noise_offset + config.clip_samples), mode="wrap")
            rms = float(np.sqrt(np.mean(piece.astype(np.float64) ** 2)))
            gain = 10.0 ** (clip.noise_rms_db / 20.0) / max(rms, 1e-12)
            return np.clip(piece * gain, -1.0, 1.0).astype(np.float32)
        try:
            return fit_clip(load_audio(clip.path, config.sample_rate), config)
        except AudioError as exc:
            raise TinyearError(f"{exc} (it was readable when the dataset was loaded; reload it)") from None

    def _mtimes(self, clips: list[Clip]) -> str:
        h = hashlib.sha256()
        for c in clips:
            if c.path is not None:
                try:
                    h.update(str(c.path.stat().st_mtime_ns).encode())
                except OSError:
                    h.update(b"?")
        return h.hexdigest()

    def _cache_folder(self) -> Path | None:
        return cache_root(self.cache_dir)  # None: nowhere writable, computed every time


def load_dataset(
    root_or_roots,
    words=WORDS,
    *,
    seed: int = 0,
    unknown_ratio: float | None = 1.0,
    silence_ratio: float | None = 1.0,
    validation_percent: float = 10.0,
    testing_percent: float = 10.0,
    only_split: str | None = None,
    allow_missing: bool = False,
    skip_unreadable: bool = True,
    sample_rate: int = 16000,
    cache_dir: str | Path | None = None,
    quiet: bool = False,
) -> Dataset:
    """Load one dataset folder, or several as their union, for the keyword `words`.

    unknown_ratio / silence_ratio: `_unknown_` and generated `_silence_` clips per split, as a multiple
    of the mean number of clips per keyword in that split (1.0: as many as an average word); None takes
    every unknown clip and generates no silence beyond a `_silence_/` folder (for evaluation sets).
    validation_percent / testing_percent: the speaker split, for roots without list files.
    only_split: put every clip in this split (e.g. "test" for an evaluation set).
    allow_missing: accept words with no clips (fill_missing uses it to see what to synthesize).
    skip_unreadable: skip files soundfile cannot open, with a warning that counts them (else fail).
    Raises TinyearError (one line) for a missing folder, an empty class folder, missing words.
    """
    roots = [Path(r) for r in (root_or_roots if isinstance(root_or_roots, (list, tuple)) else [root_or_roots])]
    if not roots:
        raise TinyearError("no dataset folder given")
    words = tuple(words)
    if not words:
        raise TinyearError("no words asked for; name at least one keyword")
    reserved = {UNKNOWN, SILENCE, BACKGROUND} & set(words)
    if reserved:
        raise TinyearError(f"{', '.join(sorted(reserved))} cannot be a keyword: it is a reserved folder name")
    if len(set(words)) != len(words):
        raise TinyearError(f"words repeat: {', '.join(w for w, n in Counter(words).items() if n > 1)}")
    if only_split is not None:
        _check_split(only_split)
    if not (0 <= validation_percent and 0 <= testing_percent and validation_percent + testing_percent < 100):
        raise TinyearError("validation_percent and testing_percent must be >= 0 and add up to less than 100")

    labels = default_labels(words)
    keyword, unknown_pool, silence_real, noise_paths, skipped = [], [], [], [], []
    total_files = 0
    root_sources = []
    for r, root in enumerate(roots):
        found = _scan_root(root, r, words, only_split, validation_percent, testing_percent)
        root_sources.append(found["source"])
        total_files += found["files"]
        keyword += found["keyword"]
        unknown_pool += found["unknown"]
        silence_real += found["silence"]
        noise_paths += [(r, p) for p in found["noise"]]

    # Unreadable files: checked now (header only, ~0.4 ms a file) so the clip list and arrays() agree.
    def readable(clips):
        kept = []
        for c in clips:
            problem = _unreadable(c.path)
            if problem:
                skipped.append(f"{c.path}: {problem}")
            else:
                kept.append(c)
        return kept

    keyword, unknown_pool, silence_real = readable(keyword), readable(unknown_pool), readable(silence_real)
    if skipped:
        what = f"{len(skipped)} of {total_files} audio files are unreadable"
        if not skip_unreadable:
            raise TinyearError(f"{what} (first: {skipped[0]}); remove or convert them, or let them be skipped (no --strict)")
        if not quiet:
            print(f"tinyear: warning: {what}; skipped them (first: {skipped[0]})", file=sys.stderr)

    have = Counter(c.word for c in keyword)
    missing = [w for w in words if have[w] == 0]
    if missing and not allow_missing:
        where = ", ".join(str(r) for r in roots)
        others = sorted({c.word for c in unknown_pool} - {UNKNOWN})
        hint = f" (its other folders: {', '.join(others[:12])}{', ...' if len(others) > 12 else ''})" if others else ""
        raise TinyearError(
            f"{where} has no clips of {', '.join(missing)}{hint}; record them, choose other --words, or fill "
            f"them with synthetic speech: tinyear synth OUT --fill-from {roots[0]}")

    noise_by_split, noise_files, noise_source = _load_noise(noise_paths, roots, root_sources, sample_rate, seed,
                                                            only_split, validation_percent, testing_percent)
    rng_root = np.random.SeedSequence([seed, 0x7469])  # independent streams per split and purpose
    split_rngs = {s: np.random.default_rng(child) for s, child in zip(SPLITS, rng_root.spawn(len(SPLITS)))}
    clips: list[Clip] = []
    for split in SPLITS:
        kw = [c for c in keyword if c.split == split]
        mean_per_word = len(kw) / len(words)
        rng = split_rngs[split]
        pool = [c for c in unknown_pool if c.split == split]
        want = len(pool) if unknown_ratio is None else min(len(pool), int(round(unknown_ratio * mean_per_word)))
        unknown = _spread_pick(pool, want, rng)
        real_sil = [c for c in silence_real if c.split == split]
        n_gen = 0 if silence_ratio is None else max(0, int(round(silence_ratio * mean_per_word)) - len(real_sil))
        generated = _silence_clips(n_gen, split, noise_by_split.get(split, []), sample_rate, rng)
        clips += sorted(kw, key=_order) + sorted(unknown, key=_order) + sorted(real_sil, key=_order) + generated

    dataset = Dataset(
        root=roots[0], labels=labels, clips=clips, noise=noise_by_split.get("train", []), roots=roots,
        words=words, sample_rate=sample_rate, noise_by_split=noise_by_split, noise_source=noise_source,
        noise_files=noise_files, skipped=skipped, cache_dir=Path(cache_dir) if cache_dir else None,
        params={"seed": seed, "unknown_ratio": unknown_ratio, "silence_ratio": silence_ratio,
                "validation_percent": validation_percent, "testing_percent": testing_percent,
                "only_split": only_split},
    )
    if only_split is None and not dataset.clips_in("train"):
        raise TinyearError(f"{roots[0]}: no clips fall in the train split; add clips from more speakers")
    return dataset


# -- scanning ----------------------------------------------------------------------------------------------


def _scan_root(root: Path, r: int, words, only_split, val_pct, test_pct) -> dict:
    if not root.exists():
        raise TinyearError(f"{root}: no such dataset folder")
    if not root.is_dir():
        raise TinyearError(f"{root}: is a file, not a dataset folder (a folder per word, e.g. yes/, no/)")
    source = "synthetic" if (root / SYNTH_MANIFEST).exists() else "real"
    lists = {}
    for split, name in (("validation", VALIDATION_LIST), ("test", TESTING_LIST)):
        if (root / name).exists():
            for line in (root / name).read_text().splitlines():
                if line.strip():
                    lists[_strip_suffix(line.strip())] = split
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise TinyearError(f"{root}: no class folders; a dataset has a folder per word (yes/, no/, ...) "
                           "with audio files in it")
    found = {"keyword": [], "unknown": [], "silence": [], "noise": [], "files": 0, "source": source}
    for folder in folders:
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise TinyearError(f"{folder}: class folder has no audio files; add clips or remove the folder")
        found["files"] += len(files)
        if folder.name == BACKGROUND:
            found["noise"] += files
            continue
        for path in files:
            word, speaker = _word_and_speaker(folder.name, path.stem)
            rel = _strip_suffix(f"{folder.name}/{path.name}")
            if only_split is not None:
                split = only_split
            elif lists:
                split = lists.get(rel, "train")
            else:
                split = speaker_split(speaker, val_pct, test_pct)
            if folder.name == SILENCE:
                label, bucket = SILENCE, "silence"
            elif folder.name in words:
                label, bucket = folder.name, "keyword"
            else:
                label, bucket = UNKNOWN, "unknown"
            found[bucket].append(Clip(path=path, label=label, split=split, source=source, speaker=speaker,
                                      word=word, root=r))
    return found


def speaker_of(folder: str, stem: str) -> str:
    """The speaker key of a file: the part of its name before `_nohash_` (in `_unknown_/`, without the
    leading `<word>_`), else the whole name without its extension."""
    return _word_and_speaker(folder, stem)[1]


def _word_and_speaker(folder: str, stem: str) -> tuple[str, str]:
    head = stem.split("_nohash_")[0] if "_nohash_" in stem else None
    if folder == UNKNOWN:
        # Speech Commands-style `<word>_<speaker>_nohash_<n>`: keep the word, key the split on the speaker.
        if head is not None and "_" in head:
            word, speaker = head.split("_", 1)
            return word, speaker
        return UNKNOWN, head if head is not None else stem
    if folder == SILENCE:
        return SILENCE, head if head is not None else stem
    return folder, head if head is not None else stem


def speaker_split(speaker: str, validation_percent: float = 10.0, testing_percent: float = 10.0) -> str:
    """The split of a speaker: sha1 of the key, as a percentage in [0, 100) with 0.01 resolution, below
    validation_percent -> "validation", then testing_percent -> "test", else "train". Stable: it depends
    on the speaker key alone, never on which other files exist."""
    percent = (int(hashlib.sha1(speaker.encode("utf-8")).hexdigest(), 16) % 10000) / 100.0
    if percent < validation_percent:
        return "validation"
    if percent < validation_percent + testing_percent:
        return "test"
    return "train"


def _strip_suffix(rel: str) -> str:
    # List files name `.wav` clips; a converted copy of the dataset may hold `.flac`: match without suffix.
    return rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel


def _unreadable(path: Path) -> str | None:
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile raises several types for a broken header
        return "empty file" if _size(path) == 0 else str(exc).split("\n")[0]
    if info.frames == 0:
        return "no samples"
    return None


def _order(clip: Clip):
    return (clip.label, clip.root, str(clip.path))


def _spread_pick(pool: list[Clip], n: int, rng: np.random.Generator) -> list[Clip]:
    """n clips from pool, spread evenly over their words (round robin over shuffled per-word lists)."""
    if n >= len(pool):
        return list(pool)
    by_word: dict[str, list[Clip]] = defaultdict(list)
    for c in sorted(pool, key=_order):
        by_word[c.word].append(c)
    queues = []
    for word in sorted(by_word):
        items = by_word[word]
        queues.append([items[i] for i in rng.permutation(len(items))])
    order = rng.permutation(len(queues))
    picked, depth = [], 0
    while len(picked) < n:
        for q in order:
            if depth < len(queues[q]) and len(picked) < n:
                picked.append(queues[q][depth])
        depth += 1
    return picked


# -- noise and silence -------------------------------------------------------------------------------------


def _load_noise(noise_paths, roots, root_sources, sample_rate, seed, only_split, val_pct, test_pct):
    """Background recordings cut by time into per-split parts: ({split: [float32 (samples,)]}, names, source)
    where source is "real" if any recording comes from a real root, "synthetic" if all come from
    synthetic roots, "generated" if there were none and coloured noise and hum stand in."""
    recordings, names, sources = [], [], set()
    for r, path in noise_paths:
        try:
            recordings.append(load_audio(path, sample_rate))
            names.append([r, path.relative_to(roots[r]).as_posix(), _size(path)])
            sources.add(root_sources[r])
        except AudioError as exc:
            print(f"tinyear: warning: background recording skipped: {exc}", file=sys.stderr)
    source = "real" if "real" in sources else "synthetic"
    if not recordings:
        from .noise import noise_bank

        recordings = [x for _, x in noise_bank(60.0, sample_rate, seed)]
        names, source = [["generated", kind, 60] for kind, _ in noise_bank(0.001, sample_rate, seed)], "generated"
    by_split = {s: [] for s in SPLITS}
    for x in recordings:
        if only_split is not None:
            by_split[only_split].append(x)
            continue
        # train | validation | test as consecutive stretches of each recording, in those proportions.
        a = int(len(x) * (100.0 - val_pct - test_pct) / 100.0)
        b = int(len(x) * (100.0 - test_pct) / 100.0)
        for split, part in (("train", x[:a]), ("validation", x[a:b]), ("test", x[b:])):
            if len(part) >= sample_rate // 10:
                by_split[split].append(part)
    return by_split, names, source


def _silence_clips(n: int, split: str, noise: list[np.ndarray], sample_rate: int, rng) -> list[Clip]:
    if n == 0:
        return []
    if not noise:
        raise TinyearError(f"no background noise long enough for the {split} split's _silence_ clips; add "
                           f"longer recordings to {BACKGROUND}/")
    clips = []
    for i in range(n):
        j = int(rng.integers(len(noise)))
        offset = int(rng.integers(len(noise[j])))
        lo, hi = NEAR_SILENCE_RMS_DB if rng.random() < NEAR_SILENCE_FRACTION else SILENCE_RMS_DB
        clips.append(Clip(path=None, label=SILENCE, split=split, source="noise", speaker=f"noise{j}",
                          word=SILENCE, noise_clip=j, noise_offset=offset, noise_rms_db=float(rng.uniform(lo, hi))))
    return clips


# -- helpers -----------------------------------------------------------------------------------------------


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise TinyearError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")


_sha = cache_key


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _save_cache(path: Path, array: np.ndarray) -> None:
    """np.save, atomically: a cache file that exists is whole. Failing to write it is not an error (the
    cache is an optimisation)."""
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, array)
    except OSError:
        pass
