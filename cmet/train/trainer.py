"""Train a (small) C-MET connector on speech pools: deterministic, resumable, and DDP-ready (torchrun, gloo).

Each step runs the release's two passes — forward ``(ref, s, E_src)`` and flipped ``(−ref, −s, E_tgt)`` — in
one batched call (the flipped examples are appended to the batch), and optimises focal-MSE on both, the
cross-modal supervised contrastive term and the directional term (``cmet.losses.total_loss``).

Under ``torch.distributed`` each rank draws its own examples (seeded by rank) for ``batch_size / world``
of the batch; DDP averages gradients, rank 0 writes the resumable state.
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from cmet.connector import Connector, ConnectorConfig, one_thread
from cmet.errors import InputError
from cmet.losses import LAMBDA_CNT, LAMBDA_DIR, total_loss
from cmet.semantic import within_spread
from cmet.train.data import SpeechPools
from cmet.train.sampler import PairSampler, SamplerConfig

NORMALISATIONS = ("feature", "global")
_STATE_KEYS = {"model", "optimizer", "step", "seconds", "rng", "world", "config"}


@dataclass(frozen=True)
class TrainConfig:
    """Model size, optimisation and sampling of one training run."""

    # 600 left the angry prototype at half its reach in-sample (0.54) on the real-face rig; 2000 steps halve the
    # held-out mix of other emotions (0.19 -> 0.09, mostly disgust in surprise) but FER sees surprise on fewer faces.
    steps: int = 1000
    seed: int = 42
    lr: float = 1e-3
    weight_decay: float = 1e-5
    warmup: int = 50
    d_model: int = 64
    layers: int = 2
    heads: int = 4
    ffn: int = 128
    dropout: float = 0.1
    # Plain MSE, not the release's focal-MSE: its weight 2·sigmoid(0.2|e|) − 1 ≈ 0.1|e| is made for EDTalk's
    # coefficient range; on AU coefficients (errors < 1) it shrinks the gradient ~20x and lets the contrastive
    # term dominate (leave-one-speaker-out on M030/W009: 70%/93% with focal-MSE, 100%/100% with MSE).
    reconstruction: str = "mse"
    lambda_cnt: float = LAMBDA_CNT
    lambda_dir: float = LAMBDA_DIR
    normalisation: str = "feature"
    save_every: int = 100
    log_every: int = 200
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise InputError(f"--steps must be at least 1, got {self.steps}.")
        if self.normalisation not in NORMALISATIONS:
            raise InputError(f"Speech normalisation must be one of {', '.join(NORMALISATIONS)}.")

    def connector_config(self, visual_dim: int, speech_dim: int) -> ConnectorConfig:
        return ConnectorConfig(
            visual_dim=visual_dim,
            speech_dim=speech_dim,
            d_model=self.d_model,
            layers=self.layers,
            heads=self.heads,
            ffn=self.ffn,
            dropout=self.dropout,
            window=self.sampler.window,
            max_len=max(self.sampler.window, 16),
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """The trained connector (eval mode, unwrapped), its input scale, the per-step losses of this session and
    the training time in seconds (including the sessions before a resume)."""

    connector: Connector
    speech_scale: np.ndarray
    emotions: list[str]
    losses: list[float]
    step: int
    seconds: float


RECIPES: dict[str, TrainConfig] = {
    "default": TrainConfig(),
    # emotion2vec+ features share one scale; per-feature z-scores would blow up its near-constant dimensions.
    "emotion2vec_plus_large": TrainConfig(normalisation="global"),
    # eGeMAPS functionals span orders of magnitude (Hz, dB, ratios): each needs its own scale. Differences
    # pooled over speakers mix in voice identity (pitch, formants), which swamps prosodic emotion cues, so
    # speech vectors are drawn within one speaker (leave-one-speaker-out 32% vs 26% when pooled half the time).
    # Same-emotion pairs (no-change targets) cost eGeMAPS half its held-out accuracy (33.8% → 15.7%): prosody
    # differences between takes of one emotion are as large as between emotions, so it learns to answer nothing.
    # It also overfits sooner: 1000 steps fall to 19.5% held out (22.9–24.8% at 600, depending on the rig).
    "egemaps_v02": TrainConfig(
        steps=600, normalisation="feature", sampler=SamplerConfig(same_speaker_prob=1.0, same_emotion_prob=0.0)
    ),
}


def recipe(encoder: str, steps: int | None = None, seed: int = 42, batch_size: int | None = None) -> TrainConfig:
    """The shipped settings for ``encoder``'s space, with optional overrides from the command line."""
    base = RECIPES.get(encoder, RECIPES["default"])
    sampler = base.sampler if batch_size is None else replace(base.sampler, batch_size=batch_size)
    return replace(base, steps=base.steps if steps is None else steps, seed=seed, sampler=sampler)


def speech_scale(pools: SpeechPools, normalisation: str) -> np.ndarray:
    """Per-feature (or one global) standard deviation of the training clips' embeddings.

    Speech vectors are divided by this before the connector. Z-scoring each clip before the mean difference
    is the same thing, since the mean cancels in a difference; eGeMAPS needs it (its functionals span
    orders of magnitude), emotion2vec+ is already well scaled.
    """
    x = pools.all_embeddings().astype(np.float64)
    std = x.std(axis=0) if normalisation == "feature" else np.full(x.shape[1], x.std())
    return np.maximum(std, 1e-6 * max(float(std.max()), 1e-12)).astype(np.float32)


