"""The one training loop: teacher training and distillation (and the no-teacher baseline) all run here.

`fit(model, features, out_dir, config, ...)` trains on a `FeatureSet` (augmented feature variants,
see `featcache`): each epoch draws one variant per training clip, applies SpecAugment on the fly,
and minimises `kd.distillation_loss` (alpha = 0 and no teacher: plain cross-entropy). It validates
after every epoch on the validation split, keeps the best epoch (`best.pt`, highest validation
accuracy, ties to the lower validation loss), stops after `patience` epochs without improvement,
writes `last.pt` (everything to resume), `log.csv` and `curves.png` every epoch, and resumes from
`last.pt` exactly: every epoch's shuffling, variants, masks and dropout come from generators seeded
by (seed, epoch), so an interrupted and resumed run ends with the same weights as an uninterrupted one.

The teacher, when there is one, is either cached (its logits on every variant, computed once:
`featcache.teacher_outputs`) or online: a teacher over the shared features sees exactly the student's
augmented batch; any other teacher gets the batch's augmented waveforms, made again exactly (it does
not see the SpecAugment masks, which exist only on features).

Imports torch, numpy, tqdm, matplotlib (for the curves) and `tinyear.host` runs/kd/augment; never
the data loading or command-line modules.
"""

from __future__ import annotations

from . import ompwait  # noqa: F401  (before torch: see the module)

import csv
import ctypes
import io
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tinyear.device.errors import TinyearError

from . import runs
from .augment import spec_augment
from .featcache import SOURCES
from .kd import KD_LOSSES, distillation_loss

BALANCE = ("none", "class", "source")
LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_ce", "train_kd", "train_acc", "val_loss", "val_acc",
               "val_macro_recall", "seconds", "best")


@dataclass(frozen=True)
class TrainConfig:
    """Every number that shapes a training run (recorded in last.pt and run.json)."""

    epochs: int = 30
    """Most epochs (one pass over the training clips, one random variant each)."""
    batch_size: int = 64
    lr: float = 3e-3
    """Peak learning rate of the one-cycle schedule (AdamW)."""
    weight_decay: float = 1e-3
    patience: int = 8
    """Stop after this many epochs without a better validation accuracy."""
    seed: int = 0
    alpha: float = 0.0
    """Weight of the distillation term (0: labels only)."""
    temperature: float = 4.0
    kd_loss: str = "kl"
    label_smoothing: float = 0.0
    balance: str = "source"
    """How each epoch draws its training clips: "none" (a shuffle: every clip once), "class" (each
    class equally often, with replacement) or "source" (each class equally often and, within a class
    that has both, real and synthetic clips equally often). "source" is what makes a handful of real
    clips of a word filled with synthetic speech count: drawn in proportion, 8 real among 600
    synthetic would be 1% of that word's examples. On a dataset of one source it equals "class"."""
    teacher_mode: str = "none"
    """"none", "cached" or "online"."""
    synthetic_alpha: float | None = None
    """alpha on synthetic clips (None: alpha). A teacher trained on people is a better judge of real
    clips than of synthetic ones: per-source trust."""
    mixup: float = 0.0
    """Fraction of each batch mixed with another example of the batch, by adding their mel energies
    at a uniform random share (log(lam e^x1 + (1 - lam) e^x2): two sounds at once); the label term
    mixes the labels the same way, an online teacher is asked about the mixture itself (function
    matching). Needs teacher_mode "online" or "none"."""

    def __post_init__(self):
        if self.kd_loss not in KD_LOSSES:
            raise ValueError(f"kd_loss must be one of {KD_LOSSES}")
        if self.teacher_mode not in ("none", "cached", "online"):
            raise ValueError("teacher_mode must be none, cached or online")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError("alpha must be in [0, 1]")
        if self.synthetic_alpha is not None and not 0.0 <= self.synthetic_alpha <= 1.0:
            raise ValueError("synthetic_alpha must be in [0, 1]")
        if self.balance not in BALANCE:
            raise ValueError(f"balance must be one of {BALANCE}")
        if not 0.0 <= self.mixup <= 1.0:
            raise ValueError("mixup must be in [0, 1]")
        if self.mixup > 0 and self.teacher_mode == "cached":
            raise ValueError("mixup needs the teacher online (cached outputs are of unmixed clips)")


