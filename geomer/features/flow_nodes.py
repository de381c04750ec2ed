"""Optical flow sampled at graph nodes, computed densely or only on node windows.

``flow_mode="dense"``: one flow computation on the whole aligned crop, then statistics and patches
at every node from that field. ``flow_mode="patches"``: a square window around each node (the
largest patch scale plus ``WINDOW_MARGIN`` px of context on each side, for the flow's own support)
is cut from both crops and flow is computed on each window separately; the windows are stacked
into one canvas so statistics and patches still come from one vectorised call. Which is faster
is measured by ``geomer bench features`` (rows ``flow+sampling dense`` / ``patches``): with 68
nodes the windows cover several times the crop's area and pay a per-call overhead, so dense wins
at the default settings.
"""

from __future__ import annotations

import cv2
import numpy as np

from geomer.features.flow import compute_flow, optical_strain
from geomer.features.sampling import patch_flow_statistics, sample_patches

WINDOW_MARGIN = 8


def flow_at_nodes(
    first: np.ndarray,
    second: np.ndarray,
    centres: np.ndarray,
    scales: tuple[int, ...],
    patch_size: int,
    method: str = "farneback",
    mode: str = "dense",
    dense_flow: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Flow statistics and (u, v, strain) patches around ``centres``.

    ``dense_flow``: the flow of ``first`` → ``second`` when the caller has it already (used in
    the dense mode instead of computing it again).

    Shapes:
        first, second: [H, W] uint8 aligned grey crops; centres: [N, 2] (x, y) crop pixels.
        dense_flow: [H, W, 2] or None.
        returns: stats [N, S, 12], patches [N, S, 3, P, P] (float32).
    """
    if mode == "dense":
        flow = dense_flow if dense_flow is not None else compute_flow(first, second, method)
        strain = optical_strain(flow)
        canvas_centres = centres
    else:
        flow, strain, canvas_centres = _window_flow(first, second, centres, scales, method)
    stats = patch_flow_statistics(flow, strain, canvas_centres, scales)
    field = np.concatenate([flow, strain[..., None]], axis=-1)
    patches = sample_patches(field, canvas_centres, scales, patch_size)
    return stats, patches


def node_windows(image: np.ndarray, corners: np.ndarray, side: int) -> np.ndarray:
    """Integer-aligned ``side``² windows with top-left ``corners`` [N, 2], stacked vertically:
    [N * side, side] (borders replicated)."""
    count = corners.shape[0]
    grid = np.arange(side, dtype=np.float32)
    map_x = np.broadcast_to(corners[:, 0, None, None] + grid[None, None, :], (count, side, side))
    map_y = np.broadcast_to(corners[:, 1, None, None] + grid[None, :, None], (count, side, side))
    return cv2.remap(
        image,
        np.ascontiguousarray(map_x.reshape(count * side, side), dtype=np.float32),
        np.ascontiguousarray(map_y.reshape(count * side, side), dtype=np.float32),
        cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_REPLICATE,
    )


def _window_flow(first, second, centres, scales, method):
    side = int(max(scales)) + 2 * WINDOW_MARGIN
    corners = np.floor(centres - side / 2.0).astype(np.float32)
    first_windows = node_windows(first, corners, side)
    second_windows = node_windows(second, corners, side)
    count = centres.shape[0]
    flow = np.empty((count * side, side, 2), dtype=np.float32)
    for n in range(count):
        rows = slice(n * side, (n + 1) * side)
        flow[rows] = compute_flow(first_windows[rows], second_windows[rows], method)
    strain = np.concatenate(
        [optical_strain(flow[n * side : (n + 1) * side]) for n in range(count)], axis=0
    )
    offsets = np.stack([np.zeros(count), np.arange(count) * side], axis=1)
    canvas_centres = (centres - corners + offsets).astype(np.float32)
    return flow, strain, canvas_centres
