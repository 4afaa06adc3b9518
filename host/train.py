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

With `source_adversary` > 0, the source adversary (`tinyear.host.adversary`) trains a head beside the
model on the model's pooled features and adds its term to every step; the head is saved in last.pt
(resumed with the rest), never in best.pt.

Under torchrun (several processes: `tinyear.host.dist`), the model is wrapped in
DistributedDataParallel, which averages gradients at every step. Every rank draws the same epoch list
(the `balance` draw and the variants, from (seed, epoch)) and trains on its shard of it (every
world-th entry, `dist.shard`), in the same number of steps; `batch_size` stays the global batch (each
rank takes ceil(batch_size / world) per step), and each rank's loss is weighted by its share of the
step's clips, so a step's gradient is the mean over the global batch as alone. SpecAugment, mixup and
dropout draw from (seed, epoch, rank): ranks do not repeat each other's masks. Validation runs on
shards too, after rank 0's BatchNorm statistics are copied to all; the gathered logits give every rank
the same metrics, and rank 0's early-stopping state is broadcast (rank 0 decides). Rank 0 alone writes
best.pt, last.pt, log.csv and curves.png and reads them back for the others; `--resume` works the same
with the same number of processes (the schedule's step count depends on it). One process: the loop
is exactly what it was alone (same draws, same weights).

Imports torch, numpy, tqdm, matplotlib (for the curves) and `tinyear.host` runs/kd/adversary/augment/dist;
never the data loading or command-line modules.
"""

from __future__ import annotations

import csv
import ctypes
import io
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tinyear.device.errors import TinyearError
from tinyear.device.fileio import atomic_write_text

from . import dist, runs
from .adversary import AdversaryTerm
from .augment import spec_augment
from .data import SOURCES
from .kd import distillation_loss
from .plots import pyplot, save_figure
from .progress import bar as progress_bar
from .trainconfig import TrainConfig  # (distill.py imports it from here too)

LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_ce", "train_kd", "train_acc", "val_loss", "val_acc",
               "val_macro_recall", "seconds", "best", "val_recorded_acc")


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
    atomic_write_text(path, buf.getvalue())


def plot_curves(rows: list[dict], path: Path, title: str = "") -> None:
    """Loss terms and accuracies per epoch, as a PNG (matplotlib, Agg)."""
    plt = pyplot()

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
    save_figure(fig, path, dpi=90)


def _data_key(features) -> str:
    return (features.key + (f"+{features.mix_key}" if getattr(features, "mix_key", "") else "")
            + (f"+{features.win_key}" if getattr(features, "win_key", "") else ""))


def fit(model: torch.nn.Module, features, out_dir, config: TrainConfig, *, checkpoint_meta: dict,
        teacher=None, teacher_cache: np.ndarray | None = None, label_map=None, resume: bool = False,
        device: torch.device | None = None, progress: bool = True, title: str = "", on_epoch=None) -> dict:
    """Train `model` on `features` (a featcache.FeatureSet) into the run folder `out_dir`.

    checkpoint_meta: the run-folder contract's fields other than state_dict and metrics ("kind",
    "arch", "arch_kwargs", "labels", "frontend", ...), stored in best.pt. teacher / teacher_cache /
    label_map: see the module docstring (config.teacher_mode says which is used). resume: continue from
    out_dir/last.pt. on_epoch(epoch, row): called (on rank 0) after each epoch's files are written (a benchmark's
    progress, or a test's simulated interruption). Returns {"best_epoch", "epochs_run", "stopped_early", "best": validation metrics,
    "train_seconds", "epoch_seconds"}; the model ends holding the best epoch's weights."""
    out_dir = Path(out_dir)
    device = device or pick_device()
    tune_malloc()
    loop = _Loop(model, features, config, device, teacher=teacher, teacher_cache=teacher_cache, label_map=label_map)
    identity = {"kind": checkpoint_meta.get("kind"), "name": checkpoint_meta.get("name"),
                "teacher": (checkpoint_meta.get("teacher") or {}).get("identity")}
    state = {"epoch": 0, "best_acc": -1.0, "best_loss": float("inf"), "best_epoch": 0, "bad_epochs": 0,
             "rows": [], "seconds": 0.0}
    main = dist.is_main()
    progress = progress and main
    if resume:  # rank 0 reads last.pt (other machines need not see its disk)
        state = loop.resume(dist.broadcast(runs.read_checkpoint(out_dir / runs.LAST) if main else None), identity)
        if progress:
            print(f"tinyear: resuming from epoch {state['epoch'] + 1} of {config.epochs} ({out_dir / runs.LAST} "
                  f"holds epoch {state['epoch']}; best so far epoch {state['best_epoch']})", file=sys.stderr)

    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        if state["bad_epochs"] >= config.patience:
            break
        dist.fail_if_asked(epoch)
        t0 = time.perf_counter()
        sums = loop.train_epoch(epoch, progress)
        val = loop.validate()
        seconds = time.perf_counter() - t0
        _record_epoch(state, epoch, sums, val, seconds, loop.schedule.get_last_lr()[0])
        state = dist.broadcast(state)  # rank 0 decides (the metrics agree; this makes sure)
        row, improved = state["rows"][-1], state["best_epoch"] == epoch
        if not main:
            continue
        if improved:
            runs.save_checkpoint(out_dir / runs.BEST, {
                **checkpoint_meta, "format": runs.CHECKPOINT_FORMAT,
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "metrics": {"validation_accuracy": val["accuracy"], "validation_loss": val["loss"],
                            "validation_macro_recall": val["macro_recall"], "epoch": epoch},
            })
        runs.save_checkpoint(out_dir / runs.LAST, loop.resume_point(state, identity))
        _write_log(out_dir / runs.LOG, state["rows"])
        plot_curves(state["rows"], out_dir / runs.CURVES, title)
        if progress:
            kd_part = f" kd {row['train_kd']:.4f}" if config.teacher_mode != "none" else ""
            if sums.get("adv_seen"):  # the adversary's accuracy: near 0.5 when real and synthetic look alike
                kd_part += f"  source guess {sums['adv_correct'] / sums['adv_seen']:.3f}"
            print(f"epoch {epoch:3d}  ce {row['train_ce']:.4f}{kd_part}  train acc {row['train_acc']:.3f}  "
                  f"val acc {row['val_acc']:.3f}  val loss {row['val_loss']:.4f}  {seconds:.1f} s"
                  f"{'  *' if improved else ''}", file=sys.stderr, flush=True)
        if on_epoch is not None:
            on_epoch(epoch, row)

    best = dist.broadcast(runs.read_checkpoint(out_dir / runs.BEST) if main else None)
    model.load_state_dict(best["state_dict"])
    model.eval()
    return {"best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
            "stopped_early": state["epoch"] < config.epochs, "best": best["metrics"],
            "train_seconds": round(state["seconds"], 2),
            "epoch_seconds": [r["seconds"] for r in state["rows"]]}


