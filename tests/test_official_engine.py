"""The official engine end to end on CPU with the fixtures' deterministic weights, and its failure paths.

The weights follow the manifest rule of ../shared/fixtures/official (skipped when absent), written in the
release wrapping into a temporary ``CMET_CHECKPOINTS`` tree; speech comes as ``.npy`` embeddings, so no
emotion2vec+ model is needed. EDTalk costs seconds per frame on CPU, so the clip is short.
"""

from __future__ import annotations

import dataclasses
import io
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from http.server import ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage.data import astronaut

from cmet import hub, media
from cmet.errors import InputError, MissingWeightsError
from tests.fake_hub import FakeHub
from tests.media_factory import make_video
from tests.official_weights import write_release_files

REPO = Path(__file__).resolve().parents[1]
SIZE = 192
FACE_FRAMES, BLANK_FRAMES = 3, 2


def _isolate(patch: pytest.MonkeyPatch, checkpoints: Path, scratch: Path) -> None:
    """Weights only from ``checkpoints``: an empty hub cache, a private embedding/track cache."""
    import huggingface_hub.constants

    patch.setenv("CMET_CHECKPOINTS", str(checkpoints))
    patch.setenv("CMET_CACHE", str(scratch / "cache"))
    patch.setenv("HF_HUB_CACHE", str(scratch / "hf"))
    patch.setenv("MODELSCOPE_CACHE", str(scratch / "ms"))
    patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(scratch / "hf"))


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """Weights on disk and the environment pointing at them, for the whole module."""
    root = tmp_path_factory.mktemp("checkpoints")
    write_release_files(root)
    with pytest.MonkeyPatch.context() as patch:
        _isolate(patch, root, tmp_path_factory.mktemp("scratch"))
        yield root


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A few frames of a slowly moving astronaut, then frames without a face; a tone as audio."""
    face = cv2.resize(astronaut(), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    shifts = [np.float32([[1, 0, 0.8 * i], [0, 1, 0.4 * i]]) for i in range(FACE_FRAMES)]
    frames = [cv2.warpAffine(face, m, (SIZE, SIZE), borderMode=cv2.BORDER_REPLICATE) for m in shifts]
    ramp = np.linspace(60, 200, SIZE).astype(np.uint8)
    blank = np.repeat(np.tile(ramp[:, None, None], (1, SIZE, 1)), 3, axis=2)
    frames += [blank] * BLANK_FRAMES
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=frames, fps=25)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> tuple[list[Path], list[Path]]:
    """Three reference and three target emotion2vec+-sized embeddings (.npy, as the release's inputs)."""
    folder = tmp_path_factory.mktemp("speech")
    rng = np.random.default_rng(7)
    pools = []
    for name, shift in (("ref", 0.0), ("tgt", 0.05)):
        paths = []
        for i in range(3):
            path = folder / f"{name}{i}.npy"
            np.save(path, (rng.standard_normal(1024) * 0.05 + shift).astype(np.float32))
            paths.append(path)
        pools.append(paths)
    return pools[0], pools[1]


@pytest.fixture(scope="module")
def edited(official, clip, speech, tmp_path_factory):
    from cmet.pipeline import EmotionEditor

    editor = EmotionEditor.load(engine="official", device="cpu")
    out = tmp_path_factory.mktemp("out") / "edited.mp4"
    with pytest.warns(UserWarning, match="No face found"):
        result = editor.edit(clip, speech[0], speech[1], strength=1.0, out=out)
    return editor, result


def _frames(path: Path) -> np.ndarray:
    return np.stack(list(media.iter_frames(path))).astype(np.float64)


@pytest.mark.slow  # EDTalk encodes and renders a few frames on CPU
def test_edit_keeps_frames_and_audio(edited, clip):
    _, result = edited
    source, output = media.probe(clip), media.probe(result.path)
    assert result.engine == "official"
    assert result.frames == source.frames == output.frames == FACE_FRAMES + BLANK_FRAMES
    assert output.has_audio and output.fps == pytest.approx(source.fps)
    assert {"track", "encode", "render"} <= set(result.timings)


@pytest.mark.slow  # EDTalk encodes and renders a few frames on CPU
def test_face_is_pasted_back_in_place(edited, clip):
    """Pixels change inside each frame's face mask and nowhere else; faceless frames are untouched."""
    from cmet.face.align import hull_masks

    editor, result = edited
    analysis = editor.engine.analyse(clip, media.probe(clip))  # cached: no second encode
    before, after = _frames(clip), _frames(result.path)
    diff = np.abs(after - before).mean(-1)
    masks = hull_masks(analysis.outlines[:FACE_FRAMES])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for t in range(FACE_FRAMES):
        support = cv2.warpAffine(masks[t], analysis.crops[t], (SIZE, SIZE), flags=flags)
        near = cv2.dilate((support > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert diff[t][support > 0.99].mean() > 8.0, "the face was not re-rendered"
        assert diff[t][~near].mean() < 5.0, "pixels outside the face mask changed"  # beyond re-encoding noise
        assert (diff[t] > 30)[~near].mean() < 0.002
    for t in range(FACE_FRAMES, FACE_FRAMES + BLANK_FRAMES):
        assert diff[t].mean() < 2.0


@pytest.mark.slow  # EDTalk encodes and renders a few frames on CPU
def test_rendered_face_follows_the_offset(edited, clip):
    """Each frame re-renders its own expression plus the offset, twice the offset about twice the change (an
    engine ignoring offsets still re-renders and pastes back, so the paste-back test alone would not see it)."""
    engine = edited[0].engine
    analysis = engine.analyse(clip, media.probe(clip))
    frame, index = _frames(clip)[:1].astype(np.uint8), np.array([0])
    step = np.zeros((len(analysis.exp), analysis.exp.shape[1]), np.float32)
    step[:] = np.where(np.arange(analysis.exp.shape[1]) % 2, 0.5, -0.5)
    unedited, once, twice = (engine.render(frame, index, analysis, k * step)[0].astype(np.float64) for k in (0, 1, 2))
    moved = [np.abs(once - unedited).mean(), np.abs(twice - unedited).mean()]
    assert moved[0] > 0.05 and 1.5 * moved[0] < moved[1] < 2.5 * moved[0], moved  # the face is 1/4 of the frame


@pytest.mark.slow  # EDTalk encodes and renders a few frames on CPU
def test_preview_offsets_match_the_full_edit(edited, clip, speech):
    """Offsets for a prefix (the preview) equal the full run's, at another frame rate too."""
    editor, _ = edited
    engine = editor.engine
    vector = engine.speech_vector(speech[0], speech[1], 1.0)
    analysis = engine.analyse(clip, media.probe(clip))
    rng = np.random.default_rng(3)
    frames = 13
    info = dataclasses.replace(analysis.info, fps=30.0, frames=frames, duration=frames / 30.0)
    longer = dataclasses.replace(analysis, info=info, exp=rng.standard_normal((frames, 10)).astype(np.float32))
    full = engine.offsets(longer, vector)
    assert full.shape == (frames, 10) and np.isfinite(full).all()
    for upto in (1, 8):
        np.testing.assert_allclose(engine.offsets(longer, vector, upto=upto)[:upto], full[:upto], atol=1e-5)


@pytest.mark.slow  # EDTalk encodes and renders a few frames on CPU
def test_strength_signs_the_speech_vector_and_scales_the_offset(edited, speech, clip):
    engine = edited[0].engine
    analysis = engine.analyse(clip, media.probe(clip))
    one = engine.speech_vector(speech[0], speech[1], 1.0)
    expected = np.mean([np.load(p) for p in speech[1]], 0) - np.mean([np.load(p) for p in speech[0]], 0)
    np.testing.assert_allclose(one.vector, expected, atol=1e-6)
    assert one.gain == 1.0
    half_back = engine.speech_vector(speech[0], speech[1], -0.5)
    np.testing.assert_allclose(half_back.vector, -one.vector, atol=1e-6)
    assert half_back.gain == 0.5
    np.testing.assert_allclose(
        engine.offsets(analysis, half_back), 0.5 * engine.offsets(analysis, replace(one, vector=-one.vector)), atol=1e-6
    )
    assert not engine.offsets(analysis, engine.speech_vector(speech[0], speech[1], 0.0)).any()
    with pytest.raises(InputError):
        engine.speech_vector([], speech[1], 1.0)
    from cmet.presets import get_preset

    happy = engine.speech_vector([], "preset:happy", 2.0)
    np.testing.assert_allclose(happy.vector, get_preset("happy", "emotion2vec_plus_large").vector, rtol=1e-6)
    assert happy.gain == 2.0


@pytest.mark.slow  # EDTalk encodes and renders a few frames on CPU
def test_audio_lips_follow_the_video_soundtrack(edited, clip, tmp_path):
    engine = edited[0].engine  # Audio2Lip loads on first use
    info = media.probe(clip)
    lips = engine.audio_lips(clip, info)
    assert lips.shape == (info.frames, 20) and lips.dtype == np.float32 and np.isfinite(lips).all()
    silent = make_video(tmp_path / "silent.mp4", frames=[np.zeros((32, 32, 3), np.uint8)] * 3, audio=False)
    with pytest.raises(InputError, match="no audio"):
        engine.audio_lips(silent, media.probe(silent))


def test_options_reach_the_engine_through_the_editor(official):
    from cmet.options import OfficialOptions
    from cmet.pipeline import EmotionEditor

    options = OfficialOptions(lips="audio", precision="fp32", network_batch=2)
    engine = EmotionEditor.load(engine="auto", device="cpu", official=options).engine
    assert engine.name == "official" and engine.options == options
    assert engine.audio2lip is not None and engine.batch_size == 2


def test_missing_weights_fail_fast_and_auto_falls_back(tmp_path, monkeypatch):
    from cmet.engines import choose_engine
    from cmet.official_engine import OfficialEngine
    from cmet.pipeline import EmotionEditor

    _isolate(monkeypatch, tmp_path / "empty", tmp_path)
    started = time.perf_counter()
    with pytest.raises(MissingWeightsError, match="python -m cmet download") as caught:
        OfficialEngine(device="cpu")
    assert time.perf_counter() - started < 2.0
    assert "_epoch_2105" in str(caught.value)
    name, reason = choose_engine("auto")
    assert name == "lite" and "missing" in reason
    assert EmotionEditor.load(engine="auto", device="cpu").engine_name == "lite"


def _subprocess_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "CMET_", "MODELSCOPE_"))}
    env.update(
        CMET_CHECKPOINTS=str(tmp_path / "empty"),
        CMET_CACHE=str(tmp_path / "cache"),
        HF_HOME=str(tmp_path / "hf"),
        MODELSCOPE_CACHE=str(tmp_path / "ms"),
        PYTHONPATH=str(REPO),
        **extra,
    )
    return env


