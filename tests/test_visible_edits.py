"""Edits people can see: measured on the rendered output against real faces, nothing where there is no emotion,
no folds at any strength, and ``cmet eval`` reporting it all."""

from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pytest

from cmet import media
from cmet.assets import FIRST_EXAMPLE
from cmet.errors import CmetWarning
from cmet.evaluation import EvalOptions, evaluate
from cmet.face.landmarks import track
from cmet.face.measures import expression_measures
from cmet.face.warp import MIN_JACOBIAN, Warper
from cmet.pipeline import EmotionEditor
from cmet.semantic import SNR_FULL, SNR_NONE, emotion_weight
from tests.conftest import REPO

EXAMPLES = REPO / "assets" / "examples"
ASTRONAUT = EXAMPLES / "astronaut_talking.mp4"


@pytest.fixture(scope="module")
def editor() -> EmotionEditor:
    return EmotionEditor.load(engine="lite", device="cpu")


def test_emotion_weight_tells_an_emotion_from_clip_spread():
    rng = np.random.default_rng(0)
    direction = rng.standard_normal(64)
    direction /= np.linalg.norm(direction)
    noise, n = 2.0, 5
    expected = noise * np.sqrt(2 / n)
    assert emotion_weight(np.zeros(64), noise, n, n) == 0.0
    assert emotion_weight(direction * expected * SNR_NONE * 0.99, noise, n, n) == 0.0
    assert emotion_weight(direction * expected * SNR_FULL * 1.01, noise, n, n) == 1.0
    middle = emotion_weight(direction * expected * 0.5 * (SNR_NONE + SNR_FULL), noise, n, n)
    assert 0.3 < middle < 0.7
    assert emotion_weight(direction * 1e-3, noise, 0, 0) == 1.0  # no clip counts: trusted as given
    # more clips make the same difference surer
    assert emotion_weight(direction * expected * 1.8, noise, n, n) < emotion_weight(
        direction * expected * 1.8, noise, 4 * n, 4 * n
    )


def test_neutral_preset_changes_nothing(editor, tmp_path):
    out = editor.edit(ASTRONAUT, None, "preset:neutral", 1.0, tmp_path / "neutral.mp4")
    unedited = editor.edit(ASTRONAUT, None, "preset:happy", 0.0, tmp_path / "zero.mp4")
    a = np.stack(list(media.iter_frames(out.path)))
    b = np.stack(list(media.iter_frames(unedited.path)))
    assert np.array_equal(a, b)


