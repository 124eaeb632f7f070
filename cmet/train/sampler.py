"""Training examples for the lite connector, following the release's sampler (CMET_FACTS §1.4).

Each example picks an ordered emotion pair e1 → e2 (all pairs, not only neutral → X). Its speech vector is
mean(random subset of e2 clips) − mean(random subset of e1 clips), from pools of the training speakers; its
visual target is the AU-prototype difference P[e2] − P[e1]. Because our visual space is the AU rig rather than
tracked MEAD video, the per-frame expressions are synthesised: the source prototype plus a per-example offset
(a face's own resting expression) plus small per-frame noise, over a T-frame window.

The visual target is the full prototype difference: the connector's speech tokenizer ends in a LayerNorm, so
it cannot see the speech vector's magnitude, and scaling targets by a random intensity only teaches it to answer
every emotion at the intensity range's mean (strength 1 then showed 50–60% of a real expression). Strength is a
gain applied after the network. A share of examples pairs an emotion with itself (two disjoint subsets of the
same pool, target zero), so a difference between clips of one emotion, neutral included, reads as no change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cmet.errors import InputError
from cmet.train.data import SpeechPools


@dataclass(frozen=True)
class SamplerConfig:
    """How examples are drawn; noise levels are fractions of the prototypes' RMS value."""

    batch_size: int = 32
    window: int = 5
    min_clips: int = 3
    max_clips: int = 10
    intensity: tuple[float, float] = (1.0, 1.0)  # scales speech and visual vectors together (see module docstring)
    same_emotion_prob: float = 0.15  # e1 == e2: disjoint subsets of one pool, no visual change
    frame_noise: float = 0.3
    face_offset: float = 0.3
    ref_zero_prob: float = 0.3
    ref_gain: tuple[float, float] = (0.5, 1.5)
    ref_noise: float = 0.1
    same_speaker_prob: float = 0.5


@dataclass
class Batch:
    """One batch: connector inputs for the forward pass, the shared direction target and target labels."""

    ref: torch.Tensor  # [B, T, Dv] previous window's direction, or zeros (a clip's first window)
    speech: torch.Tensor  # [B, 1, Ds] normalised speech semantic vector
    source: torch.Tensor  # [B, T, Dv] per-frame expression of e1
    target: torch.Tensor  # [B, T, Dv] source + direction (the flipped pass's input)
    direction: torch.Tensor  # [B, T, Dv] the visual semantic vector, constant over time
    labels: torch.Tensor  # [B] index of e2 in ``emotions``; len(emotions) for a same-emotion pair


def usable_emotions(pools: SpeechPools, prototypes: dict[str, np.ndarray]) -> list[str]:
    """Emotions that have both speech clips and a visual prototype, in the prototypes' order."""
    emotions = [e for e in prototypes if e in set(pools.emotions)]
    if len(emotions) < 2:
        raise InputError(
            f"Training needs clips of at least two emotions with AU prototypes ({', '.join(prototypes)}); "
            f"the data has {', '.join(pools.emotions) or 'none'}."
        )
    return emotions