# Runs ``python -m cmet …`` in-process and reports how long the command itself took. Interpreter start-up and
# the library stack every command loads (numpy, OpenCV: ``cmet.pipeline``) are left out of the measurement;
# anything the command imports on its way to the error (torch, say) is counted.
TIMED_COMMAND = """
import runpy, sys, time
import cmet.pipeline
sys.argv = ["cmet", *sys.argv[1:]]
started = time.perf_counter()
try:
    runpy.run_module("cmet", run_name="__main__")
except SystemExit as exit:
    print(f"seconds={time.perf_counter() - started:.3f} torch={'torch' in sys.modules}", file=sys.stderr)
    raise
"""


def test_cli_without_weights_says_how_to_get_them(tmp_path):
    video = make_video(tmp_path / "in.mp4")
    command = [sys.executable, "-c", TIMED_COMMAND, "edit", str(video), "--target", "preset:happy"]
    command += ["--engine", "official", "-o", str(tmp_path / "out.mp4")]
    env = _subprocess_env(tmp_path, HF_HUB_OFFLINE="1")
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode != 0
    assert "python -m cmet download" in proc.stderr and "Traceback" not in proc.stderr
    seconds = float(proc.stderr.rsplit("seconds=", 1)[1].split()[0])
    assert seconds < 2.0, proc.stderr
    assert not (tmp_path / "out.mp4").exists()


