"""The fixtures' deterministic weight rule (shared/fixtures/official/README.md), implemented here.

Used by the fixture-equivalence tests to build the exact weights the official outputs were made
with, without shipping any tensors.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official"

_DTYPES = {"float32": torch.float32, "int64": torch.int64}


def fixture_path(name: str) -> Path:
    """Path of a fixture file; skips the calling test when ../shared is absent."""
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"official fixture {name} not found under {FIXTURES}")
    return path


def load_manifest(name: str) -> dict:
    return json.loads(fixture_path(name).read_text())


def load_io(name: str) -> dict[str, torch.Tensor]:
    return torch.load(fixture_path(name), weights_only=True)


def _signal(i: int, count: int) -> np.ndarray:
    n = np.arange(count, dtype=np.int64)
    a = (7919 * (n + 1) + 104729 * (i + 1)) % 1000003
    phi = (a * a) % 1000003
    return 2.0 * phi.astype(np.float64) / 1000003 - 1.0


def deterministic_state_dict(manifest: dict, module: torch.nn.Module) -> OrderedDict:
    """Weights by the manifest rule, in manifest order; ``keep`` entries take the module's own buffers."""
    own = module.state_dict()
    rules = {key: (kind, center, amp) for key, kind, center, amp in manifest["weight_rule"]}
    out: OrderedDict = OrderedDict()
    for i, (key, shape, dtype) in enumerate(manifest["state_dict"]):
        kind, center, amp = rules[key]
        count = int(np.prod(shape)) if shape else 1
        if kind == "keep":
            value = own[key].detach().clone()
        elif kind == "zero":
            value = torch.zeros(shape, dtype=_DTYPES[dtype])
        else:
            s = _signal(i, count)
            values = center + amp * (np.abs(s) if kind == "abs" else s)
            value = torch.from_numpy(values.astype(np.float32)).reshape(shape).to(_DTYPES[dtype])
        out[key] = value
    return out


def check_weights(manifest: dict, state: dict) -> None:
    """Compare against the manifest's ``weight_check`` sums (float64)."""
    for key, total, total_sq, first, last in manifest["weight_check"]:
        v = state[key].double().flatten()
        assert np.isclose(v.sum().item(), total, rtol=1e-6, atol=1e-3), key
        assert np.isclose((v * v).sum().item(), total_sq, rtol=1e-6, atol=1e-3), key
        assert np.isclose(v[0].item(), first, rtol=1e-6, atol=1e-6), key
        assert np.isclose(v[-1].item(), last, rtol=1e-6, atol=1e-6), key


def write_release_files(root: Path, names: tuple[str, ...] | None = None) -> None:
    """The three release files (or ``names`` of them) under ``root``, wrapped as released, with the manifest rule's
    weights; the connector under its flat basename, as a user may place it."""
    from cmet import hub
    from cmet.connector import Connector
    from cmet.face.edtalk import Audio2Lip, EDTalk

    files = {
        hub.CMET_CHECKPOINT: (
            Path(hub.CMET_CHECKPOINT).name,
            "connector_manifest.json",
            Connector.official,
            "state_dict",
        ),
        hub.EDTALK: (hub.EDTALK, "edtalk_manifest.json", EDTalk.official, "gen"),
        hub.AUDIO2LIP: (hub.AUDIO2LIP, "audio2lip_manifest.json", Audio2Lip.official, "audio2lip"),
    }
    for name in names or tuple(files):
        relative, manifest, build, key = files[name]
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({key: deterministic_state_dict(load_manifest(manifest), build())}, path)
