"""Semantic vectors (hand-computed cases, validation, presets) and the sample emotion2vec+ pools."""

from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from cmet.errors import CmetWarning, InputError
from cmet.semantic import Preset, load_presets, semantic_vector

REF3 = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0]])
TGT3 = np.array([[1.0, 1.0], [3.0, 3.0], [2.0, 2.0]])
ENCODER = "emotion2vec_plus_large"


def test_official_is_mean_difference_times_strength() -> None:
    # mean(REF3) = [1, 0], mean(TGT3) = [2, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = semantic_vector(REF3, TGT3)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [1.0, 2.0])
    np.testing.assert_allclose(semantic_vector(REF3, TGT3, strength=2.5), [2.5, 5.0])
    np.testing.assert_allclose(semantic_vector(REF3, TGT3, strength=-1.0), [-1.0, -2.0])


def test_emoknob_unpaired_by_hand() -> None:
    reference = np.zeros((3, 2))
    target = np.array([[3.0, 4.0], [0.0, 2.0], [5.0, 0.0]])
    # unit differences: [.6, .8], [0, 1], [1, 0] -> mean [1.6/3, 1.8/3] -> normalised
    norm = math.sqrt(1.6**2 + 1.8**2)
    np.testing.assert_allclose(semantic_vector(reference, target, "emoknob"), [1.6 / norm, 1.8 / norm], rtol=1e-6)
    np.testing.assert_allclose(
        semantic_vector(reference, target, "emoknob", strength=0.3), [0.3 * 1.6 / norm, 0.3 * 1.8 / norm], rtol=1e-6
    )


def test_emoknob_paired_by_hand() -> None:
    reference = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    target = np.array([[1.0, 2.0], [3.0, 0.0], [0.0, 0.5]])
    # pair differences [0, 2], [3, 0], [0, .5] -> units [0,1], [1,0], [0,1] -> mean [1/3, 2/3] -> [1, 2]/sqrt(5)
    got = semantic_vector(reference, target, "emoknob", paired=True)
    np.testing.assert_allclose(got, [1 / math.sqrt(5), 2 / math.sqrt(5)], rtol=1e-6)


def test_few_clips_warn() -> None:
    with pytest.warns(CmetWarning, match="at least 3"):
        semantic_vector(REF3[:2], TGT3)
    with pytest.warns(CmetWarning, match="target"):
        semantic_vector(REF3, TGT3[0])


@pytest.mark.parametrize(
    ("reference", "target", "kwargs", "match"),
    [
        (np.zeros((0, 2)), TGT3, {}, "empty"),
        (REF3, np.zeros((3, 3)), {}, "2-d but target"),
        (np.array([[np.nan, 0.0]] * 3), TGT3, {}, "NaN"),
        (TGT3, TGT3.copy(), {}, "same embedding"),
        (TGT3, TGT3.copy(), {"method": "emoknob"}, "same embedding"),
        (TGT3, TGT3.copy(), {"method": "emoknob", "paired": True}, "cancel"),
        (REF3, TGT3[:2], {"method": "emoknob", "paired": True}, "as many"),
        (REF3, TGT3, {"method": "median"}, "Unknown"),
        (REF3, TGT3, {"strength": float("inf")}, "finite"),
    ],
)
def test_bad_pools_raise_input_error(reference, target, kwargs, match) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CmetWarning)
        with pytest.raises(InputError, match=match):
            semantic_vector(reference, target, **kwargs)


def test_preset_roundtrip_and_directory(tmp_path: Path) -> None:
    preset = Preset.from_pools("happy", REF3, TGT3, encoder=ENCODER, source="unit test")
    assert (preset.dim, preset.n_reference, preset.n_target, preset.method) == (2, 3, 3, "official")
    path = preset.save(tmp_path / "presets" / "happy.npz")
    loaded = Preset.load(path)
    np.testing.assert_array_equal(loaded.vector, preset.vector)
    assert (loaded.name, loaded.encoder, loaded.dim, loaded.source) == (
        "happy",
        "emotion2vec_plus_large",
        2,
        "unit test",
    )
    Preset("sad", np.array([0.0, -1.0]), "emotion2vec_plus_large", method="emoknob").save(
        tmp_path / "presets" / "s.npz"
    )
    presets = load_presets(tmp_path / "presets")
    assert sorted(presets) == ["happy", "sad"] and presets["sad"].method == "emoknob"
    assert load_presets(tmp_path / "absent") == {}
    (tmp_path / "presets" / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a cmet preset"):
        load_presets(tmp_path / "presets")
    with pytest.raises(InputError, match="dim"):
        Preset("x", np.ones(3), "e", dim=4)


MEAD_EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised")


def _pool(folder: Path) -> np.ndarray:
    files = sorted(folder.glob("*.npy"))
    assert files, folder
    return np.stack([np.load(f) for f in files])


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_sample_emotion_vectors_are_distinct(samples_dir: Path) -> None:
    root = samples_dir / "emotion2vec_plus_large"
    neutral = _pool(root / "mead" / "neutral")
    assert neutral.shape[1] == 1024
    vectors = {emo: semantic_vector(neutral, _pool(root / "mead" / emo)) for emo in MEAD_EMOTIONS}
    with pytest.raises(InputError):
        semantic_vector(neutral, neutral)
    for a, b in itertools.combinations(MEAD_EMOTIONS, 2):
        assert _cos(vectors[a], vectors[b]) < 0.95, (a, b)
    extended = {emo: semantic_vector(neutral, _pool(root / "tts" / emo)) for emo in ("sarcastic", "charismatic")}
    for emo, vec in extended.items():
        assert vec.shape == (1024,) and np.isfinite(vec).all() and np.linalg.norm(vec) > 1.0, emo
        knob = semantic_vector(neutral, _pool(root / "tts" / emo), method="emoknob")
        assert np.linalg.norm(knob) == pytest.approx(1.0, rel=1e-5)
    assert _cos(extended["sarcastic"], extended["charismatic"]) < 0.95
