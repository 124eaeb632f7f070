"""The one strict state-dict loader: every released or trained network is loaded through it.

A checkpoint from another release or a damaged file must fail with a sentence naming the file and what does not
fit (missing keys, unexpected keys, wrong shapes), never load partly or fail later with a tensor-size traceback.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cmet.errors import InputError


def mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> str:
    """What keeps ``state`` from loading into ``model`` exactly, as one phrase; empty when it fits."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    return "; ".join(
        f"{len(keys)} {label}: {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("of the wrong shape", wrong))
        if keys
    )


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> nn.Module:
    """Load ``state`` into ``model`` with every key and shape matching, floats as float32; ``InputError`` otherwise.

    The loaded tensors are adopted (``assign``), so a model built on the ``meta`` device (no random initialisation
    of weights that are overwritten anyway) comes out real.
    """
    problem = mismatch(model, state)
    if problem:
        raise InputError(f"{source} does not match {type(model).__name__} ({problem}); use the matching checkpoint.")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model
