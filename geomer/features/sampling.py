"""Patches and per-patch flow statistics around graph nodes, vectorised over nodes.

Both functions work on a *canvas* (the aligned face crop, or a stack of per-node windows in
``flow_mode="patches"``) and a list of patch centres, so one OpenCV call serves every node.

Patch geometry: a patch of side ``s`` centred at ``(cx, cy)`` covers ``[cx - s/2, cx + s/2]`` in
both axes; it is resized to P×P by area averaging (a box filter of side ``s/P`` followed by bilinear
sampling at the P×P cell centres). Outside the canvas the border pixels are replicated, so patches
at the image border keep their shape. Statistics (``patch_flow_statistics``) are exact box means
from integral images over the part of the square inside the canvas.
"""

from __future__ import annotations

import cv2
import numpy as np

NUM_ORIENTATION_BINS = 8
NUM_FLOW_STATS = 4 + NUM_ORIENTATION_BINS  # u, v, magnitude, 8 bins, strain → 12


def sample_patches(
    canvas: np.ndarray, centres: np.ndarray, scales: tuple[int, ...], patch_size: int
) -> np.ndarray:
    """Area-resampled square patches around ``centres``.

    Shapes:
        canvas: [H, W] or [H, W, C] float32.
        centres: [N, 2] (x, y) in canvas pixels.
        returns: [N, S, C, P, P] float32 (C = 1 for a 2-D canvas).
    """
    canvas = np.asarray(canvas, dtype=np.float32)
    if canvas.ndim == 2:
        canvas = canvas[:, :, None]
    channels = canvas.shape[2]
    centres = np.asarray(centres, dtype=np.float32)
    count = centres.shape[0]
    size = patch_size
    out = np.empty((count, len(scales), channels, size, size), dtype=np.float32)
    cells = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5  # in units of the side
    for k, side in enumerate(scales):
        box = max(1, int(round(side / size)))
        # An even box is anchored half a pixel left/up of its nominal centre: compensate.
        shift = 0.5 if box % 2 == 0 else 0.0
        source = canvas
        if box > 1:
            source = cv2.blur(canvas, (box, box), borderType=cv2.BORDER_REPLICATE)
            if source.ndim == 2:
                source = source[:, :, None]
        offsets = cells * side + shift
        map_x = centres[:, 0, None, None] + offsets[None, None, :]  # [N, 1, P]
        map_y = centres[:, 1, None, None] + offsets[None, :, None]  # [N, P, 1]
        map_x = np.broadcast_to(map_x, (count, size, size)).reshape(count * size, size)
        map_y = np.broadcast_to(map_y, (count, size, size)).reshape(count * size, size)
        sampled = cv2.remap(
            source,
            np.ascontiguousarray(map_x),
            np.ascontiguousarray(map_y),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        sampled = sampled.reshape(count, size, size, channels)
        out[:, k] = sampled.transpose(0, 3, 1, 2)
    return out


def flow_statistic_channels(flow: np.ndarray, strain: np.ndarray) -> np.ndarray:
    """The 12 per-pixel channels whose box means are the node statistics.

    Channels: u, v, magnitude, magnitude in each of 8 orientation bins (bin b holds angles in
    [b·45°, (b+1)·45°), angle = atan2(v, u) in image coordinates), strain.

    Shapes: flow [H, W, 2], strain [H, W] → [12, H, W] float32 (planar: one plane per channel).
    """
    u = np.ascontiguousarray(flow[..., 0], dtype=np.float32)
    v = np.ascontiguousarray(flow[..., 1], dtype=np.float32)
    magnitude, angle = cv2.cartToPolar(u, v, angleInDegrees=True)
    bins = np.minimum((angle * (NUM_ORIENTATION_BINS / 360.0)).astype(np.int32), 7)
    channels = np.empty((NUM_FLOW_STATS,) + flow.shape[:2], dtype=np.float32)
    channels[0] = u
    channels[1] = v
    channels[2] = magnitude
    for b in range(NUM_ORIENTATION_BINS):
        np.multiply(magnitude, bins == b, out=channels[3 + b])
    channels[11] = strain
    return channels


def patch_flow_statistics(
    flow: np.ndarray, strain: np.ndarray, centres: np.ndarray, scales: tuple[int, ...]
) -> np.ndarray:
    """Per node and scale: mean u, mean v, mean magnitude, 8-bin magnitude-weighted orientation
    histogram (normalised to sum 1; all zero where nothing moves), mean optical strain.

    Shapes:
        flow: [H, W, 2]; strain: [H, W]; centres: [N, 2] (x, y); returns [N, S, 12] float32.
    """
    channels = flow_statistic_channels(flow, strain)
    height, width = channels.shape[1:]
    # float32 integral images, one per plane: box means are exact to ~1e-4 relative on a 256²
    # canvas, at a fraction of the cost of float64 or numpy cumsums.
    integral = np.stack([cv2.integral(plane, sdepth=cv2.CV_32F) for plane in channels])
    centres = np.asarray(centres, dtype=np.float64)
    out = np.zeros((centres.shape[0], len(scales), NUM_FLOW_STATS), dtype=np.float32)
    for k, side in enumerate(scales):
        # pixel i covers [i - 0.5, i + 0.5]: the pixels whose centres lie in the square
        # [c - s/2, c + s/2] start at the first centre inside it (s of them; where pixel centres
        # sit on both edges, the first s)
        left = np.ceil(centres[:, 0] - side / 2.0).astype(np.int64)
        top = np.ceil(centres[:, 1] - side / 2.0).astype(np.int64)
        x0, x1 = np.clip(left, 0, width), np.clip(left + side, 0, width)
        y0, y1 = np.clip(top, 0, height), np.clip(top + side, 0, height)
        sums = (integral[:, y1, x1] - integral[:, y0, x1] - integral[:, y1, x0]
                + integral[:, y0, x0]).T  # [N, 12]
        area = ((x1 - x0) * (y1 - y0)).astype(np.float32)[:, None]
        means = np.where(area > 0, sums / np.maximum(area, 1), 0.0)
        histogram = means[:, 3:11]
        total = histogram.sum(axis=1, keepdims=True)
        means[:, 3:11] = np.where(total > 1e-12, histogram / np.maximum(total, 1e-12), 0.0)
        out[:, k] = means
    return out
