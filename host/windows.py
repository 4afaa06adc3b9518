"""Stream-aware training windows: 1 s cuts of a longer strip (a training clip with neighbours), in which
the word is not where a training clip puts it, labelled by how much of each word the window holds.

Why: a listener classifies every 1 s window of a stream, so most windows it sees hold a word off-centre,
a word cut off at an edge, the tail of one word and the onset of the next, or a fragment of a longer
phrase. Clips that always centre their word teach none of that, and a model trained on them alone
fires on fragments and on non-keyword speech. `--window-variants W` adds W such windows per training
clip beside the augmented and mixture variants (`tinyear.host.featcache`), cached the same way.

The strip of window w of clip i (3 s; everything at the 10 ms hop, `HOP` samples): the clean clip in
the middle; on each side, independently, another training clip of any class (half the time), a
second of background noise at 0-20 dB below the clip (a quarter) or nothing (a quarter). A
neighbouring clip is placed so that its active speech ends (left) or starts (right) 50-400 ms from
the clip's, as words follow each other in speech, overlapping its padding (added, not spliced). The
window starts anywhere that keeps at least 50 ms of the clip's active speech inside: the word's onset
lands anywhere in the window, the word is cut off at either edge, and a neighbour's word shares the
window. The window then gets the kit's waveform augmentation (noise, gain, reverb, EQ) without shift
or speed, which would move the word against its label.

The label rule. A word's *active energy* is the energy of its 10 ms frames above a floor (30 dB
under its loudest frame, and above -80 dBFS): the speech, not its padding. Its *share* s is the part
of that energy inside the window; energy rather than duration, because a word is recognised from
its loud core (a cut-off trailing fricative leaves the word readable; a cut-off vowel does not). Each
word in the window (the clip's and any neighbour's, `_silence_` clips have none) weighs
ramp(s) = clip((s - 0.3) / 0.5, 0, 1) for its own label: s >= 0.8 is the word (a listener should
fire), s <= 0.3 is not (a fragment: it must not), between is a soft target, linear. If the weights add
up to more than 1 (two whole words in one window) they are scaled to sum 1; whatever is left goes to
`_unknown_` when any of some word's active energy is in the window (a fragment of speech is
speech that is no keyword) and to `_silence_` otherwise. The two heaviest labels are kept
(first, other, share of the first), the form the mixture variants' label term already takes
(`tinyear.host.kd.distillation_loss` mix). With a waveform teacher and `--teacher-cache`, the teacher
judges the window's waveform itself instead, cached like any variant's outputs.

Everything is a function of (seed, clip, window): `window_plan` draws the placement in the parent,
`window_wave` makes the waveform anywhere, the same. Imports numpy and `tinyear.device` only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

WINDOWS_VERSION = 1
HOP = 160  # 10 ms at 16 kHz: the frame of the energy shares and the grid of every placement
FLOOR_DB_BELOW_PEAK = 30.0
FLOOR_ABS = 10 ** (-80 / 10)  # mean-square -80 dBFS
WORD_SHARE = 0.8  # at or above: the window is the word
FRAGMENT_SHARE = 0.3  # at or below: the window is not the word
SPEECH_SHARE = 0.0  # above: some of a word is in the window (leftover weight goes to _unknown_)
NEIGHBOUR_CLIP, NEIGHBOUR_NOISE = 0.5, 0.25  # chances of each side's kind (the rest: nothing)
GAP_S = (0.05, 0.4)
NOISE_BELOW_DB = (0.0, 20.0)
MIN_INSIDE_S = 0.05
NONE, NOISE = -1, -2  # neighbour codes beside a clip index


def active_energy(waves: np.ndarray, hop: int = HOP) -> np.ndarray:
    """(N, frames) float64 energy of each 10 ms frame above the clip's floor, 0 below it."""
    waves = np.asarray(waves, dtype=np.float64)
    n, samples = waves.shape
    frames = samples // hop
    e = (waves[:, : frames * hop].reshape(n, frames, hop) ** 2).sum(axis=2)  # (N, frames)
    peak = e.max(axis=1, keepdims=True) / hop
    floor = np.maximum(peak * 10 ** (-FLOOR_DB_BELOW_PEAK / 10), FLOOR_ABS) * hop
    return np.where(e >= floor, e, 0.0)


