"""Lite connector training: data indexing, loss going down, exact resume, torchrun DDP, the shipped weights."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cmet.connector import Connector, infer_offsets
from cmet.errors import InputError
from cmet.face.au_rig import AU_NAMES, PROTOTYPES
from cmet.lite_engine import heard_units
from cmet.semantic import load_presets
from cmet.speech import get_encoder
from cmet.train.cli import main
from cmet.train.data import MEAD_EMOTIONS, NEUTRAL, index_clips, load_pools
from cmet.train.evaluate import EvalConfig, FoldResult, LosoResult, evaluate_fold, nearest_prototype
from cmet.train.presets import build_presets
from cmet.train.sampler import SamplerConfig
from cmet.train.trainer import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
LITE = REPO / "cmet" / "data" / "lite"
PRESETS = REPO / "cmet" / "data" / "presets"
DIM = 1024  # emotion2vec+ size, so generated .npy pools are read by the real encoder
TINY = TrainConfig(
    steps=30,
    lr=3e-3,
    warmup=3,
    d_model=32,
    layers=1,
    heads=4,
    ffn=64,
    save_every=10,
    log_every=10,
    normalisation="global",
    sampler=SamplerConfig(batch_size=16, min_clips=2, max_clips=4),
)


def make_pools(root: Path, speakers=("A001", "B002"), clips: int = 4, seed: int = 0) -> Path:
    """Random pools in the data layout: each emotion shifts the embedding along its own direction."""
    rng = np.random.default_rng(seed)
    directions = {e: (0.0 if e == NEUTRAL else 3.0) * rng.standard_normal(DIM) for e in MEAD_EMOTIONS}
    for emotion, direction in directions.items():
        folder = root / emotion
        folder.mkdir(parents=True, exist_ok=True)
        for speaker in speakers:
            voice = rng.standard_normal(DIM)
            for i in range(clips):
                vector = voice + direction + 0.5 * rng.standard_normal(DIM)
                np.save(folder / f"{speaker}_{i:03d}.npy", vector.astype(np.float32))
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_pools(tmp_path_factory.mktemp("pools"))


@pytest.fixture(scope="module")
def pools(data_root):
    return load_pools(index_clips(data_root), get_encoder("emotion2vec"))


def test_index_reads_layout_and_prefers_embeddings(tmp_path):
    (tmp_path / "happy").mkdir()
    np.save(tmp_path / "happy" / "M003_level_3_001.npy", np.zeros(DIM, np.float32))
    (tmp_path / "happy" / "M003_level_3_001.wav").write_bytes(b"not read")
    (tmp_path / "happy" / "notes.txt").write_text("ignored")
    clips = index_clips(tmp_path)
    assert [(c.path.name, c.speaker, c.emotion) for c in clips] == [("M003_level_3_001.npy", "M003", "happy")]
    with pytest.raises(InputError, match="is not a folder"):
        index_clips(tmp_path / "missing")


def test_pools_group_by_speaker_and_emotion(pools):
    assert pools.speakers == ["A001", "B002"]
    assert pools.counts()["A001"] == {e: 4 for e in sorted(MEAD_EMOTIONS)}
    assert pools.emotion_pool("happy").shape == (8, DIM)
    assert pools.restrict(["B002"]).speakers == ["B002"]


@pytest.fixture(scope="module")
def tiny_run(pools):
    return train(pools, PROTOTYPES, TINY, log=lambda m: None)


def test_training_lowers_the_loss(tiny_run):
    assert tiny_run.step == 30 and len(tiny_run.losses) == 30
    assert np.mean(tiny_run.losses[-5:]) < 0.8 * np.mean(tiny_run.losses[:5])


def test_the_engine_moves_only_what_the_connector_hears():
    """An emotion is heard where its mean held-out reach is ≥ 0.3 (leaving a speaker's own fold out for that
    speaker's connector); the engine then moves only the units of heard emotions (not the jaw, not R12)."""
    folds = [
        FoldResult("A", 1.0, 1.0, 1.0, reach={"happy": 0.9, "contempt": 0.1, "sad": 0.2}),
        FoldResult("B", 1.0, 1.0, 1.0, reach={"happy": 1.0, "contempt": -0.1, "sad": 0.5}),
    ]
    loso = LosoResult(folds, chance=1 / 3)
    assert loso.audible() == ["happy", "sad"]
    assert loso.audible(exclude="B") == ["happy"]
    mask = heard_units({"audible": ["happy"], "emotions": ["neutral", "happy", "contempt"]})
    moved = {name for name, m in zip(AU_NAMES, mask) if m}
    assert moved == {n for n, c in zip(AU_NAMES, PROTOTYPES["happy"]) if c} and "R12" not in moved
    assert heard_units({"emotions": ["happy", "contempt"]})[AU_NAMES.index("R12")] == 1  # no report: all it learnt
    assert not heard_units({"audible": [], "emotions": ["neutral", "happy"]}).any()  # hears none: moves none
    assert not heard_units({"emotions": ["neutral"]}).any()


class Interrupted(Exception):
    pass


def test_resume_continues_from_the_saved_step(pools, tiny_run, tmp_path):
    """Interrupted at step 20 and resumed, a run ends bit-identical to the uninterrupted one (same seed)."""
    state = tmp_path / "state.pt"
    full = tiny_run

    def stop_at_20(message: str) -> None:
        if message.startswith("step 20/"):
            raise Interrupted

    with pytest.raises(Interrupted):
        train(pools, PROTOTYPES, TINY, state_path=state, log=stop_at_20)
    assert torch.load(state, weights_only=True)["step"] == 20
    logs: list[str] = []
    resumed = train(pools, PROTOTYPES, TINY, state_path=state, resume=True, log=logs.append)
    assert logs[0].startswith("resumed") and logs[0].endswith("at step 20")
    assert resumed.step == 30 and resumed.losses == full.losses[20:]
    for a, b in zip(resumed.connector.state_dict().values(), full.connector.state_dict().values()):
        torch.testing.assert_close(a, b)
    with pytest.raises(InputError, match="other training settings"):
        train(pools, PROTOTYPES, replace(TINY, lr=1e-2), state_path=state, resume=True, log=lambda m: None)
    state.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable training state"):
        train(pools, PROTOTYPES, TINY, state_path=state, resume=True, log=lambda m: None)


def test_cli_trains_evaluates_and_writes_checkpoint(data_root, tmp_path, capsys):
    out = tmp_path / "ckpt"
    argv = ["--data", str(data_root), "--steps", "8", "--batch-size", "16", "--out", str(out)]
    assert main([*argv, "--state", str(tmp_path / "state")]) == 0
    printed = capsys.readouterr().out
    assert "held out A001" in printed and "held out B002" in printed and "mean: connector" in printed
    connector, meta = Connector.load(out)
    assert meta["encoder"] == "emotion2vec_plus_large" and meta["steps"] == 8
    assert len(meta["speech_scale"]) == DIM and meta["au_names"][0] == "AU1"
    assert set(meta["heldout"]["accuracy"]) == {"A001", "B002"}
    assert "python -m cmet train --engine lite --speech emotion2vec" in (out / "MODEL_CARD.md").read_text()
    assert connector.config.visual_dim == len(meta["au_names"])


def test_cli_reports_bad_data_folder(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "nowhere"), "--steps", "1"]) == 2
    assert "is not a folder" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_cpu_processes(data_root, tmp_path):
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "cmet.train",
        "--data",
        str(data_root),
        "--steps",
        "5",
        "--batch-size",
        "16",
        "--no-eval",
        "--out",
        str(out),
        "--state",
        str(tmp_path / "state"),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("step 5/5") == 1  # rank 0 logs, rank 1 stays quiet
    state = torch.load(tmp_path / "state" / "final.pt", weights_only=True)
    assert state["step"] == 5 and state["world"] == 2 and len(state["rng"]) == 2
    assert Connector.load(out)[1]["steps"] == 5


