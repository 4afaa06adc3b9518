"""The distillation loss, as arithmetic you can check by hand.

    loss = (1 - alpha) * CE(student, labels) + alpha * KD
    KD (kl)  = T^2 * KL(teacher_T || student_T) = T^2 * sum_j q_j * (log q_j - log p_j),
               q = the teacher's softmax(z_t / T) summed into the student's labels (`LabelMap`),
               p = softmax(z_s / T)
    KD (mse) = mean over labels of (z_s - z_t')^2, z_t' = the teacher's logits in the student's labels
               (log-sum-exp of the teacher labels that map to each; the logits themselves when the
               labels are the same)

T^2 keeps the KL term's gradients the same size as the label term's whatever T is (Hinton et al.
2015). A clip whose label the teacher does not cover (no teacher label maps to it) gets the label term
alone, at weight 1: the teacher has nothing to say about it. alpha = 0 with no teacher is the baseline,
computed by the same function. Imports torch only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KD_LOSSES = ("kl", "mse")


def kd_kl(student_logits: torch.Tensor, teacher_log_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-example T^2 * KL(q || p): student logits (B, L), teacher log-probabilities at temperature T
    already in the student's labels (B, L; -inf where q = 0) -> (B,)."""
    log_p = F.log_softmax(student_logits / temperature, dim=-1)  # (B, L)
    q = teacher_log_probs.exp()  # (B, L)
    # q * (log q - log p) with 0 * (-inf) taken as 0 where the teacher puts no probability.
    terms = torch.where(q > 0, q * (teacher_log_probs - log_p), torch.zeros_like(q))  # (B, L)
    return temperature**2 * terms.sum(dim=-1)


def kd_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor, covered: torch.Tensor) -> torch.Tensor:
    """Per-example mean squared logit difference over the covered labels: (B, L), (B, L), (L,) bool -> (B,)."""
    diff = student_logits[:, covered] - teacher_logits[:, covered]  # (B, C): C covered labels
    return (diff**2).mean(dim=-1)


def distillation_loss(student_logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None = None,
                      label_map=None, *, alpha: float = 0.0, temperature: float = 1.0, kind: str = "kl",
                      label_smoothing: float = 0.0, mix=None):
    """(loss, ce, kd): the scalar to minimise and the batch means of the two terms (kd = 0 without a
    teacher). student_logits (B, L); labels (B,) int64; teacher_logits (B, teacher labels) or None;
    label_map: a `tinyear.host.labelmap.LabelMap` (teacher -> student labels). alpha: a number, or (B,)
    per example (per-source trust). mix: (other (B,), lam (B,))
    when example i was mixed from itself (energy share lam) and a clip labelled other[i] (1 - lam): the
    label term is then lam * CE(labels) + (1 - lam) * CE(other), and the teacher (which heard the
    mixture) speaks for it only if it covers both labels."""
    ce = F.cross_entropy(student_logits, labels, reduction="none", label_smoothing=label_smoothing)  # (B,)
    if mix is not None:
        other_labels, lam = mix
        other = F.cross_entropy(student_logits, other_labels, reduction="none", label_smoothing=label_smoothing)
        ce = lam * ce + (1.0 - lam) * other  # (B,)
    if teacher_logits is None or (not torch.is_tensor(alpha) and alpha == 0.0):
        return ce.mean(), ce.mean().detach(), torch.zeros((), device=ce.device)
    if kind not in KD_LOSSES:
        raise ValueError(f"kind must be one of {KD_LOSSES}, got {kind!r}")
    covered = label_map.covered.to(student_logits.device)  # (L,)
    if kind == "kl":
        kd = kd_kl(student_logits, label_map.log_probs(teacher_logits, temperature), temperature)  # (B,)
    else:
        kd = kd_mse(student_logits, label_map.logits(teacher_logits), covered)  # (B,)
    taught = covered[labels]  # (B,): the teacher covers this clip's label
    if mix is not None:
        taught = taught & (covered[mix[0]] | (mix[1] >= 1.0))
    per_example = torch.where(taught, (1.0 - alpha) * ce + alpha * kd, ce)  # (B,)
    kd_mean = kd[taught].mean().detach() if taught.any() else torch.zeros((), device=ce.device)
    return per_example.mean(), ce.mean().detach(), kd_mean
