"""Write a trained lite connector as the engine loads it: safetensors + config.json (with meta) + MODEL_CARD.md.

The meta is what the lite engine and a reader need: the speech encoder and the input scale (the engine divides
the raw semantic vector by ``speech_scale`` elementwise), the AU names of the output, what data and settings
produced it and the leave-one-speaker-out accuracy.
"""

from __future__ import annotations

from pathlib import Path

from cmet.train.data import SpeechPools
from cmet.train.evaluate import LosoResult
from cmet.train.trainer import TrainConfig, TrainResult, clip_spread

CARD_FILE = "MODEL_CARD.md"


def checkpoint_meta(
    result: TrainResult,
    config: TrainConfig,
    encoder: str,
    au_names: list[str],
    data: dict,
    loso: LosoResult | None,
    command: str,
    pools: SpeechPools | None = None,
) -> dict:
    """JSON-ready metadata stored next to the weights."""
    return {
        "engine": "lite",
        "encoder": encoder,
        "speech_dim": int(result.connector.config.speech_dim),
        "speech_scale": [float(x) for x in result.speech_scale],
        "speech_noise": round(clip_spread(pools, result.speech_scale), 4) if pools is not None else 0.0,
        "speech_input": (
            "raw speech semantic vector (mean target − mean reference embedding, times strength) divided "
            "elementwise by speech_scale"
        ),
        "normalisation": config.normalisation,
        "visual_space": "AU rig coefficients (cmet.face.au_rig)",
        "au_names": list(au_names),
        "emotions": list(result.emotions),
        "data": data,
        "steps": int(result.step),
        "seed": int(config.seed),
        "train_seconds": round(result.seconds, 1),
        "train_config": config.to_dict(),
        "heldout": loso.summary() if loso is not None else None,
        "command": command,
    }


def model_card(meta: dict) -> str:
    """A short human-readable card generated from the meta (so it can never disagree with it)."""
    data = meta["data"]
    counts = data["clips"]
    speakers = ", ".join(counts)
    per_emotion: dict[str, int] = {}
    for emotions in counts.values():
        for emotion, n in emotions.items():
            per_emotion[emotion] = per_emotion.get(emotion, 0) + n
    clips = ", ".join(f"{e} {n}" for e, n in per_emotion.items())
    cfg = meta["train_config"]
    lines = [
        f"# Lite connector — {meta['encoder']} → AU rig",
        "",
        "Maps a speech semantic vector (mean target − mean reference utterance embedding) to per-frame offsets of "
        f"the lite engine's {len(meta['au_names'])} action-unit coefficients ({', '.join(meta['au_names'])}). "
        "Same network as C-MET's connector in a small configuration "
        f"(d_model {cfg['d_model']}, {cfg['layers']} layers, {cfg['heads']} heads, FFN {cfg['ffn']}).",
        "",
        "## Data",
        f"- Speech: `{data['root']}` ({data['source']}); speakers {speakers}; clips per emotion: {clips}.",
        "- Visual targets: the rig's emotion prototypes (`cmet.face.au_rig.PROTOTYPES`), fitted to real faces "
        "(`cmet/data/real_faces/`); no video was used.",
        "- Training pairs: all ordered emotion pairs, speech vector = mean of a random subset of target clips − "
        "mean of a random subset of source clips (the release's sampler), intensity "
        f"×U{tuple(cfg['sampler']['intensity'])} shared by speech and visual vectors; "
        f"{100 * cfg['sampler'].get('same_emotion_prob', 0):.0f}% of pairs are one emotion against itself "
        "(disjoint subsets, target: no change).",
        "",
        "## Training",
        f"- {meta['steps']} steps, batch {cfg['sampler']['batch_size']}, AdamW lr {cfg['lr']}, seed {meta['seed']}, "
        f"{meta['train_seconds']} s on a shared 2-core CPU (final training; each held-out fold is another such run); "
        f"losses: {cfg['reconstruction']} (forward + flipped), supervised "
        f"contrastive ×{cfg['lambda_cnt']}, directional ×{cfg['lambda_dir']}.",
        f"- Speech input normalisation: {meta['normalisation']} standard deviation of the training embeddings "
        "(`speech_scale` in config.json).",
        "",
        "## Held-out accuracy",
    ]
    heldout = meta["heldout"]
    if heldout is None:
        lines.append("Not evaluated (trained with --no-eval).")
    else:
        per = ", ".join(f"{s} {100 * a:.1f}%" for s, a in heldout["accuracy"].items())
        base = ", ".join(f"{s} {100 * a:.1f}%" for s, a in heldout["nearest_centroid_baseline"].items())
        lines += [
            f"Protocol: {heldout['protocol']}. {len(heldout['per_emotion'][next(iter(heldout['per_emotion']))])} "
            f"emotions, chance {100 * heldout['chance']:.1f}%.",
            f"- connector: {per}; mean **{100 * heldout['accuracy_mean']:.1f}%**",
            f"- nearest-centroid in speech space (same subsets): {base}; mean "
            f"{100 * heldout['nearest_centroid_baseline_mean']:.1f}%",
        ]
        if "reach" in heldout:
            reach = "; ".join(
                f"{s}: " + ", ".join(f"{e} {r:.2f}" for e, r in emotions.items())
                for s, emotions in heldout["reach"].items()
            )
            noise = ", ".join(f"{s} {r:.2f}" for s, r in heldout["neutral_response"].items())
            lines += [
                f"- reach at strength 1 (predicted offset along the emotion's prototype; 1 = all of it): {reach}",
                f"- response to neutral → neutral speech (RMS, relative to the prototypes' RMS, before the engine's "
                f"check of the speech vector against clip spread, which removes it): {noise}",
                f"- output gain (1 / mean held-out reach of the emotions the encoder hears; the engine applies it): "
                f"{heldout.get('output_gain', 1.0)}",
                f"- emotions it hears (mean held-out reach ≥ 0.3; an edit moves only their action units): "
                f"{', '.join(heldout.get('audible', []))}",
            ]
    lines += ["", "## Reproduce", "```", meta["command"], "```", ""]
    return "\n".join(lines)


def save_lite(result: TrainResult, out: str | Path, meta: dict) -> Path:
    """Save weights, config.json and MODEL_CARD.md into ``out``."""
    folder = result.connector.save(out, meta)
    (folder / CARD_FILE).write_text(model_card(meta))
    return folder