def ramp(share: float) -> float:
    return float(np.clip((share - FRAGMENT_SHARE) / (WORD_SHARE - FRAGMENT_SHARE), 0.0, 1.0))


def share_inside(energy: np.ndarray, place: int, start: int, length: int) -> float:
    """Share of a clip's active energy (frames,) inside the window [start, start + length) frames, the
    clip placed at frame `place` of the strip."""
    total = float(energy.sum())
    if total <= 0:
        return 0.0
    lo, hi = max(0, start - place), min(len(energy), start + length - place)
    return float(energy[lo:hi].sum()) / total if hi > lo else 0.0


def rule_label(words: list[tuple[int, float]], unknown: int, silence: int) -> tuple[int, int, float]:
    """(first, other, share of first) of a window holding the given (label, share inside) words, by the
    module's rule; `silence` may be -1 (no such label: `_unknown_` takes its place)."""
    weights: dict[int, float] = {}
    for label, s in words:
        weights[label] = weights.get(label, 0.0) + ramp(s)
    total = sum(weights.values())
    if total > 1.0:
        weights = {k: v / total for k, v in weights.items()}
        total = 1.0
    rest = 1.0 - total
    if rest > 1e-9:
        speech = any(s > SPEECH_SHARE for _, s in words)
        fill = unknown if speech or silence < 0 else silence
        weights[fill] = weights.get(fill, 0.0) + rest
    ranked = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))
    first, w1 = ranked[0]
    if len(ranked) == 1 or ranked[1][1] <= 0:
        return first, first, 1.0
    other, w2 = ranked[1]
    return first, other, w1 / (w1 + w2)


@dataclass
class WindowPlan:
    """Placement and labels of W windows of each of N clips, all (W, N): left/right neighbour (a clip
    index, NONE or NOISE), where each neighbour starts in the strip (frames), where the window starts
    (frames), and the label (first, other, share of first)."""

    left: np.ndarray
    right: np.ndarray
    left_at: np.ndarray
    right_at: np.ndarray
    start: np.ndarray
    first: np.ndarray
    other: np.ndarray
    lam: np.ndarray
    clip_frames: int
    hop: int = HOP

    @property
    def windows(self) -> int:
        return self.start.shape[0]


