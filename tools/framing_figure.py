"""The README's framing picture: a frame of our example clip and the crops cut from it.

Panels: the input frame with both crop squares drawn on it | the box framing (``python -m cmet crop``, what the
official engine sees) | the template framing (``python -m cmet crop --image``, identity images) and, when dlib
and its 68-point model are given, the release's ``crop_image2.py`` method run with real dlib landmarks, as a
reference for the template framing.

    PYTHONPATH=. .venv/bin/python tools/framing_figure.py -o assets/framing.jpg \\
        [--dlib-model shape_predictor_68_face_landmarks.dat --template ../shared/data/edtalk/M003_template.npy]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from cmet.face import align, framing
from cmet.face.canonical import apply_similarity, fit_similarity, invert_similarity
from cmet.face.landmarks import track
from cmet.media import iter_frames

EXAMPLE = Path(__file__).resolve().parents[1] / "assets" / "examples" / "astronaut_talking.mp4"
SIZE = align.CROP_SIZE
BOX_COLOUR, TEMPLATE_COLOUR = (60, 200, 90), (240, 150, 40)


def dlib_template_crop(frame: np.ndarray, model: Path, template: Path) -> np.ndarray:
    """The release's identity-image method: dlib's 68 points, a similarity of the first 47 onto the template."""
    import dlib

    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    faces = dlib.get_frontal_face_detector()(gray, 1)
    shape = dlib.shape_predictor(str(model))(gray, faces[0])
    points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    matrix = fit_similarity(points[:47], np.load(template).astype(np.float64)[:47])
    return align.crop(frame[None], matrix[None])[0]


def _square(image: np.ndarray, matrix: np.ndarray, colour: tuple[int, int, int]) -> None:
    """Draw the crop square of an image → crop ``matrix`` onto ``image``."""
    corners = np.array([[0.0, 0.0], [SIZE, 0.0], [SIZE, SIZE], [0.0, SIZE]])
    outline = apply_similarity(invert_similarity(matrix), corners)
    cv2.polylines(image, [np.round(outline * 4).astype(np.int32)], True, colour, 2, cv2.LINE_AA, shift=2)


def _label(panel: np.ndarray, text: str, colour: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """``panel`` with a caption strip under it."""
    strip = np.full((26, panel.shape[1], 3), 24, np.uint8)
    cv2.putText(strip, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return np.concatenate([panel, strip])


def figure(video: Path, dlib_model: Path | None = None, template: Path | None = None) -> np.ndarray:
    face = track(video)
    frame = next(iter_frames(video))
    box = framing.box_transforms(face.transforms)[0]
    still = align.crop_transforms(face.transforms)[0]
    marked = frame.copy()
    _square(marked, box, BOX_COLOUR)
    _square(marked, still, TEMPLATE_COLOUR)
    marked = cv2.resize(marked, (round(frame.shape[1] * SIZE / frame.shape[0]), SIZE), interpolation=cv2.INTER_AREA)
    panels = [
        _label(marked, "input frame"),
        _label(align.crop(frame[None], box[None])[0], "box framing (video, engine)", BOX_COLOUR),
        _label(align.crop(frame[None], still[None])[0], "template framing (--image)", TEMPLATE_COLOUR),
    ]
    if dlib_model is not None and template is not None:
        panels.append(_label(dlib_template_crop(frame, dlib_model, template), "release crop_image2 (dlib)"))
    gap = np.full((SIZE + 26, 4, 3), 255, np.uint8)
    return np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--video", type=Path, default=EXAMPLE)
    parser.add_argument("--dlib-model", type=Path, help="dlib's shape_predictor_68_face_landmarks.dat")
    parser.add_argument("--template", type=Path, help="EDTalk's M003_template.npy")
    args = parser.parse_args()
    image = figure(args.video, args.dlib_model, args.template)
    cv2.imwrite(args.output, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])


if __name__ == "__main__":
    main()
