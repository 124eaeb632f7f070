"""emotion2vec+ large utterance embeddings (1024-d) through FunASR, the encoder C-MET was trained on.

The weights are looked for locally before FunASR is touched: offline, FunASR retries a download for ~20 s and then
fails with a misleading "not registered" error, so a missing model becomes a ``MissingWeightsError`` within
milliseconds instead. The model loads lazily, only when a real audio clip must be embedded; ``.npy`` embeddings and
cached clips need no model at all.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from cmet.config import E2V, checkpoints_dir, resolve_device
from cmet.errors import MissingWeightsError
from cmet.speech.base import SpeechEncoder

MODEL_NAME = E2V
MODELSCOPE_ID = "iic/emotion2vec_plus_large"
HF_REPO = "emotion2vec/emotion2vec_plus_large"
REQUIRED_FILES = ("model.pt", "config.yaml")


def is_model_dir(path: Path) -> bool:
    """A FunASR model folder: ``model.pt`` next to ``config.yaml``."""
    return all((path / name).is_file() for name in REQUIRED_FILES)


def candidate_dirs() -> list[Path]:
    """Where emotion2vec+ large may already be, in order: cmet's checkpoints, the ModelScope cache, the HF cache.

    Environment variables are read on every call (not at import) so ``CMET_CHECKPOINTS``, ``MODELSCOPE_CACHE``,
    ``HF_HUB_CACHE`` and ``HF_HOME`` set by a caller or a test take effect.
    """
    dirs = [checkpoints_dir() / MODEL_NAME]
    ms_root = Path(os.environ.get("MODELSCOPE_CACHE", Path.home() / ".cache" / "modelscope"))
    for sub in ("hub/models", "hub", "models", "."):
        dirs.append(ms_root / sub / MODELSCOPE_ID)
    hf_snapshot = _hf_snapshot_dir()
    if hf_snapshot is not None:
        dirs.append(hf_snapshot)
    return dirs


def _hf_snapshot_dir() -> Path | None:
    """The cached hub snapshot holding ``model.pt``, found without any network access."""
    from huggingface_hub import try_to_load_from_cache

    hub_cache = (
        os.environ.get("HF_HUB_CACHE")
        or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    )
    found = try_to_load_from_cache(HF_REPO, REQUIRED_FILES[0], cache_dir=hub_cache)
    return Path(found).parent if isinstance(found, str) else None


def find_weights(model_dir: Path | None = None) -> Path | None:
    """The first local emotion2vec+ large model folder (``model_dir`` alone when given), or None."""
    dirs = [Path(model_dir)] if model_dir is not None else candidate_dirs()
    return next((d for d in dirs if is_model_dir(d)), None)


def missing_weights_error(model_dir: Path | None = None) -> MissingWeightsError:
    where = Path(model_dir) if model_dir is not None else checkpoints_dir() / MODEL_NAME
    return MissingWeightsError(
        MODEL_NAME,
        f"{where}/ (a FunASR model folder with {' and '.join(REQUIRED_FILES)})",
        detail="The ModelScope and Hugging Face caches were checked too; precomputed .npy embeddings work without it.",
    )


@contextlib.contextmanager
def _quiet_funasr():
    """Keep FunASR's import-time prints, version banner and global ``logging.basicConfig`` out of cmet's output."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            root.setLevel(level)
            root.handlers[:] = handlers


class Emotion2Vec(SpeechEncoder):
    """emotion2vec+ large: mean over frames of the last layer, as FunASR's ``granularity="utterance"`` returns.

    ``device`` is ``"cpu"``, ``"cuda"`` or ``"auto"``. ``fp16`` runs the model under CUDA autocast (FunASR feeds
    float32 waveforms, so casting the weights themselves would not run); it has no effect on CPU. FunASR's
    emotion2vec forward takes one utterance at a time, so a batch is one ``generate`` call over a list of clips.
    """

    name = MODEL_NAME
    dim = 1024

    def __init__(self, model_dir: Path | None = None, device: str = "cpu", fp16: bool = False) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.device = device
        self.fp16 = fp16
        self._model = None

    @classmethod
    def available(cls, model_dir: Path | None = None) -> bool:
        """Whether weights are on this machine (filesystem checks only: no FunASR import, no network)."""
        return find_weights(model_dir) is not None

    def load(self):
        """The FunASR ``AutoModel``, loaded on first need; MissingWeightsError at once when no weights are local."""
        if self._model is None:
            weights = find_weights(self.model_dir)
            if weights is None:
                raise missing_weights_error(self.model_dir)
            import torch

            with _quiet_funasr():
                from funasr import AutoModel

                self._model = AutoModel(
                    model=str(weights),
                    device=resolve_device(self.device),
                    ncpu=torch.get_num_threads(),
                    disable_update=True,
                    disable_pbar=True,
                    log_level="ERROR",
                )
        return self._model

    def _embed_waveforms(self, waves: list[np.ndarray]) -> np.ndarray:
        model = self.load()
        import torch

        on_cuda = str(model.kwargs.get("device", "cpu")).startswith("cuda")
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.fp16 and on_cuda else contextlib.nullcontext()
        with _quiet_funasr(), autocast:
            results = model.generate(waves, batch_size=len(waves), granularity="utterance", extract_embedding=True)
        return np.stack([np.asarray(result["feats"], dtype=np.float32) for result in results])
