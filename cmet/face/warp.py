"""The lite engine's renderer: move a face so its landmarks land where asked, by a dense backward warp.

Every output pixel needs the input position to read, so the sparse offsets ``src − dst`` are
interpolated over the *destination* points and the frame is read there (OpenCV's ``remap`` on the CPU,
torch's ``grid_sample`` on a GPU). Interpolating
at the destination keeps an opening jaw tidy: the new gap between the lips reads from the mouth
interior and stretches it smoothly instead of folding over.

The dense field is a multilevel cubic B-spline approximation (Lee, Wolberg & Shin 1997): a few
scatter/gather passes on lattices from 4×4 up to knots about ``knot_px`` apart over the face crop,
merged by exact B-spline subdivision, evaluated at the finest knots and upsampled bilinearly. It is C²
(no mesh seams), needs no linear solve and depends on nothing but the frame's own points, so it is
fast on one CPU core and batches on CUDA.

The background never moves: fixed anchors ring the crop border, the FaceMesh face outline from temple to
jaw is pinned (the forehead may follow the brows), and the field fades to zero just outside the landmarks'
convex hull. Only the crop (face box plus a margin) is computed and pasted back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from cmet.face import regions as R
from cmet.face.canonical import N_LANDMARKS, apply_similarity
from cmet.face.rigid import RigidParts


@dataclass
class Warper:
    """Dense landmark-driven warp; tensors stay on their device (CUDA when the frames are there)."""

    knot_px: float = 2.0  # finest spline knot spacing in pixels (the field is bilinear between knots)
    max_levels: int = 7  # at most 2^7 knot intervals along the crop's long side (accuracy relative to the face)
    first_level: int = 2  # the coarsest lattice has 2^2 intervals (coarser ones change < 1 grey level in a face)
    margin: float = 0.25  # the crop is the points' box grown by this fraction of its size on each side
    ring: int = 8  # fixed anchors per side of the crop border
    pin: tuple[int, ...] = R.RIM  # 478-point layouts: these points never move (the outline from temple to jaw)
    skip: tuple[int, ...] = R.IRIS_RINGS  # 478-point layouts: left out (iris rims slide under the lids)
    teeth: float = 0.4  # 478-point layouts: share of the mouth opening that moves rigidly with each lip…
    gap_stretch: float = 2.5  # …as long as the rest of the opening stretches by at most this factor
    batch: int = 16  # frames solved together (bounds memory on long batches)
    device: str | None = None  # where numpy frames are processed; None: CPU

    def warp(self, frames, src_pts, dst_pts, still_pts=None, held=None, inplace: bool = False):
        """Warp ``frames`` (uint8 ``[H, W, 3]`` or ``[N, H, W, 3]``, numpy or torch) so ``src_pts`` land on ``dst_pts``.

        Points are pixel coordinates ``[P, 2]`` or ``[N, P, 2]`` (a trailing z column is ignored).
        ``still_pts [N, M, 2]``: pixels of rigid parts (glasses frames) that must not move; ``held [N, P]``
        bool: point pairs that lie on such a part and are left out rather than bend it.
        Returns the same type, shape and dtype; frames whose points hold NaN are returned unchanged. ``inplace``
        draws on ``frames`` itself (when they are already where the warp runs) instead of a copy.
        """
        is_numpy = isinstance(frames, np.ndarray)
        video = torch.as_tensor(frames)
        single = video.ndim == 3
        if single:
            video = video[None]
        if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != torch.uint8:
            raise ValueError(f"frames must be uint8 [H, W, 3] or [N, H, W, 3], got {tuple(video.shape)} {video.dtype}")
        moved = video.to(torch.device(self.device) if is_numpy and self.device else video.device)
        out = moved if inplace and moved.data_ptr() == video.data_ptr() else moved.clone()
        video = moved
        height, width = video.shape[1:3]
        fields = self._fields(src_pts, dst_pts, len(video), (width, height), video.device, still_pts, held)
        for chunk, crop, offsets in fields:
            if video.device.type == "cpu":
                _remap_cpu(video.numpy(), out.numpy(), chunk, crop, offsets.numpy())
            else:
                _remap_torch(video, out, chunk, crop, offsets)
        out = out[0] if single else out
        return out.cpu().numpy() if is_numpy else out

    def source_map(self, src_pts, dst_pts, size: tuple[int, int], still_pts=None, held=None) -> np.ndarray:
        """``[N, H, W, 2]`` float32: the input (x, y) each output pixel reads, for frames of ``size`` (w, h).

        The same field :meth:`warp` samples with; the identity wherever nothing moves.
        """
        width, height = size
        shape = src_pts.shape if torch.is_tensor(src_pts) else np.shape(src_pts)
        count = shape[0] if len(shape) == 3 else 1
        device = torch.device(self.device or "cpu")
        ys, xs = torch.meshgrid(
            torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
        )
        result = torch.stack([xs, ys], -1)[None].repeat(count, 1, 1, 1).to(device)
        for chunk, crop, offsets in self._fields(src_pts, dst_pts, count, size, device, still_pts, held):
            x0, y0, crop_w, crop_h = crop
            for k, (i, x, y) in enumerate(zip(chunk, x0, y0)):
                result[i, y : y + crop_h, x : x + crop_w] += offsets[k]
        return result.cpu().numpy()

    def _fields(self, src_pts, dst_pts, count: int, size: tuple[int, int], device: torch.device, still_pts, held):
        """Yield ``(frame indices, (x0s, y0s, crop_w, crop_h), offsets [n, crop_h, crop_w, 2])`` per chunk."""
        src = _as_points(src_pts, count, device)
        dst = _as_points(dst_pts, count, device)
        if src.shape != dst.shape:
            raise ValueError(f"src_pts {tuple(src.shape)} and dst_pts {tuple(dst.shape)} differ")
        still = None if still_pts is None else _as_points(still_pts, count, device)
        active = None if held is None else ~torch.as_tensor(np.asarray(held), device=device).expand(count, -1)
        if src.shape[1] == N_LANDMARKS:
            dst[:, list(self.pin)] = src[:, list(self.pin)]
            _keep_lips_apart(src, dst)
            mouth_src, mouth_dst = _mouth_interior(src, dst, self.teeth, self.gap_stretch)
            keep = np.setdiff1d(np.arange(N_LANDMARKS), self.skip)
            src = torch.cat([src[:, keep], mouth_src], 1)
            dst = torch.cat([dst[:, keep], mouth_dst], 1)
            if active is not None:
                active = torch.cat([active[:, keep], active.new_ones(mouth_src.shape[:2])], 1)
        usable = (torch.isfinite(src).all(-1).all(-1) & torch.isfinite(dst).all(-1).all(-1)).cpu()
        index = torch.nonzero(usable).flatten().tolist()
        for start in range(0, len(index), self.batch):
            chunk = index[start : start + self.batch]
            extra = None if still is None else (still[chunk], None if active is None else active[chunk])
            crop, offsets = self._crop_field(src[chunk], dst[chunk], size, extra)
            yield chunk, crop, offsets

    def _crop_field(
        self, src: torch.Tensor, dst: torch.Tensor, size: tuple[int, int], rigid=None
    ) -> tuple[tuple[list[int], list[int], int, int], torch.Tensor]:
        """One crop size for the chunk (so it batches) and the backward offsets in pixels inside each crop.

        ``rigid``: ``(still points [n, M, 2], active [n, P] bool or None)``: zero-offset anchors on rigid parts, and
        which point pairs take part (None: all).
        """
        width, height = size
        both = torch.cat([src, dst], 1)
        lo, hi = both.amin(1), both.amax(1)  # [n, 2]
        grow = self.margin * (hi - lo).amax(1)
        lo, hi = lo - grow[:, None], hi + grow[:, None]
        extent = (hi - lo).amax(0).ceil() + 1
        crop_w, crop_h = min(int(extent[0]), width), min(int(extent[1]), height)
        x0 = lo[:, 0].round().clamp(0, width - crop_w).long()
        y0 = lo[:, 1].round().clamp(0, height - crop_h).long()
        scale = float(max(crop_w, crop_h) - 1)  # crop pixels → unit square (the long side spans [0, 1])
        origin = torch.stack([x0, y0], 1).to(src.dtype)[:, None]
        src_u, dst_u = (src - origin) / scale, (dst - origin) / scale

        anchors = _border_ring(self.ring, (crop_w - 1) / scale, (crop_h - 1) / scale, src.device)
        anchors = anchors[None].expand(len(src), -1, -1)
        votes = None
        if rigid is not None:
            still, active = rigid
            anchors = torch.cat([anchors, (still - origin) / scale], 1)
            if active is not None:
                votes = torch.cat([active, active.new_ones(anchors.shape[:2])], 1).float()
        centres = torch.cat([dst_u, anchors], 1).float()
        offsets = torch.cat([src_u - dst_u, torch.zeros_like(anchors)], 1).float()
        levels = min(self.max_levels, max(2, math.ceil(math.log2(scale / self.knot_px))))
        lattice = _mba_lattice(centres, offsets, levels, self.first_level, votes)
        knots = _knot_values(lattice)  # [n, 2, K, K], K = 2^levels + 1
        side = knots.shape[-1]
        fade = _hull_fade(torch.cat([src_u, dst_u], 1) * (side - 1), side, (0.5 * grow / scale * (side - 1)).tolist())
        knots = knots * fade[:, None].to(device=knots.device) * scale
        knots = _unfold(knots, scale / (side - 1))
        return (x0.tolist(), y0.tolist(), crop_w, crop_h), _dense(knots, crop_w, crop_h, scale)


def _dense(knots: torch.Tensor, crop_w: int, crop_h: int, scale: float) -> torch.Tensor:
    """Knot offsets ``[n, 2, K, K]`` (the lattice spans ``scale`` crop pixels) upsampled bilinearly to every crop
    pixel, ``[n, crop_h, crop_w, 2]`` float32: on the CPU by OpenCV's affine resampling (a third of torch's time
    there), on a GPU by ``grid_sample``; both read knot ``(side − 1) · pixel / scale``."""
    step = (knots.shape[-1] - 1) / scale
    if knots.device.type == "cpu":
        inverse = np.array([[step, 0.0, 0.0], [0.0, step, 0.0]])
        planes = knots.float().permute(0, 2, 3, 1).contiguous().numpy()
        dense = np.stack(
            [
                cv2.warpAffine(
                    plane, inverse, (crop_w, crop_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                    borderMode=cv2.BORDER_REPLICATE,
                )
                for plane in planes
            ]
        )  # fmt: skip
        return torch.from_numpy(dense)
    ys = torch.arange(crop_h, device=knots.device, dtype=torch.float32) / scale
    xs = torch.arange(crop_w, device=knots.device, dtype=torch.float32) / scale
    unit = torch.stack(torch.broadcast_tensors(xs[None, :], ys[:, None]), -1) * 2 - 1
    field = F.grid_sample(knots.float(), unit[None].expand(len(knots), -1, -1, -1), mode="bilinear", align_corners=True)
    return field.permute(0, 2, 3, 1)


def _remap_cpu(video: np.ndarray, out: np.ndarray, chunk: list[int], crop: tuple, offsets: np.ndarray) -> None:
    """Backward-sample each frame's crop at pixel + offset (bilinear, edges repeated) into ``out``, with OpenCV:
    uint8 in, uint8 out, no float copy of the crop."""
    x0, y0, crop_w, crop_h = crop
    grid = np.stack(np.meshgrid(np.arange(crop_w, dtype=np.float32), np.arange(crop_h, dtype=np.float32)), -1)
    for k, (i, x, y) in enumerate(zip(chunk, x0, y0)):
        piece = np.ascontiguousarray(video[i, y : y + crop_h, x : x + crop_w])
        out[i, y : y + crop_h, x : x + crop_w] = cv2.remap(
            piece, offsets[k] + grid, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )


def _remap_torch(video: torch.Tensor, out: torch.Tensor, chunk: list[int], crop: tuple, offsets: torch.Tensor) -> None:
    """:func:`_remap_cpu` with ``grid_sample``, for frames on a GPU."""
    x0, y0, crop_w, crop_h = crop
    pieces = torch.stack([video[i, y : y + crop_h, x : x + crop_w] for i, x, y in zip(chunk, x0, y0)])
    ys = torch.arange(crop_h, device=video.device, dtype=torch.float32)
    xs = torch.arange(crop_w, device=video.device, dtype=torch.float32)
    sample_x = (xs[None, None, :] + offsets[..., 0]) * (2.0 / max(crop_w - 1, 1)) - 1.0
    sample_y = (ys[None, :, None] + offsets[..., 1]) * (2.0 / max(crop_h - 1, 1)) - 1.0
    warped = F.grid_sample(
        pieces.permute(0, 3, 1, 2).float(),
        torch.stack([sample_x, sample_y], -1),
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    )
    warped = warped.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    for k, (i, x, y) in enumerate(zip(chunk, x0, y0)):
        out[i, y : y + crop_h, x : x + crop_w] = warped[k]


MIN_JACOBIAN = 0.2  # the warp may squeeze an area to a fifth of itself, never fold it over
UNFOLD_PASSES = 4


def _cell_jacobians(knots: torch.Tensor, spacing: float) -> tuple[torch.Tensor, ...]:
    """Per lattice cell ``[n, K-1, K-1]``: d(offset x)/dx, d(offset x)/dy, d(offset y)/dx, d(offset y)/dy."""
    dx = (knots[..., :, 1:] - knots[..., :, :-1])[..., :-1, :] / spacing
    dy = (knots[..., 1:, :] - knots[..., :-1, :])[..., :, :-1] / spacing
    return dx[:, 0], dy[:, 0], dx[:, 1], dy[:, 1]


def _largest_safe_share(jacobians: tuple[torch.Tensor, ...], iterations: int = 8) -> torch.Tensor:
    """Per cell, the largest share α ≤ 1 of the offsets for which det(I + α J) ≥ ``MIN_JACOBIAN`` (bisection)."""
    xx, xy, yx, yy = jacobians

    def det(alpha: torch.Tensor) -> torch.Tensor:
        return (1 + alpha * xx) * (1 + alpha * yy) - alpha * alpha * xy * yx

    full = torch.ones_like(xx)
    safe = det(full) >= MIN_JACOBIAN
    low, high = torch.zeros_like(xx), full.clone()
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        fine = det(middle) >= MIN_JACOBIAN
        low, high = torch.where(fine, middle, low), torch.where(fine, high, middle)
    return torch.where(safe, full, low)


def _unfold(knots: torch.Tensor, spacing: float) -> torch.Tensor:
    """Backward offsets ``knots [n, 2, K, K]`` (pixels, knots ``spacing`` px apart) with every fold taken out locally.

    A fold would show skin twice or turn it inside out (a strong smile squeezing the cheek against the lip
    corner at strength 2, say). Where the map x → x + offset would squeeze an area below ``MIN_JACOBIAN``, the
    offsets there are smoothed (a local blur keeps how far the skin moves but spreads the squeeze over more
    of it), a few passes; only what smoothing cannot settle is damped. Frames that never fold are returned
    untouched.
    """
    xx, xy, yx, yy = _cell_jacobians(knots, spacing)
    folds = ((1 + xx) * (1 + yy) - xy * yx < MIN_JACOBIAN).flatten(1).any(1)
    if not bool(folds.any()):
        return knots
    knots = knots.clone()
    knots[folds] = _unfold_frames(knots[folds], spacing)  # only the frames that fold pay for it
    return knots


def _unfold_frames(knots: torch.Tensor, spacing: float) -> torch.Tensor:
    """``_unfold`` for frames known to fold: smooth where they do, a few passes, then damp what is left."""
    for _ in range(UNFOLD_PASSES):
        xx, xy, yx, yy = _cell_jacobians(knots, spacing)
        folding = ((1 + xx) * (1 + yy) - xy * yx < MIN_JACOBIAN)[:, None]
        if not bool(folding.any()):
            return knots
        region = _pool(F.max_pool2d, F.pad(folding.float(), (0, 1, 0, 1), mode="replicate"), 7)
        region = _pool(F.avg_pool2d, region, 5)
        rows, cols = torch.nonzero(region.amax((0, 1)) > 0, as_tuple=True)  # smooth only the box that folds
        top, bottom = max(int(rows.min()) - 4, 0), int(rows.max()) + 5
        left, right = max(int(cols.min()) - 4, 0), int(cols.max()) + 5
        window = knots[..., top:bottom, left:right]
        smooth = _pool(F.avg_pool2d, window, 9)
        weight = region[..., top:bottom, left:right]
        knots = knots.clone()
        knots[..., top:bottom, left:right] = window * (1 - weight) + smooth * weight
    share = _largest_safe_share(_cell_jacobians(knots, spacing))
    damping = _pool(F.max_pool2d, (1 - share)[:, None], 5)
    damping = _pool(F.avg_pool2d, F.pad(damping, (1, 1, 1, 1), mode="replicate"), 3)[:, :, 1:, 1:]
    knots = knots * (1 - damping.clamp(0, 1))
    share = _largest_safe_share(_cell_jacobians(knots, spacing)).flatten(1).amin(1)
    return knots * share[:, None, None, None]  # what neither could settle: the frame's edit scaled down


def _pool(pool, values: torch.Tensor, size: int) -> torch.Tensor:
    """``size × size`` max or mean (padding not counted) at every cell, as two 1-D passes: the same values, at a
    fraction of torch's 2-D cost on the CPU (one 7×7 max over a face's lattice was 1 ms of a 512² frame)."""
    half = size // 2
    extra = {"count_include_pad": False} if pool is F.avg_pool2d else {}
    values = pool(values, (size, 1), stride=1, padding=(half, 0), **extra)
    return pool(values, (1, size), stride=1, padding=(0, half), **extra)


def _as_points(points, count: int, device: torch.device) -> torch.Tensor:
    """``[count, P, 2]`` float64 copy of ``[P, 2|3]`` or ``[count, P, 2|3]`` points."""
    points = points if torch.is_tensor(points) else torch.as_tensor(np.asarray(points))
    points = points[..., :2].to(device=device, dtype=torch.float64)
    if points.ndim == 2:
        points = points[None].expand(count, -1, -1)
    if points.ndim != 3 or len(points) != count:
        raise ValueError(f"points must be [P, 2] or [{count}, P, 2], got {tuple(points.shape)}")
    return points.clone()


def _keep_lips_apart(src: torch.Tensor, dst: torch.Tensor) -> None:
    """Where an edit would push the lower inner lip above the upper one, both meet half-way instead.

    Closing a mouth that is already shut (a negative jaw drop, a lip press) would otherwise fold the
    lips through each other. "Down" is square to the line between the lip corners; lips that the
    tracker already has slightly crossed may stay as crossed as they were, so a null edit changes nothing.
    """
    upper, lower = list(R.LIPS_INNER_UPPER[1:-1]), list(R.LIPS_INNER_LOWER[1:-1])
    across = dst[:, R.LIP_CORNERS[1]] - dst[:, R.LIP_CORNERS[0]]
    down = torch.stack([-across[:, 1], across[:, 0]], -1) / across.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    before = ((src[:, lower] - src[:, upper]) * down[:, None]).sum(-1, keepdim=True)
    after = ((dst[:, lower] - dst[:, upper]) * down[:, None]).sum(-1, keepdim=True)
    overlap = (after - before.clamp(max=0.0)).clamp(max=0.0) * down[:, None]
    dst[:, upper] += 0.5 * overlap
    dst[:, lower] -= 0.5 * overlap


def _mouth_interior(
    src: torch.Tensor, dst: torch.Tensor, share: float, stretch: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Extra point pairs inside the mouth so the teeth ride with their lips and only the middle stretches.

    For each upper/lower inner-lip pair, a point ``h`` inside each lip keeps that lip's offset, with
    ``h = share × min(source gap, destination gap)``: an opening jaw carries the upper and lower
    teeth along and stretches the dark gap between them, instead of stretching the teeth. ``h``
    shrinks where the middle would have to stretch more than ``stretch`` times, which would fold.
    """
    upper, lower = list(R.LIPS_INNER_UPPER[1:-1]), list(R.LIPS_INNER_LOWER[1:-1])
    ends = []
    for points in (src, dst):
        gap = points[:, lower] - points[:, upper]
        ends.append((points[:, upper], points[:, lower], gap / gap.norm(dim=-1, keepdim=True).clamp_min(1e-6)))
    (su, sl, sdir), (du, dl, ddir) = ends
    before, after = (sl - su).norm(dim=-1), (dl - du).norm(dim=-1)
    ratio = 1.0 / stretch
    limit = ((before - ratio * after) / (2 * (1 - ratio))).clamp(min=0.0)
    depth = torch.minimum(share * torch.minimum(before, after), limit)[..., None]
    return torch.cat([su + depth * sdir, sl - depth * sdir], 1), torch.cat([du + depth * ddir, dl - depth * ddir], 1)


