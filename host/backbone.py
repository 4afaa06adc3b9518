"""Pretrained backbone teachers: Google's frozen speech_embedding with a small MLP head trained on the
user's data (`tinyear teacher DATA --backbone speech-embedding`), as a run folder any `--teacher` takes.

speech_embedding comes as two TFLite files inside the `pyopen-wakeword` wheel (Apache-2.0; the
`backbone` extra): `melspectrogram.tflite` (int16-scaled float audio -> 32 mel bins a 10 ms frame, then
`x / 10 + 2`) and `embedding_model.tflite` (76 such frames -> 96 values). A 1 s clip, padded by 0.25 s
of zeros each side, gives 9 windows (one every 8 frames), so a clip is (9, 96). Only the model files are
used, run with the LiteRT interpreter the device half uses; nothing is downloaded.

A backbone run folder holds `head.pt` (the head's weights, labels, the backbone's name and its model
files' sha256) and `run.json` (kind "backbone", metrics on the validation and test splits), written
last. Clean clip embeddings are cached per dataset, split and model files (`tinyear.host.cache`), so
training another head costs seconds. The teacher (`load_backbone_teacher`) maps waveforms to logits;
the student's distillation calls it on the very waveforms of its augmented variants.

Imports numpy, torch, `tinyear.device` and host helpers (cache, progress, train's metrics); never the
distillation driver or a command module. pyopen_wakeword is imported only to find its model files.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinyear.device.errors import TinyearError
from tinyear.device.backbone import LAYER_NORM_EPS, Backbone
from tinyear.device.features import DEFAULT_CONFIG
from tinyear.device.fileio import atomic_path, tool_versions

from . import runs
from .backbone_spec import BACKBONES, HeadConfig
from .cache import cache_root, key as cache_key
from .progress import bar as progress_bar

HEAD_FILE = "head.pt"
RUN_KIND = "backbone"
MISSING = ("the speech-embedding backbone needs the pyopen-wakeword wheel (its model files): "
           "pip install 'tinyear[backbone]'")


def model_files(name: str = "speech-embedding") -> list[Path]:
    """The backbone's model files; a TinyearError (one line) when its wheel is not installed."""
    if name not in BACKBONES:
        raise TinyearError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    try:
        import pyopen_wakeword
    except ImportError:
        raise TinyearError(MISSING) from None
    folder = Path(pyopen_wakeword.__file__).resolve().parent / "models"
    paths = [folder / f for f in BACKBONES[name].files]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise TinyearError(f"{folder}: no {', '.join(missing)} in this pyopen-wakeword; reinstall it: "
                           "pip install --force-reinstall 'tinyear[backbone]'")
    return paths


def available(name: str = "speech-embedding") -> bool:
    """Whether the backbone's model files are installed."""
    try:
        model_files(name)
        return True
    except TinyearError:
        return False


class SpeechEmbedding(Backbone):
    """Waveforms (B, samples) float32 in [-1, 1] at 16 kHz -> embeddings (B, windows, dim) float32: the
    device's `Backbone` over the model files of the installed pyopen-wakeword wheel (so a head trained
    here and run from a bundle sees the same numbers). `paths` are those files."""

    def __init__(self, name: str = "speech-embedding", threads: int = 1):
        self.paths = model_files(name)
        super().__init__(name, {p.name: p.read_bytes() for p in self.paths}, num_threads=threads)

    def __call__(self, waves: np.ndarray) -> np.ndarray:
        return self.features(waves, DEFAULT_CONFIG)


def embed(backbone: SpeechEmbedding, waves: np.ndarray, *, batch: int = 32, progress: bool = False,
          desc: str = "embeddings") -> np.ndarray:
    """Embeddings (N, windows, dim) of waveforms (N, samples), in batches, with a progress bar."""
    s = backbone.spec
    out = np.zeros((len(waves), s.windows, s.dim), np.float32)
    with progress_bar(len(waves), desc, enabled=progress, at_least=200) as pbar:
        for a in range(0, len(waves), batch):
            out[a : a + batch] = backbone(waves[a : a + batch])
            pbar.update(min(batch, len(waves) - a))
    return out


