"""The one strict loader: exact fits load (also into a meta-device model), anything else is a sentence."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cmet.errors import InputError
from cmet.state_dict import load_strict


def _state() -> dict[str, torch.Tensor]:
    return {"weight": torch.arange(6, dtype=torch.float64).reshape(2, 3), "bias": torch.ones(2)}


def test_exact_state_loads_into_a_meta_model_as_float32():
    with torch.device("meta"):
        model = nn.Linear(3, 2)
    load_strict(model, _state(), "net.pt")
    assert model.weight.device.type == "cpu" and model.weight.dtype == torch.float32
    assert torch.equal(model(torch.ones(1, 3)), torch.tensor([[4.0, 13.0]]))


@pytest.mark.parametrize(
    "change, phrase",
    [
        (lambda s: s.pop("bias"), "1 missing: bias"),
        (lambda s: s.update(extra=torch.zeros(1)), "1 unexpected: extra"),
        (lambda s: s.update(weight=torch.zeros(3, 2)), "1 of the wrong shape: weight"),
    ],
)
def test_mismatch_names_the_file_and_the_keys(change, phrase):
    state = _state()
    change(state)
    model = nn.Linear(3, 2)
    before = model.weight.detach().clone()
    with pytest.raises(InputError, match=f"other.pt does not match Linear \\({phrase}\\)"):
        load_strict(model, state, "other.pt")
    assert torch.equal(model.weight, before)