def _border_ring(per_side: int, width: float, height: float, device: torch.device) -> torch.Tensor:
    """``[4 * per_side, 2]`` points spaced along the border of a ``width × height`` box at the origin."""
    t = torch.linspace(0.0, 1.0, per_side + 1, dtype=torch.float64, device=device)[:-1]
    zeros, ones = torch.zeros_like(t), torch.ones_like(t)
    top, right = (t * width, zeros), (ones * width, t * height)
    bottom, left = ((1 - t) * width, ones * height), (zeros, (1 - t) * height)
    return torch.cat([torch.stack(side, 1) for side in (top, right, bottom, left)])


def _bspline(s: torch.Tensor) -> torch.Tensor:
    """Uniform cubic B-spline weights ``[..., 4]`` at fractional positions ``s [...]``."""
    s2, s3 = s * s, s * s * s
    return torch.stack([(1 - s) ** 3, 3 * s3 - 6 * s2 + 4, -3 * s3 + 3 * s2 + 3 * s + 1, s3], -1) / 6.0


def _taps(positions: torch.Tensor, levels: int, first: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat lattice indices and weights ``[levels + 1 - first, ..., 16]`` of the 4×4 coefficients under each
    position, for levels ``first`` to ``levels``.

    Level ``l`` has knots every ``2^-l`` of the unit square and a ``(2^l + 3)²`` lattice whose
    coefficient ``j`` sits on the knot at ``(j − 1) · 2^-l``.
    """
    cells = 2.0 ** torch.arange(first, levels + 1, device=positions.device, dtype=positions.dtype)
    cells = cells.reshape(-1, *([1] * positions.ndim))
    u = positions[None] * cells
    base = torch.minimum(u.floor().clamp(min=0), cells - 1)
    w = _bspline(u - base)  # [levels + 1, ..., 2, 4]
    weights = (w[..., 1, :, None] * w[..., 0, None, :]).flatten(-2)
    offsets = torch.arange(4, device=positions.device)
    ix = base[..., 0].long()[..., None, None] + offsets[None, :]
    iy = base[..., 1].long()[..., None, None] + offsets[:, None]
    return (iy * (cells[..., None].long() + 3) + ix).flatten(-2), weights


def _mba_lattice(
    points: torch.Tensor, values: torch.Tensor, levels: int, first: int = 0, votes: torch.Tensor | None = None
) -> torch.Tensor:
    """Multilevel B-spline approximation of ``values [n, M, 2]`` at ``points [n, M, 2]`` in the unit square:
    one ``[n, 2, L, L]`` cubic B-spline lattice, L = 2^levels + 3, fitted from level ``first`` (2^first knot
    intervals) up. ``votes [n, M]`` (0 or 1) leaves points out; None counts them all.

    Each level fits a lattice twice as fine as the last to what the coarser ones left over (the
    closed-form local least squares of the BA step), so the sum is smooth yet passes close to every
    point; the levels are merged by exact B-spline subdivision.
    """
    n = len(points)
    inside = ((points >= 0) & (points <= 1)).all(-1).to(values.dtype)  # points beyond the crop do not vote
    if votes is not None:
        inside = inside * votes.to(values.dtype)
    residual = values * inside[..., None]
    first = min(first, levels)
    indices, weights = _taps(points, levels, first)  # [levels + 1 - first, n, M, 16]
    weights = weights * inside[..., None]
    squared = weights.square()
    shares = weights * squared / squared.sum(-1, keepdim=True).clamp_min(1e-12)
    frame = torch.arange(n, device=points.device)[:, None, None]
    total = None
    for level, (index, weight, share, square) in enumerate(zip(indices, weights, shares, squared), start=first):
        side = 2**level + 3
        flat = (index + frame * side**2).flatten()  # one flat lattice for the whole batch: one scatter per level
        votes = (share[..., None] * residual[:, :, None]).reshape(-1, 2)
        numerator = values.new_zeros(n * side**2, 2).index_add_(0, flat, votes)
        denominator = values.new_zeros(n * side**2).index_add_(0, flat, square.flatten())
        lattice = numerator / denominator.clamp_min(1e-12)[:, None]
        if level < levels:  # the finest level leaves nothing for a next one to fit
            fitted = lattice.index_select(0, flat).reshape(*index.shape, 2)
            residual = residual - torch.einsum("nmk,nmkc->nmc", weight, fitted)
        lattice = lattice.reshape(n, side, side, 2).permute(0, 3, 1, 2)
        total = lattice if total is None else _refine(total) + lattice
    return total


def _refine(lattice: torch.Tensor) -> torch.Tensor:
    """The same cubic B-spline on a lattice twice as fine: ``[..., c+3, c+3]`` → ``[..., 2c+3, 2c+3]``.

    Subdivision: (φ₋₁ + 6φ₀ + φ₁)/8 on the old knots, (φ₀ + φ₁)/2 half-way, one axis at a time.
    """
    for dim in (-1, -2):
        coarse = lattice.movedim(dim, -1)
        edges = 0.5 * (coarse[..., :-1] + coarse[..., 1:])  # new knots half-way: even fine indices
        vertices = (coarse[..., :-2] + 6 * coarse[..., 1:-1] + coarse[..., 2:]) / 8  # old knots: odd fine indices
        fine = torch.stack([edges[..., :-1], vertices], -1).flatten(-2)
        lattice = torch.cat([fine, edges[..., -1:]], -1).movedim(-1, dim)
    return lattice


def _knot_values(lattice: torch.Tensor) -> torch.Tensor:
    """A cubic B-spline's values at its own knots: the separable (1, 4, 1)/6 filter."""
    rows = (lattice[..., :-2, :] + 4 * lattice[..., 1:-1, :] + lattice[..., 2:, :]) / 6
    return (rows[..., :-2] + 4 * rows[..., 1:-1] + rows[..., 2:]) / 6


def _hull_fade(points: torch.Tensor, side: int, widths: list[float]) -> torch.Tensor:
    """``[n, side, side]`` float32 on the knot grid: 1 inside each frame's convex hull of ``points`` (in knot
    units), easing to 0 ``width`` knots outside it, so nothing beyond the face moves."""
    fades = []
    for frame_points, width in zip(points.detach().cpu().numpy(), widths):
        inside = np.zeros((side, side), dtype=np.uint8)
        cv2.fillConvexPoly(inside, cv2.convexHull(np.round(frame_points).astype(np.int32)), 1)
        distance = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3)
        ease = np.clip(1.0 - distance / max(width, 1.0), 0.0, 1.0)
        fades.append(ease * ease * (3.0 - 2.0 * ease))
    return torch.from_numpy(np.stack(fades).astype(np.float32))