def test_neutral_against_neutral_speech_is_no_edit(editor, samples_dir):
    """More neutral clips of the same speaker as the target (drawn at random from the speaker's takes): the pools
    differ only by clip spread, so nothing is edited and a warning says why."""
    neutral = sorted((samples_dir / "emotion2vec_plus_large" / "mead" / "neutral").glob("W009_*.npy"))
    engine = editor.engine
    info = media.probe(ASTRONAUT)
    analysis = engine.analyse(ASTRONAUT, info)
    rng = np.random.default_rng(7)
    for size in (5, 5, 5, 10, 10):
        order = rng.permutation(len(neutral))
        reference, target = [neutral[i] for i in order[:size]], [neutral[i] for i in order[size : 2 * size]]
        speech = engine.speech_vector(reference, target, 1.0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            offsets = engine.offsets(analysis, speech)
        assert np.abs(engine.rig.decode(offsets)).max() < 0.01  # no landmark moves by 1% of the eye distance
        assert any(issubclass(w.category, CmetWarning) and "the edit is" in str(w.message) for w in caught)
    happy = sorted((samples_dir / "emotion2vec_plus_large" / "mead" / "happy").glob("W009_*.npy"))
    speech = engine.speech_vector(neutral[:5], happy, 1.0)
    assert np.abs(engine.offsets(analysis, speech)).max() > 0.3


def test_edits_move_only_the_units_of_emotions_the_connector_hears(editor):
    """Every preset's offsets leave the jaw (the speech's) and contempt's one-sided R12 (emotion2vec+ does not hear
    contempt: held-out reach about 0) exactly still; an unseen speaker's noise there made every smile lopsided."""
    engine = editor.engine
    info = media.probe(ASTRONAUT)
    analysis = engine.analyse(ASTRONAUT, info)
    frozen = [engine.rig.names.index(n) for n in ("R12", "AU26")]
    for emotion in ("happy", "sad", "surprised", "angry", "disgusted", "fear", "sarcastic"):
        offsets = engine.offsets(analysis, engine.speech_vector([], f"preset:{emotion}", 2.0))
        assert not offsets[:, frozen].any(), emotion
        assert np.abs(offsets).max() > 0.1, emotion


def test_a_connector_that_hears_no_emotion_leaves_the_face_and_says_so(editor, monkeypatch):
    """A connector whose held-out report lists no heard emotion (a user's, trained on too few speakers) gives zero
    offsets and a warning, not its noise on every unit."""
    engine = editor.engine
    connector, meta = engine.connector("emotion2vec_plus_large")
    monkeypatch.setattr(engine, "connector", lambda encoder: (connector, {**meta, "audible": []}))
    analysis = engine.analyse(ASTRONAUT, media.probe(ASTRONAUT))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        offsets = engine.offsets(analysis, engine.speech_vector([], "preset:happy", 1.0))
    assert not offsets.any()
    assert any(issubclass(w.category, CmetWarning) and "hears no emotion" in str(w.message) for w in caught)


def test_warp_never_folds_even_at_absurd_strength():
    """Landmarks pushed far past each other: the dense map keeps a positive Jacobian everywhere."""
    size = 160
    rng = np.random.default_rng(3)
    src = rng.uniform(40, 120, size=(30, 2))
    dst = src + rng.normal(0, 25, size=src.shape)
    mapping = Warper().source_map(src, dst, (size, size))[0]
    dx = np.diff(mapping, axis=1)[:-1]
    dy = np.diff(mapping, axis=0)[:, :-1]
    det = dx[..., 0] * dy[..., 1] - dx[..., 1] * dy[..., 0]
    assert det.min() > 0.5 * MIN_JACOBIAN


@pytest.mark.slow
def test_eval_measures_a_visible_happy_edit_on_the_example(tmp_path):
    """The whole chain as ``cmet eval`` runs it (its own near-lossless renders): render, re-track the output, compare
    with real faces and with an independent classifier (when fer's weights are installed). On the neutral first
    example, not the astronaut: she already smiles, so her corners have little room left, and her open, toothy mouth
    moves about a pixel while she talks, so its lip correlation is FaceMesh's noise (0.54–0.85 for edits that look
    the same)."""
    options = EvalOptions(emotions=("happy",), strengths=(1.0, 2.0), classified_frames=8)
    results = evaluate([EXAMPLES / FIRST_EXAMPLE], tmp_path, options, log=lambda line: None)
    one, two = results
    assert one.key["mouth_width"] >= 0.8 and one.key["corner_lift"] >= 0.8
    assert one.measures["mouth_width"] > 0 and one.measures["corner_lift"] > 0
    # strength 2 adds clearly more (the mouth saturates first: FaceMesh reads 1.3-1.5x on these faces)
    assert two.measures["mouth_width"] > 1.25 * one.measures["mouth_width"]
    # the lips still follow the speech (a synthetic clip's mouth opens less than a real speaker's, so tracking noise
    # weighs: 0.98 on real speech)
    assert one.lip_correlation >= 0.75
    assert one.background_psnr >= 40
    assert one.jitter_ratio < 1.5
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["emotion"] for r in report] == ["happy", "happy"]
    assert "mouth_width" in (tmp_path / "report.md").read_text()
    picture = cv2.imread(str(tmp_path / "contact_sheet.png"))
    assert picture.shape[1] == 3 * picture.shape[0]  # input, strength 1, strength 2
    if not np.isnan(one.classifier_after):  # a classifier that is not cmet's reads the edit as happier
        assert one.classifier_after > one.classifier_before + 0.03


def test_strength_scales_the_rendered_geometry(editor, tmp_path):
    """0 < 0.5 < 1 < 2 in the lip-corner lift the output shows (re-tracked), and 0 is the input."""
    lifts = []
    base = track(ASTRONAUT)
    start = expression_measures(base.canonical())["corner_lift"]
    for strength in (0.0, 0.5, 1.0, 2.0):
        out = editor.edit(ASTRONAUT, None, "preset:happy", strength, tmp_path / f"s{strength}.mp4")
        lift = expression_measures(track(out.path).canonical())["corner_lift"]
        lifts.append(float(np.nanmean(lift - start)))
    assert abs(lifts[0]) < 0.003
    assert lifts[0] < lifts[1] < lifts[2] < lifts[3]
