"""Training features, computed once: K augmented variants of every training clip, clean features of the
evaluation splits, and a teacher's outputs on those same variants, all cached on disk.

Why: the shared numpy frontend costs about 2 ms per clip and waveform augmentation about as much, so
making features for every augmented clip in every epoch would cost more than the training itself on
two cores. Instead each training clip gets `variants` augmented waveforms (noise, shift, gain, reverb,
speed: `tinyear.host.augment.Augmenter`) once, turned into features by THE frontend
(`tinyear.device.features`, the code the device runs), in parallel processes; each epoch draws one
variant per clip and SpecAugment runs on the fly on the feature batch. Variant k of clip i is made with
`numpy.random.default_rng([seed, i, k])`, so it is the same whichever process made it and can be made
again (`FeatureSet.variant_waves`) for a teacher that needs waveforms. Mixture variants
(`mixture_plan`: two clips added) and stream-aware windows (`tinyear.host.windows`: a 1 s cut of the
clip between neighbours) follow the augmented ones in the variant index, with two labels and a share
each (`FeatureSet.targets_of`).

Cache files live in `<cache>/features/`, `<cache>` being the user's cache folder (`tinyear.host.cache`:
`--cache-dir`, `$TINYEAR_CACHE`, `~/.cache/tinyear`; never the dataset folder), named by a hash of the
dataset fingerprint, the frontend fingerprint, the waveform augmentation settings, `variants` and
`seed`; teacher outputs add the teacher's identity hash, so every student distilled from one teacher on
one dataset reuses one teacher pass (under torchrun, shared out among the ranks). Files are written
atomically (`tinyear.device.fileio`), and with progress on, the folder and its size are said once
features are ready.

Imports numpy, tqdm, `tinyear.device` and `tinyear.host.augment`; torch (and `tinyear.host.dist`) only
to run a teacher.
Never imports the training loop.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyear.device.errors import TinyearError
from tinyear.device.features import DEFAULT_CONFIG, FrontendConfig, fingerprint, fit_clip, log_mel, model_input
from tinyear.device.fileio import atomic_path

from .augment import WAVEFORM_SWITCHES, AugmentConfig, Augmenter, waveform_augment_settings
from .data import SOURCES
from .cache import cache_root, folder_bytes, key as cache_key
from .progress import bar as progress_bar

FEATCACHE_VERSION = 1
# SpecAugment runs on the fly on feature batches, so its settings do not change cached features.


def cache_folder(dataset, override: str | Path | None = None) -> Path | None:
    """Where feature caches go: `<cache>/features`, with <cache> chosen by `tinyear.host.cache`'s rule
    from `override` or the dataset's own cache_dir. None when nothing is writable: features are then
    computed in memory every time."""
    return cache_root(override or getattr(dataset, "cache_dir", None), "features")


def _key(obj) -> str:
    return cache_key(obj)[:20]


@dataclass
class FeatureSet:
    """Features of one dataset for training: `train` (K, N, frames, bins) float32 augmented variants,
    `train_y` (N,), and clean `eval[split]` = (features (M, frames, bins), labels (M,)) per evaluation
    split. `key` identifies the train variants (teacher outputs are cached under it)."""

    labels: list[str]
    train: np.ndarray
    train_y: np.ndarray
    eval: dict
    key: str
    frontend: FrontendConfig
    augment: AugmentConfig
    seed: int
    train_source: np.ndarray | None = None  # (N,) int: index into SOURCES of each training clip
    eval_source: dict | None = None  # split -> (M,) int: index into SOURCES of each clip of eval[split]
    waves: np.ndarray | None = None  # (N, samples) clean training waveforms, for variant_waves
    augmenter: Augmenter | None = None
    cache: Path | None = None
    seconds: float = 0.0  # time spent computing (0 when everything came from the cache)
    mix: np.ndarray | None = None  # (M, N, frames, bins): mixture variants (see `mixture_plan`)
    mix_partner: np.ndarray | None = None  # (M, N) int64: the clip each mixture variant is mixed with
    mix_lam: np.ndarray | None = None  # (M, N) float32: the clip's own energy share in it
    mix_key: str = ""
    win: np.ndarray | None = None  # (W, N, frames, bins): stream-aware windows (`tinyear.host.windows`)
    win_plan: object | None = None  # windows.WindowPlan: their placement and labels
    win_augmenter: Augmenter | None = None
    win_key: str = ""
    noise: list | None = None  # the training noise recordings the windows' strips draw from

    @property
    def variants(self) -> int:
        return self.train.shape[0]

    @property
    def mix_variants(self) -> int:
        return 0 if self.mix is None else self.mix.shape[0]

    @property
    def window_variants(self) -> int:
        return 0 if self.win is None else self.win.shape[0]

    @property
    def all_variants(self) -> int:
        """Variants an epoch draws from: augmented, then mixtures, then windows."""
        return self.variants + self.mix_variants + self.window_variants

    def features_of(self, index: np.ndarray, variant: np.ndarray) -> np.ndarray:
        """Features (B, frames, bins) of clip index[j], variant variant[j]: an augmented variant below
        `variants`, a mixture variant in the next `mix_variants`, a window after those."""
        index, variant = np.asarray(index), np.asarray(variant)
        plain = variant < self.variants
        if plain.all():
            return np.asarray(self.train[variant, index])
        out = np.empty((len(index), *self.train.shape[2:]), np.float32)
        out[plain] = self.train[variant[plain], index[plain]]
        w0 = self.variants + self.mix_variants
        mixed = ~plain & (variant < w0)
        if mixed.any():
            out[mixed] = self.mix[variant[mixed] - self.variants, index[mixed]]
        window = variant >= w0
        if window.any():
            out[window] = self.win[variant[window] - w0, index[window]]
        return out

    def targets_of(self, index: np.ndarray, variant: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(first labels (B,), other labels (B,), share of the first (B,)) of each example: the clip's
        label with share 1 for an augmented variant, the clip's and its partner's at the mixing share for
        a mixture, the window rule's two labels for a window (`tinyear.host.windows`)."""
        index, variant = np.asarray(index), np.asarray(variant)
        first = self.train_y[index].copy()
        other = first.copy()
        lam = np.ones(len(index), np.float32)
        w0 = self.variants + self.mix_variants
        mixed = (variant >= self.variants) & (variant < w0)
        if mixed.any():
            m = variant[mixed] - self.variants
            other[mixed] = self.train_y[self.mix_partner[m, index[mixed]]]
            lam[mixed] = self.mix_lam[m, index[mixed]]
        window = variant >= w0
        if window.any():
            w, i = variant[window] - w0, index[window]
            first[window] = self.win_plan.first[w, i]
            other[window] = self.win_plan.other[w, i]
            lam[window] = self.win_plan.lam[w, i]
        return first, other, lam

    def mix_of(self, index: np.ndarray, variant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(other labels (B,), share of the first (B,)) of each example (`targets_of` without the first)."""
        _, other, lam = self.targets_of(index, variant)
        return other, lam

    def variant_waves(self, index: np.ndarray, variant: np.ndarray) -> np.ndarray:
        """The augmented waveforms behind features_of(index, variant): (B, samples) float32, made again
        with the same generators, so they are exactly the ones those features came from."""
        if self.waves is None:
            raise RuntimeError("this FeatureSet was built without waveforms")
        out = []
        for i, k in zip(index, variant):
            i, k = int(i), int(k)
            if k < self.variants:
                out.append(_variant(self.waves[i], self.augmenter, self.seed, i, k, self.frontend))
            elif k >= self.variants + self.mix_variants:
                out.append(_window(self.waves, self.win_plan, self.noise, self.win_augmenter, self.seed, self.frontend,
                                   i, k - self.variants - self.mix_variants))
            else:
                out.append(_mixture(self.waves, self.augmenter, self.seed, self.frontend, self.variants,
                                    self.mix_partner, self.mix_lam, i, k - self.variants))
        return np.stack(out)


def _variant(wave, augmenter, seed, i, k, frontend) -> np.ndarray:
    if augmenter is None:
        return wave
    return fit_clip(augmenter(wave, np.random.default_rng([seed, i, k])), frontend)


def mixture_plan(n: int, mix_variants: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(partner (M, N) int64, own share (M, N) float32) of the mixture variants: mixture m of clip i is
    augmented variant m % K of clip i and of clip partner[m, i], added at energy shares lam and 1 - lam
    (sqrt(lam) a + sqrt(1 - lam) b: two sounds at once, the waveform twin of mixup). A waveform teacher
    judges that very waveform, and its outputs are cached like any variant's."""
    rng = np.random.default_rng([seed, 0x6D6978])
    partner = rng.integers(0, n, size=(mix_variants, n)).astype(np.int64)
    lam = rng.uniform(0.0, 1.0, size=(mix_variants, n)).astype(np.float32)
    return partner, lam


def _mixture(waves, augmenter, seed, frontend, variants, partner, lam, i, m) -> np.ndarray:
    j, k, share = int(partner[m, i]), m % variants, float(lam[m, i])
    a = _variant(waves[i], augmenter, seed, i, k, frontend)
    b = _variant(waves[j], augmenter, seed, j, k, frontend)
    return (np.sqrt(share) * a + np.sqrt(1.0 - share) * b).astype(np.float32)


def _window(waves, plan, noise, augmenter, seed, frontend, i, w) -> np.ndarray:
    from .windows import window_wave

    return fit_clip(window_wave(waves, plan, noise, augmenter, seed, i, w), frontend)


# -- workers --------------------------------------------------------------------------------------------

_JOB: dict = {}  # set in the parent before the pool forks; read by the workers


def _work(chunk: tuple[int, int]) -> int:
    start, stop = chunk
    job = _JOB
    out = np.load(job["out"], mmap_mode="r+")  # (K, N, frames, bins)
    for i in range(start, stop):
        for k in range(out.shape[0]):
            if job.get("win") is not None:
                plan, noise = job["win"]
                wave = _window(job["waves"], plan, noise, job["augmenter"], job["seed"], job["frontend"], i, k)
            elif job.get("mix") is None:
                wave = _variant(job["waves"][i], job["augmenter"], job["seed"], i, k, job["frontend"])
            else:
                partner, lam, variants = job["mix"]
                wave = _mixture(job["waves"], job["augmenter"], job["seed"], job["frontend"], variants, partner, lam, i, k)
            out[k, i] = model_input(log_mel(wave, job["frontend"]), job["frontend"])
    out.flush()
    return stop - start


def _compute(path: Path, waves: np.ndarray, variants: int, augmenter, seed: int, frontend: FrontendConfig,
             jobs: int | None, desc: str, progress: bool, mix=None, win=None) -> None:
    """Fill a new .npy at `path` (written atomically) with (K, N, frames, bins)."""
    n = len(waves)
    step = 32
    chunks = [(s, min(n, s + step)) for s in range(0, n, step)]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(chunks)))
    with atomic_path(path) as tmp, progress_bar(n, desc, enabled=progress) as bar:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(variants, n, *frontend.feature_shape))
        del out  # workers open it themselves
        _JOB.clear()
        _JOB.update(out=str(tmp), waves=waves, augmenter=augmenter, seed=seed, frontend=frontend, mix=mix, win=win)
        try:
            if jobs == 1:
                for c in chunks:
                    bar.update(_work(c))
            else:
                # fork: workers inherit the waveforms and the augmenter without pickling; they only run numpy.
                # Workers ignore Ctrl-C: the parent alone handles it (the pool is terminated on the way
                # out), so an interrupt prints one line rather than a KeyboardInterrupt per worker.
                with _pool_ignoring_sigint(jobs) as pool:
                    for done in pool.imap_unordered(_work, chunks):
                        bar.update(done)
        finally:
            _JOB.clear()


