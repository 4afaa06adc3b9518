"""Synthetic keyword speech: a dataset in the Speech Commands layout, spoken by text-to-speech engines.

The embedded default of tinyear needs no recordings: `synthesize(out, words)` has espeak-ng (always)
and flite (when installed: `apt-get install flite`) say each word in many voices, and writes
`<word>/<speaker>_nohash_<n>.wav` one-second 16 kHz clips, other words into `_unknown_/`
(`<word>_<speaker>_nohash_<n>.wav`) and background noise into `_background_noise_/` (real recordings
when given, else synthetic coloured noise and hum), so `tinyear.host.data.load_dataset` reads it like a
real tree and splits it by speaker.

A "speaker" is one engine voice (espeak-ng accent + variant, or a flite voice) with a fixed
vocal-tract factor (the rendered audio is resampled, which moves pitch and formants together, as a
longer or shorter vocal tract does) and a base pitch; within a speaker each clip varies speaking rate,
pitch, intonation (punctuation), level, placement in the second and a faint noise floor. Which
settings transfer best to real people was measured; see docs/DATA.md.

Determinism: every clip's settings come from `numpy.random.default_rng([seed, clip index])`, planned in
the parent process, and both engines are deterministic, so one seed gives bit-identical files on the
same engine versions, however many processes render them. Writes go to a uniquely named staging folder
beside OUT (`.OUT.<pid>.<random>.part`), renamed to OUT after `tinyear-synth.json` is written: a
half-written dataset never looks complete, and two processes never write into one staging folder.

The engines themselves are `tinyear.host.tts`; the real + synthetic recipe (synthesize only what a
real dataset lacks) is `tinyear.host.fill`. Imports numpy, soundfile, soxr, tqdm and `tinyear.device` /
`tinyear.host.data`; never torch.
"""

from __future__ import annotations

import glob
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tinyear.device import __version__
from tinyear.device.errors import TinyearError
from tinyear.device.fileio import atomic_write_text

from .data import BACKGROUND, SYNTH_MANIFEST, UNKNOWN, WORDS
from .keywords import SPEECH_COMMANDS_OTHER_WORDS
from .progress import bar as progress_bar
from .tts import ESPEAK_ACCENTS, FLITE_VOICES, engine_versions, espeak_variants, resolve_engines, speak

SAMPLE_RATE = 16000
CLIP_SAMPLES = SAMPLE_RATE  # one second, like Speech Commands

# Other words for `_unknown_`: Speech Commands' own twenty-five fillers, then everyday words and near
# misses of the keywords (yet/yep, now/snow, town, lift, bright, top, goat, ...). Homophones of a
# keyword (know, write, of) are left out: they would teach the model that a keyword is unknown.
UNKNOWN_WORDS = (
    *SPEECH_COMMANDS_OTHER_WORDS, "yet", "yep", "yellow", "yesterday", "nope", "now", "snow", "note", "town",
    "brown", "doubt", "lift", "loft", "leaf", "light", "bright", "ride", "fight", "top", "shop",
    "stock", "step", "goat", "gold", "ago", "own", "upon", "cup", "dove", "often", "coffee", "golf",
    "start", "star", "play", "pause", "next", "back", "music", "hello", "okay", "thanks", "please",
    "water", "window", "table", "orange", "blue", "green", "red", "open", "close", "turn", "volume",
    "morning", "night", "phone", "kitchen", "seventy", "eleven", "twelve", "twenty", "computer",
)