def _record_epoch(state: dict, epoch: int, sums: dict, val: dict, seconds: float, lr: float) -> tuple[dict, bool]:
    """The epoch's log row, added to the loop state with the early-stopping bookkeeping; (row, whether
    it is the best epoch so far: higher validation accuracy, ties to the lower validation loss)."""
    state["seconds"] += seconds
    improved = val["accuracy"] > state["best_acc"] or (val["accuracy"] == state["best_acc"] and val["loss"] < state["best_loss"])
    seen = sums["seen"]
    row = {"epoch": epoch, "lr": round(lr, 8),
           "train_loss": round(sums["loss"] / seen, 6), "train_ce": round(sums["ce"] / seen, 6),
           "train_kd": round(sums["kd"] / seen, 6), "train_acc": round(sums["correct"] / seen, 6),
           "val_loss": round(val["loss"], 6), "val_acc": round(val["accuracy"], 6),
           "val_macro_recall": round(val["macro_recall"], 6), "seconds": round(seconds, 2), "best": int(improved),
           "val_recorded_acc": "" if val.get("recorded_accuracy") is None else round(val["recorded_accuracy"], 6)}
    state["rows"].append(row)
    state["epoch"] = epoch
    if improved:
        state.update(best_acc=val["accuracy"], best_loss=val["loss"], best_epoch=epoch, bad_epochs=0)
    else:
        state["bad_epochs"] += 1
    return row, improved