def _ignore_sigint() -> None:
    """Pool initializer: a feature worker leaves SIGINT to its parent."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool_ignoring_sigint(jobs: int):
    """A fork pool whose workers ignore SIGINT from birth: the parent ignores it while forking them (a
    Ctrl-C in those milliseconds is dropped), so none can die of one before its initializer runs, which
    would leave the pool to hang on the way out. Off the main thread, the initializer alone does it."""
    import signal
    import threading

    context = multiprocessing.get_context("fork")
    if threading.current_thread() is not threading.main_thread():
        return context.Pool(jobs, initializer=_ignore_sigint)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return context.Pool(jobs, initializer=_ignore_sigint)
    finally:
        signal.signal(signal.SIGINT, previous)


def _cached_or_compute(folder: Path | None, name: str, waves, variants, augmenter, seed, frontend, jobs, desc,
                       progress, mix=None, win=None) -> tuple[np.ndarray, bool]:
    expected = (variants, len(waves), *frontend.feature_shape)
    if folder is not None:
        path = folder / name
        if path.exists():
            try:
                arr = np.load(path, mmap_mode="r")
                if arr.shape == expected and arr.dtype == np.float32:
                    return arr, False
            except (OSError, ValueError):
                pass  # damaged: recompute
        _compute(path, waves, variants, augmenter, seed, frontend, jobs, desc, progress, mix, win)
        return np.load(path, mmap_mode="r"), True
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        _compute(path, waves, variants, augmenter, seed, frontend, jobs, desc, progress, mix, win)
        return np.array(np.load(path)), True


def build_features(dataset, *, variants: int = 4, augment: AugmentConfig | None = None, seed: int = 0,
                   frontend: FrontendConfig = DEFAULT_CONFIG, eval_splits=("validation",),
                   cache_dir: str | Path | None = None, jobs: int | None = None,
                   progress: bool = True, keep_waves: bool = True, mix_variants: int = 0,
                   window_variants: int = 0) -> FeatureSet:
    """Features for training on `dataset` (a `tinyear.host.data.Dataset`): see the module docstring.

    variants: augmented copies per training clip (>= 1). augment: waveform augmentation (default
    AugmentConfig(); its SpecAugment fields are applied later, on the fly). jobs: processes (default:
    all cores). keep_waves: keep the training waveforms to remake variants for waveform teachers.
    mix_variants: mixture variants per clip on top (`mixture_plan`), cached like the others.
    window_variants: stream-aware windows per clip on top of those (`tinyear.host.windows`), cached too."""
    import time

    if variants < 1:
        raise TinyearError("--variants must be at least 1")
    if mix_variants < 0 or window_variants < 0:
        raise TinyearError("--mix-variants and --window-variants must be 0 or more")
    if window_variants > 0 and "_unknown_" not in dataset.labels:
        raise TinyearError("--window-variants needs an _unknown_ label (a cut-off word is no keyword)")
    augment = augment or AugmentConfig()
    start = time.perf_counter()
    folder = cache_folder(dataset, cache_dir)
    fp = fingerprint(frontend)
    waves, train_y = dataset.arrays("train", frontend, progress=progress)
    wave_aug = waveform_augment_settings(augment)
    any_wave_aug = any(wave_aug.get(s) for s in WAVEFORM_SWITCHES)
    augmenter = Augmenter(augment, dataset.noise, frontend.sample_rate, seed=seed) if any_wave_aug else None
    key = _key({"v": FEATCACHE_VERSION, "data": dataset.fingerprint(), "frontend": fp, "augment": wave_aug,
                "variants": variants, "seed": seed})
    train, made = _cached_or_compute(folder, f"train-{key}.npy", waves, variants, augmenter, seed, frontend, jobs,
                                     f"features x{variants}", progress)
    computed = made
    mix = partner = lam = None
    mix_key = ""
    if mix_variants > 0:
        partner, lam = mixture_plan(len(waves), mix_variants, seed)
        mix_key = _key({"train": key, "mix": mix_variants, "v": 1})
        mix, made = _cached_or_compute(folder, f"mix-{mix_key}.npy", waves, mix_variants, augmenter, seed, frontend,
                                       jobs, f"mixtures x{mix_variants}", progress, mix=(partner, lam, variants))
        computed |= made
    win = plan = win_augmenter = None
    win_key = ""
    if window_variants > 0:
        from .windows import WINDOWS_VERSION, window_augment_config, window_plan

        plan = window_plan(waves, np.asarray(train_y), list(dataset.labels), window_variants, seed,
                           sample_rate=frontend.sample_rate)
        win_augmenter = (Augmenter(window_augment_config(augment), dataset.noise, frontend.sample_rate, seed=seed)
                         if any_wave_aug else None)
        win_key = _key({"v": FEATCACHE_VERSION, "windows_v": WINDOWS_VERSION, "data": dataset.fingerprint(),
                        "frontend": fp, "augment": wave_aug, "windows": window_variants, "seed": seed})
        win, made = _cached_or_compute(folder, f"win-{win_key}.npy", waves, window_variants, win_augmenter, seed,
                                       frontend, jobs, f"windows x{window_variants}", progress,
                                       win=(plan, list(dataset.noise)))
        computed |= made
    evals = {}
    for split in eval_splits:
        x, y = dataset.arrays(split, frontend, progress=progress)
        if len(x) == 0:
            evals[split] = (np.zeros((0, *frontend.feature_shape), np.float32), y)
            continue
        ekey = _key({"v": FEATCACHE_VERSION, "data": dataset.fingerprint(), "frontend": fp, "split": split})
        feats, made = _cached_or_compute(folder, f"{split}-{ekey}.npy", x, 1, None, 0, frontend, jobs,
                                         f"{split} features", progress)
        computed |= made
        evals[split] = (feats[0], y)
    source = _source_codes(dataset, "train")
    if progress:
        where = f"{folder} ({folder_bytes(folder) / 2**20:,.0f} MB in all)" if folder else "nowhere (no writable cache folder)"
        print(f"tinyear: features {'computed and ' if computed else ''}cached in {where}", file=sys.stderr)
    return FeatureSet(labels=list(dataset.labels), train=train, train_y=np.asarray(train_y), eval=evals, key=key,
                      train_source=source, eval_source={split: _source_codes(dataset, split) for split in evals},
                      frontend=frontend, augment=augment, seed=seed, waves=waves if keep_waves else None,
                      augmenter=augmenter, cache=folder, mix=mix, mix_partner=partner, mix_lam=lam, mix_key=mix_key,
                      win=win, win_plan=plan, win_augmenter=win_augmenter, win_key=win_key, noise=list(dataset.noise),
                      seconds=time.perf_counter() - start if computed else 0.0)


def _source_codes(dataset, split: str) -> np.ndarray:
    """(N,) int64: each clip of `split` as an index into SOURCES (len(SOURCES) for an unknown source)."""
    return np.array([SOURCES.index(c.source) if c.source in SOURCES else len(SOURCES)
                     for c in dataset.clips_in(split)], dtype=np.int64)


# -- teacher outputs ------------------------------------------------------------------------------------


def teacher_outputs(features: FeatureSet, teacher, *, batch_size: int = 256, device: str = "cpu",
                    progress: bool = True) -> np.ndarray:
    """The teacher's logits on every training variant: (K, N, teacher labels) float32, computed once
    per (variants, teacher) and cached beside the features. A teacher over the same shared features
    reads the cached features; any other gets the variants' waveforms, made again exactly."""
    if teacher.members:  # an ensemble: each member's outputs cached on their own, then combined
        from .ensemble import combine_cached

        return combine_cached(teacher, [teacher_outputs(features, m, batch_size=batch_size, device=device,
                                                        progress=progress) for m in teacher.members])
    plain = _teacher_pass(features, teacher, f"teacher-{features.key}-{teacher.identity}.npy",
                          range(features.variants), batch_size, device, progress)
    parts = [plain]
    if features.mix_variants:
        parts.append(_teacher_pass(features, teacher, f"teacher-mix-{features.mix_key}-{teacher.identity}.npy",
                                   range(features.variants, features.variants + features.mix_variants), batch_size,
                                   device, progress))
    if features.window_variants:
        w0 = features.variants + features.mix_variants
        parts.append(_teacher_pass(features, teacher, f"teacher-win-{features.win_key}-{teacher.identity}.npy",
                                   range(w0, w0 + features.window_variants), batch_size, device, progress))
    if len(parts) == 1:
        return plain
    return np.concatenate([np.asarray(p) for p in parts])