@dataclass(frozen=True)
class SynthConfig:
    """The ranges a synthetic dataset is drawn from; every field is recorded in the manifest."""

    flite_share: float = 0.35
    """Fraction of clips spoken by flite (when installed); the rest by espeak-ng."""
    flite_tracts_per_voice: int = 12
    """Speakers made from each flite voice, each with its own vocal-tract factor."""
    tract_range: tuple[float, float] = (0.86, 1.18)
    """Vocal-tract factor of a speaker (resampling: > 1 is higher and shorter, like a smaller person)."""
    espeak_rate_wpm: tuple[int, int] = (110, 240)
    """espeak-ng speaking rate, words per minute."""
    espeak_pitch: tuple[int, int] = (15, 85)
    """espeak-ng base pitch of a speaker, 0..99; each clip moves it by up to +-12."""
    flite_stretch: tuple[float, float] = (0.8, 1.4)
    """flite duration stretch (1 = the voice's own rate; > 1 slower)."""
    rms_dbfs: tuple[float, float] = (-34.0, -14.0)
    """Level of the spoken word (RMS over the word, dBFS)."""
    floor_dbfs: tuple[float, float] = (-80.0, -58.0)
    """Level of a faint pink-noise floor under every clip (RMS, dBFS), as any microphone has."""
    punctuation: tuple[tuple[str, float], ...] = (("", 0.4), (".", 0.3), ("!", 0.2), ("?", 0.1))
    """Endings added to the word and their probabilities: they change the engines' intonation."""


DEFAULT_SYNTH = SynthConfig()


