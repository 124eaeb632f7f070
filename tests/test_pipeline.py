"""The lite engine end to end through the public API and the CLI, on the committed example clip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cmet import media
from cmet.config import RuntimeConfig
from cmet.errors import InputError
from cmet.face.landmarks import track
from cmet.face.regions import LIP_CORNERS
from cmet.pipeline import EmotionEditor
from tests.visible import corner_lift

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "assets" / "examples"
CLIP = EXAMPLES / "astronaut_talking.mp4"
REFERENCE = sorted((EXAMPLES / "reference").glob("*.wav"))


@pytest.fixture(scope="module")
def editor() -> EmotionEditor:
    return EmotionEditor.load(engine="lite", device="cpu")


@pytest.fixture(scope="module")
def happy(editor, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("happy") / "happy.mp4"
    return editor.edit(CLIP, REFERENCE, "preset:happy", 1.0, out).path


def _frames(path: Path) -> np.ndarray:
    return np.stack(list(media.iter_frames(path)))


def _corner_height(path: Path) -> np.ndarray:
    """Mean lip-corner height above the eye line, per frame, in inter-ocular units (larger = corners higher)."""
    face = track(path)
    canon = face.canonical()
    return -canon[:, list(LIP_CORNERS), 1].mean(axis=1)


def test_edit_keeps_timeline_and_audio(happy):
    src, out = media.probe(CLIP), media.probe(happy)
    assert abs(out.frames - src.frames) <= 1
    assert out.fps == pytest.approx(src.fps, rel=1e-3)
    assert abs(out.duration - src.duration) <= 1.0 / src.fps + 0.05
    assert out.has_audio
    a, b = media.read_audio(CLIP), media.read_audio(happy)
    n = min(a.size, b.size)
    assert np.corrcoef(a[:n], b[:n])[0, 1] > 0.9


def test_happy_raises_lip_corners(happy):
    gain = _corner_height(happy) - _corner_height(CLIP)
    assert np.median(gain) >= 0.02, f"lip corners rose by only {np.median(gain):.3f} inter-ocular distances"


def test_parallel_render_gives_the_same_frames(editor, tmp_path):
    """Render batches on several threads are written in order: the frames match the one-thread edit."""
    outputs = []
    for workers in (1, 3):
        runner = EmotionEditor(editor.engine, runtime=RuntimeConfig(workers=workers, batch_size=8))
        outputs.append(_frames(runner.edit(CLIP, None, "preset:sad", 1.0, tmp_path / f"{workers}.mp4").path))
    assert np.array_equal(*outputs)


def test_runtime_settings_are_checked():
    with pytest.raises(InputError, match="batch size"):
        RuntimeConfig(batch_size=0)
    with pytest.raises(InputError, match="workers"):
        RuntimeConfig(workers=0)
    with pytest.raises(InputError, match="x264 preset"):
        RuntimeConfig(x264_preset="lightning")
    with pytest.raises(InputError, match="CRF"):
        RuntimeConfig(x264_crf=60)


def test_output_quality_follows_the_crf(editor, tmp_path):
    """`cmet eval` renders near-lossless so x264's noise is not counted as an edit; users get CRF 18."""
    unedited = _frames(CLIP)[:25]
    errors = {}
    for crf in (2, 30):
        runner = EmotionEditor(editor.engine, runtime=RuntimeConfig(x264_crf=crf))
        out = runner.edit(CLIP, None, "preset:neutral", 1.0, tmp_path / f"{crf}.mp4").path
        errors[crf] = np.abs(_frames(out)[:25].astype(int) - unedited).mean()
    assert errors[2] < 0.5 * errors[30]


def test_large_frames_come_in_smaller_batches():
    """Memory in flight is bounded by pixels, not frames: 16 frames of 512², 4 of 720p, 1 of 4K."""
    runtime = RuntimeConfig(batch_size=16)
    assert runtime.frames_per_batch(512, 512) == 16
    assert runtime.frames_per_batch(320, 240) == 16
    assert runtime.frames_per_batch(1280, 720) == 4
    assert runtime.frames_per_batch(3840, 2160) == 1
    assert RuntimeConfig(batch_size=2).frames_per_batch(512, 512) == 2


def test_negative_strength_moves_the_other_way(editor):
    frame = 20
    base = editor.preview(CLIP, REFERENCE, "preset:happy", 0.0, frame=frame)
    plus = editor.preview(CLIP, REFERENCE, "preset:happy", 1.0, frame=frame)
    minus = editor.preview(CLIP, REFERENCE, "preset:happy", -1.0, frame=frame)
    heights = [-track([img]).canonical()[0, list(LIP_CORNERS), 1].mean() for img in (base, plus, minus)]
    assert heights[1] > heights[0] > heights[2]


def test_bad_inputs_are_input_errors(editor, tmp_path):
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(InputError):
        editor.edit(fake, REFERENCE, "preset:happy", 1.0, tmp_path / "o.mp4")
    with pytest.raises(InputError):
        editor.edit(CLIP, REFERENCE, "preset:no-such-emotion", 1.0, tmp_path / "o.mp4")
    with pytest.raises(InputError):
        editor.edit(CLIP, REFERENCE, "preset:happy", 1.0, CLIP)
    assert not (tmp_path / "o.mp4").exists()


def test_cli_edit_and_error(tmp_path):
    out = tmp_path / "cli.mp4"
    cmd = [sys.executable, "-m", "cmet", "edit", str(CLIP), "--reference", *map(str, REFERENCE)]
    done = subprocess.run([*cmd, "--target", "preset:happy", "-o", str(out)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "timings:" in done.stdout and media.probe(out).frames > 0
    bad = subprocess.run([*cmd, "--target", "preset:nope", "-o", str(out)], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "preset" in bad.stderr


def test_sample_video_with_npy_pools(editor, samples_dir, tmp_path):
    video = samples_dir / "video" / "W009_038.mp4"
    e2v = samples_dir / "emotion2vec_plus_large" / "mead"
    ref = sorted((e2v / "neutral").glob("*.npy"))[:10]
    tgt = sorted((e2v / "happy").glob("*.npy"))[:10]
    result = editor.edit(video, ref, tgt, 1.0, tmp_path / "w009_npy.mp4")
    frames = media.probe(video).frames
    assert result.frames == frames
    shown = [frames // 4, frames // 2, 3 * frames // 4]
    before = corner_lift([media.read_frame(video, i) for i in shown])
    after = corner_lift([media.read_frame(result.path, i) for i in shown])
    assert after > before + 0.02  # a real actor's video and her own speech: the happy clips make her smile


def test_sample_video_with_wav_pools_egemaps(editor, samples_dir, tmp_path):
    video = samples_dir / "video" / "W009_038.mp4"
    wavs = samples_dir / "speech" / "mead"
    ref = sorted((wavs / "neutral").glob("W009_*.wav"))[:4]
    tgt = sorted((wavs / "happy").glob("*.wav"))[:4]
    result = editor.edit(video, ref, tgt, 1.0, tmp_path / "w009_wav.mp4")
    assert abs(result.frames - media.probe(video).frames) <= 1