def clip_spread(pools: SpeechPools, scale: np.ndarray) -> float:
    """RMS length of one clip's deviation from its pool's mean (scaled units), over every (speaker, emotion) pool.

    Two disjoint sets of a and b clips of one pool differ by this times √(1/a + 1/b) on average: the yardstick
    the engine uses to tell an emotion from clip-to-clip spread (``cmet.semantic.emotion_weight``).
    """
    variance = within_spread(*(clips / scale for clips in pools.pools.values()))
    return float(np.sqrt(variance.sum())) if variance is not None else 0.0


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _lr_factor(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the base rate."""
    if step < config.warmup:
        return (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _rng_state(rng: np.random.Generator) -> dict:
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}


def _save_state(
    path: Path, model, optimizer, step: int, seconds: float, rng: np.random.Generator, config: TrainConfig
) -> None:
    """Rank 0 writes model, optimiser, step and every rank's RNG state (atomically: temp file + rename)."""
    rank, world = _world()
    states = [None] * world
    if world > 1:
        dist.all_gather_object(states, _rng_state(rng))
    else:
        states = [_rng_state(rng)]
    if rank != 0:
        return
    module = model.module if hasattr(model, "module") else model
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "seconds": seconds,
            "rng": states,
            "world": world,
            "config": config.to_dict(),
        },
        tmp,
    )
    tmp.replace(path)


def _settings(config: dict) -> dict:
    """What must match to resume: everything but the step count and the save/log cadence (those may change)."""
    return {k: v for k, v in config.items() if k not in ("steps", "save_every", "log_every")}


def _load_state(path: Path, model, optimizer, rng: np.random.Generator, config: TrainConfig) -> tuple[int, float]:
    """Restore a state written by ``_save_state``; returns the step to continue from and the seconds spent."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise InputError(f"{path} is not a readable training state ({err}); delete it or drop --resume.") from err
    if not isinstance(state, dict) or not _STATE_KEYS <= set(state):
        raise InputError(f"{path} is not a cmet training state (from an older version?); delete it or drop --resume.")
    if _settings(state["config"]) != _settings(config.to_dict()):
        raise InputError(f"{path} was written with other training settings; use the same ones or drop --resume.")
    rank, world = _world()
    if state["world"] != world:
        raise InputError(f"{path} was written by {state['world']} process(es), not {world}; resume with as many.")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    rng.bit_generator.state = state["rng"][rank]["numpy"]
    torch.set_rng_state(state["rng"][rank]["torch"])
    return int(state["step"]), float(state["seconds"])


def train(
    pools: SpeechPools,
    prototypes: dict[str, np.ndarray],
    config: TrainConfig,
    state_path: str | Path | None = None,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train a connector from speech ``pools`` to AU ``prototypes`` differences.

    ``state_path`` (optional) receives the resumable state every ``save_every`` steps and at the end;
    ``resume`` continues from it when it exists.
    """
    with one_thread():
        return _train(pools, prototypes, config, state_path, resume, log)


def _train(pools, prototypes, config, state_path, resume, log) -> TrainResult:
    rank, world = _world()
    if config.sampler.batch_size % world:
        raise InputError(f"Batch size {config.sampler.batch_size} must divide evenly over {world} processes.")
    scale = speech_scale(pools, config.normalisation)
    rng = np.random.default_rng([config.seed, rank])
    sampler = PairSampler(pools, prototypes, scale, config.sampler, rng)
    torch.manual_seed(config.seed)
    connector = Connector(config.connector_config(sampler.protos.shape[1], pools.dim))
    torch.manual_seed(config.seed + 1 + rank)
    model = torch.nn.parallel.DistributedDataParallel(connector) if world > 1 else connector
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state = Path(state_path) if state_path is not None else None
    step, spent = 0, 0.0
    if resume and state is not None and state.is_file():
        step, spent = _load_state(state, connector, optimizer, rng, config)
        if rank == 0:
            log(f"resumed {state} at step {step}")
    per_rank = config.sampler.batch_size // world
    losses: list[float] = []
    start = time.perf_counter()
    model.train()
    while step < config.steps:
        for group in optimizer.param_groups:
            group["lr"] = config.lr * _lr_factor(step, config)
        batch = sampler.sample(per_rank)
        parts = _loss(model, batch, config)
        optimizer.zero_grad(set_to_none=True)
        parts.total.backward()
        optimizer.step()
        step += 1
        losses.append(float(parts.total.detach()))
        if state is not None and (step % config.save_every == 0 or step == config.steps):
            _save_state(state, model, optimizer, step, spent + time.perf_counter() - start, rng, config)
        if rank == 0 and (step % config.log_every == 0 or step == config.steps):
            log(
                f"step {step}/{config.steps} loss {parts.total.item():.4f} (rec {parts.reconstruction.item():.4f}, "
                f"cnt {parts.contrastive.item():.3f}, dir {parts.directional.item():.3f})"
            )
    connector.eval()
    return TrainResult(connector, scale, sampler.emotions, losses, step, spent + time.perf_counter() - start)


def _loss(model, batch, config: TrainConfig):
    """Forward and flipped passes in one call; the flipped half sees −ref, −s and the target expression."""
    b, t, dv = batch.source.shape
    offsets, (_, speech_tokens, exp_tokens) = model(
        torch.cat([batch.ref, -batch.ref]),
        torch.cat([batch.speech, -batch.speech]),
        torch.cat([batch.source, batch.target]),
    )
    offsets = offsets.reshape(2 * b, t, dv)
    return total_loss(
        offsets[:b].reshape(b * t, dv),
        offsets[b:].reshape(b * t, dv),
        batch.direction.reshape(b * t, dv),
        token_delta=exp_tokens[b:] - exp_tokens[:b],
        speech_tokens=speech_tokens[:b],
        speech_tokens_flipped=speech_tokens[b:],
        labels=batch.labels,
        reconstruction=config.reconstruction,
        lambda_cnt=config.lambda_cnt,
        lambda_dir=config.lambda_dir,
    )
