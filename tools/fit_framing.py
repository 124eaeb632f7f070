"""Re-derive the box framing's detector stand-in (cmet.face.framing) from the release's pre-cropped sample clip.

``W009_038.mp4`` of the C-MET release was cut by its ``crop_video.py`` (joined detector box over the clip,
+10% per side, square, 256²), so the right constants are those for which our box framing crops that clip to
itself. Prints the fitted constants and, for each release sample, how far our crop is from the identity.

    PYTHONPATH=. .venv/bin/python tools/fit_framing.py [../shared/data/cmet-samples]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.optimize import least_squares

from cmet.face import framing
from cmet.face.canonical import apply_similarity, invert_similarity
from cmet.face.landmarks import track


def _joined(track_transforms: np.ndarray, params: np.ndarray) -> np.ndarray:
    to_image = invert_similarity(track_transforms.astype(np.float64))
    centre = apply_similarity(to_image, params[None, :2])[:, 0]
    half = params[2] * np.hypot(to_image[:, 0, 0], to_image[:, 1, 0])
    return np.concatenate([(centre - half[:, None]).min(0), (centre + half[:, None]).max(0)])


def fit(track_transforms: np.ndarray, size: int = framing.CROP_SIZE) -> np.ndarray:
    """(centre x, centre y, half side) for which the clip's framing is the ``size``² identity."""

    def residual(params: np.ndarray) -> np.ndarray:
        left, top, side = framing.square_box(_joined(track_transforms, params))
        return np.array([left, top, side - size])

    return least_squares(residual, np.array([0.0, 0.3, 1.2])).x


def deviation(matrix: np.ndarray, size: int = framing.CROP_SIZE) -> tuple[float, float, float]:
    """(scale − 1, largest corner shift in px, rotation in degrees) of an image → crop matrix vs the identity."""
    corners = np.array([[0.0, 0.0], [size, 0.0], [0.0, size], [size, size]])
    shift = np.linalg.norm(apply_similarity(matrix, corners) - corners, axis=-1).max()
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    return scale - 1.0, float(shift), float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))


def main(samples: Path) -> None:
    face = track(samples / "video" / "W009_038.mp4")
    cx, cy, half = fit(face.transforms)
    print(f"DETECTOR_CENTRE = ({cx:.4f}, {cy:.4f})\nDETECTOR_HALF = {half:.4f}")
    print("with the stored constants, crop vs identity (scale−1, max corner shift px, rotation°):")
    crops = framing.box_transforms(face.transforms)
    print(f"  W009_038.mp4 (clip box): {deviation(crops[0])}")
    for image in sorted((samples / "identity").glob("*_identity_source.jpg")):
        one = track(np.asarray(Image.open(image).convert("RGB")), smooth=False)
        print(f"  {image.name} (one-frame box): {deviation(framing.box_transforms(one.transforms)[0])}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared/data/cmet-samples"))
