"""The student registry: small keyword models over the shared log-mel features, by name.

A student takes float32 features of shape (batch, frames, bins) = (B, 98, 40) from
`tinyear.device.features` and returns logits (B, num_labels). Every student here converts to a
full-integer int8 TFLite model (int8 input and output) with `tinyear.host.convert.convert_int8`, which
rules out any op before the first convolution: the raw log-mel goes straight into a conv. That first
conv uses no padding ("valid"), so a zero pad never stands next to log-mel values (about -8 on average,
where 0 would read as a loud sound), and batch norm right after it absorbs the input's offset and scale.
Every batch norm follows a conv, so the converter folds it away.

Two families, three sizes each (`STUDENTS`):
- `dscnn-*`: the depthwise-separable CNN of Hello Edge (Zhang et al., 2017) and MLPerf Tiny's keyword
  model: one strided conv, then blocks of depthwise 3x3 + pointwise 1x1 conv, global average, linear.
- `bcresnet-*`: broadcasted residual blocks (Kim et al., 2021, BC-ResNet): a frequency-wise depthwise
  conv on the 2-D map, its frequency average through a temporal depthwise conv and a pointwise conv,
  broadcast back over frequency and added. ReLU instead of swish and batch norm instead of
  sub-spectral norm, so every op has an int8 kernel in LiteRT and TFLite Micro.

Parameters and MACs are computed by code (`count_params`, `count_macs`), never typed in. Imports torch
and `tinyear.device`; never the data or training modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from tinyear.device.features import DEFAULT_CONFIG

# The defaults that name a registry entry live in `tinyear.host.defaults` (torch-free, for --help).
from .defaults import DEFAULT_STUDENT, PIPELINE_STUDENT  # noqa: F401  (re-exported)

INPUT_SHAPE = DEFAULT_CONFIG.feature_shape  # (frames, bins) = (98, 40)


def _conv_bn(cin: int, cout: int, kernel, stride=1, padding=0, groups: int = 1, dilation=1) -> nn.Sequential:
    """Conv without bias + batch norm (folded into the conv at conversion)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
    )


# -- DS-CNN ---------------------------------------------------------------------------------------------


class DSCNN(nn.Module):
    """Depthwise-separable CNN (Hello Edge / MLPerf Tiny). Input (B, frames, bins) log-mel.

    The first conv (10 frames x 4 bins, stride 2 x 4: 20 ms steps, four-bin bands, as Hello Edge's
    10 x 4 kernel on MFCCs) sets the map the blocks work on: 45 x 10 positions at the defaults.
    `block_stride` > 1 makes the first block's depthwise conv stride over time too, halving the work of
    every later block."""

    def __init__(self, num_labels: int, channels: int = 64, blocks: int = 4, first_kernel=(10, 4),
                 first_stride=(2, 4), block_stride: int = 1, dropout: float = 0.1):
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(1, channels, first_kernel, stride=first_stride), nn.ReLU())  # valid padding
        layers = []
        for i in range(blocks):
            stride = (block_stride, 1) if i == 0 else 1
            layers += [
                _conv_bn(channels, channels, 3, stride=stride, padding=1, groups=channels),  # depthwise 3x3
                nn.ReLU(),
                _conv_bn(channels, channels, 1),  # pointwise 1x1
                nn.ReLU(),
            ]
        self.blocks = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1)  # (B, 1, frames, bins)
        x = self.stem(x)  # (B, C, T', F') = (B, C, 45, 10) at the defaults
        x = self.blocks(x)  # (B, C, T' / block_stride, F')
        x = x.mean(dim=(2, 3))  # (B, C)
        return self.fc(self.dropout(x))  # (B, num_labels)


# -- BC-ResNet ------------------------------------------------------------------------------------------


class BCBlock(nn.Module):
    """One broadcasted residual block on (B, C, T, F) maps.

    f2: frequency-wise depthwise conv (1 x 3 over F) -> y (B, C, T, F').
    f1: mean of y over F (B, C, T, 1) -> temporal depthwise conv (3 x 1, dilated) -> ReLU ->
        pointwise conv, then broadcast over F and added to y. A block that changes the channel count
        (a transition) starts with a pointwise conv and has no identity shortcut."""

    def __init__(self, cin: int, cout: int, freq_stride: int = 1, dilation: int = 1, dropout: float = 0.1):
        super().__init__()
        self.transition = cin != cout or freq_stride != 1
        self.expand = nn.Sequential(_conv_bn(cin, cout, 1), nn.ReLU()) if cin != cout else nn.Identity()
        self.freq = _conv_bn(cout, cout, (1, 3), stride=(1, freq_stride), padding=(0, 1), groups=cout)
        self.time = nn.Sequential(
            _conv_bn(cout, cout, (3, 1), padding=(dilation, 0), dilation=(dilation, 1), groups=cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 1),
            nn.Dropout(dropout),
        )
        # A ReLU module, not torch.relu: the int8 quantizer matches add -> nn.ReLU and keeps the adds in
        # int8; after torch.relu it leaves both adds of a residual block in float (measured).
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.expand(x)  # (B, Cout, T, F)
        y = self.freq(x)  # (B, Cout, T, F')
        z = self.time(y.mean(dim=3, keepdim=True))  # (B, Cout, T, 1)
        out = y + z  # (B, Cout, T, F'): z broadcast over frequency
        if not self.transition:
            out = out + x
        return self.act(out)