@dataclass(frozen=True)
class Speaker:
    engine: str
    voice: str
    tract: float
    pitch: int  # espeak-ng base pitch (unused by flite)

    @property
    def key(self) -> str:
        """The speaker part of file names: 8 hex digits of the voice's identity."""
        return hashlib.sha1(f"{self.engine}:{self.voice}:{self.tract:.4f}:{self.pitch}".encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Job:
    """One clip to render (planned in the parent, rendered in a worker)."""

    rel: str  # path inside the dataset folder
    text: str
    speaker: Speaker
    seed: tuple[int, ...]
    rate: float  # espeak-ng words per minute, or flite duration stretch
    pitch: int
    config: SynthConfig


# -- engines -----------------------------------------------------------------------------------------------


def render(job: Job) -> np.ndarray:
    """Speak job.text with job.speaker: float32 (samples,) at the engine's own rate -> 16 kHz."""
    from tinyear.device.audio import resample

    s = job.speaker
    wave, rate = speak(s.engine, s.voice, job.text, rate=job.rate, pitch=job.pitch)
    # Vocal-tract factor: resample to rate/tract and play at 16 kHz -> pitch and formants times tract.
    return resample(wave, rate, int(round(SAMPLE_RATE / (s.tract * _jitter(job)))))


def _spoken(job: Job) -> np.ndarray:
    """`render(job)`, or, when that voice says nothing (espeak-ng drops phonemes a voice lacks: a near
    miss [[dZ'AVvIs]] is silence in en-gb-x-gbclan), the same job in the voice every keyword was checked
    with. A TinyearError (one line) when that says nothing too."""
    wave = render(job)
    if not np.any(wave) and job.speaker.engine == "espeak-ng":
        from dataclasses import replace

        from .keywords import ESPEAK_CHECK_VOICE

        wave = render(replace(job, speaker=replace(job.speaker, voice=ESPEAK_CHECK_VOICE)))
    if not np.any(wave):
        raise TinyearError(f"{job.speaker.engine} says nothing for {job.text!r} (voice {job.speaker.voice}); "
                           "give the word another spelling or [[phonemes]]")
    return wave


def _jitter(job: Job) -> float:
    return float(np.random.default_rng([*job.seed, 1]).uniform(0.97, 1.03))


def _trim(x: np.ndarray, threshold_db: float = -40.0) -> np.ndarray:
    """Cut leading and trailing stretches quieter than threshold_db below the loudest 10 ms frame."""
    hop = SAMPLE_RATE // 100
    n = len(x) // hop
    if n == 0:
        return x
    energy = (x[: n * hop].astype(np.float64).reshape(n, hop) ** 2).mean(axis=1)
    loud = np.flatnonzero(energy > energy.max() * 10.0 ** (threshold_db / 10.0))
    return x[loud[0] * hop : (loud[-1] + 1) * hop]


def make_clip(job: Job) -> np.ndarray:
    """The finished one-second clip of a job, float32 (16000,): rendered, trimmed, levelled, placed at a
    random offset, over a faint noise floor."""
    from .noise import coloured_noise

    c = job.config
    rng = np.random.default_rng([*job.seed, 2])
    word = _trim(_spoken(job))
    if len(word) > CLIP_SAMPLES:  # a slow rendering of a long word: keep the loudest second
        from tinyear.device.features import fit_clip

        word = fit_clip(word)
    rms = float(np.sqrt(np.mean(word.astype(np.float64) ** 2))) or 1e-9
    word = word * (10.0 ** (rng.uniform(*c.rms_dbfs) / 20.0) / rms)
    clip = coloured_noise(CLIP_SAMPLES, -3.0, rng).astype(np.float64) * (10.0 ** (rng.uniform(*c.floor_dbfs) / 20.0) / 0.1)
    start = int(rng.integers(0, CLIP_SAMPLES - len(word) + 1))
    clip[start : start + len(word)] += word
    return np.clip(clip, -1.0, 32767.0 / 32768.0).astype(np.float32)


def _render_to_file(args) -> str:
    import soundfile as sf

    job, folder = args
    path = Path(folder) / job.rel
    sf.write(str(path), make_clip(job), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return job.rel


# -- planning ----------------------------------------------------------------------------------------------


def speakers(engines: list[str], seed: int, config: SynthConfig = DEFAULT_SYNTH) -> dict[str, list[Speaker]]:
    """The speaker pool per engine, deterministic for the seed and the installed voices."""
    rng = np.random.default_rng([seed, 0x5350])
    pool: dict[str, list[Speaker]] = {}
    if "espeak-ng" in engines:
        variants = espeak_variants()
        pool["espeak-ng"] = [
            Speaker("espeak-ng", f"{accent}+{variant}", round(float(rng.uniform(*config.tract_range)), 4),
                    int(rng.integers(config.espeak_pitch[0], config.espeak_pitch[1] + 1)))
            for accent in ESPEAK_ACCENTS for variant in variants
        ]
    if "flite" in engines:
        pool["flite"] = [
            Speaker("flite", voice, round(float(t), 4), 0)
            for voice in FLITE_VOICES
            for t in np.linspace(*config.tract_range, config.flite_tracts_per_voice)
        ]
    return pool


def plan(words, per_word: int | dict, unknown: int, seed: int, engines: list[str],
         config: SynthConfig = DEFAULT_SYNTH, unknown_words=UNKNOWN_WORDS, near: list[str] = ()) -> list[Job]:
    """Every clip of a dataset: per_word clips of each word (or per_word[label], a dict), `unknown` clips
    of unknown_words (round robin over a seeded shuffle, so each word gets its share). words: labels,
    `--words` items or Keywords (`tinyear.host.keywords`); a keyword given as phonemes is spoken by
    espeak-ng only. near: texts of near misses (`tinyear.host.nearmiss`), one `_unknown_` clip each,
    planned after everything else so that they move no other clip."""
    from .keywords import parse_keywords

    keywords = parse_keywords(words, allow_empty=True)
    pool = speakers(engines, seed, config)
    share = config.flite_share if "flite" in pool else 0.0
    taken = {k.label for k in keywords} | {k.text for k in keywords}
    others = [w for w in unknown_words if w not in taken]
    order = np.random.default_rng([seed, 0x554E]).permutation(len(others)) if others else []
    counts = per_word if isinstance(per_word, dict) else {k.label: per_word for k in keywords}
    texts = [(k.label, k.text) for k in keywords for _ in range(counts[k.label])]
    texts += [(UNKNOWN, others[order[i % len(others)]]) for i in range(unknown if others else 0)]
    texts += [(UNKNOWN, text) for text in near]
    endings, weights = zip(*config.punctuation)
    jobs, seen = [], Counter()
    for i, (folder, word) in enumerate(texts):
        rng = np.random.default_rng([seed, i])
        engine = "flite" if rng.random() < share else "espeak-ng"
        if word.startswith("[["):  # phonemes: only espeak-ng reads its own notation
            engine = "espeak-ng"
        speaker = pool[engine][int(rng.integers(len(pool[engine])))]
        if engine == "flite":
            rate, pitch = float(rng.uniform(*config.flite_stretch)), 0
        else:
            rate = float(rng.integers(config.espeak_rate_wpm[0], config.espeak_rate_wpm[1] + 1))
            pitch = int(np.clip(speaker.pitch + rng.integers(-12, 13), 0, 99))
        text = word + endings[int(rng.choice(len(endings), p=np.asarray(weights) / sum(weights)))]
        stem = speaker.key if folder != UNKNOWN else f"{_file_word(word)}_{speaker.key}"
        n = seen[(folder, stem)]
        seen[(folder, stem)] += 1
        jobs.append(Job(rel=f"{folder}/{stem}_nohash_{n}.wav", text=text, speaker=speaker, seed=(seed, i),
                        rate=rate, pitch=pitch, config=config))
    return jobs


def _file_word(text: str) -> str:
    """The word part of an `_unknown_` file name: letters and digits only (a phrase, [[phonemes]])."""
    import re

    return re.sub(r"[^A-Za-z0-9]", "", text) or "word"


def near_miss_texts(keywords, per_keyword: int) -> tuple[list[str], dict]:
    """per_keyword near-miss texts of each keyword (round robin over its candidates) and the candidates."""
    if per_keyword <= 0 or not keywords:
        return [], {}
    from .nearmiss import near_misses

    candidates = near_misses(keywords)
    texts = [c[i % len(c)] for c in candidates.values() if c for i in range(per_keyword)]
    return texts, candidates


# -- writing a dataset -------------------------------------------------------------------------------------


def synthesize(
    out: str | Path,
    words=WORDS,
    *,
    per_word: int | dict = 500,
    unknown: int | None = None,
    seed: int = 0,
    jobs: int | None = None,
    engines: str | list[str] = "auto",
    noise_dir: str | Path | None = None,
    write_noise: bool = True,
    config: SynthConfig = DEFAULT_SYNTH,
    force: bool = False,
    progress: bool = True,
    extra: dict | None = None,
    near_miss: int = 0,
) -> dict:
    """Write a synthetic dataset to `out` (Speech Commands layout); return its manifest (a dict).

    per_word clips of each word (a dict: per_word[word] of each), `unknown` clips of other words
    (default per_word, or the largest count of the dict), background noise
    from `noise_dir` (copied, as 16 kHz WAV) or synthesized (`write_noise=False`: none). The same
    request on an existing complete dataset reuses it; a different one needs force=True. jobs:
    processes (default: all cores). near_miss: that many `_unknown_` clips per keyword of words close to
    it (`tinyear.host.nearmiss`: parts of a phrase, longer words holding it, one-phoneme swaps). Raises TinyearError for a missing engine or unwritable folder."""
    from .keywords import parse_keywords

    out = Path(out)
    keywords = parse_keywords(words, allow_empty=True)
    if not keywords and not unknown and not (noise_dir or write_noise):
        raise TinyearError("nothing to synthesize: no words, no _unknown_ clips and no noise asked for")
    engines = resolve_engines(engines)
    keywords = parse_keywords(keywords, check_speech=True, allow_empty=True)
    words = [k.label for k in keywords]
    unknown = (max(per_word.values(), default=0) if isinstance(per_word, dict) else per_word) if unknown is None \
        else unknown
    request = {"words": words, "per_word": per_word, "unknown": unknown, "seed": seed, "engines": engines,
               "noise": str(Path(noise_dir).resolve()) if noise_dir else ("synthetic" if write_noise else None),
               "config": asdict(config), "tinyear": __version__}
    if near_miss:  # only when asked, so older requests read back the same
        request["near_miss"] = near_miss
    spoken = {k.label: k.text for k in keywords if k.text != k.label}
    if spoken:  # only when some keyword is not spoken as its label, so older requests read back the same
        request["spoken"] = spoken
    request = json.loads(json.dumps(request))  # tuples -> lists, as it reads back from the manifest
    manifest_path = out / SYNTH_MANIFEST
    if out.exists():
        if manifest_path.exists():
            try:
                old = json.loads(manifest_path.read_text())
            except (OSError, ValueError):
                old = {}
            if old.get("request") == request and not force:
                if progress:
                    print(f"tinyear: {out} already holds this synthetic dataset; reusing it", file=sys.stderr)
                return old
            if not force:
                raise TinyearError(f"{out} already holds a synthetic dataset made with other settings; choose "
                                   "another folder or pass --force to replace it")
        elif any(out.iterdir()) if out.is_dir() else True:
            raise TinyearError(f"{out} exists and is not a tinyear synthetic dataset; choose a new folder")
    part = _staging_folder(out)
    try:
        near, candidates = near_miss_texts(keywords, near_miss)
        job_list = plan(keywords, per_word, unknown, seed, engines, config, near=near)
        for folder in sorted({j.rel.split("/")[0] for j in job_list}):
            (part / folder).mkdir()
        noise_names = _write_noise(part, noise_dir, seed) if (noise_dir or write_noise) else []
        _run_jobs(job_list, part, jobs, progress)

        counts = Counter(j.rel.split("/")[0] for j in job_list)
        manifest = {
            "request": request,
            "made_by": f"tinyear {__version__} synth",
            "engines": engine_versions(engines),
            "speakers": {e: len(v) for e, v in speakers(engines, seed, config).items()},
            "clips": dict(sorted(counts.items())),
            "keywords": [{"label": k.label, "text": k.text, "phonemes": k.phonemes,
                          "engines": ["espeak-ng"] if k.is_phonemes else engines} for k in keywords],
            "unknown_words": sorted({j.text.rstrip(".!?") for j in job_list if j.rel.startswith(UNKNOWN + "/")}),
            "background_noise": noise_names,
            **({"near_misses": candidates} if near_miss else {}),
            **(extra or {}),
        }
        atomic_write_text(part / SYNTH_MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        _publish(part, out)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    return manifest


def _run_jobs(job_list: list[Job], folder: Path, jobs: int | None, progress: bool) -> None:
    jobs = max(1, jobs or os.cpu_count() or 1)
    work = [(j, str(folder)) for j in job_list]
    with progress_bar(len(job_list), "synthesizing", enabled=progress) as bar:
        if jobs == 1:
            for item in work:
                _render_to_file(item)
                bar.update(1)
        else:
            # Workers forked from a clean server process, not from this one (which may hold torch, TF or
            # LiteRT threads: a fork of those can die or hang); a worker that dies raises, never hangs.
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("forkserver")) as pool:
                for _ in pool.map(_render_to_file, work, chunksize=8):
                    bar.update(1)


def _write_noise(part: Path, noise_dir, seed: int) -> list[str]:
    import soundfile as sf

    folder = part / BACKGROUND
    folder.mkdir()
    names = []
    if noise_dir:
        from tinyear.device.audio import load_audio

        src = Path(noise_dir)
        if not src.is_dir():
            raise TinyearError(f"{src}: no such noise folder; give a folder of background recordings")
        files = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in
                       {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"})
        if not files:
            raise TinyearError(f"{src}: no audio files; give a folder of background recordings")
        for p in files:
            sf.write(str(folder / (p.stem + ".wav")), load_audio(p, SAMPLE_RATE), SAMPLE_RATE, subtype="PCM_16")
            names.append(p.stem + ".wav")
        return names
    from .noise import noise_bank

    for kind, wave in noise_bank(60.0, SAMPLE_RATE, seed):
        sf.write(str(folder / f"synthetic_{kind}.wav"), wave, SAMPLE_RATE, subtype="PCM_16")
        names.append(f"synthetic_{kind}.wav")
    return names


def _staging_folder(out: Path) -> Path:
    """A new, uniquely named folder beside `out` (`.OUT.<pid>.<random>.part`) to write the dataset into,
    with the permissions a plain mkdir gives; staging folders of processes that are gone (killed
    mid-run) are removed first."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for old in out.parent.glob(f".{glob.escape(out.name)}.*.part"):
            pid = old.name[len(out.name) + 2 :].split(".", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(old, ignore_errors=True)
        part = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.{os.getpid()}.", suffix=".part"))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(part, 0o777 & ~umask)  # mkdtemp's folders are owner-only
        return part
    except OSError as exc:
        raise TinyearError(f"cannot write to {out.parent}: {exc.strerror or exc}; choose a writable folder") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _publish(part: Path, out: Path) -> None:
    """Rename the finished `part` to `out`; an existing `out` (force) is replaced only now that the new
    one is whole."""
    if not out.exists():
        os.replace(part, out)
        return
    trash = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
    os.replace(out, trash)
    os.replace(part, out)
    shutil.rmtree(trash, ignore_errors=True)
