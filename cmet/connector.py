"""The C-MET connector: maps a speech semantic vector to per-frame visual expression offsets.

The module tree mirrors the released ``Connector_exp`` so that the official checkpoint loads with
``strict=True`` and no key renaming (``cmet.state_dict``). Smaller configurations
(the lite engine) reuse the same class with other dimensions.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cmet.errors import InputError, MissingWeightsError
from cmet.state_dict import load_strict

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

# Modality ids of the token-type embedding (0 is the padding row, never used).
_REF, _SPEECH, _EXP = 1, 2, 3


@dataclass(frozen=True)
class ConnectorConfig:
    """Dimensions of a connector; the defaults are the released C-MET model."""

    visual_dim: int = 10
    speech_dim: int = 1024
    d_model: int = 1024
    layers: int = 4
    heads: int = 4
    ffn: int = 1024
    dropout: float = 0.1
    window: int = 5
    max_len: int = 512

    def __post_init__(self) -> None:
        for name in ("visual_dim", "speech_dim", "d_model", "layers", "heads", "ffn", "window", "max_len"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"Connector config {name}={getattr(self, name)} must be a positive integer.")
        if self.d_model % self.heads:
            raise InputError(f"Connector config d_model={self.d_model} must be divisible by heads={self.heads}.")
        if self.window > self.max_len:
            raise InputError(f"Connector config window={self.window} exceeds max_len={self.max_len}.")


@dataclass(frozen=True)
class _ConvSpec:
    cin: int
    cout: int
    kernel: int
    stride: int
    pad: int
    residual: bool = False


def tokenizer_plan(visual_dim: int, d_model: int) -> list[_ConvSpec]:
    """Conv1d stack that turns a ``visual_dim``-long 1-channel sequence into one ``d_model`` token.

    One rule covers every size and reproduces the released stack for (10, 1024): a 1→4 conv, then
    stride-2 stages (channels ×2, two residual convs) while the length exceeds 3, a k=min(L,2)/s=2
    conv that brings the length to 1, and 1×1 convs doubling the channels up to ``d_model``.
    """
    specs = [_ConvSpec(1, 4, 3, 1, 1)]
    channels, length = 4, visual_dim
    while length > 3:
        specs.append(_ConvSpec(channels, 2 * channels, 3, 2, 1))
        channels *= 2
        length = (length - 1) // 2 + 1
        specs += [_ConvSpec(channels, channels, 3, 1, 1, residual=True)] * 2
    kernel = min(length, 2)
    nxt = min(2 * channels, d_model)
    specs.append(_ConvSpec(channels, nxt, kernel, 2, 0))
    channels = nxt
    while channels < d_model:
        nxt = min(2 * channels, d_model)
        specs.append(_ConvSpec(channels, nxt, 1, 1, 0))
        channels = nxt
    return specs


class ConvBlock(nn.Module):
    """Conv1d → BatchNorm1d → (+input) → activation; attribute names match the release."""

    def __init__(self, spec: _ConvSpec, last: bool):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv1d(spec.cin, spec.cout, spec.kernel, spec.stride, spec.pad), nn.BatchNorm1d(spec.cout)
        )
        self.residual = spec.residual
        self.act = nn.Tanh() if last else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


def _visual_tokenizer(visual_dim: int, d_model: int) -> nn.Sequential:
    specs = tokenizer_plan(visual_dim, d_model)
    return nn.Sequential(*(ConvBlock(spec, last=i == len(specs) - 1) for i, spec in enumerate(specs)))


class PositionalEncoding(nn.Module):
    """Fixed sinusoidal table ``pe[1, max_len, d]``, kept as a (persistent) buffer like the release."""

    def __init__(self, d_model: int, max_len: int):
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)[:, : d_model // 2]
        self.register_buffer("pe", pe.unsqueeze(0))

    def forward(self, length: int) -> torch.Tensor:
        return self.pe[:, :length]


class FusionTransformer(nn.Module):
    """Adds position/modality embeddings to [ref | speech | exp] tokens and runs the encoder."""

    def __init__(self, cfg: ConnectorConfig):
        super().__init__()
        self.position_r = PositionalEncoding(cfg.d_model, cfg.max_len)
        self.position_e = PositionalEncoding(cfg.d_model, cfg.max_len)
        self.modality = nn.Embedding(4, cfg.d_model, padding_idx=0)
        self.dropout = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(
            cfg.d_model, cfg.heads, dim_feedforward=cfg.ffn, dropout=cfg.dropout, batch_first=True
        )
        self.transformer_encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)

    def forward(self, ref: torch.Tensor, speech: torch.Tensor, exp: torch.Tensor) -> torch.Tensor:
        t = exp.shape[1]
        ids = torch.tensor([_REF, _SPEECH, _EXP], device=exp.device)
        kinds = self.modality(ids)
        tokens = torch.cat(
            [
                ref + self.position_r(t) + kinds[0],
                speech + kinds[1],
                exp + self.position_e(t) + kinds[2],
            ],
            dim=1,
        )
        return self.transformer_encoder(self.dropout(tokens))


class SpeechTokenizer(nn.Module):
    """Linear → exact GELU → LayerNorm: one d_model token from the utterance-level speech vector."""

    def __init__(self, speech_dim: int, d_model: int):
        super().__init__()
        self.proj = nn.Linear(speech_dim, d_model)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(d_model)

    def forward(self, speech: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.proj(speech.squeeze(1)))).unsqueeze(1)


class Projector(nn.Module):
    """The released ``mlp2x_gelu`` head: Linear(d, v) → GELU → Linear(v, v)."""

    def __init__(self, d_model: int, visual_dim: int):
        super().__init__()
        self.projector = nn.Sequential(nn.Linear(d_model, visual_dim), nn.GELU(), nn.Linear(visual_dim, visual_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(x)


class Connector(nn.Module):
    """C-MET connector. ``forward(ref, speech, neutral)`` → (offset[B*T, Dv], (ref_tok, speech_tok, exp_tok))."""

    def __init__(self, config: ConnectorConfig | None = None):
        super().__init__()
        cfg = config or ConnectorConfig()
        self.config = cfg
        self.fusion_transformer_encoder = FusionTransformer(cfg)
        self.exp_encoder = _visual_tokenizer(cfg.visual_dim, cfg.d_model)
        self.ref_encoder = _visual_tokenizer(cfg.visual_dim, cfg.d_model)
        self.speaker_encoder = SpeechTokenizer(cfg.speech_dim, cfg.d_model)
        self.projector = Projector(cfg.d_model, cfg.visual_dim)
        self.Norm = nn.LayerNorm(cfg.d_model)
        self._init_weights()

    @classmethod
    def official(cls) -> Connector:
        """The released layout (visual 10, speech 1024, d_model 1024, 4 layers, 4 heads, ffn 1024)."""
        return cls(ConnectorConfig())

    def _init_weights(self) -> None:
        # The release's scheme: xavier-normal Linear weights with zero bias; BatchNorm starts at identity.
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm1d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def tokenize_visual(self, encoder: nn.Sequential, frames: torch.Tensor) -> torch.Tensor:
        """``[B, T, Dv]`` → ``[B, T, d_model]``: each frame's vector becomes one normalised token."""
        b, t, dv = frames.shape
        tokens = encoder(frames.reshape(b * t, 1, dv)).reshape(b * t, -1)
        return self.Norm(tokens).reshape(b, t, -1)

    def forward(
        self, ref: torch.Tensor, speech: torch.Tensor, neutral: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """ref/neutral ``[B, T, Dv]`` (previous offsets, this window's expression), speech ``[B, 1, Ds]``."""
        if ref.shape != neutral.shape or ref.dim() != 3 or neutral.shape[-1] != self.config.visual_dim:
            raise ValueError(f"ref {tuple(ref.shape)} and neutral {tuple(neutral.shape)} must both be [B, T, Dv].")
        ref_tokens = self.tokenize_visual(self.ref_encoder, ref)
        exp_tokens = self.tokenize_visual(self.exp_encoder, neutral)
        speech_tokens = self.speaker_encoder(speech)
        return self.fuse(ref_tokens, speech_tokens, exp_tokens), (ref_tokens, speech_tokens, exp_tokens)

    def fuse(self, ref_tokens: torch.Tensor, speech_tokens: torch.Tensor, exp_tokens: torch.Tensor) -> torch.Tensor:
        """Offsets ``[B*T, Dv]`` from tokens; split out so inference tokenizes speech and expressions once."""
        b, t, _ = exp_tokens.shape
        fused = self.fusion_transformer_encoder(ref_tokens, speech_tokens, exp_tokens)
        return self.projector(fused[:, t + 1 :]).reshape(b * t, self.config.visual_dim)

    def save(self, directory: str | Path, meta: dict[str, Any] | None = None) -> Path:
        """Write ``model.safetensors`` and ``config.json`` (dimensions + whatever ``meta`` holds)."""
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        state = {key: value.detach().cpu().contiguous() for key, value in self.state_dict().items()}
        save_file(state, str(out / WEIGHTS_FILE))
        payload = {"config": asdict(self.config), "meta": meta or {}}
        (out / CONFIG_FILE).write_text(json.dumps(payload, indent=2, default=_json_default))
        return out

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> tuple[Connector, dict[str, Any]]:
        """Inverse of :meth:`save`; returns the connector (eval mode) and its meta dict."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        root = Path(directory)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (root / name).is_file():
                raise MissingWeightsError(name, root, command="python -m cmet train")
        try:
            payload = json.loads((root / CONFIG_FILE).read_text())
            known = {f.name for f in fields(ConnectorConfig)}
            cfg = ConnectorConfig(**{k: v for k, v in payload["config"].items() if k in known})
            state = load_file(str(root / WEIGHTS_FILE))
        except (json.JSONDecodeError, KeyError, TypeError, SafetensorError) as err:
            raise InputError(f"{root} is not a saved cmet connector ({err}); retrain or restore it.") from err
        model = cls(cfg)
        load_strict(model, state, root / WEIGHTS_FILE)
        return model.to(device).eval(), payload.get("meta", {})


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray | torch.Tensor):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in config.json")


def load_official(path: str | Path | None = None, device: str | torch.device = "cpu") -> Connector:
    """Load the released checkpoint (``{"state_dict": …, "optimizer", "global_step", "global_epoch"}``) strictly.

    ``path=None`` resolves the release file locally (``checkpoints/`` or the hub cache) without network.
    Files are read with ``weights_only=True``; only the resolved release file may fall back to a full
    unpickle, because the official loader used plain ``torch.load`` and we trust that one file.
    """
    from cmet import hub

    trusted = path is None
    file = hub.resolve(hub.CMET_CHECKPOINT) if path is None else Path(path)
    if not file.is_file():
        raise MissingWeightsError(str(file), file.parent)
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not trusted:
            raise InputError(f"{file} holds more than tensors and plain values; refusing to unpickle it.") from err
        obj = torch.load(file, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError) as err:
        raise InputError(f"{file} is not a readable PyTorch checkpoint ({err}); download it again.") from err
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{file} has no connector state_dict; use the released C-MET checkpoint.")
    model = Connector.official()
    load_strict(model, state, file)
    return model.to(device).eval()


def _as_tensor(value: np.ndarray | torch.Tensor, what: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    if not torch.is_floating_point(tensor) or not torch.isfinite(tensor).all():
        raise InputError(f"The {what} must be finite floating-point numbers.")
    return tensor.float()


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch ops on one intra-op thread, then restore the setting.

    Connector tensors are tiny and the window loop is sequential, so extra threads only add
    synchronisation (125 frames: 0.2 s with one thread vs 14 s with two on a busy 2-core machine).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def infer_offsets(
    connector: Connector,
    speech: np.ndarray | torch.Tensor,
    neutral: np.ndarray | torch.Tensor | list[np.ndarray | torch.Tensor],
) -> np.ndarray | torch.Tensor | list[np.ndarray | torch.Tensor]:
    """Per-frame expression offsets for whole videos: autoregressive, non-overlapping windows of T frames.

    ``speech`` is one vector ``[Ds]`` shared by all videos, or ``[B, Ds]`` (one per video). ``neutral`` is
    ``[T_total, Dv]`` or a list of such (batched; shorter videos are padded). Each window's reference tokens
    are the previous window's predicted offsets (zeros first); the last partial window is padded by
    repeating the last frame and trimmed, so no frame is dropped. Returns the same kind (numpy/torch, single/list).
    """
    single = not isinstance(neutral, list | tuple)
    videos = [neutral] if single else list(neutral)
    if not videos:
        raise InputError("No video expressions were given to the connector.")
    cfg = connector.config
    frames = [_as_tensor(v, "neutral expressions") for v in videos]
    for f in frames:
        if f.dim() != 2 or f.shape[0] == 0 or f.shape[1] != cfg.visual_dim:
            raise InputError(f"Neutral expressions must be [frames>0, {cfg.visual_dim}], got {tuple(f.shape)}.")
    speech_t = _as_tensor(speech, "speech semantic vector")
    speech_t = speech_t.reshape(1, -1) if speech_t.dim() == 1 else speech_t
    if speech_t.dim() != 2 or speech_t.shape[1] != cfg.speech_dim or speech_t.shape[0] not in (1, len(frames)):
        raise InputError(
            f"Speech vector must be [{cfg.speech_dim}] or [{len(frames)}, {cfg.speech_dim}], "
            f"got {tuple(speech_t.shape)}."
        )

    device = next(connector.parameters()).device
    window = cfg.window
    n_windows = max(math.ceil(f.shape[0] / window) for f in frames)
    padded = torch.stack([_pad_repeat_last(f, n_windows * window) for f in frames]).to(device)
    speech_b = speech_t.expand(len(frames), -1).unsqueeze(1).to(device)

    was_training = connector.training
    connector.eval()
    try:
        with torch.inference_mode():
            # Only the reference tokens depend on the previous window; the rest is tokenized in one pass.
            speech_tokens = connector.speaker_encoder(speech_b)
            exp_tokens = connector.tokenize_visual(connector.exp_encoder, padded)
            ref = torch.zeros(len(frames), window, cfg.visual_dim, device=device)
            outputs = []
            for w in range(n_windows):
                ref_tokens = connector.tokenize_visual(connector.ref_encoder, ref)
                offset = connector.fuse(ref_tokens, speech_tokens, exp_tokens[:, w * window : (w + 1) * window])
                ref = offset.reshape(len(frames), window, cfg.visual_dim)
                outputs.append(ref)
    finally:
        connector.train(was_training)
    result = torch.cat(outputs, dim=1).cpu()
    trimmed = [_like(result[i, : f.shape[0]], original) for i, (f, original) in enumerate(zip(frames, videos))]
    return trimmed[0] if single else trimmed


def _pad_repeat_last(frames: torch.Tensor, length: int) -> torch.Tensor:
    extra = length - frames.shape[0]
    return torch.cat([frames, frames[-1:].expand(extra, -1)]) if extra else frames


def _like(result: torch.Tensor, original: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    if isinstance(original, torch.Tensor):
        return result.to(device=original.device)
    return result.numpy()
