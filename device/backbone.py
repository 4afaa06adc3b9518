"""A pretrained backbone as the device's features: Google's frozen speech_embedding, run with LiteRT.

A bundle may carry, instead of a model over the shared log-mel frames, a small int8 head over the
embeddings of a frozen pretrained network, and that network's own TFLite files (the way openWakeWord
runs on a Pi). For words nobody recorded, this is what works on people: a head trained on synthetic
speech over speech_embedding finds 97-99% of real wake phrases where a tiny network over log-mels
trained on the same synthetic clips finds almost none (docs/BENCHMARKS.md, "Your own words").

speech_embedding is two float TFLite models (from the `pyopen-wakeword` wheel, Apache-2.0):
`melspectrogram.tflite` (int16-scaled float audio -> 32 mel bins a 10 ms frame, then `x / 10 + 2`) and
`embedding_model.tflite` (76 such frames -> 96 values). A 1 s clip (fitted by `features.fit_clip`),
padded by 0.25 s of zeros each side, gives 9 windows, one every 8 frames: a clip's features are
(9, 96). `Backbone.features` is that arithmetic, the only copy: the workstation trains heads on it (its
`tinyear.host.backbone` loads the files from the wheel) and the device runs it from the bundle's
sections, so both get the same numbers from the same bytes. A streamed window is the same 1 s cut out
and padded the same way, so stream == clip here too, by construction (`ClipStream`).

numpy and a LiteRT interpreter only; never torch or `tinyear.host`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import BundleError, TinyearError
from .features import FrontendConfig, fit_clip
from .fileio import quiet_fd, sha256_bytes

BACKBONE_VERSION = 1  # bump when the embedding numerics change (padding, scaling, windows)
LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, which the heads are trained with
NORMALIZE = ("none", "layer")  # what a bundle's head takes: raw embeddings, or each clip's normalised


def layer_normalize(x: np.ndarray) -> np.ndarray:
    """Each clip's embeddings (B, windows, dim) to mean 0 and variance 1 over all its values (LayerNorm
    without its learnt scale and shift, which a deployable head holds in its first layer), float32."""
    x = np.asarray(x, np.float32)
    flat = x.reshape(len(x), -1).astype(np.float64)
    mean = flat.mean(1, keepdims=True)
    var = flat.var(1, keepdims=True)
    return ((flat - mean) / np.sqrt(var + LAYER_NORM_EPS)).reshape(x.shape).astype(np.float32)


@dataclass(frozen=True)
class BackboneSpec:
    """One pretrained backbone: its files and what a clip becomes."""

    files: tuple[str, ...]
    """Model files (in the `pyopen_wakeword` package's `models/` folder on the workstation; sections of
    a bundle on the device), in running order."""
    pad_seconds: float = 0.25
    """Zeros added before and after the 1 s clip, so that the embedding windows cover all of it."""
    mel_frames: int = 76
    """Mel frames (10 ms each) one embedding window sees."""
    step_frames: int = 8
    """Frames between embedding windows."""
    windows: int = 9
    """Embedding windows of a padded 1 s clip."""
    dim: int = 96
    """Values of one embedding window."""

    @property
    def feature_shape(self) -> tuple[int, int]:
        return (self.windows, self.dim)


BACKBONES = {"speech-embedding": BackboneSpec(files=("melspectrogram.tflite", "embedding_model.tflite"))}


def describe(name: str, normalize: str = "none") -> dict:
    """What a bundle's header records of a backbone (its files' sha256 are added by the writer)."""
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}, not {normalize!r}")
    return {"name": name, "version": BACKBONE_VERSION, "normalize": normalize, **asdict(BACKBONES[name])}


class Backbone:
    """Waveforms -> embeddings (B, windows, dim) float32, from the backbone's TFLite model bytes."""

    def __init__(self, name: str, models: dict[str, bytes], *, normalize: str = "none", num_threads: int = 1,
                 runtime: str | None = None):
        from .runtime import find_interpreter

        if name not in BACKBONES:
            raise BundleError(f"unknown backbone {name!r} (this tinyear knows {', '.join(BACKBONES)}); "
                              "upgrade tinyear on the device")
        if normalize not in NORMALIZE:
            raise BundleError(f"backbone {name}: unknown normalisation {normalize!r}; upgrade tinyear on the device")
        self.name, self.spec, self.normalize = name, BACKBONES[name], normalize
        missing = [f for f in self.spec.files if f not in models]
        if missing:
            raise BundleError(f"backbone {name}: no {', '.join(missing)}; re-export the bundle")
        self.models = {f: bytes(models[f]) for f in self.spec.files}
        Interpreter, self.runtime = find_interpreter(runtime)
        try:
            with quiet_fd():
                self._mel, self._emb = (Interpreter(model_content=self.models[f], num_threads=num_threads)
                                        for f in self.spec.files)
        except ValueError as exc:
            raise TinyearError(f"backbone {name}: a model does not load ({str(exc).splitlines()[0]})") from None
        self._shapes: dict[int, tuple] = {}

    def identity(self) -> dict:
        """Name, numerics version and the files' sha256: what a head was trained over."""
        return {"backbone": self.name, "version": BACKBONE_VERSION,
                "files": {f: sha256_bytes(b) for f, b in self.models.items()}}

    def _run(self, interp, x: np.ndarray) -> np.ndarray:
        shape = tuple(x.shape)
        if self._shapes.get(id(interp)) != shape:
            with quiet_fd():  # allocating creates the XNNPACK delegate, which LiteRT announces on fd 2
                interp.resize_tensor_input(interp.get_input_details()[0]["index"], list(shape))
                interp.allocate_tensors()
            self._shapes[id(interp)] = shape
        interp.set_tensor(interp.get_input_details()[0]["index"], x)
        interp.invoke()
        return interp.get_tensor(interp.get_output_details()[0]["index"])

    def features(self, waves: np.ndarray, config: FrontendConfig) -> np.ndarray:
        """(B, samples) float32 in [-1, 1] at `config.sample_rate` -> (B, windows, dim) float32. Each clip
        is fitted to the clip length (`fit_clip`, as every clip in training) and padded with zeros; with
        `normalize="layer"` each clip's values are then `layer_normalize`d (a head's input)."""
        s = self.spec
        pad = int(round(s.pad_seconds * config.sample_rate))
        clips = np.stack([fit_clip(np.asarray(w, np.float32), config) for w in np.atleast_2d(waves)])  # (B, 16000)
        audio = (np.pad(clips, ((0, 0), (pad, pad))) * 32767.0).astype(np.float32)  # (B, 24000), int16 scale
        # One clip at a time: with several clips in one call the mel model's numbers depend on the others
        # (measured: a clip's mels moved by up to 23 in a batch of two); the embedding model batches fine.
        mels = np.concatenate([self._run(self._mel, audio[i : i + 1]) for i in range(len(audio))])
        mels = mels[:, 0] / 10.0 + 2.0  # (B, frames, 32)
        starts = [i * s.step_frames for i in range(s.windows)]
        if starts[-1] + s.mel_frames > mels.shape[1]:
            raise TinyearError(f"backbone {self.name}: {mels.shape[1]} mel frames are too few for {s.windows} windows")
        wins = np.stack([mels[:, a : a + s.mel_frames] for a in starts], 1)  # (B, windows, 76, 32)
        flat = wins.reshape(-1, s.mel_frames, wins.shape[-1], 1).astype(np.float32)  # (B * windows, 76, 32, 1)
        out = self._run(self._emb, flat).reshape(len(clips), s.windows, s.dim).astype(np.float32)
        return layer_normalize(out) if self.normalize == "layer" else out


