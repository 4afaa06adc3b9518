"""A tiny tone "keyword" model that is trained for streams, and the streams to test it on.

The conftest's tone classifier (`tiny_model.py`) learned whole one-second clips: it calls digital
silence `high` and any tone over background noise `noise`, so a sliding window over a stream of tones
cannot be scored with it. This model is trained on what a detector sees: one-second windows with a
short tone burst somewhere inside (`low`: 300-600 Hz, `high`: 2-4 kHz), or only background (digital
silence or quiet white noise, sometimes with the edge of a burst), labelled `_silence_`, which never
fires. It is converted to int8 by the project's own converter and wrapped in a bundle.

Built once with torch (the full environment) and cached in the artifacts folder under a hash of this
file and the converter, so the device-only environments use the same file; without torch and without
the file, the fixture fails saying to run the full environment first, as `tiny_models` does.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tinyear.device.features import DEFAULT_CONFIG, clip_features

LABELS = ["low", "high", "_silence_"]
WORDS = ("low", "high")
SR = DEFAULT_CONFIG.sample_rate
BANDS = {"low": (300.0, 600.0), "high": (2000.0, 4000.0)}
# A burst stays in the 1 s window for up to 1.7 s: a 1.5 s refractory period keeps it one event.
DETECTION = {"threshold": 0.6, "smoothing_ms": 300, "refractory_ms": 1500, "hop_ms": 100}
HAS_TORCH = importlib.util.find_spec("torch") is not None
ROOT = Path(__file__).resolve().parent.parent


def tone_burst(label: str, rng: np.random.Generator, seconds: float | None = None) -> np.ndarray:
    """A float32 tone burst of class `label`: random frequency in its band, 0.35-0.7 s long (unless
    `seconds`), RMS -26..-12 dBFS, 20 ms raised-cosine fades."""
    n = int(SR * (rng.uniform(0.35, 0.7) if seconds is None else seconds))
    f = rng.uniform(*BANDS[label])
    t = np.arange(n) / SR
    rms = 10 ** (rng.uniform(-26, -12) / 20)
    x = np.sqrt(2) * rms * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    fade = min(n // 2, int(0.02 * SR))
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    x[:fade] *= ramp
    x[n - fade :] *= ramp[::-1]
    return x.astype(np.float32)


def background(n: int, rng: np.random.Generator) -> np.ndarray:
    """Digital silence a quarter of the time, otherwise white noise at -70..-40 dBFS RMS."""
    if rng.uniform() < 0.25:
        return np.zeros(n, dtype=np.float32)
    return (rng.standard_normal(n) * 10 ** (rng.uniform(-70, -40) / 20)).astype(np.float32)


def training_window(label: str, rng: np.random.Generator) -> np.ndarray:
    """One one-second window: a burst wholly inside it for a word; background, sometimes with at
    most 30% of a burst at one edge (a word arriving or leaving), for `_silence_`."""
    x = background(SR, rng)
    if label in WORDS:
        burst = tone_burst(label, rng)
        start = rng.integers(0, SR - len(burst) + 1)
        x[start : start + len(burst)] += burst
    elif rng.uniform() < 0.5:
        burst = tone_burst(str(rng.choice(WORDS)), rng)
        edge = int(len(burst) * rng.uniform(0.02, 0.3))
        if rng.uniform() < 0.5:
            x[:edge] += burst[-edge:]
        else:
            x[SR - edge :] += burst[:edge]
    return x


def dataset(n_per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for y, label in enumerate(LABELS):
        for _ in range(n_per_class):
            xs.append(clip_features(training_window(label, rng)))
            ys.append(y)
    return np.stack(xs), np.array(ys)


def _source_hash() -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update((ROOT / "host" / "convert.py").read_bytes())
    return h.hexdigest()[:16]


def make_model(width: int = 16):
    """The tone detector: two strided convs, max over time and frequency, a linear layer."""
    import torch

    class Tones(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, width, 3, stride=2, padding=1)
            self.bn1 = torch.nn.BatchNorm2d(width)
            self.conv2 = torch.nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
            self.bn2 = torch.nn.BatchNorm2d(2 * width)
            self.fc = torch.nn.Linear(2 * width, len(LABELS))

        def forward(self, x):  # (batch, frames, mel); the first op is a conv, so the int8 input stays int8
            x = x.unsqueeze(1)  # (batch, 1, frames, mel)
            x = torch.relu(self.bn1(self.conv1(x)))  # (batch, w, frames/2, mel/2)
            x = torch.relu(self.bn2(self.conv2(x)))  # (batch, 2w, frames/4, mel/4)
            return self.fc(x.amax(dim=(2, 3)))  # (batch, labels): max over time finds a burst anywhere

    return Tones()


def train(x: np.ndarray, y: np.ndarray, steps: int = 500, batch: int = 64, seed: int = 0):
    """Adam with a one-cycle schedule on (N, frames, mel) features; returns the model in eval mode."""
    import torch

    torch.manual_seed(seed)
    model = make_model()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=steps)
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (batch,))
        loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    return model.eval()


def build(out: Path) -> None:
    """Train, convert to int8 and write `out` (a .tinyear bundle)."""
    import torch

    from tinyear.host.bundle import write_bundle
    from tinyear.host.convert import convert_int8

    x, y = dataset(200, seed=1)
    model = train(x, y)
    model_bytes = convert_int8(model, torch.from_numpy(x[:1]), [x[::3]])
    write_bundle(out, model_bytes, LABELS, DEFAULT_CONFIG, detection=DETECTION,
                 metrics={"note": "tone detector for stream tests"}, provenance={"made_by": "tests/stream_model.py"})


def tone_bundle_path(artifacts: Path) -> Path:
    """The cached bundle, rebuilt when this file or the converter changed (and torch is here)."""
    path = artifacts / f"stream_tones_{_source_hash()}.tinyear"
    if not path.exists():
        if not HAS_TORCH:
            pytest.fail(f"stream test model missing ({path}); run the tests in the full environment first "
                        "(scripts/test.sh does), which builds it with litert-torch")
        build(path)  # write_bundle is atomic: a half-built file never looks finished
    return path


@pytest.fixture(scope="session")
def tone_bundle(artifacts) -> Path:
    """Path of the stream-trained tone bundle (labels low, high, _silence_)."""
    return tone_bundle_path(artifacts)


def tone_stream(words: list[str], rng: np.random.Generator, *, gap_s=(2.0, 2.6), lead_s: float = 1.5,
                tail_s: float = 1.5, noise_dbfs: float | None = -60.0):
    """A stream of tone bursts separated by background: (float32 waveform at 16 kHz, truth rows
    [(start_s, end_s, label)]). The first burst starts after `lead_s` (the detector needs one full
    window of audio before it runs)."""
    parts, truth, t = [], [], 0.0

    def gap(seconds):
        n = int(seconds * SR)
        level = 0.0 if noise_dbfs is None else 10 ** (noise_dbfs / 20)
        parts.append((rng.standard_normal(n) * level).astype(np.float32))
        return n / SR

    t += gap(lead_s)
    for i, word in enumerate(words):
        burst = tone_burst(word, rng)
        if noise_dbfs is not None:
            burst = burst + (rng.standard_normal(len(burst)) * 10 ** (noise_dbfs / 20)).astype(np.float32)
        parts.append(burst.astype(np.float32))
        truth.append((t, t + len(burst) / SR, word))
        t += len(burst) / SR
        t += gap(tail_s if i == len(words) - 1 else rng.uniform(*gap_s))
    return np.concatenate(parts), truth


def tone_dataset(root: Path, per_class: int = 120, seed: int = 0) -> Path:
    """A dataset folder for streams of the tone model: `low/`, `high/` (its words), `_unknown_/` (mid
    tones, 900-1500 Hz: distractor words), `chatter/` (other "speech": a chirp from 700 to 1800 Hz,
    which sweeps between the words' bands) and `_background_noise_/` (20 s of quiet white noise), one-second 16-bit WAVs named
    `<speaker>_nohash_0.wav` so the speaker hash splits them."""
    import soundfile as sf

    rng = np.random.default_rng(seed)

    def write(folder: str, i: int, x: np.ndarray) -> None:
        (root / folder).mkdir(parents=True, exist_ok=True)
        sf.write(str(root / folder / f"{folder.strip('_')}{seed}s{i:04d}_nohash_0.wav"), x, SR, subtype="PCM_16")

    def clip(*bursts: np.ndarray) -> np.ndarray:
        x = (rng.standard_normal(SR) * 10 ** (-60 / 20)).astype(np.float32)
        at = int(rng.integers(0, SR // 5))
        for b in bursts:
            x[at : at + len(b)] += b[: SR - at]
            at = min(SR - 1, at + len(b) + int(rng.integers(SR // 50, SR // 10)))
        return x

    for i in range(per_class):
        for word in WORDS:
            write(word, i, clip(tone_burst(word, rng)))
        n = int(SR * rng.uniform(0.35, 0.6))
        t = np.arange(n) / SR
        gain = 10 ** (rng.uniform(-26, -12) / 20)
        write("_unknown_", i, clip((np.sin(2 * np.pi * rng.uniform(900, 1500) * t) * gain).astype(np.float32)))
        sweep = 700 * t + (1800 - 700) * t ** 2 / (2 * t[-1])  # instantaneous frequency 700 -> 1800 Hz
        write("chatter", i, clip((np.sin(2 * np.pi * sweep) * gain).astype(np.float32)))
    (root / "_background_noise_").mkdir(parents=True, exist_ok=True)
    sf.write(str(root / "_background_noise_" / "white.wav"),
             (rng.standard_normal(20 * SR) * 0.01).astype(np.float32), SR, subtype="PCM_16")
    return root


def unknown_bundle(tone_bundle_file: Path, out: Path) -> Path:
    """The tone model with its background class named `_unknown_` (labels low, high, _unknown_): a real
    int8 bundle that calibration accepts."""
    from tinyear.device.bundle import pack_bundle, read_bundle

    b = read_bundle(tone_bundle_file)
    out.write_bytes(pack_bundle(b.model_bytes, ["low", "high", "_unknown_"], b.frontend, detection=b.detection,
                                metrics=b.metrics, provenance=b.provenance, output=b.output))
    return out