def tune_malloc() -> None:
    """Keep freed tensor memory in the process instead of handing it back to the kernel after every op.

    glibc returns blocks above 128 KiB to the kernel at once (mmap), so every activation of every batch
    page-faults afresh; measured here, a ReLU over a (128, 64, 45, 9) float tensor took 20 ms instead
    of 4 ms. Raising the mmap and trim thresholds (32 MiB, 1 GiB) cuts student training time markedly.
    No-op off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def pick_device(name: str = "auto") -> torch.device:
    """"auto": CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def draw_weights(y: np.ndarray, source: np.ndarray | None, balance: str) -> torch.Tensor | None:
    """(N,) float64 sampling weights for `balance` ("class": 1 / clips of the class; "source": 1 /
    (sources in the class x clips of the class from that source)), or None for "none"."""
    if balance == "none":
        return None
    source = np.zeros_like(y) if source is None or balance == "class" else np.asarray(source)
    weights = np.zeros(len(y), dtype=np.float64)
    for c in np.unique(y):
        in_class = y == c
        kinds = np.unique(source[in_class])
        for k in kinds:
            member = in_class & (source == k)
            weights[member] = 1.0 / (len(kinds) * member.sum())
    return torch.from_numpy(weights)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


@torch.no_grad()
def predict(model: torch.nn.Module, x: np.ndarray, device: torch.device, batch_size: int = 512) -> np.ndarray:
    """Logits (N, labels) float32 of a model over features x (N, frames, bins), in eval mode."""
    model.eval()
    out = []
    for s in range(0, len(x), batch_size):
        batch = np.array(x[s : s + batch_size], dtype=np.float32)  # a writable copy (x may be a read-only memmap)
        out.append(model(torch.from_numpy(batch).to(device)).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def accuracy_metrics(logits: np.ndarray, y: np.ndarray, labels: list[str]) -> dict:
    """Accuracy, macro recall (mean per-class accuracy over present classes), loss, per-class accuracy."""
    if len(y) == 0:
        return {"accuracy": float("nan"), "macro_recall": float("nan"), "loss": float("nan"), "per_class": {}, "count": 0}
    pred = logits.argmax(axis=1)
    per_class = {}
    for j, label in enumerate(labels):
        mask = y == j
        if mask.any():
            per_class[label] = float((pred[mask] == j).mean())
    loss = float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)).item())
    return {"accuracy": float((pred == y).mean()), "macro_recall": float(np.mean(list(per_class.values()))),
            "loss": loss, "per_class": per_class, "count": int(len(y))}


