"""Losses against numbers worked out by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from cmet.losses import (
    cross_modal_contrastive,
    directional,
    focal_mse,
    mse,
    supervised_contrastive,
    total_loss,
)


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_focal_mse_and_mse_by_hand() -> None:
    pred = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    target = torch.tensor([[0.0, 1.0], [0.5, 4.0]])
    # errors: 1, -3, 0, -4
    expected_focal = (1 * (2 * _sig(0.2) - 1) + 9 * (2 * _sig(0.6) - 1) + 0 + 16 * (2 * _sig(0.8) - 1)) / 4
    assert focal_mse(pred, target).item() == pytest.approx(expected_focal, rel=1e-6)
    assert mse(pred, target).item() == pytest.approx((1 + 9 + 0 + 16) / 4, rel=1e-6)


def test_directional_by_hand() -> None:
    pred = torch.tensor([[1.0, 0.0], [1.0, 0.0], [2.0, 2.0]])
    flipped = torch.tensor([[0.0, 2.0], [3.0, 0.0], [-1.0, -1.0]])
    # cos: 0 -> (1+0)^2 = 1; 1 -> (1+1)^2 = 4; -1 -> 0
    assert directional(pred, flipped).item() == pytest.approx((1 + 4 + 0) / 3, rel=1e-6)


def test_supervised_contrastive_by_hand() -> None:
    # Unnormalised on purpose: z = [1,0], [0.6,0.8], [0,1]; labels 0, 0, 1; tau 0.1.
    features = torch.tensor([[2.0, 0.0], [3.0, 4.0], [0.0, 5.0]])
    labels = torch.tensor([0, 0, 1])
    # anchor 0: positive 1 (sim 0.6 -> 6), negative 2 (sim 0 -> 0): -log(e^6 / (e^6 + e^0))
    # anchor 1: positive 0 (sim 6), negative 2 (sim 0.8 -> 8): -log(e^6 / (e^6 + e^8))
    # anchor 2: no positive -> left out
    loss0 = math.log(1 + math.exp(-6))
    loss1 = math.log(1 + math.exp(2))
    got = supervised_contrastive(features, labels, tau=0.1)
    assert got.item() == pytest.approx((loss0 + loss1) / 2, rel=1e-5)


def test_supervised_contrastive_two_positives_and_none() -> None:
    # z = [1,0], [1,0], [0,1] all label 0; anchor 0 positives {1 (sim 10), 2 (sim 0)}, denominator e^10 + e^0.
    features = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    denom01 = math.log(math.exp(10) + 1)
    loss0 = -((10 - denom01) + (0 - denom01)) / 2
    loss1 = loss0
    # anchor 2: positives 0 and 1, both sim 0, denominator e^0 + e^0
    loss2 = math.log(2)
    got = supervised_contrastive(features, torch.tensor([0, 0, 0]), tau=0.1)
    assert got.item() == pytest.approx((loss0 + loss1 + loss2) / 3, rel=1e-5)
    assert supervised_contrastive(features, torch.tensor([0, 1, 2])).item() == 0.0


def _cross_modal_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]:
    # time means of the token delta: sample 0 -> [1,0], sample 1 -> [0,1]
    delta = torch.tensor([[[2.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])
    speech = torch.tensor([[[-1.0, 0.0]], [[0.0, -1.0]]])  # aligned with -delta
    speech_flipped = torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]]])  # crossed with +delta
    labels = torch.tensor([0, 1])
    # v2a: every anchor has its one positive at sim 1 (10) and two negatives at sim 0 -> log(1 + 2e^-10)
    v2a = math.log(1 + 2 * math.exp(-10))
    # a2v: every anchor's positive is at sim 0, one negative at sim 1 (10), one at 0 -> log(2 + e^10)
    a2v = math.log(2 + math.exp(10))
    return delta, speech, speech_flipped, labels, (v2a + a2v) / 2


def test_cross_modal_contrastive_by_hand() -> None:
    delta, speech, speech_flipped, labels, expected = _cross_modal_case()
    got = cross_modal_contrastive(delta, speech, speech_flipped, labels)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_total_loss_combines_parts() -> None:
    delta, speech, speech_flipped, labels, cnt = _cross_modal_case()
    pred = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    pred_f = torch.tensor([[-1.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    # mse(pred, target) = (0 + 1 + 0 + 4)/4; mse(pred_f, -target) = (0 + 1 + 0 + 1)/4
    rec = 5 / 4 + 2 / 4
    # cos = -1 -> 0, cos = 1 -> 4
    dirl = (0 + 4) / 2
    parts = total_loss(pred, pred_f, target, delta, speech, speech_flipped, labels, reconstruction="mse")
    assert parts.reconstruction.item() == pytest.approx(rec, rel=1e-6)
    assert parts.contrastive.item() == pytest.approx(cnt, rel=1e-5)
    assert parts.directional.item() == pytest.approx(dirl, rel=1e-6)
    assert parts.total.item() == pytest.approx(rec + 0.1 * cnt + 0.05 * dirl, rel=1e-5)
    no_labels = total_loss(pred, pred_f, target)
    assert no_labels.contrastive.item() == 0.0
    assert no_labels.total.item() > 0
    focal = total_loss(pred, pred_f, target)
    # focal errors: forward pred - target = [0, -1, 0, 2]; flipped pred_f + target = [0, 1, 0, 1]
    focal_rec = ((2 * _sig(0.2) - 1) + 4 * (2 * _sig(0.4) - 1)) / 4 + 2 * (2 * _sig(0.2) - 1) / 4
    assert focal.reconstruction.item() == pytest.approx(focal_rec, rel=1e-6)


def test_total_loss_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError):
        total_loss(torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError):
        total_loss(torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(4, 2), reconstruction="bmse")


def test_losses_backpropagate() -> None:
    features = torch.randn(6, 8, requires_grad=True)
    supervised_contrastive(features, torch.tensor([0, 0, 1, 1, 2, 2])).backward()
    assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0
