"""EDTalk generator and Audio2Lip, re-implemented to load the released checkpoints strictly.

``load_edtalk`` / ``load_audio2lip`` take a local path (finding the file is ``cmet.hub``'s job) and accept
the release wrapping (``{"gen": ...}``, ``{"audio2lip": ...}``) or a bare state dict.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import torch

from cmet.errors import InputError, MissingWeightsError
from cmet.face.edtalk.audio2lip import Audio2Lip
from cmet.face.edtalk.generator import EDTalk, SourceCode
from cmet.state_dict import load_strict

__all__ = ["EDTalk", "SourceCode", "Audio2Lip", "load_edtalk", "load_audio2lip", "mel_windows", "smooth_lips"]


def __getattr__(name: str):
    if name in {"mel_windows", "smooth_lips"}:  # lazy: librosa is slow to import
        from cmet.face.edtalk import mel

        return getattr(mel, name)
    raise AttributeError(name)


def _read_state(path: str | Path, wrapper_key: str) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(path.name, path.parent)
    try:
        # Training checkpoints of this family also pickle the argparse options; allow only that class.
        with torch.serialization.safe_globals([argparse.Namespace]):
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        reason = exc.__class__.__name__
        raise InputError(f"{path} is not a readable torch checkpoint ({reason}); download it again.") from exc
    if isinstance(blob, dict) and wrapper_key in blob:
        blob = blob[wrapper_key]
    if not isinstance(blob, dict) or not all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise InputError(f"{path} holds no '{wrapper_key}' state dict; use the released file.")
    return blob


def load_edtalk(path: str | Path, device: str | torch.device = "cpu") -> EDTalk:
    """EDTalk generator from ``EDTalk.pt`` (``["gen"]``), strictly loaded, in eval mode."""
    with torch.device("meta"):  # no random init of 64M parameters that are overwritten anyway
        model = EDTalk.official()
    load_strict(model, _read_state(path, "gen"), path)
    return model.to(device).eval()


def load_audio2lip(path: str | Path, device: str | torch.device = "cpu") -> Audio2Lip:
    """Audio2Lip from ``Audio2Lip.pt`` (``["audio2lip"]``), strictly loaded, in eval mode."""
    with torch.device("meta"):
        model = Audio2Lip.official()
    load_strict(model, _read_state(path, "audio2lip"), path)
    return model.to(device).eval()