class BCResNet(nn.Module):
    """BC-ResNet-style student. Input (B, frames, bins) log-mel.

    Stem: a 5 x 5 conv with stride (2, 2) (time and frequency), where the paper keeps full time
    resolution: half the positions make it about twice as fast to train on two CPU cores. Four stages
    of widths `base * (1, 1.5, 2, 2.5)` with 2, 2, 4, 4 blocks; frequency stride 2 at the start of
    stages 2 and 3; dilations 1, 2, 4, 8 over time; then a pointwise conv, the global average and a
    linear layer."""

    def __init__(self, num_labels: int, base: int = 8, dropout: float = 0.1):
        super().__init__()
        widths = [base, int(base * 1.5), base * 2, int(base * 2.5)]
        repeats, freq_strides, dilations = (2, 2, 4, 4), (1, 2, 2, 1), (1, 2, 4, 8)
        stem_ch = base * 2
        self.stem = nn.Sequential(_conv_bn(1, stem_ch, 5, stride=(2, 2)), nn.ReLU())  # valid padding
        blocks, cin = [], stem_ch
        for width, n, fs, d in zip(widths, repeats, freq_strides, dilations):
            for i in range(n):
                blocks.append(BCBlock(cin, width, freq_stride=fs if i == 0 else 1, dilation=d, dropout=dropout))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        head_ch = base * 4
        self.head = nn.Sequential(_conv_bn(cin, head_ch, 1), nn.ReLU())
        self.fc = nn.Linear(head_ch, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1)  # (B, 1, frames, bins)
        x = self.stem(x)  # (B, 2*base, 47, 18) at the defaults
        x = self.blocks(x)  # (B, 2.5*base, 47, 5)
        x = self.head(x)  # (B, 4*base, 47, 5)
        x = x.mean(dim=(2, 3))  # (B, 4*base)
        return self.fc(x)  # (B, num_labels)


# -- registry -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudentSpec:
    """A registered student: its class, the keyword arguments that size it, and one line about it."""

    cls: type
    kwargs: dict = field(default_factory=dict)
    about: str = ""

    def build(self, num_labels: int) -> nn.Module:
        return self.cls(num_labels, **self.kwargs)


STUDENTS: dict[str, StudentSpec] = {
    "dscnn-s": StudentSpec(DSCNN, {"channels": 32, "blocks": 4}, "DS-CNN, 32 channels, 4 blocks"),
    "dscnn-m": StudentSpec(DSCNN, {"channels": 64, "blocks": 4}, "DS-CNN, 64 channels, 4 blocks (MLPerf Tiny size)"),
    "dscnn-l": StudentSpec(DSCNN, {"channels": 128, "blocks": 5}, "DS-CNN, 128 channels, 5 blocks"),
    "bcresnet-1": StudentSpec(BCResNet, {"base": 8}, "BC-ResNet-style, base width 8"),
    "bcresnet-2": StudentSpec(BCResNet, {"base": 16}, "BC-ResNet-style, base width 16"),
    "bcresnet-3": StudentSpec(BCResNet, {"base": 24}, "BC-ResNet-style, base width 24"),
}


# The classes a checkpoint's "arch" may name, so a run folder can be rebuilt without the registry entry
# (its "arch_kwargs" carry the size). Explicit: no lookup by arbitrary name.
ARCHS: dict[str, type] = {"DSCNN": DSCNN, "BCResNet": BCResNet}


def build_student(name: str, num_labels: int) -> nn.Module:
    """A freshly initialised student from the registry. Raises KeyError listing the names on a typo."""
    try:
        spec = STUDENTS[name]
    except KeyError:
        raise KeyError(f"unknown student {name!r}; registered: {', '.join(STUDENTS)}") from None
    return spec.build(num_labels)


def count_params(model: nn.Module) -> int:
    """Trainable parameters (batch norm scale and shift included; they fold into conv weights)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, input_shape=INPUT_SHAPE) -> int:
    """Multiply-accumulates of one forward pass on one input of `input_shape` (no batch axis), over
    convolutions and linear layers, as MLPerf Tiny counts them (elementwise ops, pooling and batch norm,
    which folds into the conv, are not counted). Counted by forward hooks from each layer's output
    shape: a conv's output element costs (in_channels / groups) x kernel height x kernel width MACs, a
    linear's in_features. tests/test_students.py checks it against torch's FLOP counter, which costs
    seconds of import here and is not needed for these two layer types."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += output.numel() * (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]
        else:
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape)))
        return total
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


def describe(name: str, num_labels: int = 12) -> dict:
    """Name, class, parameters and MACs of a registered student (for `--help` and reports)."""
    model = build_student(name, num_labels)
    return {"name": name, "arch": type(model).__name__, "params": count_params(model),
            "macs": count_macs(model), "about": STUDENTS[name].about}
