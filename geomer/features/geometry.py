"""Geometric movement features from aligned landmark tracks.

Aligned points come from the clip's ONE similarity transform (``LandmarkTrack.aligned()``), so the
unit is the inter-ocular distance (IOD) of the clip's first valid frames.

Resampling to T steps: the onset..offset interval is sampled at T evenly spaced (fractional)
positions, ``linspace(onset, offset, T)``; each coordinate is linearly interpolated in time between
the two nearest VALID frames (``np.interp``), so frames where the face was lost are bridged rather
than read as NaN. Step 0 is the onset (displacement 0) and step T-1 the offset.
"""

from __future__ import annotations

import numpy as np


def resample_displacement(
    aligned: np.ndarray, valid: np.ndarray, onset: int, offset: int, steps: int
) -> np.ndarray:
    """Displacement from onset over positions onset..offset, resampled to ``steps``.

    Shapes:
        aligned: [T, N, 2] aligned points of the whole track; valid: [T] bool;
        onset, offset: 0-based positions in the track; returns [steps, N, 2] float32.
    """
    base = aligned[onset]
    times = np.flatnonzero(valid[onset : offset + 1]) + onset
    targets = np.linspace(onset, offset, steps)
    values = (aligned[times] - base).reshape(len(times), -1)  # [V, N*2]
    if len(times) == 1:
        out = np.repeat(values, steps, axis=0)
    else:
        # Vectorised np.interp over all coordinates: locate each target between valid frames.
        right = np.clip(np.searchsorted(times, targets, side="right"), 1, len(times) - 1)
        left = right - 1
        span = (times[right] - times[left]).astype(np.float64)
        weight = np.clip((targets - times[left]) / span, 0.0, 1.0)[:, None]
        out = values[left] * (1.0 - weight) + values[right] * weight
    return out.reshape(steps, *aligned.shape[1:]).astype(np.float32)


def edge_displacement(displacement: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Relative displacement along each edge (i, j): ``d[j] - d[i]``.

    Shapes: displacement [N, 2], edges [E, 2] local indices → [E, 2] float32.
    """
    return (displacement[edges[:, 1]] - displacement[edges[:, 0]]).astype(np.float32)
