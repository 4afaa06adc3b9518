"""A tiny, really trained tone classifier, converted by the project's own converter, for tests.

Three classes a model can learn in seconds from the shared log-mel features: `low` (a 300-600 Hz
tone), `high` (a 2-4 kHz tone) and `noise` (white noise). Used to exercise the runtime, bundles and
classify without any download. Built once per test session by the full (host) environment and left
in the artifacts folder, where the device-only environments (no torch) pick it up.
"""

from __future__ import annotations

import numpy as np

from tinyear.device.features import DEFAULT_CONFIG, clip_features

LABELS = ["low", "high", "noise"]
SR = DEFAULT_CONFIG.sample_rate


def make_clip(label: str, rng: np.random.Generator, seconds: float = 1.0) -> np.ndarray:
    """A float32 clip of the given class, random frequency, amplitude and phase."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    amp = rng.uniform(0.05, 0.5)
    if label == "noise":
        x = rng.standard_normal(n) * amp * 0.3
    else:
        f = rng.uniform(300, 600) if label == "low" else rng.uniform(2000, 4000)
        x = amp * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) + rng.standard_normal(n) * 0.002
    return x.astype(np.float32)


def dataset(n_per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for y, label in enumerate(LABELS):
        for _ in range(n_per_class):
            xs.append(clip_features(make_clip(label, rng)))
            ys.append(y)
    return np.stack(xs), np.array(ys)


def build(out_dir) -> dict:
    """Train the tone classifier and write tiny_int8.tflite, tiny_float.tflite and calib.npy."""
    import torch

    from tinyear.host.convert import convert_float, convert_int8

    torch.manual_seed(0)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 8, 3, stride=2, padding=1)
            self.bn1 = torch.nn.BatchNorm2d(8)
            self.conv2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
            self.fc = torch.nn.Linear(16, len(LABELS))

        def forward(self, x):  # (batch, frames, mel)
            # No affine on the raw input: an op the quantizer leaves unannotated there would keep the
            # model's input float. BatchNorm-free convs learn the offset themselves.
            x = x.unsqueeze(1)  # (batch, 1, frames, mel)
            x = torch.relu(self.bn1(self.conv1(x)))  # (batch, 8, frames/2, mel/2)
            x = torch.relu(self.conv2(x))  # (batch, 16, frames/4, mel/4)
            return self.fc(x.mean(dim=(2, 3)))  # (batch, labels) logits

    x, y = dataset(40, seed=1)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model = Tiny()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(120):
        idx = torch.randint(0, len(xt), (32,))
        loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    example = xt[:1]
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tiny_int8.tflite").write_bytes(convert_int8(model, example, [x[::4]]))
    (out / "tiny_float.tflite").write_bytes(convert_float(model, example))
    with torch.no_grad():
        np.save(out / "torch_logits.npy", model(xt[::10]).numpy())
    np.save(out / "torch_inputs.npy", x[::10])
    return {"int8": out / "tiny_int8.tflite", "float": out / "tiny_float.tflite"}
