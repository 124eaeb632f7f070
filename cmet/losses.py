"""C-MET training losses: reconstruction, supervised contrastive and directional (CMET_FACTS §1.5).

L = L_rec + λ_cnt·L_cnt + λ_dir·L_dir with λ_cnt = 0.1, λ_dir = 0.05. Reconstruction is applied to both
the forward prediction (target +d) and the flipped one (target −d).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LAMBDA_CNT = 0.1
LAMBDA_DIR = 0.05
TEMPERATURE = 0.1


def focal_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The release's default: squared error weighted by 2·sigmoid(0.2·|e|) − 1, so large errors count more."""
    err = pred - target
    return (err.pow(2) * (2 * torch.sigmoid(0.2 * err.abs()) - 1)).mean()


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Plain mean squared error."""
    return (pred - target).pow(2).mean()


RECONSTRUCTION: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "focal_mse": focal_mse,
    "mse": mse,
}


def supervised_contrastive(features: torch.Tensor, labels: torch.Tensor, tau: float = TEMPERATURE) -> torch.Tensor:
    """SupCon over ``features[N, D]``: positives share a label, the anchor itself is excluded everywhere.

    Features are L2-normalised; anchors without any positive are left out of the mean (0 if none has one).
    """
    z = F.normalize(features, dim=1)
    logits = z @ z.T / tau
    n = features.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool, device=features.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels.reshape(-1, 1) == labels.reshape(1, -1)) & ~self_mask
    counts = positives.sum(dim=1)
    has_positive = counts > 0
    if not has_positive.any():
        return features.sum() * 0.0
    pos_log_prob = log_prob.masked_fill(~positives, 0.0).sum(dim=1)
    return -(pos_log_prob[has_positive] / counts[has_positive]).mean()


def _time_mean(tokens: torch.Tensor) -> torch.Tensor:
    return tokens.mean(dim=1) if tokens.dim() == 3 else tokens


def cross_modal_contrastive(
    token_delta: torch.Tensor,
    speech_tokens: torch.Tensor,
    speech_tokens_flipped: torch.Tensor,
    labels: torch.Tensor,
    tau: float = TEMPERATURE,
) -> torch.Tensor:
    """Average of v→a and a→v SupCon, as in the release.

    ``token_delta`` = exp_tok(target expr) − exp_tok(source expr), ``[B, T, D]`` (time-averaged here) or
    ``[B, D]``; ``speech_tokens`` come from the +s pass, ``speech_tokens_flipped`` from the −s pass.
    v→a pairs −delta with +s tokens; a→v pairs +delta with −s tokens. ``labels[B]`` = target emotion.
    """
    delta = _time_mean(token_delta)
    pos = _time_mean(speech_tokens)
    neg = _time_mean(speech_tokens_flipped)
    both = torch.cat([labels, labels])
    v2a = supervised_contrastive(torch.cat([-delta, pos]), both, tau)
    a2v = supervised_contrastive(torch.cat([delta, neg]), both, tau)
    return (v2a + a2v) / 2


def directional(pred: torch.Tensor, pred_flipped: torch.Tensor) -> torch.Tensor:
    """mean((1 + cos(ŷ, ŷ_f))²): zero when forward and flipped predictions are antiparallel."""
    cos = F.cosine_similarity(pred, pred_flipped, dim=-1, eps=1e-8)
    return (1 + cos).pow(2).mean()


@dataclass
class LossParts:
    """The total and its unweighted parts (for logging)."""

    total: torch.Tensor
    reconstruction: torch.Tensor
    contrastive: torch.Tensor
    directional: torch.Tensor


def total_loss(
    pred: torch.Tensor,
    pred_flipped: torch.Tensor,
    target: torch.Tensor,
    token_delta: torch.Tensor | None = None,
    speech_tokens: torch.Tensor | None = None,
    speech_tokens_flipped: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    reconstruction: str = "focal_mse",
    lambda_cnt: float = LAMBDA_CNT,
    lambda_dir: float = LAMBDA_DIR,
) -> LossParts:
    """L_rec(ŷ, d) + L_rec(ŷ_f, −d) + λ_cnt·L_cnt + λ_dir·L_dir.

    The contrastive term needs ``token_delta``, both speech token sets and ``labels``; without labels
    (e.g. unlabelled pairs) it is zero.
    """
    if pred.shape != target.shape or pred_flipped.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)}, flipped and target {tuple(target.shape)} must match.")
    if reconstruction not in RECONSTRUCTION:
        raise ValueError(f"reconstruction must be one of {sorted(RECONSTRUCTION)}, got {reconstruction!r}.")
    rec_fn = RECONSTRUCTION[reconstruction]
    rec = rec_fn(pred, target) + rec_fn(pred_flipped, -target)
    if labels is None:
        cnt = pred.new_zeros(())
    else:
        if token_delta is None or speech_tokens is None or speech_tokens_flipped is None:
            raise ValueError("the contrastive term needs token_delta, speech_tokens and speech_tokens_flipped.")
        cnt = cross_modal_contrastive(token_delta, speech_tokens, speech_tokens_flipped, labels)
    dirl = directional(pred, pred_flipped)
    return LossParts(rec + lambda_cnt * cnt + lambda_dir * dirl, rec, cnt, dirl)
