"""The official engine: emotion2vec+ → C-MET connector → EDTalk, on aligned 256×256 crops pasted back.

Per video (cached by content): the face track, each frame's crop transform (the box framing EDTalk's
training videos were cut with, ``cmet.face.framing``), and EDTalk's
(exp10, pose6, lip20) of every crop, streamed in batches; the first frame with a face is the identity
source, encoded once. Per edit: the connector turns the speech vector into a per-frame expression
offset on the 25 fps model timeline (autoregressive 5-frame windows, nothing dropped), mapped back to
source frames; each frame is rendered from the identity source with its own lips and pose and its
expression plus the offset, and the face is pasted back into the full-resolution frame.

Differences from the release on purpose: lips come from the video's own frames by default
(``lips="audio"`` uses Audio2Lip on the video's speech as the release does), every frame is kept, and
``strength`` sets the speech vector's sign and scales the predicted offset (1 is the release's behaviour,
0 re-renders the original expression; see ``cmet.speech_vector``).

torch and the networks are imported only after every weight file has been found, so a missing
download is reported within a fraction of a second instead of after the multi-second torch import.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cmet import hub, media
from cmet.config import E2V, SPEECH_RATE
from cmet.engine import Engine, fill_faceless
from cmet.errors import InputError
from cmet.options import OfficialOptions
from cmet.speech_vector import SpeechVector, resolve_speech

if TYPE_CHECKING:
    import torch

    from cmet.face.edtalk import SourceCode
    from cmet.face.landmarks import FaceTrack


@dataclass
class OfficialAnalysis:
    """Per-video facts every edit reuses; frames without a face have NaN transforms and are not rendered."""

    info: media.VideoInfo
    track: FaceTrack
    crops: np.ndarray  # [T, 2, 3] image → crop similarities
    outlines: np.ndarray  # [T, K, 2] face outline in crop pixels (the paste-back mask)
    exp: np.ndarray  # [T, 10] EDTalk expression coefficients (the neutral expression per frame)
    pose: np.ndarray  # [T, 6]
    lip: np.ndarray  # [T, 20] lips from the frames, or from Audio2Lip on the video's audio
    source: SourceCode  # the identity frame, encoded once


class OfficialEngine(Engine[OfficialAnalysis]):
    """Paper-quality engine; one instance serves many edits and caches per-video work (see ``OfficialOptions``)."""

    name = "official"
    parallel_render = False  # its networks already use every core (CPU) or the one GPU

    def __init__(self, device: str = "auto", options: OfficialOptions | None = None):
        self.options = options or OfficialOptions()
        files = {name: hub.resolve(name) for name in self.required_files(self.options)}  # fails before torch loads

        import torch

        from cmet.connector import load_official
        from cmet.face.edtalk import load_audio2lip, load_edtalk

        super().__init__(device)
        self.lips = self.options.lips
        self.batch_size = self.options.network_batch
        self.connector = load_official(None, device=self.device)  # the release file, trusted to unpickle
        self.edtalk = load_edtalk(files[hub.EDTALK], device=self.device)
        self.audio2lip = load_audio2lip(files[hub.AUDIO2LIP], device=self.device) if hub.AUDIO2LIP in files else None
        self._autocast_dtype = None
        if self.device.startswith("cuda") and self.options.precision == "auto":
            self._autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if self.options.compile:
            self.edtalk.enc = torch.compile(self.edtalk.enc)
            self.edtalk.dec = torch.compile(self.edtalk.dec)

    @staticmethod
    def required_files(options: OfficialOptions | None = None) -> tuple[str, ...]:
        """Hub files the engine loads with ``options`` (Audio2Lip only when the lips come from audio).

        emotion2vec+ is not among them: presets and ``.npy`` embeddings need no speech model, and recordings
        without it fail with a sentence saying to download it.
        """
        lips = (options or OfficialOptions()).lips
        return (hub.CMET_CHECKPOINT, hub.EDTALK) + ((hub.AUDIO2LIP,) if lips == "audio" else ())

    @classmethod
    def missing(cls, options: OfficialOptions | None = None) -> list[str]:
        """The required files that are not present locally (``checkpoints_dir()`` or the hub cache)."""
        return [name for name in cls.required_files(options) if not hub.is_available(name)]

    # -- speech ---------------------------------------------------------------------------------------
    def speech_vector(self, reference: list, target: Any, strength: float) -> SpeechVector:
        """Mean target minus mean reference emotion2vec+ embedding, the release's raw difference.

        Presets and ``.npy`` embeddings need no speech model; audio clips need emotion2vec+ large.
        """
        return resolve_speech(reference, target, strength, lambda clips: E2V, self.device)

    # -- analysis -------------------------------------------------------------------------------------
    def _autocast(self):
        import torch

        if self._autocast_dtype is None:
            return nullcontext()
        return torch.autocast("cuda", dtype=self._autocast_dtype)

    def _to_tensor(self, crops: np.ndarray) -> torch.Tensor:
        import torch

        images = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device)
        return images.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)

    def encode(self, video: Path, info: media.VideoInfo, face: FaceTrack, clock: Any) -> OfficialAnalysis:
        """Align and EDTalk-encode every tracked frame of ``video``; the first face is the identity source."""
        import torch

        from cmet.face.align import crop
        from cmet.face.canonical import apply_similarity
        from cmet.face.framing import box_transforms
        from cmet.face.regions import FACE_OVAL

        transforms = box_transforms(face.transforms)
        outlines = apply_similarity(transforms, face.landmarks[:, list(FACE_OVAL), :2]).astype(np.float32)
        count = len(face)
        coeffs = np.full((count, 36), np.nan, dtype=np.float32)  # exp10 | pose6 | lip20
        source = None
        start = 0
        with clock.stage("encode"), torch.inference_mode(), self._autocast():
            for batch in media.iter_batches(video, self.batch_size):
                rows = np.arange(start, min(start + len(batch), count))
                start += len(batch)
                keep = rows[face.valid[rows]]
                if not len(keep):
                    continue
                images = self._to_tensor(crop(batch[keep - rows[0]], transforms[keep]))
                if source is None:
                    source = self.edtalk.encode_source(images[:1])
                exp, pose, lip = self.edtalk.encode(images)
                coeffs[keep] = torch.cat([exp, pose, lip], dim=1).float().cpu().numpy()
        if source is None:
            raise InputError(f"No face could be encoded in {video.name}; use a clip where the face is clearly visible.")
        valid = ~np.isnan(coeffs[:, 0])
        fill_faceless(coeffs, valid)
        with clock.stage("encode"):
            lip = coeffs[:, 16:]
            if self.lips == "audio":
                lip = self.audio_lips(video, info)[np.minimum(np.arange(count), info.frames - 1)]
        return OfficialAnalysis(
            info=info,
            track=face,
            crops=np.where(valid[:, None, None], transforms, np.nan),
            outlines=outlines,
            exp=coeffs[:, :10].copy(),
            pose=coeffs[:, 10:16].copy(),
            lip=np.ascontiguousarray(lip, dtype=np.float32),
            source=source,
        )

    def audio_lips(self, video: Path, info: media.VideoInfo) -> np.ndarray:
        """Audio2Lip lip coefficients [info.frames, 20] of the video's own speech, smoothed as in the release."""
        import torch

        from cmet.face.edtalk import load_audio2lip
        from cmet.face.edtalk.mel import mel_windows, smooth_lips

        if not info.has_audio:
            raise InputError(f"{Path(video).name} has no audio track for the lips to follow; use lips='video'.")
        if self.audio2lip is None:
            self.audio2lip = load_audio2lip(hub.resolve(hub.AUDIO2LIP), device=self.device)
        windows = mel_windows(media.read_audio(video, sr=SPEECH_RATE).astype(np.float32))
        with torch.inference_mode(), self._autocast():
            lips = smooth_lips(self.audio2lip.predict(windows.to(self.device)).float()).cpu().numpy()
        from cmet.timeline import model_grid

        to_model = model_grid(info)[1]
        return lips[np.minimum(to_model, len(lips) - 1)]

    # -- edit -----------------------------------------------------------------------------------------
    def offsets(self, analysis: OfficialAnalysis, speech: SpeechVector, upto: int | None = None) -> np.ndarray:
        """Per-source-frame expression offsets [T_src, 10] from the released connector (model timeline)."""
        from cmet.timeline import source_offsets

        return source_offsets(self.connector, speech.vector, speech.gain, analysis.exp, analysis.info, upto)

    def render(
        self, frames: np.ndarray, index: np.ndarray, analysis: OfficialAnalysis, offsets: np.ndarray, own: bool = False
    ) -> np.ndarray:
        """Re-render the face of each frame with its expression plus offset and paste it back (full resolution)."""
        import torch

        from cmet.face.align import hull_masks, paste

        index = np.minimum(np.asarray(index), len(analysis.exp) - 1)
        usable = np.isfinite(analysis.crops[index]).all(axis=(1, 2))
        out = frames if own else np.array(frames, copy=True)
        if not usable.any():
            return out
        rows = index[usable]
        offset_rows = np.minimum(rows, len(offsets) - 1)
        exp = torch.from_numpy(analysis.exp[rows] + offsets[offset_rows]).to(self.device)
        pose = torch.from_numpy(analysis.pose[rows]).to(self.device)
        lip = torch.from_numpy(analysis.lip[rows]).to(self.device)
        faces = []
        with torch.inference_mode(), self._autocast():
            for part in range(0, len(rows), self.batch_size):
                span = slice(part, part + self.batch_size)
                images = self.edtalk.render_batch(analysis.source, lip[span], pose[span], exp[span])
                faces.append(_to_uint8(images))
        masks = hull_masks(analysis.outlines[rows])
        out[usable] = paste(out[usable], np.concatenate(faces), analysis.crops[rows], masks)
        return out


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, 3, S, S] in [-1, 1] → [N, S, S, 3] uint8."""
    import torch

    pixels = images.float().clamp(-1.0, 1.0).add(1.0).mul(127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous().cpu().numpy()
