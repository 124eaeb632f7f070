"""``python -m cmet crop``: write the 256² face crops the official engine sees, so the framing can be checked.

A video gets the box framing (``cmet.face.framing``), frame for frame with its own audio: exactly what the
official engine encodes, and what the release's own scripts expect as a pre-cropped input. A still image gets
the release's template framing for identity images (``cmet.face.align``). Faceless frames come out black.
The face track is the engine's cached one, so a later official edit of the same video does not track it again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmet import media
from cmet.config import cache_dir, worker_count
from cmet.containers import container_for
from cmet.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
BATCH = 32  # frames cropped at once: 32 × 256² × 3 bytes of crops, plus the source frames


def crop_video(video: str | Path, out: str | Path) -> int:
    """Write ``video``'s box-framed 256² crops with its audio to ``out``; returns the number of frames."""
    from cmet.face.align import crop
    from cmet.face.framing import box_transforms
    from cmet.face.landmarks import track_cached

    video, out = Path(video), Path(out)
    info = media.probe(video)
    media.check_output(out, [video])
    container_for(out)  # an unknown output kind fails now, not after tracking
    face = track_cached(video, cache_dir() / "tracks" / f"{media.content_key(video)}.npz", workers=worker_count())
    transforms = box_transforms(face.transforms)
    written = 0
    with media.VideoWriter(out, info.fps, audio_source=video) as writer:
        for batch in media.iter_batches(video, BATCH):
            rows = np.minimum(np.arange(written, written + len(batch)), len(transforms) - 1)
            for frame in crop(batch, transforms[rows]):
                writer.write(frame)
            written += len(batch)
    return written


def crop_image(image: str | Path, out: str | Path) -> None:
    """Write the template-framed 256² crop of the face in ``image`` to ``out`` (PNG or JPEG)."""
    import cv2

    from cmet.face.align import crop, crop_transforms
    from cmet.face.landmarks import track

    image, out = media.require_file(image), Path(out)
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(f"Cannot write {out}: give the crop a .png or .jpg name.")
    media.check_output(out, [image])
    pixels = cv2.imread(str(image), cv2.IMREAD_COLOR)  # applies the EXIF orientation
    if pixels is None:
        raise InputError(f"{image.name} is not an image that can be read (PNG, JPEG, WebP, BMP or TIFF).")
    rgb = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    try:
        face = track(rgb, smooth=False, min_valid_fraction=1.0)
    except InputError:
        raise InputError(f"No face found in {image.name}; use a photo where one face is clearly visible.") from None
    result = crop(rgb[None], crop_transforms(face.transforms))[0]
    if not cv2.imwrite(str(out), cv2.cvtColor(result, cv2.COLOR_RGB2BGR)):
        raise InputError(f"Cannot write {out}; check the folder and the free space.")