class PairSampler:
    """Draws batches of (e1 → e2) examples from speech pools; ``scale`` divides speech vectors feature-wise."""

    def __init__(
        self,
        pools: SpeechPools,
        prototypes: dict[str, np.ndarray],
        scale: np.ndarray,
        config: SamplerConfig,
        rng: np.random.Generator,
    ):
        self.config = config
        self.rng = rng
        self.emotions = usable_emotions(pools, prototypes)
        self.protos = np.stack([np.asarray(prototypes[e], dtype=np.float64) for e in self.emotions])
        self.rms = float(np.sqrt(np.mean(self.protos**2))) or 1.0
        self.scale = np.asarray(scale, dtype=np.float64)
        # All clips in one matrix; a batch's speech vectors are then one (signed subset weights) @ clips product.
        keys = [k for k in sorted(pools.pools) if k[1] in self.emotions]
        self.clips = np.concatenate([pools.pools[k] for k in keys]).astype(np.float64) / self.scale
        starts = np.cumsum([0] + [len(pools.pools[k]) for k in keys])
        rows = {k: np.arange(starts[i], starts[i + 1]) for i, k in enumerate(keys)}
        self.pooled = [np.concatenate([r for k, r in rows.items() if k[1] == e]) for e in self.emotions]
        self.by_speaker = {s: [rows.get((s, e)) for e in self.emotions] for s in pools.speakers}

    def _add_subset(self, weights: np.ndarray, rows: np.ndarray, sign: float) -> None:
        """Put ``sign / k`` on a random subset of ``k`` of ``rows`` (k drawn in [min_clips, max_clips])."""
        cfg = self.config
        k = min(len(rows), int(self.rng.integers(cfg.min_clips, cfg.max_clips + 1)))
        weights[self.rng.choice(rows, size=k, replace=False)] += sign / k

    def _rows_for(self, e1: int, e2: int) -> tuple[np.ndarray, np.ndarray]:
        """One speaker's pools (when a speaker has both and the coin says so), else pooled over speakers."""
        if self.rng.random() < self.config.same_speaker_prob:
            candidates = [s for s, r in self.by_speaker.items() if r[e1] is not None and r[e2] is not None]
            if candidates:
                rows = self.by_speaker[candidates[int(self.rng.integers(len(candidates)))]]
                return rows[e1], rows[e2]
        return self.pooled[e1], self.pooled[e2]

    def sample(self, batch_size: int | None = None) -> Batch:
        cfg = self.config
        b = batch_size or cfg.batch_size
        n_emotions, dv = self.protos.shape
        e1 = self.rng.integers(n_emotions, size=b)
        e2 = (e1 + self.rng.integers(1, n_emotions, size=b)) % n_emotions
        same = self.rng.random(b) < cfg.same_emotion_prob
        e2[same] = e1[same]
        gain = self.rng.uniform(*cfg.intensity, size=b)
        weights = np.zeros((b, len(self.clips)))
        for i in range(b):
            src_rows, tgt_rows = self._rows_for(int(e1[i]), int(e2[i]))
            if same[i]:
                order = self.rng.permutation(src_rows)
                src_rows, tgt_rows = order[: len(order) // 2], order[len(order) // 2 :]
            self._add_subset(weights[i], tgt_rows, 1.0)
            self._add_subset(weights[i], src_rows, -1.0)
        speech = gain[:, None] * (weights @ self.clips)
        direction = gain[:, None] * (self.protos[e2] - self.protos[e1])
        offset = cfg.face_offset * self.rms * self.rng.standard_normal((b, 1, dv))
        noise = cfg.frame_noise * self.rms * self.rng.standard_normal((b, cfg.window, dv))
        source = gain[:, None, None] * self.protos[e1][:, None, :] + offset + noise
        frames = np.repeat(direction[:, None, :], cfg.window, axis=1)
        # At inference the reference is the connector's own previous prediction, never the exact direction:
        # a perturbed copy keeps the model reading the speech instead of echoing the reference.
        ref_gain = self.rng.uniform(*cfg.ref_gain, size=b) * (self.rng.random(b) >= cfg.ref_zero_prob)
        ref_noise = cfg.ref_noise * self.rms * self.rng.standard_normal((b, cfg.window, dv))
        ref = ref_gain[:, None, None] * frames + ref_noise * (ref_gain > 0)[:, None, None]

        def tensor(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(x.astype(np.float32))

        return Batch(
            ref=tensor(ref),
            speech=tensor(speech[:, None, :]),
            source=tensor(source),
            target=tensor(source + frames),
            direction=tensor(frames),
            labels=torch.from_numpy(np.where(same, n_emotions, e2).astype(np.int64)),  # "no change" is its own class
        )