def _cached_outputs(path: Path | None, shape: tuple) -> np.ndarray | None:
    if path is not None and path.exists():
        try:
            arr = np.load(path, mmap_mode="r")
            if arr.shape == shape:
                return arr
        except (OSError, ValueError):
            pass
    return None


def _teacher_pass(features: FeatureSet, teacher, name: str, variants: range, batch_size: int, device: str,
                  progress: bool) -> np.ndarray:
    """The teacher's logits on the given variants of every clip, (len(variants), N, labels), cached.

    Under torchrun (`tinyear.host.dist`) every rank runs it: rank 0 says whether its cache holds them;
    if not, each rank runs the teacher on its block of the clips, rank 0 gathers, writes the cache and
    hands the whole array to every rank."""
    import torch

    from . import dist

    k_count, n = len(variants), features.train.shape[1]
    shape = (k_count, n, len(teacher.labels))
    path = features.cache / name if features.cache is not None else None
    arr = _cached_outputs(path, shape)
    have = dist.gather(arr is not None)  # (world,) whether each rank's cache holds them
    if all(have):
        return arr
    if have[0]:  # rank 0 has them, other machines do not see its cache folder
        full = dist.broadcast(np.asarray(arr) if dist.is_main() else None)
        return arr if arr is not None else full
    r, w = dist.rank(), dist.world_size()
    lo, hi = n * r // w, n * (r + 1) // w  # this rank's block of clips (all of them alone)
    out = np.zeros(shape, dtype=np.float32)
    use_features = teacher.accepts_features(features.frontend)
    model = teacher.feature_model if use_features else teacher.module
    model.to(device).eval()
    with progress_bar(k_count * (hi - lo), "teacher outputs", enabled=progress) as bar, torch.no_grad():
        for row, k in enumerate(variants):
            for s in range(lo, hi, batch_size):
                idx = np.arange(s, min(hi, s + batch_size))
                kv = np.full(len(idx), k)
                if use_features:
                    x = torch.from_numpy(features.features_of(idx, kv)).to(device)
                else:
                    x = torch.from_numpy(features.variant_waves(idx, kv)).to(device)
                out[row, idx] = model(x).float().cpu().numpy()
                bar.update(len(idx))
    if dist.active():
        blocks = dist.gather(out[:, lo:hi])
        if dist.is_main():
            out = np.concatenate(blocks, axis=1)
    if dist.is_main() and path is not None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, out)
    return dist.broadcast(out if dist.is_main() else None)