def _preset_accuracy(folder: str) -> tuple[int, int]:
    connector, meta = Connector.load(LITE / folder)
    presets = load_presets(PRESETS / folder)
    emotions = [e for e in MEAD_EMOTIONS if e != NEUTRAL]
    scale = np.asarray(meta["speech_scale"], dtype=np.float32)
    vectors = np.stack([presets[e].vector for e in emotions] + [np.zeros_like(scale)]) / scale
    still = np.zeros((20, connector.config.visual_dim), np.float32)
    offsets = np.stack(infer_offsets(connector, vectors, [still] * len(vectors))).mean(axis=1)
    predicted = nearest_prototype(offsets[:-1] - offsets[-1], PROTOTYPES, emotions)
    return int(np.sum(predicted == np.arange(len(emotions)))), len(emotions)


@pytest.mark.parametrize(
    ("folder", "least"),
    # eGeMAPS separates emotions far less (prosody only): 3 of 7 (chance: 1) is what the shipped weights reach.
    [("emotion2vec", 6), ("egemaps", 3)],
)
def test_committed_checkpoint_maps_presets_to_their_emotion(folder, least):
    right, total = _preset_accuracy(folder)
    assert right >= least, f"{right}/{total} presets map to their own AU prototype"


@pytest.mark.parametrize("folder", ["emotion2vec", "egemaps"])
def test_committed_checkpoints_match_the_rig(folder):
    connector, meta = Connector.load(LITE / folder)
    assert meta["au_names"] == list(AU_NAMES)
    assert connector.config.speech_dim == len(meta["speech_scale"]) == get_encoder(meta["encoder"]).dim
    assert sum(f.stat().st_size for f in (LITE / folder).iterdir()) < 5e6


def test_committed_emotion2vec_connector_is_rescored_from_its_weights(samples_dir):
    """Every speaker's own neutral → emotion speech vectors (random clip subsets) through the shipped weights,
    scored afresh rather than read from the numbers the trainer wrote: in-sample, so at least 90% and not below
    what the model card claims held out."""
    connector, meta = Connector.load(LITE / "emotion2vec")
    pools = load_pools(index_clips(samples_dir / "emotion2vec_plus_large" / "mead"), get_encoder("emotion2vec"))
    shipped = SimpleNamespace(
        connector=connector, emotions=meta["emotions"], speech_scale=np.asarray(meta["speech_scale"], np.float32)
    )
    for speaker in pools.speakers:
        fold = evaluate_fold(shipped, pools, pools.restrict([speaker]), PROTOTYPES, EvalConfig(repeats=4), speaker)
        assert fold.accuracy >= max(0.9, meta["heldout"]["accuracy"][speaker] - 0.05), fold.line()
        # most of each prototype at strength 1 (contempt: emotion2vec+ hardly tells it from neutral, see the card)
        assert all(reach >= 0.6 for emotion, reach in fold.reach.items() if emotion != "contempt"), fold.line()


def test_committed_presets_rebuild_from_samples(samples_dir):
    built = {p.name: p for p in build_presets(samples_dir, "emotion2vec_plus_large")}
    shipped = load_presets(PRESETS / "emotion2vec")
    assert set(built) == set(shipped) == {*MEAD_EMOTIONS, "sarcastic", "charismatic"}
    for name, preset in built.items():
        np.testing.assert_allclose(preset.vector, shipped[name].vector, rtol=1e-5, atol=1e-6)
        assert shipped[name].n_reference == 120 and "C-MET release" in shipped[name].source
    assert not shipped[NEUTRAL].vector.any()