class _Loop:
    """What one training run steps through: the model with its optimizer and one-cycle schedule, the
    features, the epoch's draw, the teacher (cached outputs or a network run online)."""

    def __init__(self, model, features, config: TrainConfig, device, *, teacher, teacher_cache, label_map):
        self.model, self.features, self.config, self.device, self.label_map = model, features, config, device, label_map
        model.to(device)
        self.k_count, self.n = features.train.shape[:2]
        self.world = dist.world_size()
        if self.n < self.world:
            raise TinyearError(f"{self.n} training clips for {self.world} processes; use fewer processes")
        self.steps, self.local_batch, self.step_clips = dist.step_plan(self.n, config.batch_size, self.world)
        self.adversary = None
        if config.source_adversary > 0:
            self.adversary = self._adversary(model, features, config, device)
        params = list(model.parameters()) + (list(self.adversary.head.parameters()) if self.adversary else [])
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.schedule = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=config.lr, epochs=config.epochs,
                                                            steps_per_epoch=self.steps, pct_start=0.15)
        self.net = model  # what the steps run: the model, or DDP around it (same parameters)
        if dist.active():
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        self.val_x, self.val_y = features.eval["validation"]
        if len(self.val_y) == 0:
            raise TinyearError("the validation split is empty: early stopping and checkpoint choice need it; add "
                               "clips from more speakers")
        self.sample_weights = draw_weights(features.train_y, features.train_source, config.balance)
        # (K, N, teacher labels), in memory
        self.cache = torch.from_numpy(np.array(teacher_cache, dtype=np.float32)) if teacher_cache is not None else None
        self.teacher_net, self.online_features = None, False
        if config.teacher_mode == "online" and teacher is not None:
            self.online_features = teacher.accepts_features(features.frontend)
            self.teacher_net = (teacher.feature_model if self.online_features else teacher.module).to(device).eval()

    @staticmethod
    def _adversary(model, features, config: TrainConfig, device) -> AdversaryTerm:
        """The source adversary's term, or a one-line error where it cannot work."""
        if dist.active():
            raise TinyearError("--source-adversary trains a head beside the model that DistributedDataParallel "
                               "would not keep in step; train it in one process (no --nproc, no torchrun)")
        source = features.train_source
        if source is None:
            raise TinyearError("--source-adversary needs to know which training clips are real and which synthetic; "
                               "this feature set does not say (remake its cache)")
        term = AdversaryTerm(model, features.train_y, source, len(features.labels), config.source_adversary, device)
        if not bool(term.eligible.any()):
            raise TinyearError("--source-adversary needs a label with both real and synthetic training clips; this "
                               "data has none (add synthetic clips of the real words: tinyear synth OUT --fill-from "
                               "REAL --mix 300, and train on REAL and OUT together)")
        return term

    def resume(self, last: dict, identity: dict) -> dict:
        """Continue from a `last.pt`: the same options, model, teacher and data, or a one-line error.
        Returns the loop state it was saved with."""
        config, features = self.config, self.features
        if last.get("train_config") != asdict(config):
            old, new = last.get("train_config", {}), asdict(config)
            diff = [f"{k} was {old.get(k)!r}, now {new[k]!r}" for k in new if old.get(k) != new[k]]
            raise TinyearError(f"--resume with other training options than the interrupted run ({'; '.join(diff)}); "
                               "rerun with the original options, or start a new --out")
        if last.get("identity", identity) != identity:
            raise TinyearError(f"--resume with another model or teacher than the interrupted run (it was "
                               f"{last['identity']}, now {identity}); rerun with the original options, or start a new --out")
        if last.get("world_size", 1) != self.world:
            raise TinyearError(f"--resume on {self.world} process(es), but the interrupted run had "
                               f"{last.get('world_size', 1)} (its schedule depends on it); resume with as many")
        if last.get("data_key") != _data_key(features):
            raise TinyearError("--resume on other data or augmentation than the interrupted run; rerun with the "
                               "original DATA and options, or start a new --out")
        self.model.load_state_dict(last["state_dict"])
        if self.adversary is not None:
            self.adversary.head.load_state_dict(last["adversary"])
        self.optimizer.load_state_dict(last["optimizer"])
        self.schedule.load_state_dict(last["schedule"])
        return last["loop"]

    def resume_point(self, state: dict, identity: dict) -> dict:
        """What `last.pt` holds: everything `resume` needs."""
        return {"kind": "resume", "state_dict": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(), "loop": state, "train_config": asdict(self.config),
                "data_key": _data_key(self.features), "identity": identity, "world_size": self.world,
                **({"adversary": self.adversary.head.state_dict()} if self.adversary is not None else {})}

    def train_epoch(self, epoch: int, progress: bool) -> dict:
        """One pass: every draw of the epoch comes from generators seeded by (seed, epoch), so a resumed
        run repeats it exactly. Returns the summed losses, correct count and clips seen."""
        config, n = self.config, self.n
        gen = _epoch_generator(config.seed, epoch)
        torch.manual_seed(config.seed * 1_000_003 + epoch)  # dropout
        if self.sample_weights is not None:
            order = torch.multinomial(self.sample_weights, n, replacement=True, generator=gen)
        else:
            order = torch.randperm(n, generator=gen)
        variant = torch.randint(self.features.all_variants, (n,), generator=gen)  # (N,) by clip
        if self.world > 1:  # this rank's shard of the same draw; its own masks, mixup and dropout
            order = dist.shard(order)
            rank_seed = (config.seed * 1_000_003 + epoch) * 1_000_033 + 1 + dist.rank()
            gen = torch.Generator().manual_seed(rank_seed)
            torch.manual_seed(rank_seed)
        self.net.train()
        if self.adversary is not None:
            self.adversary.head.train()
        sums = {"loss": 0.0, "ce": 0.0, "kd": 0.0, "correct": 0, "seen": 0, "adv_correct": 0, "adv_seen": 0}
        b = self.local_batch
        with progress_bar(n, f"epoch {epoch}/{config.epochs}", enabled=progress) as bar:
            for s in range(self.steps):
                idx = order[s * b : (s + 1) * b].numpy()
                count = len(idx)
                if count == 0:  # this rank's shard ran out: a stand-in clip whose gradient is weighted 0
                    idx = order[:1].numpy()
                self._step(idx, variant[idx].numpy(), gen, sums, count, count * self.world / int(self.step_clips[s]),
                           progress=((epoch - 1) * self.steps + s) / (config.epochs * self.steps))
                bar.update(int(self.step_clips[s]))
        return dist.all_sum(sums)

    def validate(self) -> dict:
        """Validation metrics of the model as it stands, the same on every rank (each predicts its shard
        of the validation split with rank 0's BatchNorm statistics; the logits are gathered)."""
        x, y = self.val_x, self.val_y
        if self.world == 1:
            logits = predict(self.model, x, self.device)
        else:
            dist.sync_buffers(self.model)
            parts = dist.gather(predict(self.model, x[dist.rank() :: self.world], self.device))
            logits = np.zeros((len(y), len(self.features.labels)), np.float32)  # (M, labels)
            for r, part in enumerate(parts):
                if len(part):
                    logits[r :: self.world] = part
        metrics = accuracy_metrics(logits, y, self.features.labels)
        metrics["recorded_accuracy"] = self._recorded_accuracy(logits, y)
        return metrics

    def _recorded_accuracy(self, logits: np.ndarray, y: np.ndarray) -> float | None:
        """Accuracy on the recorded clips of validation where the choice rule reads them alone
        (`tinyear.host.choice`), else None. Logged beside the whole split's; the best epoch is still
        chosen on the whole split."""
        from .choice import recorded_clips

        source = (self.features.eval_source or {}).get("validation")
        if source is None or len(source) != len(y):
            return None
        mask = recorded_clips(np.array([*SOURCES, "other"], dtype=object)[source])  # codes -> names
        return None if mask is None else float((logits.argmax(axis=1) == y)[mask].mean())

    def _step(self, idx: np.ndarray, kv: np.ndarray, gen: torch.Generator, sums: dict, count: int,
              weight: float = 1.0, progress: float = 0.0) -> None:
        """One optimizer step on the batch of clips `idx`, variants `kv`. count: how many of them count in
        the sums (0 for a stand-in); weight: the weight of this rank's loss in the step, count x world /
        the step's clips on all ranks (DDP averages over ranks, so the gradient is the global mean; 1 alone);
        progress: how far through the run, 0..1 (the adversary's ramp)."""
        config, features, device = self.config, self.features, self.device
        x = torch.from_numpy(features.features_of(idx, kv))  # (B, frames, bins)
        x = spec_augment(x, features.augment, gen)  # (B, frames, bins)
        y = torch.from_numpy(features.train_y[idx])  # (B,)
        mix = None
        if features.mix_variants or features.window_variants:  # mixtures, windows: the label term mixes two labels
            first, other, share = features.targets_of(idx, kv)
            y = torch.from_numpy(first)  # a window's first label may not be its clip's
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
        t_logits = self._teacher_logits(x, idx, kv)  # (B, teacher labels) or None
        logits = self.net(x)  # (B, labels)
        alpha = config.alpha
        if config.synthetic_alpha is not None and features.train_source is not None:
            synthetic = torch.from_numpy(features.train_source[idx] == SOURCES.index("synthetic")).to(device)
            alpha = torch.where(synthetic, config.synthetic_alpha, config.alpha).float()  # (B,)
        loss, ce, kd = distillation_loss(logits, y, t_logits, self.label_map, alpha=alpha,
                                         temperature=config.temperature, kind=config.kd_loss,
                                         label_smoothing=config.label_smoothing, mix=mix)
        if self.adversary is not None:
            source = torch.from_numpy(features.train_source[idx]).to(device)  # (B,)
            adv, adv_correct, adv_seen = self.adversary.loss(y, source, progress)
            loss = loss + adv  # the head learns to tell; the reversed gradient teaches the model not to show
            if count:
                sums["adv_correct"] += adv_correct
                sums["adv_seen"] += adv_seen
        self.optimizer.zero_grad(set_to_none=True)
        (loss if weight == 1.0 else loss * weight).backward()
        self.optimizer.step()
        self.schedule.step()
        if count:
            sums["loss"] += loss.item() * count
            sums["ce"] += ce.item() * count
            sums["kd"] += kd.item() * count
            sums["correct"] += int((logits.argmax(1) == y).sum())
            sums["seen"] += count

    def _teacher_logits(self, x: torch.Tensor, idx: np.ndarray, kv: np.ndarray) -> torch.Tensor | None:
        mode = self.config.teacher_mode
        if mode == "cached":
            return self.cache[kv, idx].to(self.device)  # (B, teacher labels)
        if mode != "online":
            return None
        with torch.no_grad():
            if self.online_features:
                return self.teacher_net(x).float()
            waves = torch.from_numpy(self.features.variant_waves(idx, kv)).to(self.device)  # (B, samples)
            return self.teacher_net(waves).float()