def window_plan(waves: np.ndarray, labels: np.ndarray, names: list[str], windows: int, seed: int,
                *, sample_rate: int = 16000, hop: int = HOP) -> WindowPlan:
    """The plan of `windows` windows per clip of `waves` (N, samples) labelled `labels` (N,) indices into
    `names` (which must hold `_unknown_`), from `seed` alone."""
    n, samples = waves.shape
    f = samples // hop  # frames per clip = frames per window
    energy = active_energy(waves, hop)  # (N, f)
    has = energy > 0
    onset = np.where(has.any(1), has.argmax(1), f // 2)  # first active frame
    offset = np.where(has.any(1), f - 1 - has[:, ::-1].argmax(1), f // 2)  # last active frame
    unknown = names.index("_unknown_")
    silence = names.index("_silence_") if "_silence_" in names else -1
    speech = labels != silence  # a _silence_ clip holds no word
    shape = (windows, n)
    out = {k: np.zeros(shape, np.int64) for k in ("left", "right", "left_at", "right_at", "start", "first", "other")}
    lam = np.ones(shape, np.float32)
    gap_lo, gap_hi = (int(round(g * sample_rate / hop)) for g in GAP_S)
    inside = max(1, int(round(MIN_INSIDE_S * sample_rate / hop)))
    for w in range(windows):
        rng = np.random.default_rng([seed, 0x77696E, w])
        kind = rng.random((2, n))
        partner = rng.integers(0, max(1, n - 1), size=(2, n))
        partner = partner + (partner >= np.arange(n))  # any clip but the clip itself
        gaps = rng.integers(gap_lo, gap_hi + 1, size=(2, n))
        where = rng.random(n)
        for i in range(n):
            centre = f  # the clip sits at [f, 2f) of the 3f-frame strip
            sides = []
            for side in (0, 1):
                if n > 1 and kind[side, i] < NEIGHBOUR_CLIP:
                    j = int(partner[side, i])
                    if side == 0:  # its last active frame `gap` before the clip's first
                        at = centre + onset[i] - gaps[side, i] - offset[j]
                        at = int(np.clip(at, 0, centre))
                    else:
                        at = centre + offset[i] + gaps[side, i] - onset[j]
                        at = int(np.clip(at, centre, 2 * f))
                    sides.append((j, at))
                elif kind[side, i] < NEIGHBOUR_CLIP + NEIGHBOUR_NOISE:
                    sides.append((NOISE, 0 if side == 0 else 2 * f))
                else:
                    sides.append((NONE, 0 if side == 0 else 2 * f))
            if speech[i]:
                lo = centre + onset[i] + inside - f
                hi = centre + offset[i] + 1 - inside
                lo, hi = max(0, lo), min(2 * f, max(lo, hi))
            else:
                lo, hi = 0, 2 * f
            start = int(lo + np.floor(where[i] * (hi - lo + 1)))
            start = min(start, hi)
            words = []
            if speech[i]:
                words.append((int(labels[i]), share_inside(energy[i], centre, start, f)))
            for j, at in sides:
                if j >= 0 and speech[j]:
                    words.append((int(labels[j]), share_inside(energy[j], at, start, f)))
            first, other, share = rule_label(words, unknown, silence)
            (out["left"][w, i], out["left_at"][w, i]), (out["right"][w, i], out["right_at"][w, i]) = sides
            out["start"][w, i], out["first"][w, i], out["other"][w, i], lam[w, i] = start, first, other, share
    return WindowPlan(lam=lam, clip_frames=f, hop=hop, **out)


def strip_of(waves: np.ndarray, plan: WindowPlan, noise: list, seed: int, i: int, w: int) -> np.ndarray:
    """The 3 s strip of window w of clip i (float32 (3 x samples,)), before augmentation."""
    hop, f = plan.hop, plan.clip_frames
    samples = f * hop
    strip = np.zeros(3 * samples, np.float32)
    strip[samples : 2 * samples] += waves[i][:samples]
    rng = np.random.default_rng([seed, 0x77696E, w, i])
    power = float(np.mean(waves[i][:samples].astype(np.float64) ** 2)) or 1e-6
    for j, at in ((plan.left[w, i], plan.left_at[w, i]), (plan.right[w, i], plan.right_at[w, i])):
        j, at = int(j), int(at) * hop
        if j >= 0:
            strip[at : at + samples] += waves[j][:samples]
        elif j == NOISE and noise:
            rec = noise[int(rng.integers(len(noise)))]
            if len(rec) < samples:
                rec = np.resize(rec, samples)
            off = int(rng.integers(0, len(rec) - samples + 1))
            seg = rec[off : off + samples].astype(np.float64)
            below = rng.uniform(*NOISE_BELOW_DB)
            seg *= np.sqrt(power * 10 ** (-below / 10) / (np.mean(seg**2) + 1e-12))
            strip[at : at + samples] += seg.astype(np.float32)
    return strip


def window_augment_config(config):
    """The augmentation a window gets: the kit's, less shift and speed (they would move the word)."""
    return dataclasses.replace(config, shift=False, speed=False)


def window_wave(waves: np.ndarray, plan: WindowPlan, noise: list, augmenter, seed: int, i: int, w: int) -> np.ndarray:
    """The waveform (samples,) float32 of window w of clip i: cut from its strip, then augmented with
    `augmenter` (None: not at all; see `window_augment_config`), clipped to [-1, 1]."""
    samples = plan.clip_frames * plan.hop
    strip = strip_of(waves, plan, noise, seed, i, w)
    s = int(plan.start[w, i]) * plan.hop
    x = strip[s : s + samples]
    if augmenter is not None:
        x = augmenter(x, np.random.default_rng([seed, 0x77696E, w, i, 1]))
    return np.clip(x, -1.0, 1.0).astype(np.float32)