class ClipStream:
    """Streaming for a backbone bundle: a ring of the last clip of audio; `push(samples)` returns
    (end_sample, features) for each model run the samples complete. Runs fall on sample counts
    clip, clip + hop, clip + 2 hop, ... since the reset, so any chunking gives the same runs, and each
    run's features are `Backbone.features` of exactly that second of audio (stream == clip)."""

    def __init__(self, backbone: Backbone, config: FrontendConfig, hop_samples: int):
        self.backbone, self.config = backbone, config
        self.clip = config.clip_samples
        self.hop = max(1, int(hop_samples))
        self._ring = np.zeros(2 * self.clip, np.float32)  # each sample at i and i + clip: one contiguous slice
        self.reset()

    def reset(self) -> None:
        self._seen = 0

    def next_run(self) -> int:
        """Samples since the reset at which the next model run falls."""
        n, s = self.clip, self._seen
        return n if s < n else s + self.hop - (s - n) % self.hop

    def push(self, samples: np.ndarray):
        samples = np.asarray(samples, np.float32).reshape(-1)
        out, a = [], 0
        while a < len(samples):
            take = min(len(samples) - a, self.next_run() - self._seen)
            part = samples[a : a + take]
            i = self._seen % self.clip
            first = min(take, self.clip - i)  # write with wrap-around, each sample twice
            for lo, chunk in ((i, part[:first]), (0, part[first:])):
                self._ring[lo : lo + len(chunk)] = chunk
                self._ring[lo + self.clip : lo + self.clip + len(chunk)] = chunk
            self._seen += take
            a += take
            if self._seen >= self.clip and (self._seen - self.clip) % self.hop == 0:
                start = self._seen % self.clip
                window = self._ring[start : start + self.clip]
                out.append((self._seen, self.backbone.features(window[None], self.config)[0]))
        return out