def _write_log(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    runs.atomic_write_text(path, buf.getvalue())


def plot_curves(rows: list[dict], path: Path, title: str = "") -> None:
    """Loss terms and accuracies per epoch, as a PNG (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(epochs, [r["train_ce"] for r in rows], label="train CE (labels)")
    if any(r["train_kd"] for r in rows):
        ax1.plot(epochs, [r["train_kd"] for r in rows], label="train KD (teacher)")
    ax1.plot(epochs, [r["val_loss"] for r in rows], label="validation CE")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax2.plot(epochs, [r["train_acc"] for r in rows], label="train (augmented)")
    ax2.plot(epochs, [r["val_acc"] for r in rows], label="validation")
    best = [r for r in rows if r["best"]]
    if best:
        ax2.axvline(best[-1]["epoch"], color="grey", linestyle=":", label=f"best (epoch {best[-1]['epoch']})")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    runs.atomic_write_bytes(path, buf.getvalue())


def _data_key(features) -> str:
    return features.key + (f"+{features.mix_key}" if getattr(features, "mix_key", "") else "")


def fit(model: torch.nn.Module, features, out_dir, config: TrainConfig, *, checkpoint_meta: dict,
        teacher=None, teacher_cache: np.ndarray | None = None, label_map=None, resume: bool = False,
        device: torch.device | None = None, progress: bool = True, title: str = "", on_epoch=None) -> dict:
    """Train `model` on `features` (a featcache.FeatureSet) into the run folder `out_dir`.

    checkpoint_meta: the run-folder contract's fields other than state_dict and metrics ("kind",
    "arch", "arch_kwargs", "labels", "frontend", ...), stored in best.pt. teacher / teacher_cache /
    label_map: see the module docstring (config.teacher_mode says which is used). resume: continue from
    out_dir/last.pt. on_epoch(epoch, row): called after each epoch's files are written (a benchmark's
    progress, or a test's simulated interruption). Returns {"best_epoch", "epochs_run", "stopped_early", "best": validation metrics,
    "train_seconds", "epoch_seconds"}; the model ends holding the best epoch's weights."""
    out_dir = Path(out_dir)
    device = device or pick_device()
    tune_malloc()
    model.to(device)
    labels = features.labels
    k_count, n = features.train.shape[:2]
    steps_per_epoch = max(1, -(-n // config.batch_size))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, epochs=config.epochs,
                                                   steps_per_epoch=steps_per_epoch, pct_start=0.15)
    val_x, val_y = features.eval["validation"]
    if len(val_y) == 0:
        raise TinyearError("the validation split is empty: early stopping and checkpoint choice need it; add "
                           "clips from more speakers")
    sample_weights = draw_weights(features.train_y, features.train_source, config.balance)
    cache = torch.from_numpy(np.array(teacher_cache, dtype=np.float32)) if teacher_cache is not None else None  # (K, N, teacher labels), in memory
    if config.teacher_mode == "online" and teacher is not None:
        online_features = teacher.accepts_features(features.frontend)
        teacher_net = (teacher.feature_model if online_features else teacher.module).to(device).eval()

    state = {"epoch": 0, "best_acc": -1.0, "best_loss": float("inf"), "best_epoch": 0, "bad_epochs": 0,
             "rows": [], "seconds": 0.0}
    if resume:
        last = runs.read_checkpoint(out_dir / runs.LAST)
        if last.get("train_config") != asdict(config):
            old, new = last.get("train_config", {}), asdict(config)
            diff = [f"{k} was {old.get(k)!r}, now {new[k]!r}" for k in new if old.get(k) != new[k]]
            raise TinyearError(f"--resume with other training options than the interrupted run ({'; '.join(diff)}); "
                               "rerun with the original options, or start a new --out")
        identity = {"kind": checkpoint_meta.get("kind"), "name": checkpoint_meta.get("name"),
                    "teacher": (checkpoint_meta.get("teacher") or {}).get("identity")}
        if last.get("identity", identity) != identity:
            raise TinyearError(f"--resume with another model or teacher than the interrupted run (it was "
                               f"{last['identity']}, now {identity}); rerun with the original options, or start a new --out")
        if last.get("data_key") != _data_key(features):
            raise TinyearError("--resume on other data or augmentation than the interrupted run; rerun with the "
                               "original DATA and options, or start a new --out")
        model.load_state_dict(last["state_dict"])
        optimizer.load_state_dict(last["optimizer"])
        schedule.load_state_dict(last["schedule"])
        state = last["loop"]

    start_epoch = state["epoch"]
    for epoch in range(start_epoch + 1, config.epochs + 1):
        if state["bad_epochs"] >= config.patience:
            break
        t0 = time.perf_counter()
        gen = _epoch_generator(config.seed, epoch)
        torch.manual_seed(config.seed * 1_000_003 + epoch)  # dropout
        if sample_weights is not None:
            order = torch.multinomial(sample_weights, n, replacement=True, generator=gen)
        else:
            order = torch.randperm(n, generator=gen)
        variant = torch.randint(k_count + features.mix_variants, (n,), generator=gen)
        model.train()
        sums = {"loss": 0.0, "ce": 0.0, "kd": 0.0, "correct": 0, "seen": 0}
        from tqdm import tqdm

        bar = tqdm(total=n, desc=f"epoch {epoch}/{config.epochs}", unit="clip", file=sys.stderr,
                   disable=not progress, leave=False)
        for s in range(0, n, config.batch_size):
            idx = order[s : s + config.batch_size].numpy()
            kv = variant[idx].numpy()
            x = torch.from_numpy(features.features_of(idx, kv))  # (B, frames, bins)
            x = spec_augment(x, features.augment, gen)  # (B, frames, bins)
            y = torch.from_numpy(features.train_y[idx])  # (B,)
            mix = None
            if features.mix_variants:  # mixture variants: the label term mixes the two clips' labels
                other, share = features.mix_of(idx, kv)
                mix = (torch.from_numpy(other).to(device), torch.from_numpy(share).to(device))
            if config.mixup > 0:
                b = len(idx)
                perm = torch.randperm(b, generator=gen)  # (B,): partner of each example
                lam = torch.rand(b, generator=gen)  # (B,): share of the example itself
                lam = torch.where(torch.rand(b, generator=gen) < config.mixup, lam, torch.ones(b))
                w = lam.view(b, 1, 1)  # (B, 1, 1)
                x = torch.logaddexp(x + w.log(), x[perm] + (1.0 - w).log())  # (B, frames, bins); lam = 1: x
                mix = (y[perm].to(device), lam.to(device))
            x, y = x.to(device), y.to(device)
            t_logits = None
            if config.teacher_mode == "cached":
                t_logits = cache[kv, idx].to(device)  # (B, teacher labels)
            elif config.teacher_mode == "online":
                with torch.no_grad():
                    if online_features:
                        t_logits = teacher_net(x)
                    else:
                        t_logits = teacher_net(torch.from_numpy(features.variant_waves(idx, kv)).to(device))
                    t_logits = t_logits.float()
            logits = model(x)  # (B, labels)
            alpha = config.alpha
            if config.synthetic_alpha is not None and features.train_source is not None:
                synthetic = torch.from_numpy(features.train_source[idx] == SOURCES.index("synthetic")).to(device)
                alpha = torch.where(synthetic, config.synthetic_alpha, config.alpha).float()  # (B,)
            loss, ce, kd = distillation_loss(logits, y, t_logits, label_map, alpha=alpha,
                                             temperature=config.temperature, kind=config.kd_loss,
                                             label_smoothing=config.label_smoothing, mix=mix)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            b = len(idx)
            sums["loss"] += loss.item() * b
            sums["ce"] += ce.item() * b
            sums["kd"] += kd.item() * b
            sums["correct"] += int((logits.argmax(1) == y).sum())
            sums["seen"] += b
            bar.update(b)
        bar.close()
        val = accuracy_metrics(predict(model, val_x, device), val_y, labels)
        seconds = time.perf_counter() - t0
        state["seconds"] += seconds
        improved = val["accuracy"] > state["best_acc"] or (val["accuracy"] == state["best_acc"] and val["loss"] < state["best_loss"])
        row = {"epoch": epoch, "lr": round(schedule.get_last_lr()[0], 8),
               "train_loss": round(sums["loss"] / sums["seen"], 6), "train_ce": round(sums["ce"] / sums["seen"], 6),
               "train_kd": round(sums["kd"] / sums["seen"], 6), "train_acc": round(sums["correct"] / sums["seen"], 6),
               "val_loss": round(val["loss"], 6), "val_acc": round(val["accuracy"], 6),
               "val_macro_recall": round(val["macro_recall"], 6), "seconds": round(seconds, 2), "best": int(improved)}
        state["rows"].append(row)
        state["epoch"] = epoch
        if improved:
            state.update(best_acc=val["accuracy"], best_loss=val["loss"], best_epoch=epoch, bad_epochs=0)
            runs.save_checkpoint(out_dir / runs.BEST, {
                **checkpoint_meta, "format": runs.CHECKPOINT_FORMAT,
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "metrics": {"validation_accuracy": val["accuracy"], "validation_loss": val["loss"],
                            "validation_macro_recall": val["macro_recall"], "epoch": epoch},
            })
        else:
            state["bad_epochs"] += 1
        runs.save_checkpoint(out_dir / runs.LAST, {
            "kind": "resume", "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(), "loop": state, "train_config": asdict(config),
            "data_key": _data_key(features),
            "identity": {"kind": checkpoint_meta.get("kind"), "name": checkpoint_meta.get("name"),
                         "teacher": (checkpoint_meta.get("teacher") or {}).get("identity")},
        })
        _write_log(out_dir / runs.LOG, state["rows"])
        plot_curves(state["rows"], out_dir / runs.CURVES, title)
        if progress:
            kd_part = f" kd {row['train_kd']:.4f}" if config.teacher_mode != "none" else ""
            print(f"epoch {epoch:3d}  ce {row['train_ce']:.4f}{kd_part}  train acc {row['train_acc']:.3f}  "
                  f"val acc {row['val_acc']:.3f}  val loss {row['val_loss']:.4f}  {seconds:.1f} s"
                  f"{'  *' if improved else ''}", file=sys.stderr, flush=True)
        if on_epoch is not None:
            on_epoch(epoch, row)

    best = runs.read_checkpoint(out_dir / runs.BEST)
    model.load_state_dict(best["state_dict"])
    model.eval()
    return {"best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
            "stopped_early": state["epoch"] < config.epochs, "best": best["metrics"],
            "train_seconds": round(state["seconds"], 2),
            "epoch_seconds": [r["seconds"] for r in state["rows"]]}
