"""Apex spotting for clips without an annotated apex (SMIC).

Motion energy of frame t (landmark-based, from the clip's aligned track): the mean over the 68
points of ``|| (p_t,i - p_onset,i) - mean_i (p_t,i - p_onset,i) ||`` in inter-ocular distances,
i.e. the displacement from onset with the frame's global translation removed (a head that drifts
as a whole is not an expression). Frames where the face was lost are bridged by linear
interpolation. The energy curve is smoothed with a Gaussian filter (``scipy.ndimage``; sigma =
``max(1, 0.02 * fps)`` frames, i.e. 20 ms, edges 'nearest') before taking its maximum, so a single
jittery frame cannot win. The apex is the frame of maximal smoothed energy strictly after onset.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter1d

from geomer.errors import GeomerError


def motion_energy(aligned: np.ndarray, valid: np.ndarray, onset: int, offset: int) -> np.ndarray:
    """Unsmoothed motion energy for positions onset..offset: [offset - onset + 1] float32."""
    window = aligned[onset : offset + 1].astype(np.float64)
    displacement = window - window[0]
    displacement -= displacement.mean(axis=1, keepdims=True)
    energy = np.linalg.norm(displacement, axis=2).mean(axis=1)
    usable = valid[onset : offset + 1] & np.isfinite(energy)
    if not usable.all():
        positions = np.arange(len(energy))
        energy = np.interp(positions, positions[usable], energy[usable])
    return energy.astype(np.float32)


def smoothing_sigma(fps: float) -> float:
    """Gaussian sigma in frames: 20 ms, at least one frame (one frame when fps is unknown)."""
    return 1.0 if not math.isfinite(fps) or fps <= 0 else max(1.0, 0.02 * fps)


def spot_apex(track, onset: int, offset: int | None = None) -> int:
    """The apex frame NUMBER of ``track`` between frame numbers ``onset`` and ``offset``
    (default: the last frame)."""
    start = track.position(onset)
    stop = len(track) - 1 if offset is None else track.position(offset)
    if stop <= start:
        raise GeomerError(
            f"{track.source}: cannot spot an apex, offset {offset} is not after onset {onset}"
        )
    if not track.valid[start]:
        raise GeomerError(f"{track.source}: no face in onset frame {onset}")
    energy = motion_energy(track.aligned(), track.valid, start, stop)
    smoothed = gaussian_filter1d(energy, smoothing_sigma(track.fps), mode="nearest")
    best = 1 + int(np.argmax(smoothed[1:]))
    return int(track.frame_index[start + best])
