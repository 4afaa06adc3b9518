"""Quantization-aware fine-tuning: a short training run through int8 fake quantization, then int8 TFLite.

The route: export the student (strict, symbolic batch), prepare it with litert-torch's own quantizer in
QAT mode (torchao `prepare_qat_pt2e`: fake quantization of weights and activations with the same int8
scheme as post-training quantization, conv + batch norm fused the way the converter will fold them),
fine-tune a few epochs on the training split, still distilling from the teacher when the run had one,
then freeze batch-norm statistics and the quantization ranges, convert (`convert_pt2e`) and lower with
`tinyear.host.convert.lower_int8`.

litert-torch 0.10's conv + batch-norm annotator hands a plain function to `torch.export`, which torch
2.13 refuses ("Expected `mod` to be an instance of `torch.nn.Module`"). `conv_bn_annotator_fix` wraps
those pattern functions in torchao's own `WrapperModule` for the duration of the prepare step, the same
wrapping torchao applies to its own patterns; nothing else of the quantizer changes.

Loss: the training code's own `tinyear.host.kd.distillation_loss` ((1 - alpha) * cross-entropy +
alpha * the KL or MSE distillation term through the teacher's label map), with alpha, temperature and
loss kind from the run that made the student; without a teacher, cross-entropy alone. Imports torch,
torchao and litert-torch; never the data loading code (features and labels come in as arrays).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import numpy as np
import torch

from tinyear.device.errors import TinyearError

from .convert import check_full_int8, export_graph, linear_as_conv, lower_int8, ptq_quantizer, quiet_converter
from .progress import bar as progress_bar


@dataclass(frozen=True)
class QatConfig:
    """How the quantization-aware fine-tune runs."""

    epochs: int = 2
    """Passes over the training features."""

    lr: float = 3e-4
    """Peak AdamW learning rate (cosine decay to zero); about a tenth of a typical training peak."""

    weight_decay: float = 1e-4
    """AdamW weight decay."""

    batch_size: int = 64
    """Clips per step."""

    alpha: float = 0.5
    """Weight of the distillation term (0 = labels only); ignored without teacher outputs. `tinyear
    export --qat` uses the run's own."""

    temperature: float = 4.0
    """Softmax temperature of the distillation term (the run's own under `tinyear export --qat`)."""

    kd_loss: str = "kl"
    """Distillation term: "kl" or "mse" (see `tinyear.host.kd`)."""

    label_smoothing: float = 0.0
    """Label smoothing of the cross-entropy term."""

    freeze_bn_at: float = 0.5
    """Fraction of the steps after which batch-norm statistics stop updating (standard QAT practice:
    the folded weights stop moving under the fake quantizers)."""

    freeze_ranges_at: float = 0.75
    """Fraction of the steps after which the quantization ranges (observers) are frozen."""

    warmup_batches: int = 20
    """Batches run through the observers with fake quantization off before training, so the first
    steps train against measured ranges rather than those of a single batch."""

    seed: int = 0
    """Shuffling seed."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
        if not 0.0 <= self.alpha <= 1.0 or not self.temperature > 0:
            raise ValueError("alpha must be in [0, 1] and temperature > 0")
        if self.kd_loss not in ("kl", "mse"):
            raise ValueError(f"kd_loss must be 'kl' or 'mse', not {self.kd_loss!r}")


@contextlib.contextmanager
def conv_bn_annotator_fix():
    """Let litert-torch 0.10's conv + batch-norm QAT annotator run on torch 2.13 (see module docstring)."""
    from litert_torch.quantize import pt2e_quantizer_utils as utils
    from torchao.quantization.pt2e.export_utils import WrapperModule

    original = utils._get_aten_graph_module_for_pattern

    def wrapped(pattern, example_inputs, is_cuda=False, **kwargs):
        if not isinstance(pattern, torch.nn.Module):
            pattern = WrapperModule(pattern)
        return original(pattern, example_inputs, is_cuda, **kwargs)

    utils._get_aten_graph_module_for_pattern = wrapped
    try:
        yield
    finally:
        utils._get_aten_graph_module_for_pattern = original