def split_embeddings(backbone: SpeechEmbedding, dataset, split: str, *, cache_dir=None,
                     progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings (N, windows, dim), labels (N,)) of a dataset split's clean clips, cached on disk
    under `<cache>/backbone/` by dataset fingerprint, split and backbone identity."""
    waves, y = dataset.arrays(split, DEFAULT_CONFIG, progress=False)
    folder = cache_root(cache_dir or getattr(dataset, "cache_dir", None), "backbone")
    name = cache_key({"dataset": dataset.fingerprint(), "split": split, "n": len(y), **backbone.identity()})[:20]
    path = folder / f"{name}.npy" if folder is not None else None
    if path is not None and path.exists():
        try:
            x = np.load(path)
            if x.shape == (len(y), backbone.spec.windows, backbone.spec.dim):
                return x, y
        except (OSError, ValueError):
            pass
    x = embed(backbone, waves, progress=progress, desc=f"{split} embeddings")
    if path is not None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, x)
    return x, y


def augmented_embeddings(backbone: SpeechEmbedding, dataset, variants: int, *, seed: int = 0, cache_dir=None,
                         progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings (N * variants, windows, dim), labels) of `variants` augmented copies of each training
    clip (the students' waveform augmentation, `augment.Augmenter` with its defaults and the dataset's
    noise: noise, shift, reverb, gain, ...), cached like `split_embeddings`. The same seed gives the
    same copies as a student's variants (`featcache`'s rng per clip and variant)."""
    from tinyear.device.features import fit_clip

    from .augment import AugmentConfig, Augmenter, waveform_augment_settings

    waves, y = dataset.arrays("train", DEFAULT_CONFIG, progress=False)
    config = AugmentConfig()
    folder = cache_root(cache_dir or getattr(dataset, "cache_dir", None), "backbone")
    name = cache_key({"dataset": dataset.fingerprint(), "split": "train", "n": len(y), "variants": variants,
                      "seed": seed, "augment": waveform_augment_settings(config), **backbone.identity()})[:20]
    path = folder / f"aug-{name}.npy" if folder is not None else None
    shape = (len(y) * variants, backbone.spec.windows, backbone.spec.dim)
    if path is not None and path.exists():
        try:
            x = np.load(path)
            if x.shape == shape:
                return x, np.tile(y, variants)
        except (OSError, ValueError):
            pass
    augmenter = Augmenter(config, dataset.noise, DEFAULT_CONFIG.sample_rate, seed=seed)
    copies = np.stack([fit_clip(augmenter(w, np.random.default_rng([seed, i, k])), DEFAULT_CONFIG)
                       for k in range(variants) for i, w in enumerate(waves)]) if len(y) else waves[:0]
    x = embed(backbone, copies, progress=progress, desc="augmented embeddings")
    if path is not None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, x)
    return x, np.tile(y, variants)


# -- the head -------------------------------------------------------------------------------------------


