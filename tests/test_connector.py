"""Connector: official layout and numerics, checkpoint I/O, a toy overfit, and windowed inference."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from cmet.connector import Connector, ConnectorConfig, infer_offsets, load_official, tokenizer_plan
from cmet.errors import InputError, MissingWeightsError
from cmet.losses import total_loss
from tests.official_weights import check_weights, deterministic_state_dict, load_io, load_manifest

SMALL = ConnectorConfig(visual_dim=12, speech_dim=88, d_model=64, layers=2, heads=4, ffn=128)


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny models are far faster on one thread; two threads on a shared 2-core box spin-wait."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def manifest() -> dict:
    return load_manifest("connector_manifest.json")


@pytest.fixture(scope="module")
def official_state(manifest: dict) -> dict:
    state = deterministic_state_dict(manifest, Connector.official())
    check_weights(manifest, state)
    return state


def _small(seed: int = 0, cfg: ConnectorConfig = SMALL) -> Connector:
    torch.manual_seed(seed)
    return Connector(cfg).eval()


def test_official_layout_matches_manifest(manifest: dict) -> None:
    state = Connector.official().state_dict()
    expected = {key: (tuple(shape), dtype) for key, shape, dtype in manifest["state_dict"]}
    assert len(state) == manifest["n_state_dict_entries"] == 243
    assert set(state) == set(expected)
    for key, value in state.items():
        assert (tuple(value.shape), str(value.dtype).removeprefix("torch.")) == expected[key], key
    n_params = sum(p.numel() for p in Connector.official().parameters())
    assert n_params == manifest["n_parameters"] == 27_691_096


def test_official_fixture_equivalence(official_state: dict) -> None:
    io = load_io("connector_io.pt")
    model = Connector.official()
    model.load_state_dict(official_state, strict=True)
    model.eval()
    with torch.no_grad():
        out, (ref_tok, speech_tok, exp_tok) = model(io["in_ref_emb"], io["in_e2v"], io["in_ED_neu"])
    errors = {}
    got_all = {"out_out": out, "out_ref_tokens": ref_tok, "out_e2v_tokens": speech_tok, "out_ED_tokens": exp_tok}
    for name, got in got_all.items():
        want = io[name]
        assert got.shape == want.shape, name
        errors[name] = (got - want).abs().max().item()
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4, msg=name)
    print("connector fixture max |diff|:", errors)


def test_load_official_release_wrapping(official_state: dict, tmp_path) -> None:
    path = tmp_path / "_epoch_2105_checkpoint_step000200000.pth"
    torch.save({"state_dict": official_state, "optimizer": None, "global_step": 0, "global_epoch": 0}, path)
    model = load_official(path)
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, official_state[key]), key


def test_load_official_rejects_mismatched_keys(official_state: dict, tmp_path) -> None:
    broken = {f"module.{k}": v for k, v in list(official_state.items())[:5]}
    path = tmp_path / "wrong.pth"
    torch.save({"state_dict": broken}, path)
    with pytest.raises(InputError, match="does not match"):
        load_official(path)


def test_tokenizer_plan_reaches_length_one_and_keeps_official_stack() -> None:
    official = [(s.cin, s.cout, s.kernel, s.stride, s.pad, s.residual) for s in tokenizer_plan(10, 1024)]
    assert official == [
        (1, 4, 3, 1, 1, False),
        (4, 8, 3, 2, 1, False),
        (8, 8, 3, 1, 1, True),
        (8, 8, 3, 1, 1, True),
        (8, 16, 3, 2, 1, False),
        (16, 16, 3, 1, 1, True),
        (16, 16, 3, 1, 1, True),
        (16, 32, 2, 2, 0, False),
        (32, 64, 1, 1, 0, False),
        (64, 128, 1, 1, 0, False),
        (128, 256, 1, 1, 0, False),
        (256, 512, 1, 1, 0, False),
        (512, 1024, 1, 1, 0, False),
    ]
    for visual_dim in (1, 2, 3, 4, 12, 17, 40):
        for d_model in (32, 128, 256):
            model = Connector(ConnectorConfig(visual_dim=visual_dim, speech_dim=88, d_model=d_model, layers=1))
            out, (ref_tok, speech_tok, exp_tok) = model.eval()(
                torch.randn(2, 5, visual_dim), torch.randn(2, 1, 88), torch.randn(2, 5, visual_dim)
            )
            assert out.shape == (10, visual_dim)
            assert ref_tok.shape == exp_tok.shape == (2, 5, d_model) and speech_tok.shape == (2, 1, d_model)


def test_save_load_roundtrip(tmp_path) -> None:
    model = _small(3)
    meta = {"encoder": "egemaps", "speech_mean": np.arange(3.0), "train": {"clips": 12}}
    model.save(tmp_path / "lite", meta)
    loaded, got_meta = Connector.load(tmp_path / "lite")
    assert loaded.config == model.config
    assert got_meta == {"encoder": "egemaps", "speech_mean": [0.0, 1.0, 2.0], "train": {"clips": 12}}
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    with pytest.raises(MissingWeightsError):
        Connector.load(tmp_path / "absent")


def _toy_batch(gen: torch.Generator, speech: torch.Tensor, visual: torch.Tensor, batch: int):
    labels = torch.randint(0, len(speech), (batch,), generator=gen)
    direction = visual[labels]
    neutral = 0.3 * torch.randn(batch, 5, visual.shape[1], generator=gen)
    use_ref = (torch.rand(batch, 1, 1, generator=gen) > 0.5).float()
    ref = use_ref * direction[:, None, :].expand(-1, 5, -1)
    target = direction[:, None, :].expand(-1, 5, -1).reshape(-1, visual.shape[1])
    return ref, speech[labels][:, None, :], neutral, target, labels


def test_small_connector_overfits_toy_directions() -> None:
    cfg = ConnectorConfig(visual_dim=12, speech_dim=16, d_model=32, layers=1, heads=2, ffn=64, dropout=0.0)
    gen = torch.Generator().manual_seed(0)
    speech = torch.randn(4, 16, generator=gen)
    visual = torch.randn(4, 12, generator=gen)
    model = _small(0, cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    batch = 16

    def step(train: bool) -> float:
        ref, s, neutral, target, labels = _toy_batch(gen, speech, visual, batch)
        pred, (_, tok_s, tok_src) = model(ref, s, neutral)
        pred_f, (_, tok_sf, tok_tgt) = model(-ref, -s, neutral + target.reshape(batch, 5, 12))
        parts = total_loss(pred, pred_f, target, tok_tgt - tok_src, tok_s, tok_sf, labels, reconstruction="mse")
        if train:
            opt.zero_grad()
            parts.total.backward()
            opt.step()
        return parts.reconstruction.item()

    first = np.mean([step(False) for _ in range(3)])
    for _ in range(60):
        step(True)
    model.eval()
    with torch.no_grad():
        last = np.mean([step(False) for _ in range(3)])
    assert last * 10 <= first, (first, last)


def _manual_windows(model: Connector, speech: torch.Tensor, neutral: torch.Tensor, autoregressive: bool):
    """Reference implementation written out window by window."""
    n = neutral.shape[0]
    n_win = -(-n // 5)
    padded = torch.cat([neutral, neutral[-1:].repeat(n_win * 5 - n, 1)])
    ref = torch.zeros(1, 5, neutral.shape[1])
    outs = []
    with torch.no_grad():
        for w in range(n_win):
            out, _ = model(ref, speech.reshape(1, 1, -1), padded[None, w * 5 : w * 5 + 5])
            outs.append(out)
            if autoregressive:
                ref = out.reshape(1, 5, -1)
    return torch.cat(outs)[:n]


@pytest.mark.parametrize("length", [1, 4, 5, 6, 137])
def test_infer_offsets_windows(length: int) -> None:
    model = _small(1)
    gen = torch.Generator().manual_seed(length)
    speech = torch.randn(88, generator=gen)
    neutral = torch.randn(length, 12, generator=gen)
    out = infer_offsets(model, speech, neutral)
    assert out.shape == (length, 12)
    assert torch.equal(out, infer_offsets(model, speech, neutral))
    torch.testing.assert_close(out, _manual_windows(model, speech, neutral, True), atol=1e-6, rtol=1e-5)
    non_ar = _manual_windows(model, speech, neutral, False)
    torch.testing.assert_close(out[:5], non_ar[:5], atol=1e-6, rtol=1e-5)
    if length > 5:
        assert (out[5:] - non_ar[5:]).abs().max() > 1e-4


def test_infer_offsets_batched_equals_one_by_one() -> None:
    model = _small(2)
    gen = torch.Generator().manual_seed(7)
    videos = [torch.randn(n, 12, generator=gen).numpy() for n in (1, 6, 137, 23)]
    speech = torch.randn(4, 88, generator=gen).numpy()
    batched = infer_offsets(model, speech, videos)
    assert isinstance(batched, list) and all(isinstance(b, np.ndarray) for b in batched)
    for video, vec, got in zip(videos, speech, batched):
        alone = infer_offsets(model, vec, video)
        assert got.shape == video.shape
        np.testing.assert_allclose(got, alone, atol=1e-5, rtol=1e-5)
    shared = infer_offsets(model, speech[0], videos)
    np.testing.assert_allclose(shared[2], infer_offsets(model, speech[0], videos[2]), atol=1e-5, rtol=1e-5)


def test_infer_offsets_rejects_bad_input_and_keeps_mode() -> None:
    model = _small(4).train()
    with pytest.raises(InputError):
        infer_offsets(model, np.zeros(88, np.float32), np.zeros((0, 12), np.float32))
    with pytest.raises(InputError):
        infer_offsets(model, np.zeros(88, np.float32), np.zeros((7, 10), np.float32))
    with pytest.raises(InputError):
        infer_offsets(model, np.zeros(64, np.float32), np.zeros((7, 12), np.float32))
    with pytest.raises(InputError):
        infer_offsets(model, np.full(88, np.nan, np.float32), np.zeros((7, 12), np.float32))
    infer_offsets(model, np.zeros(88, np.float32), np.zeros((7, 12), np.float32))
    assert model.training


def test_missing_official_weights_is_fast(tmp_path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", CMET_CHECKPOINTS=str(tmp_path / "empty"), HF_HOME=str(tmp_path / "hf"))
    code = (
        "import time; t=time.perf_counter()\n"
        "from cmet import hub\n"
        "from cmet.errors import MissingWeightsError\n"
        "try:\n    hub.resolve(hub.CMET_CHECKPOINT)\n"
        "except MissingWeightsError as e:\n    print(round(time.perf_counter()-t, 3)); print(e)\n"
    )
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    elapsed, message = proc.stdout.split("\n", 1)
    assert float(elapsed) < 2.0
    assert "_epoch_2105_checkpoint_step000200000.pth" in message
    assert "checkpoints/_epoch_2105" in message and "python -m cmet download" in message
    assert time.perf_counter() - started < 30


def test_hub_resolve_prefers_local_and_flat(tmp_path, monkeypatch) -> None:
    from cmet import hub

    monkeypatch.setenv("CMET_CHECKPOINTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    flat = tmp_path / "EDTalk.pt"
    flat.write_bytes(b"x")
    assert hub.resolve(hub.EDTALK) == flat
    nested = tmp_path / "pretrained_weights" / "EDTalk.pt"
    nested.parent.mkdir()
    nested.write_bytes(b"x")
    assert hub.resolve(hub.EDTALK) == nested
    assert hub.is_available(hub.EDTALK)
    if hub.cached_path(hub.CMET_CHECKPOINT) is None:
        started = time.perf_counter()
        with pytest.raises(MissingWeightsError):
            load_official()
        assert time.perf_counter() - started < 2.0
