"""EDTalk generator: strict loading and numerical equality with the official code on the fixtures."""

from __future__ import annotations

import argparse

import pytest
import torch

from cmet.errors import InputError, MissingWeightsError
from cmet.face.edtalk import EDTalk, load_edtalk
from tests.official_weights import check_weights, deterministic_state_dict, load_io, load_manifest

pytestmark = pytest.mark.slow
TOL = {"atol": 1e-4, "rtol": 1e-4}


@pytest.fixture(scope="module")
def manifest() -> dict:
    return load_manifest("edtalk_manifest.json")


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return load_io("edtalk_io.pt")


@pytest.fixture(scope="module")
def deterministic():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


@pytest.fixture(scope="module")
def model_and_weights(manifest, deterministic) -> tuple[EDTalk, dict[str, torch.Tensor]]:
    gen = EDTalk.official()
    state = deterministic_state_dict(manifest, gen)
    check_weights(manifest, state)
    gen.load_state_dict(state, strict=True)
    return gen.eval(), state


@pytest.fixture(scope="module")
def model(model_and_weights) -> EDTalk:
    return model_and_weights[0]


@pytest.fixture(scope="module")
def weights(model_and_weights) -> dict[str, torch.Tensor]:
    return model_and_weights[1]


@pytest.fixture(scope="module")
def source(model, io):
    with torch.no_grad():
        return model.encode_source(io["in_img_src"])


def _assert_image_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    diff = (actual - expected).abs()
    print(f"image max|diff| {diff.max().item():.3e}, mean|diff| {diff.mean().item():.3e}")
    torch.testing.assert_close(actual, expected, atol=2e-3, rtol=1e-3)
    assert diff.mean().item() < 1e-4


def test_state_dict_matches_manifest(model, manifest):
    state = model.state_dict()
    assert [(k, list(v.shape)) for k, v in state.items()] == [(k, s) for k, s, _ in manifest["state_dict"]]
    assert sum(p.numel() for p in model.parameters()) == manifest["n_parameters"] == 64_228_397


def test_encode_matches_compute_alpha_d(model, io):
    with torch.no_grad():
        exp10, pose6, lip20 = model.encode(io["in_img_alpha"])
    torch.testing.assert_close(exp10, io["out_alpha_exp10"], **TOL)
    torch.testing.assert_close(pose6, io["out_alpha_pose6"], **TOL)
    torch.testing.assert_close(lip20, io["out_alpha_lip20"], **TOL)


def test_intermediates_match(model, source, io):
    with torch.no_grad():
        wa_pose = model.appearance(io["in_img_pose"])[0]
        pose6 = model.coefficients(wa_pose)[1]
        alpha36 = torch.cat([io["in_lip20"], pose6, io["in_exp10"]], dim=-1)
        directions, exp_latent = model.motion(alpha36)
    torch.testing.assert_close(source.wa, io["dbg_wa_src"], **TOL)
    torch.testing.assert_close(source.feats[0], io["dbg_feat8"], **TOL)
    assert [f.shape[-1] for f in source.feats] == [8, 16, 32, 64, 128, 256]
    torch.testing.assert_close(wa_pose, io["dbg_wa_pose"], **TOL)
    torch.testing.assert_close(pose6, io["dbg_pose6"], **TOL)
    torch.testing.assert_close(alpha36, io["dbg_alpha36"], **TOL)
    torch.testing.assert_close(model.basis(), io["dbg_Q"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(directions, io["dbg_directions"], **TOL)
    torch.testing.assert_close(exp_latent, io["dbg_exp_latent"], **TOL)


def test_render_matches_official(model, io):
    with torch.no_grad():
        rendered = model.render(io["in_img_src"], io["in_lip20"], io["in_img_pose"], io["in_exp10"])
    assert rendered.shape == (1, 3, 256, 256)
    _assert_image_close(rendered, io["out_img"])


def test_render_batch_matches_official_per_frame(model, source, io):
    """Row 0 is the fixture frame (pose given as coefficients); row 1 is another frame and must differ."""
    with torch.no_grad():
        lip = torch.cat([io["in_lip20"], io["in_lip20"].flip(1)])
        pose = torch.cat([io["dbg_pose6"], -io["dbg_pose6"]])
        exp = torch.cat([io["in_exp10"], 0.5 * io["in_exp10"]])
        batch = model.render_batch(source, lip, pose, exp)
    assert batch.shape == (2, 3, 256, 256)
    _assert_image_close(batch[:1], io["out_img"])
    assert (batch[1] - batch[0]).abs().mean() > 0.05


def test_basis_cache_follows_weight_updates(model):
    with torch.no_grad():
        first = model.basis()
        assert model.basis() is first
        model.direction_exp.weight.mul_(1.0)  # bumps the version counter, same values
        second = model.basis()
    assert second is not first
    torch.testing.assert_close(second, first, atol=0, rtol=0)


def test_release_wrapping_loads_strictly(weights, tmp_path):
    path = tmp_path / "EDTalk.pt"
    torch.save({"gen": weights, "args": argparse.Namespace(size=256)}, path)
    loaded = load_edtalk(path)
    assert not loaded.training
    torch.testing.assert_close(loaded.direction_exp.weight, weights["direction_exp.weight"], atol=0, rtol=0)


def test_wrong_or_missing_checkpoint_is_explained(weights, tmp_path):
    wrong = tmp_path / "wrong.pt"
    torch.save({"gen": {"fc.0.weight": weights["fc.0.weight"]}}, wrong)
    with pytest.raises(InputError, match="297 missing"):
        load_edtalk(wrong)
    with pytest.raises(MissingWeightsError, match="EDTalk.pt"):
        load_edtalk(tmp_path / "EDTalk.pt")


def test_bad_image_shape_is_an_input_error(model):
    with pytest.raises(InputError, match="256"):
        model.encode(torch.zeros(1, 3, 128, 128))