class EmbeddingHead(nn.Module):
    """(B, windows, dim) embeddings -> (B, classes) logits: flatten, LayerNorm, two hidden layers.

    The LayerNorm (each clip's values to mean 0, std 1, then a learnt scale and shift) is what carries a
    head trained on synthetic speech to people (measured on the real wake phrases: 98.0 / 97.3 / 99.3%
    recall at 1.8% false accepts with it, 94.7 / 84.0 / 99.3% with a fixed standardisation instead).
    `deployable()` splits it for the int8 converter: the device normalises each clip in float
    (`tinyear.device.backbone.layer_normalize`, part of a backbone bundle's features) and the scale and
    shift fold into the first linear layer. `act="relu"` (what `tinyear teacher --backbone` trains now)
    has int8 kernels; the first heads' GELU does not (their head.pt files still load as teachers)."""

    def __init__(self, classes: int, windows: int = 9, dim: int = 96, hidden: int = 256, dropout: float = 0.3,
                 act: str = "gelu"):
        super().__init__()
        if act not in ("gelu", "relu"):
            raise ValueError(f"act must be gelu or relu, not {act!r}")
        self.act = act
        Act = nn.GELU if act == "gelu" else nn.ReLU
        self.net = nn.Sequential(
            nn.Flatten(), nn.LayerNorm(windows * dim, eps=LAYER_NORM_EPS),  # (B, windows * dim)
            nn.Linear(windows * dim, hidden), Act(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), Act(), nn.Dropout(dropout),
            nn.Linear(hidden, classes),  # (B, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def deployable(self) -> nn.Module:
        """The head after the normalisation, as plain layers for the int8 converter: it takes
        `layer_normalize`d embeddings; the LayerNorm's scale and shift fold into the first linear layer
        (W * scale, b + W @ shift), dropout is gone. Refuses GELU heads in one line."""
        if self.act != "relu":
            raise TinyearError("this backbone head uses GELU, which has no int8 kernel; train it again with this "
                               "tinyear (tinyear teacher DATA --backbone speech-embedding --force) to export it")
        norm = self.net[1]
        first, second, last = (m for m in self.net if isinstance(m, nn.Linear))
        layers = [nn.Flatten(), nn.Linear(first.in_features, first.out_features), nn.ReLU(),
                  nn.Linear(second.in_features, second.out_features), nn.ReLU(),
                  nn.Linear(last.in_features, last.out_features)]
        with torch.no_grad():
            layers[1].weight.copy_(first.weight * norm.weight)
            layers[1].bias.copy_(first.bias + first.weight @ norm.bias)
        layers[3].load_state_dict(second.state_dict())
        layers[5].load_state_dict(last.state_dict())
        return nn.Sequential(*layers).eval().requires_grad_(False)


class HeadEnsemble(nn.Module):
    """Heads trained alike from different seeds, their logits averaged: a steadier model than any one
    of them (on real wake phrases one head's false accepts at threshold 0.5 ranged 1.1-3.8% over three
    seeds; calibrated alone, one head found 95.3% of `jarvis` where the three found 100%: docs/
    BENCHMARKS.md, one seed each). `deployable()` keeps the members side by side in one int8 model
    (`SummedHeads`: each member's plain layers on the same input, last layers divided by their number,
    outputs added), the same function."""

    def __init__(self, heads: list[EmbeddingHead]):
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([h(x) for h in self.heads]).mean(0)

    def deployable(self) -> nn.Module:
        parts = [h.deployable() for h in self.heads]
        if len(parts) == 1:
            return parts[0]
        with torch.no_grad():  # the mean of the members' logits: each last layer divided by their number
            for p in parts:
                last = p[-1]
                last.weight.div_(len(parts))
                last.bias.div_(len(parts))
        return SummedHeads(parts).eval().requires_grad_(False)


class SummedHeads(nn.Module):
    """Plain MLPs on one input, outputs added: a `HeadEnsemble` for the int8 converter (fully connected
    layers and ADDs, which LiteRT and TFLite Micro run in int8). Merging the members into one wider MLP
    instead stores its block-diagonal middle layer whole: for three 256-wide heads, 393,216 int8 zeros,
    29% of the model (1,311,200 bytes against 927,648 side by side; int8 drop 0.25 vs 0.12 points on
    the default pipeline's validation split, TFLite Micro bit-exact both ways)."""

    def __init__(self, parts: list[nn.Module]):
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.parts[0](x)
        for part in self.parts[1:]:
            out = out + part(x)
        return out


def train_heads(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, classes: int,
                config: HeadConfig = HeadConfig(), progress: bool = False):
    """`config.members` heads from seeds config.seed, config.seed + 1, ... (`train_head` each): (the head,
    or a `HeadEnsemble` of them, [each one's best epoch], all their log rows)."""
    import dataclasses

    trained = [train_head(x, y, xv, yv, classes, dataclasses.replace(config, seed=config.seed + i), progress)
               for i in range(config.members)]
    head = trained[0][0] if len(trained) == 1 else HeadEnsemble([t[0] for t in trained]).eval()
    return head, [t[1] for t in trained], [row for t in trained for row in t[2]]


def train_head(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, classes: int,
               config: HeadConfig = HeadConfig(), progress: bool = False):
    """Train one head on (N, windows, dim) embeddings; returns (head at its best validation epoch, best
    epoch, log rows). Validation accuracy picks the epoch; `config.members` is for `train_heads`."""
    from .train import accuracy_metrics

    torch.manual_seed(config.seed)
    head = EmbeddingHead(classes, x.shape[1], x.shape[2], config.hidden, config.dropout, act="relu")
    opt = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=max(1, config.epochs *
                                                ((len(x) + config.batch_size - 1) // config.batch_size)))
    xt, yt, xvt = torch.from_numpy(x), torch.from_numpy(y).long(), torch.from_numpy(xv)
    scale = float(xt.std()) or 1.0
    gen = torch.Generator().manual_seed(config.seed)
    best, best_state, best_epoch, rows = -1.0, None, 0, []
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    for epoch in range(1, config.epochs + 1):
        head.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for a in range(0, len(order), config.batch_size):
            idx = order[a : a + config.batch_size]
            xb = xt[idx] + config.noise * scale * torch.randn(xt[idx].shape, generator=gen)
            loss = loss_fn(head(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        head.eval()
        with torch.no_grad():
            val = accuracy_metrics(head(xvt).numpy(), yv, [str(i) for i in range(classes)])
        rows.append({"epoch": epoch, "train_loss": total / max(1, len(xt)), "val_accuracy": val["accuracy"]})
        if val["accuracy"] > best:
            best, best_epoch = val["accuracy"], epoch
            best_state = {k: v.clone() for k, v in head.state_dict().items()}
        if progress:
            print(f"\rtinyear: head epoch {epoch}/{config.epochs}: validation {val['accuracy']:.3f} "
                  f"(best {best:.3f}, epoch {best_epoch})", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    head.load_state_dict(best_state)
    return head.eval(), best_epoch, rows


def train_backbone_teacher(data_roots, out, *, backbone: str = "speech-embedding", data=None,
                           config: HeadConfig = HeadConfig(), force: bool = False, progress: bool = True,
                           command: str = "") -> dict:
    """`tinyear teacher DATA --backbone NAME`: embeddings of every split (cached), a head trained on the
    training split and chosen on validation, `head.pt` and then `run.json` in `out`. Returns run.json's
    dict (the keys a `tinyear teacher` run has: name, params, metrics, best_epoch, epochs_run,
    wall_seconds). A finished run is returned as it is unless `force`."""
    from .data import WORDS, load_dataset
    from .train import accuracy_metrics
    from .trainconfig import DataOptions

    wall0 = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TinyearError(f"{out} is a file; --out must be a folder")
    if (out / runs.RUN_JSON).exists() and not force:
        info = json.loads((out / runs.RUN_JSON).read_text())
        if info.get("kind") != RUN_KIND:
            raise TinyearError(f"{out} already holds a finished run; choose another --out, or --force to start over")
        return info
    net = SpeechEmbedding(backbone)  # before any long work: a missing wheel fails in a second
    runs.check_writable(out)
    (out / runs.RUN_JSON).unlink(missing_ok=True)
    data = data or DataOptions(roots=tuple(str(r) for r in data_roots))
    dataset = load_dataset(list(data.roots), data.words or WORDS, seed=data.data_seed,
                           unknown_ratio=data.unknown_ratio, quiet=not progress)
    labels = list(dataset.labels)
    emb = {split: split_embeddings(net, dataset, split, cache_dir=data.cache_dir, progress=progress)
           for split in ("train", "validation", "test")}
    if not len(emb["train"][1]) or not len(emb["validation"][1]):
        raise TinyearError(f"{', '.join(map(str, data.roots))}: the backbone head needs training and validation clips")
    train_x, train_y = emb["train"]
    if config.variants:  # augmented copies beside the clean clips
        aug_x, aug_y = augmented_embeddings(net, dataset, config.variants, seed=data.data_seed,
                                            cache_dir=data.cache_dir, progress=progress)
        train_x, train_y = np.concatenate([train_x, aug_x]), np.concatenate([train_y, aug_y])
    head, member_epochs, rows = train_heads(train_x, train_y, *emb["validation"], len(labels), config, progress)
    best_epoch = member_epochs[0]
    metrics = {}
    with torch.no_grad():
        for split, (x, y) in emb.items():
            if len(y) and split != "train":
                metrics[split] = accuracy_metrics(head(torch.from_numpy(x)).numpy(), y, labels)
    params = sum(p.numel() for p in head.parameters())
    macs = sum(m.in_features * m.out_features for m in head.modules() if isinstance(m, nn.Linear))  # the head only
    payload = {"kind": RUN_KIND, "backbone": backbone, "identity": net.identity(), "labels": labels,
               "head_kwargs": {"windows": net.spec.windows, "dim": net.spec.dim, "hidden": config.hidden,
                               "dropout": config.dropout, "act": "relu"}, "members": config.members,
               "state_dict": head.state_dict(), "metrics": metrics}
    with atomic_path(out / HEAD_FILE) as tmp:
        torch.save(payload, tmp)
    info = {
        "kind": RUN_KIND, "name": backbone, "command": command, "labels": labels, "backbone": net.identity(),
        "options": {"head": asdict(config), "data": {"roots": [str(r) for r in data.roots],
                                                      "words": list(dataset.words), "seed": data.data_seed}},
        "params": params, "macs": macs, "note": "params and macs: the head only (the frozen backbone is not counted)",
        "data": {"roots": [str(r) for r in dataset.roots], "fingerprint": dataset.fingerprint(),
                 "summary": dataset.summary()},
        "metrics": metrics, "best_epoch": best_epoch, "member_best_epochs": member_epochs,
        "epochs_run": config.epochs, "log": rows,
        "wall_seconds": round(time.perf_counter() - wall0, 2), "versions": tool_versions("torch"),
    }
    runs.write_run_json(out, info)
    if progress:
        print(f"tinyear: backbone teacher {backbone}: validation accuracy {metrics['validation']['accuracy']:.3f} "
              f"(head {params:,} parameters{f', {config.members} heads averaged' if config.members > 1 else ''}, "
              f"best epoch {', '.join(map(str, member_epochs))} of {config.epochs})", file=sys.stderr)
    return info


def load_head(payload: dict) -> EmbeddingHead:
    """The trained head (or `HeadEnsemble`) of a head.pt payload (the first heads' records name no
    activation: GELU)."""
    members = int(payload.get("members", 1))
    heads = [EmbeddingHead(len(payload["labels"]), **payload["head_kwargs"]) for _ in range(members)]
    head = heads[0] if members == 1 else HeadEnsemble(heads)
    head.load_state_dict(payload["state_dict"])
    return head.eval()


# -- the teacher ----------------------------------------------------------------------------------------


def is_backbone_run(folder: Path) -> bool:
    """Whether `folder` is a backbone run folder (its head file is there)."""
    return (Path(folder) / HEAD_FILE).is_file()


class BackboneTeacherModule(nn.Module):
    """Waveforms (B, samples) float32 16 kHz -> logits (B, labels): the frozen backbone (LiteRT, numpy)
    then the trained head. Not differentiable in the waveform, which a teacher never needs."""

    def __init__(self, backbone: SpeechEmbedding, head: EmbeddingHead):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        x = self.backbone(waves.detach().cpu().float().numpy())  # (B, windows, dim)
        device = next(self.head.parameters()).device
        return self.head(torch.from_numpy(x).to(device))  # (B, labels)


def read_head_run(folder, threads: int = 1):
    """(head.pt's payload, the trained head or ensemble, the installed backbone) of a finished backbone
    run folder, checked: finished, readable, a backbone head, trained over these very model files. One
    line (TinyearError) for each way it is not."""
    folder = Path(folder)
    if not (folder / runs.RUN_JSON).is_file():
        raise TinyearError(f"{folder}: half-finished backbone run (no {runs.RUN_JSON}); run tinyear teacher "
                           "--backbone again into it with --force")
    try:
        payload = torch.load(folder / HEAD_FILE, map_location="cpu", weights_only=False)
    except Exception as exc:  # zip/pickle errors come in many types
        raise TinyearError(f"{folder / HEAD_FILE}: not a readable backbone head ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("kind") != RUN_KIND:
        raise TinyearError(f"{folder / HEAD_FILE}: not a tinyear backbone head")
    net = SpeechEmbedding(payload["backbone"], threads=threads)
    if net.identity()["files"] != payload["identity"]["files"]:
        raise TinyearError(f"{folder}: its head was trained over other {payload['backbone']} model files than the "
                           "installed pyopen-wakeword's; retrain it (tinyear teacher --backbone ... --force)")
    return payload, load_head(payload), net


def load_backbone_teacher(spec: str, options: dict | None = None):
    """A backbone run folder (`tinyear teacher DATA --backbone NAME`) as a Teacher; option threads=N."""
    from .teacher_base import Teacher, file_identity, reject_options

    options = options or {}
    reject_options(spec, options, ("threads",))
    folder = Path(spec)
    payload, head, net = read_head_run(folder, threads=int(options.get("threads", 1)))
    labels = list(payload["labels"])
    return Teacher(kind=RUN_KIND, source=str(folder), labels=labels, module=BackboneTeacherModule(net, head.eval()),
                   identity=file_identity([folder / HEAD_FILE], labels, json.dumps(net.identity(), sort_keys=True)),
                   info={"backbone": payload["backbone"], "metrics": payload.get("metrics", {})})
