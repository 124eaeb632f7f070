"""Running the connector on the 25 fps model timeline and mapping its offsets back to the source frames.

Shared by both engines so a preview shows exactly what the full edit renders: a preview runs only the
windows up to its frame, rounded up to whole windows (the last partial window is padded the same way).
"""

from __future__ import annotations

import numpy as np

from cmet import media
from cmet.config import MODEL_FPS
from cmet.connector import Connector, infer_offsets, one_thread


def source_offsets(
    connector: Connector,
    speech: np.ndarray,
    gain: float,
    neutral: np.ndarray,
    info: media.VideoInfo,
    upto: int | None = None,
) -> np.ndarray:
    """``gain`` × the connector's offsets for ``speech``, one row per source frame (``neutral`` is per source frame).

    With ``upto`` only frames before it are guaranteed (a preview); strength 0 (``gain`` 0) skips the network.
    """
    n_model = max(1, media.model_frame_count(info.frames, info.fps, MODEL_FPS))
    to_model = np.minimum(media.source_to_model(info.frames, info.fps, n_model), n_model - 1)
    last = n_model
    if upto is not None:
        window = connector.config.window
        needed = int(to_model[min(max(upto, 1), info.frames) - 1]) + 1
        last = min(n_model, -(-needed // window) * window)
    if gain == 0.0:
        return np.zeros((len(to_model), neutral.shape[1]), np.float32)
    frames = np.minimum(media.model_to_source(n_model, info.fps, info.frames)[:last], len(neutral) - 1)
    with one_thread():
        model = np.asarray(infer_offsets(connector, speech.astype(np.float32), neutral[frames]), dtype=np.float32)
    return gain * model[np.minimum(to_model, last - 1)]
