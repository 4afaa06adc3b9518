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
from tinyear.device.features import DEFAULT_CONFIG, fit_clip
from tinyear.device.fileio import atomic_path, sha256_file, tool_versions

from . import runs
from .backbone_spec import BACKBONES, HeadConfig
from .cache import cache_root, key as cache_key
from .progress import bar as progress_bar

HEAD_FILE = "head.pt"
RUN_KIND = "backbone"
BACKBONE_VERSION = 1  # bump when the embedding numerics change (padding, scaling, windows)
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


class SpeechEmbedding:
    """Waveforms (B, samples) float32 in [-1, 1] at 16 kHz -> embeddings (B, windows, dim) float32.
    Each clip is fitted to the shared clip length (`fit_clip`) and padded, as in training."""

    def __init__(self, name: str = "speech-embedding", threads: int = 1):
        from tinyear.device.runtime import find_interpreter

        self.name, self.spec = name, BACKBONES[name]
        self.paths = model_files(name)
        interpreter, _ = find_interpreter()
        self.mel = interpreter(model_path=str(self.paths[0]), num_threads=threads)
        self.emb = interpreter(model_path=str(self.paths[1]), num_threads=threads)
        self._shapes = {}

    def identity(self) -> dict:
        return {"backbone": self.name, "version": BACKBONE_VERSION,
                "files": {p.name: sha256_file(p) for p in self.paths}}

    def _run(self, interp, x: np.ndarray) -> np.ndarray:
        shape = tuple(x.shape)
        if self._shapes.get(id(interp)) != shape:
            interp.resize_tensor_input(interp.get_input_details()[0]["index"], list(shape))
            interp.allocate_tensors()
            self._shapes[id(interp)] = shape
        interp.set_tensor(interp.get_input_details()[0]["index"], x)
        interp.invoke()
        return interp.get_tensor(interp.get_output_details()[0]["index"])

    def __call__(self, waves: np.ndarray) -> np.ndarray:
        s = self.spec
        pad = int(round(s.pad_seconds * DEFAULT_CONFIG.sample_rate))
        clips = np.stack([fit_clip(np.asarray(w, np.float32), DEFAULT_CONFIG) for w in waves])  # (B, 16000)
        audio = np.pad(clips, ((0, 0), (pad, pad))) * 32767.0  # (B, 24000), int16 scale
        # One clip at a time: with several clips in one call the mel model's numbers depend on the others
        # (measured: a clip's mels moved by up to 23 in a batch of two); the embedding model batches fine.
        audio = audio.astype(np.float32)
        mels = np.concatenate([self._run(self.mel, audio[i : i + 1]) for i in range(len(audio))])
        mels = mels[:, 0] / 10.0 + 2.0  # (B, frames, 32)
        starts = [i * s.step_frames for i in range(s.windows)]
        if starts[-1] + s.mel_frames > mels.shape[1]:
            raise TinyearError(f"backbone {self.name}: {mels.shape[1]} mel frames are too few for {s.windows} windows")
        wins = np.stack([mels[:, a : a + s.mel_frames] for a in starts], 1)  # (B, windows, 76, 32)
        flat = wins.reshape(-1, s.mel_frames, wins.shape[-1], 1).astype(np.float32)  # (B * windows, 76, 32, 1)
        out = self._run(self.emb, flat).reshape(len(clips), s.windows, s.dim)  # (B, windows, dim)
        return out.astype(np.float32)


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


# -- the head -------------------------------------------------------------------------------------------


class EmbeddingHead(nn.Module):
    """(B, windows, dim) embeddings -> (B, classes) logits: flatten, LayerNorm, two hidden layers."""

    def __init__(self, classes: int, windows: int = 9, dim: int = 96, hidden: int = 256, dropout: float = 0.3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.LayerNorm(windows * dim),  # (B, windows * dim)
            nn.Linear(windows * dim, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, classes),  # (B, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_head(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, classes: int,
               config: HeadConfig = HeadConfig(), progress: bool = False):
    """Train the head on (N, windows, dim) embeddings; returns (head at its best validation epoch, best
    epoch, log rows). Validation accuracy picks the epoch."""
    from .train import accuracy_metrics

    torch.manual_seed(config.seed)
    head = EmbeddingHead(classes, x.shape[1], x.shape[2], config.hidden, config.dropout)
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
    head, best_epoch, rows = train_head(*emb["train"], *emb["validation"], len(labels), config, progress)
    metrics = {}
    with torch.no_grad():
        for split, (x, y) in emb.items():
            if len(y) and split != "train":
                metrics[split] = accuracy_metrics(head(torch.from_numpy(x)).numpy(), y, labels)
    params = sum(p.numel() for p in head.parameters())
    macs = sum(m.in_features * m.out_features for m in head.modules() if isinstance(m, nn.Linear))  # the head only
    payload = {"kind": RUN_KIND, "backbone": backbone, "identity": net.identity(), "labels": labels,
               "head_kwargs": {"windows": net.spec.windows, "dim": net.spec.dim, "hidden": config.hidden,
                               "dropout": config.dropout},
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
        "metrics": metrics, "best_epoch": best_epoch, "epochs_run": config.epochs, "log": rows,
        "wall_seconds": round(time.perf_counter() - wall0, 2), "versions": tool_versions("torch"),
    }
    runs.write_run_json(out, info)
    if progress:
        print(f"tinyear: backbone teacher {backbone}: validation accuracy {metrics['validation']['accuracy']:.3f} "
              f"(head {params:,} parameters, best epoch {best_epoch} of {config.epochs})", file=sys.stderr)
    return info


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


def load_backbone_teacher(spec: str, options: dict | None = None):
    """A backbone run folder (`tinyear teacher DATA --backbone NAME`) as a Teacher; option threads=N."""
    from .teacher_base import Teacher, file_identity, reject_options

    options = options or {}
    reject_options(spec, options, ("threads",))
    folder = Path(spec)
    if not (folder / runs.RUN_JSON).is_file():
        raise TinyearError(f"{folder}: half-finished backbone run (no {runs.RUN_JSON}); run tinyear teacher "
                           "--backbone again into it with --force")
    try:
        payload = torch.load(folder / HEAD_FILE, map_location="cpu", weights_only=False)
    except Exception as exc:  # zip/pickle errors come in many types
        raise TinyearError(f"{folder / HEAD_FILE}: not a readable backbone head ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("kind") != RUN_KIND:
        raise TinyearError(f"{folder / HEAD_FILE}: not a tinyear backbone head")
    net = SpeechEmbedding(payload["backbone"], threads=int(options.get("threads", 1)))
    if net.identity()["files"] != payload["identity"]["files"]:
        raise TinyearError(f"{folder}: its head was trained over other {payload['backbone']} model files than the "
                           "installed pyopen-wakeword's; retrain it (tinyear teacher --backbone ... --force)")
    labels = list(payload["labels"])
    head = EmbeddingHead(len(labels), **payload["head_kwargs"])
    head.load_state_dict(payload["state_dict"])
    return Teacher(kind=RUN_KIND, source=str(folder), labels=labels, module=BackboneTeacherModule(net, head.eval()),
                   identity=file_identity([folder / HEAD_FILE], labels, json.dumps(net.identity(), sort_keys=True)),
                   info={"backbone": payload["backbone"], "metrics": payload.get("metrics", {})})
