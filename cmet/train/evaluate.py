"""Leave-one-speaker-out evaluation of the lite connector.

For each held-out speaker: train on the other speakers, then take that speaker's own pools, form speech vectors
mean(random target subset) − mean(random neutral subset) for each non-neutral emotion, run the connector on a
still neutral face (autoregressive windows, as the app does), and count how often the predicted visual vector
is nearest to the right AU prototype. The nearest-centroid classifier in speech space (centroids = training
speakers' emotion − neutral directions) on the very same subsets is the baseline the connector should match.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmet.connector import infer_offsets, one_thread
from cmet.errors import InputError
from cmet.train.data import NEUTRAL, SpeechPools
from cmet.train.trainer import TrainConfig, TrainResult, train

AUDIBLE_REACH = 0.3  # below this the encoder cannot tell the emotion from neutral (contempt in emotion2vec+)
MAX_GAIN = 1.5


@dataclass(frozen=True)
class EvalConfig:
    """Random subsets per emotion, their sizes, and how many 5-frame windows the connector runs."""

    repeats: int = 10
    target_clips: int = 5
    neutral_clips: int = 10
    windows: int = 4
    seed: int = 0


@dataclass
class FoldResult:
    """Accuracies (0–1) on one held-out speaker."""

    speaker: str
    accuracy: float
    first_window: float
    baseline: float
    per_emotion: dict[str, float] = field(default_factory=dict)
    reach: dict[str, float] = field(default_factory=dict)  # predicted offset along the prototype, 1 = all of it
    neutral_response: float = 0.0  # RMS offset for neutral → neutral vectors, relative to the prototypes' RMS

    def line(self) -> str:
        reach = ", ".join(f"{e} {r:.2f}" for e, r in self.reach.items())
        return (
            f"  held out {self.speaker}: connector {100 * self.accuracy:.1f}% "
            f"(first window {100 * self.first_window:.1f}%), nearest-centroid {100 * self.baseline:.1f}%; "
            f"reach {reach}; neutral→neutral {self.neutral_response:.2f}"
        )


@dataclass
class LosoResult:
    """All folds; ``mean``/``baseline_mean`` average the per-speaker accuracies."""

    folds: list[FoldResult]
    chance: float

    @property
    def mean(self) -> float:
        return float(np.mean([f.accuracy for f in self.folds]))

    @property
    def baseline_mean(self) -> float:
        return float(np.mean([f.baseline for f in self.folds]))

    def summary(self) -> dict:
        """JSON-ready numbers for the checkpoint metadata."""
        return {
            "protocol": (
                "leave-one-speaker-out; neutral->emotion speech vectors from the held-out speaker's own pools; "
                "nearest AU prototype of the mean predicted offset over "
                "autoregressive windows on a still neutral face"
            ),
            "accuracy": {f.speaker: round(f.accuracy, 4) for f in self.folds},
            "accuracy_mean": round(self.mean, 4),
            "first_window_accuracy": {f.speaker: round(f.first_window, 4) for f in self.folds},
            "nearest_centroid_baseline": {f.speaker: round(f.baseline, 4) for f in self.folds},
            "nearest_centroid_baseline_mean": round(self.baseline_mean, 4),
            "per_emotion": {f.speaker: {k: round(v, 4) for k, v in f.per_emotion.items()} for f in self.folds},
            "reach": {f.speaker: {k: round(v, 3) for k, v in f.reach.items()} for f in self.folds},
            "neutral_response": {f.speaker: round(f.neutral_response, 3) for f in self.folds},
            "output_gain": self.output_gain(),
            "audible": self.audible(),
            "chance": round(self.chance, 4),
        }

    def output_gain(self, exclude: str | None = None) -> float:
        """1 / the mean held-out reach over the emotions the encoder can hear (reach ≥ ``AUDIBLE_REACH``).

        A connector answers a speaker it never heard a little short of the prototype (it hedges between nearby
        emotions); the engine multiplies its offsets by this so strength 1 is the real expression's size.
        ``exclude`` leaves one speaker's fold out (for that speaker's own held-out connector).
        """
        reaches = [r for f in self.folds if f.speaker != exclude for r in f.reach.values() if r >= AUDIBLE_REACH]
        return round(float(np.clip(1.0 / np.mean(reaches), 1.0, MAX_GAIN)), 3) if reaches else 1.0

    def audible(self, exclude: str | None = None) -> list[str]:
        """The emotions whose mean held-out reach is at least ``AUDIBLE_REACH``: the ones the encoder hears.

        The engine moves only their units; what a connector draws on an unheard emotion's own unit (contempt's
        one-sided R12: −0.2 to −0.4 on any unseen speaker's edit) is noise, a lopsided mouth.
        """
        folds = [f for f in self.folds if f.speaker != exclude]
        emotions = sorted({e for f in folds for e in f.reach})
        return [e for e in emotions if np.mean([f.reach[e] for f in folds if e in f.reach]) >= AUDIBLE_REACH]

    def lines(self) -> list[str]:
        out = [f.line() for f in self.folds]
        out.append(
            f"  mean: connector {100 * self.mean:.1f}%, nearest-centroid {100 * self.baseline_mean:.1f}%, "
            f"chance {100 * self.chance:.1f}%"
        )
        return out


def heldout_vectors(
    pools: SpeechPools, emotions: list[str], config: EvalConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Raw speech vectors ``[N, Ds]`` (neutral → emotion, random subsets) and their emotion indices ``[N]``."""
    neutral = pools.emotion_pool(NEUTRAL)
    vectors, labels = [], []
    for index, emotion in enumerate(emotions):
        target = pools.emotion_pool(emotion)
        for _ in range(config.repeats):
            t = target[rng.choice(len(target), size=min(len(target), config.target_clips), replace=False)]
            n = neutral[rng.choice(len(neutral), size=min(len(neutral), config.neutral_clips), replace=False)]
            vectors.append(t.mean(axis=0) - n.mean(axis=0))
            labels.append(index)
    return np.stack(vectors).astype(np.float32), np.asarray(labels)