def prepare_qat(model: torch.nn.Module, example: torch.Tensor):
    """(fake-quantized GraphModule in train mode, quantizer) for `model`; `example` is one input
    (1, frames, bins). The float model is not modified."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    quantizer = ptq_quantizer(qat=True)
    student = linear_as_conv(model).train()
    with quiet_converter():
        graph = export_graph(student, example, dynamic_batch=True)
        with conv_bn_annotator_fix():
            graph = prepare_qat_pt2e(graph, quantizer)
    return graph, quantizer


def finetune(graph, features: np.ndarray, labels: np.ndarray, *, teacher_logits: np.ndarray | None = None,
             label_map=None, augment=None, config: QatConfig = QatConfig(), progress: bool = True) -> list[dict]:
    """Train a prepared QAT graph in place.

    features: (N, frames, bins) float32, or (K, N, frames, bins) augmented variants of the N training
    clips (the training run's cached features), of which each epoch draws one per clip, as training did.
    labels: (N,) int64. teacher_logits: (N, teacher labels) or (K, N, teacher labels), matching
    `features`, with `label_map` (`tinyear.host.labelmap.LabelMap`, teacher -> student labels).
    augment: an `AugmentConfig` whose SpecAugment settings are applied to each batch (None: none).
    Returns one dict per epoch (mean losses)."""
    from torchao.quantization.pt2e import disable_observer, move_exported_model_to_eval, move_exported_model_to_train

    from .augment import spec_augment
    from .kd import distillation_loss

    x_all = np.asarray(features)
    variants = x_all.shape[0] if x_all.ndim == 4 else 0
    n = x_all.shape[1] if variants else len(x_all)
    if n == 0:
        raise TinyearError("no training clips for the quantization-aware fine-tune; the training split is empty")
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    t_all = None if teacher_logits is None else np.asarray(teacher_logits, dtype=np.float32)
    steps_per_epoch = max(1, n // config.batch_size)
    total = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(graph.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + np.cos(np.pi * min(s, total) / total)))
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    use_spec = augment is not None and getattr(augment, "spec_augment", False)

    def batch(idx, variant):
        pick = (variant[idx], idx) if variants else (idx,)
        return pick, torch.from_numpy(np.ascontiguousarray(x_all[pick], dtype=np.float32))  # (B, frames, bins)

    if config.warmup_batches:
        from torchao.quantization.pt2e import disable_fake_quant, enable_fake_quant

        move_exported_model_to_eval(graph)
        graph.apply(disable_fake_quant)
        warm_rng = np.random.default_rng(config.seed + 1)
        with torch.no_grad():
            for _ in range(config.warmup_batches):
                idx = np.sort(warm_rng.choice(n, size=min(n, config.batch_size), replace=False))
                graph(batch(idx, warm_rng.integers(variants, size=n) if variants else None)[1])
        graph.apply(enable_fake_quant)
    move_exported_model_to_train(graph)
    bar = progress_bar(total, "QAT fine-tune", enabled=progress, unit="step")
    history, step, bn_frozen, ranges_frozen = [], 0, False, False
    for epoch in range(config.epochs):
        order = torch.randperm(n, generator=generator).numpy()
        variant = rng.integers(variants, size=n) if variants else None  # one variant per clip per epoch
        sums = {"loss": 0.0, "label_loss": 0.0, "distill_loss": 0.0}
        for b in range(steps_per_epoch):
            if not bn_frozen and step >= config.freeze_bn_at * total:
                move_exported_model_to_eval(graph)  # batch norm uses (and keeps) its running statistics
                bn_frozen = True
            if not ranges_frozen and step >= config.freeze_ranges_at * total:
                graph.apply(disable_observer)
                ranges_frozen = True
            idx = np.sort(order[b * config.batch_size : (b + 1) * config.batch_size])
            pick, x = batch(idx, variant)
            if use_spec:
                x = spec_augment(x, augment, generator)  # (B, frames, bins)
            t = None if t_all is None else torch.from_numpy(np.ascontiguousarray(t_all[pick]))  # (B, teacher labels)
            logits = graph(x)  # (B, K)
            loss, ce, kd = distillation_loss(logits, y_all[idx], t, label_map, alpha=config.alpha,
                                             temperature=config.temperature, kind=config.kd_loss,
                                             label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            sums["loss"] += loss.item()
            sums["label_loss"] += float(ce)
            sums["distill_loss"] += float(kd)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        history.append({"epoch": epoch + 1, **{k: round(v / steps_per_epoch, 5) for k, v in sums.items()}})
    bar.close()
    return history


def qat_int8(model: torch.nn.Module, features: np.ndarray, labels: np.ndarray, *,
             teacher_logits: np.ndarray | None = None, label_map=None, augment=None,
             config: QatConfig = QatConfig(), progress: bool = True) -> tuple[bytes, dict]:
    """Fine-tune `model` (left unchanged: the graph gets copies of its weights) through fake
    quantization and lower it to a full-integer int8 TFLite model; arguments as for `finetune`. Returns
    (TFLite bytes, a record of the run: config, per-epoch losses)."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    first = features[0, :1] if np.ndim(features) == 4 else features[:1]
    example = torch.from_numpy(np.array(first, dtype=np.float32))  # (1, frames, bins); a writable copy
    graph, quantizer = prepare_qat(model, example)
    if teacher_logits is not None and label_map is None:
        raise ValueError("teacher_logits need the label_map from the teacher's labels to the student's")
    history = finetune(graph, features, labels, teacher_logits=teacher_logits, label_map=label_map,
                       augment=augment, config=config, progress=progress)
    move_exported_model_to_eval(graph)
    with quiet_converter():
        converted = convert_pt2e(graph, fold_quantize=False)
    data = lower_int8(converted, example, quantizer, source=model)
    check_full_int8(data, model)
    record = {
        "config": asdict(config), "history": history, "teacher": teacher_logits is not None, "clips": int(len(labels)),
        "variants": int(np.shape(features)[0]) if np.ndim(features) == 4 else 1,
        "spec_augment": bool(augment is not None and getattr(augment, "spec_augment", False)),
        "route": "litert-torch PT2EQuantizer(is_qat=True) + prepare_qat_pt2e, conv-bn annotator patterns wrapped in "
                 "torchao WrapperModule",
    }
    return data, record