DOWNLOAD_COMMAND = """
import argparse, sys
from cmet.download import add_parser
parser = argparse.ArgumentParser(prog="python -m cmet")
add_parser(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(sys.argv[1:])
raise SystemExit(args.run(args))
"""


def test_download_without_network_fails_with_a_sentence_per_file(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = _subprocess_env(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{port}")
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", DOWNLOAD_COMMAND, "download", "--into-checkpoints"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.perf_counter() - started < 30  # no retry loop
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 4, proc.stderr
    for name in ("_epoch_2105_checkpoint_step000200000.pth", "EDTalk.pt", "Audio2Lip.pt", "emotion2vec_plus_large"):
        line = next(e for e in errors if name in e)
        assert f"127.0.0.1:{port}" in line and "put it at" in line
    assert "Traceback" not in proc.stderr
    assert not any((tmp_path / "empty").rglob("*.pt"))


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_download_places_and_checks_files(tmp_path):
    """Against a local stand-in for the hub: files land in checkpoints/, a corrupt one is caught by name."""
    FakeHub.files = {
        ("coldhyuk/C-MET", hub.CMET_CHECKPOINT): _saved({"state_dict": {"w": torch.zeros(3)}}),
        ("coldhyuk/C-MET", hub.EDTALK): b"<html>not a checkpoint</html>",
        ("coldhyuk/C-MET", hub.AUDIO2LIP): _saved({"audio2lip": {}}),
        ("emotion2vec/emotion2vec_plus_large", "model.pt"): _saved({"model": {}}),
        ("emotion2vec/emotion2vec_plus_large", "config.yaml"): b"model: Emotion2vec\n",
        ("emotion2vec/emotion2vec_plus_large", "emotion2vec+radar.png"): b"png",
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = _subprocess_env(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}")
        command = [sys.executable, "-c", DOWNLOAD_COMMAND, "download", "--into-checkpoints"]
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    root = tmp_path / "empty"
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "EDTalk.pt is not a PyTorch checkpoint" in errors[0], proc.stderr
    for placed in (hub.CMET_CHECKPOINT, hub.AUDIO2LIP, "emotion2vec_plus_large/model.pt"):
        assert (root / placed).is_file()
    assert str(root / hub.CMET_CHECKPOINT) in proc.stdout and str(root / "emotion2vec_plus_large") in proc.stdout
    assert (root / "emotion2vec_plus_large" / "config.yaml").is_file()
    assert not (root / "emotion2vec_plus_large" / "emotion2vec+radar.png").exists()