def neutral_vectors(pools: SpeechPools, config: EvalConfig, rng: np.random.Generator) -> np.ndarray:
    """``[repeats, Ds]`` differences of two disjoint random subsets of the neutral pool: speech with no emotion."""
    neutral = pools.emotion_pool(NEUTRAL)
    out = []
    for _ in range(config.repeats):
        order = rng.permutation(len(neutral))
        k = min(config.target_clips, len(neutral) // 2)
        out.append(neutral[order[:k]].mean(axis=0) - neutral[order[k : k + config.neutral_clips]].mean(axis=0))
    return np.stack(out).astype(np.float32)


def nearest_prototype(predicted: np.ndarray, prototypes: dict[str, np.ndarray], emotions: list[str]) -> np.ndarray:
    """Index (into ``emotions``) of the prototype difference P[e] − P[neutral] nearest to each prediction."""
    base = np.asarray(prototypes[NEUTRAL])
    candidates = np.stack([np.asarray(prototypes[e]) - base for e in emotions])
    return np.linalg.norm(predicted[:, None, :] - candidates[None], axis=-1).argmin(axis=1)


def nearest_centroid(
    train_pools: SpeechPools, vectors: np.ndarray, emotions: list[str], scale: np.ndarray
) -> np.ndarray:
    """Cosine nearest centroid in (normalised) speech space: the training speakers' emotion − neutral means."""
    neutral = train_pools.emotion_pool(NEUTRAL).mean(axis=0)
    centroids = np.stack([train_pools.emotion_pool(e).mean(axis=0) - neutral for e in emotions]) / scale
    x = vectors / scale
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    c = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    return (x @ c.T).argmax(axis=1)


def evaluate_fold(
    result: TrainResult,
    train_pools: SpeechPools,
    heldout: SpeechPools,
    prototypes: dict[str, np.ndarray],
    config: EvalConfig,
    speaker: str,
) -> FoldResult:
    """Score a trained connector and the nearest-centroid baseline on one held-out speaker."""
    emotions = [e for e in result.emotions if e != NEUTRAL and e in heldout.emotions]
    if NEUTRAL not in heldout.emotions or not emotions:
        raise InputError(f"Speaker {speaker} needs neutral clips and clips of another emotion to be evaluated.")
    vectors, labels = heldout_vectors(heldout, emotions, config, np.random.default_rng(config.seed))
    window = result.connector.config.window
    still = np.tile(np.asarray(prototypes[NEUTRAL], dtype=np.float32), (config.windows * window, 1))
    noise = neutral_vectors(heldout, config, np.random.default_rng(config.seed + 1))
    inputs = np.concatenate([vectors, noise]) / result.speech_scale
    with one_thread():
        everything = np.stack(infer_offsets(result.connector, inputs, [still] * len(inputs)))
    offsets, noise_offsets = everything[: len(vectors)], everything[len(vectors) :]
    directions = np.stack([np.asarray(prototypes[e]) - np.asarray(prototypes[NEUTRAL]) for e in emotions])
    along = (offsets.mean(axis=1) * directions[labels]).sum(1) / (directions[labels] ** 2).sum(1)
    reach = {e: float(np.mean(along[labels == i])) for i, e in enumerate(emotions)}
    rms = float(np.sqrt(np.mean(directions**2)))
    predicted = nearest_prototype(offsets.mean(axis=1), prototypes, emotions)
    first = nearest_prototype(offsets[:, :window].mean(axis=1), prototypes, emotions)
    baseline = nearest_centroid(train_pools, vectors, emotions, result.speech_scale)
    per_emotion = {e: float(np.mean(predicted[labels == i] == i)) for i, e in enumerate(emotions)}
    return FoldResult(
        speaker,
        float(np.mean(predicted == labels)),
        float(np.mean(first == labels)),
        float(np.mean(baseline == labels)),
        per_emotion,
        reach,
        float(np.sqrt(np.mean(noise_offsets**2)) / rms),
    )


def leave_one_speaker_out(
    pools: SpeechPools,
    prototypes: dict[str, np.ndarray],
    config: TrainConfig,
    eval_config: EvalConfig | None = None,
    state_dir: str | Path | None = None,
    resume: bool = False,
    log: Callable[[str], None] = print,
    on_fold: Callable[[str, TrainResult], None] | None = None,
) -> LosoResult:
    """Train once per held-out speaker on the others and score it; each fold has its own resumable state.

    ``on_fold(speaker, result)`` receives each fold's connector (the CLI saves them, so a held-out speaker's
    edits can be rendered and measured with a connector that never heard that speaker).
    """
    speakers = pools.speakers
    if len(speakers) < 2:
        raise InputError(f"Leave-one-speaker-out needs at least two speakers; the data has {len(speakers)}.")
    eval_cfg = eval_config or EvalConfig()
    folds = []
    for speaker in speakers:
        train_pools = pools.restrict(s for s in speakers if s != speaker)
        state = Path(state_dir) / f"fold_{speaker}.pt" if state_dir is not None else None
        log(f"fold: hold out {speaker}, train on {', '.join(train_pools.speakers)}")
        result = train(train_pools, prototypes, config, state_path=state, resume=resume, log=log)
        folds.append(evaluate_fold(result, train_pools, pools.restrict([speaker]), prototypes, eval_cfg, speaker))
        if on_fold is not None:
            on_fold(speaker, result)
        log(folds[-1].line())
    return LosoResult(folds, 1.0 / len(folds[0].per_emotion))