def image_displacement(transforms: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """Canonical offsets ``[..., P, 2]`` → image pixels, through the inverse of the ``[..., 2, 3]`` image→canonical
    similarity (its translation does not matter for offsets)."""
    linear_inv = np.linalg.inv(np.asarray(transforms, dtype=np.float64)[..., :2, :2])
    return np.matmul(np.asarray(displacement, dtype=np.float64), np.swapaxes(linear_inv, -1, -2))


def render_expression(
    frame: np.ndarray,
    landmarks_img: np.ndarray,
    transform: np.ndarray,
    displacement_canonical: np.ndarray,
    warper: Warper | None = None,
) -> np.ndarray:
    """One frame with a canonical-space expression offset applied.

    ``landmarks_img [478, 2|3]`` are the frame's landmarks in pixels, ``transform [2, 3]`` its
    image→canonical similarity; the offset is turned and scaled into the image, so an edit
    follows the head as it moves.
    """
    return render_expressions(frame[None], landmarks_img[None], transform[None], displacement_canonical, warper)[0]


def render_expressions(
    frames: np.ndarray,
    landmarks_img: np.ndarray,
    transforms: np.ndarray,
    displacements_canonical: np.ndarray,
    warper: Warper | None = None,
    rigid: RigidParts | None = None,
    inplace: bool = False,
) -> np.ndarray:
    """Batched :func:`render_expression`: ``[N, H, W, 3]`` frames, ``[N, 478, 2|3]`` landmarks, ``[N, 2, 3]``
    transforms, ``[N, 478, 2]`` (or one shared ``[478, 2]``) canonical offsets. Frames without a face
    (NaN landmarks or transform) come back unchanged. ``rigid``: the clip's glasses frames, kept still."""
    points = expression_points(landmarks_img, transforms, displacements_canonical, rigid)
    return (warper or Warper()).warp(frames, *points, inplace=inplace)


def expression_points(
    landmarks_img: np.ndarray, transforms: np.ndarray, displacements_canonical: np.ndarray, rigid: RigidParts | None
) -> tuple:
    """The :meth:`Warper.warp` point arguments of :func:`render_expressions`: ``(src, dst)`` pixels (NaN where a
    frame has no face), then with ``rigid`` the frames' still anchor pixels and which landmark pairs they hold
    (those on a frame before or after the edit, left out so they cannot bend it)."""
    src = np.asarray(landmarks_img, dtype=np.float64)[..., :2]
    transforms = np.asarray(transforms, dtype=np.float64)
    known = np.isfinite(transforms).all((-1, -2))
    linear = np.where(known[:, None, None], transforms, np.eye(2, 3))
    displacement = np.asarray(displacements_canonical, dtype=np.float64)
    if rigid is not None:
        canonical = apply_similarity(linear, src)
        displacement = rigid.limit(canonical, displacement)
    dst = np.where(known[:, None, None], src + image_displacement(linear, displacement), np.nan)
    if rigid is None:
        return src, dst
    held = rigid.covers(canonical) | rigid.covers(canonical + displacement)
    return src, dst, rigid.image_anchors(linear), held
