"""``python -m cmet crop``: the official engine's crops of a video, and the identity crop of a still."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from cmet import media
from cmet.crops import crop_image, crop_video
from cmet.errors import InputError
from cmet.face import align, framing
from cmet.face.landmarks import track
from tests.media_factory import make_video

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "assets" / "examples" / "astronaut_talking.mp4"


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CMET_CACHE", str(tmp_path / "cache"))


def test_video_crops_are_what_the_engine_sees_with_the_audio(tmp_path):
    out = tmp_path / "crops.mp4"
    done = subprocess.run(
        [sys.executable, "-m", "cmet", "crop", str(EXAMPLE), "-o", str(out)], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    source, written = media.probe(EXAMPLE), media.probe(out)
    assert (written.width, written.height) == (256, 256)
    assert written.frames == source.frames and written.has_audio
    frames = np.stack(list(media.iter_frames(EXAMPLE)))
    expected = align.crop(frames[::40], framing.box_transforms(track(EXAMPLE).transforms)[::40])
    got = np.stack(list(media.iter_frames(out)))[::40]
    assert min(_psnr(g, e) for g, e in zip(got, expected)) > 30.0  # only the encoder's loss


def test_a_still_head_gives_still_crops(tmp_path):
    frame = cv2.resize(astronaut(), (256, 256))
    video = make_video(tmp_path / "still.mp4", size=(256, 256), seconds=1.0, frames=[frame] * 25)
    assert crop_video(video, tmp_path / "c.mp4") == 25
    crops = np.stack(list(media.iter_frames(tmp_path / "c.mp4")))
    assert np.abs(crops.astype(int) - crops[:1]).mean() < 1.0  # nothing moves but encoder noise


def test_image_gets_the_template_crop(tmp_path):
    image = tmp_path / "portrait.png"
    cv2.imwrite(str(image), cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))
    crop_image(image, tmp_path / "crop.png")
    written = cv2.cvtColor(cv2.imread(str(tmp_path / "crop.png")), cv2.COLOR_BGR2RGB)
    expected = align.crop(astronaut()[None], align.crop_transforms(track(astronaut(), smooth=False).transforms))[0]
    assert written.shape == (256, 256, 3) and np.array_equal(written, expected)


@pytest.mark.parametrize(
    ("name", "output", "needle"),
    [("notes.txt", "crop.png", "not an image"), ("blank.png", "crop.png", "No face"), ("face.png", "crop.gif", ".png")],
)
def test_bad_image_input_is_one_sentence(tmp_path, name, output, needle):
    path = tmp_path / name
    if name == "notes.txt":
        path.write_text("not a picture")
    else:
        pixels = astronaut() if name == "face.png" else np.full((64, 64, 3), 128, np.uint8)
        cv2.imwrite(str(path), pixels)
    with pytest.raises(InputError, match=needle):
        crop_image(path, tmp_path / output)
    assert not (tmp_path / output).exists()


def test_bad_video_output_is_refused_before_any_work(tmp_path):
    with pytest.raises(InputError, match=r"\.txt"):
        crop_video(EXAMPLE, tmp_path / "crops.txt")
    with pytest.raises(InputError, match="input file"):
        crop_video(EXAMPLE, EXAMPLE)
