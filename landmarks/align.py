"""Similarity alignment of landmark sets to the canonical template.

A clip is aligned with ONE similarity transform (rotation, uniform scale, translation) estimated
on its first valid frames, never per frame: per-frame re-alignment re-fits the noise of every
frame and adds jitter as large as a micro-expression (1-3 px).
"""

from __future__ import annotations

import numpy as np

from landmarks.errors import LandmarksError


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform taking ``src`` onto ``dst`` (Umeyama 1991).

    Shapes:
        src, dst: [n, 2] corresponding points (n >= 2, finite).
        returns: [2, 3] float64 matrix M with ``dst ≈ src @ M[:, :2].T + M[:, 2]``.
    """
    from skimage.transform import SimilarityTransform

    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two matching [n>=2, 2] point sets, got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise LandmarksError("cannot align: the points contain NaN or inf")
    transform = SimilarityTransform.from_estimate(src, dst)
    if not transform:
        raise LandmarksError("cannot align: the points are degenerate (all at one place)")
    return transform.params[:2].copy()


def apply_transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a [2, 3] affine ``matrix`` to ``points`` [..., 2] (float32 out, NaN stays NaN)."""
    points = np.asarray(points)
    matrix = np.asarray(matrix, dtype=np.float64)
    out = points.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]
    return out.astype(np.float32)
