"""The synthetic face: the canonical 68-point face placed in a frame, and per-subject shapes.

Frame geometry (all synthetic layouts): frames of ``FRAME_SIZE`` = 320×320 px; the canonical
template (:data:`landmarks.template.CANONICAL_TEMPLATE`, inter-ocular distance 1) is scaled to an
inter-ocular distance of ``IOD_PX`` = 100 px with the eye-centre midpoint at ``EYE_MIDPOINT`` =
(160, 120), so the face (forehead to chin) is about 256 px tall — the ``face_size`` the feature
extractor normalises to, hence amplitudes in px here are close to px there.

Per-subject shape: the template plus a few smooth, anatomically named shape modes (face width,
lower-face length, brow height, eye spacing, nose length, mouth width) with seeded Gaussian weights,
plus small independent per-point jitter. Every variation is symmetric except the jitter, so subjects
differ the way real faces do (proportions) rather than by random noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from landmarks.template import CANONICAL_TEMPLATE

FRAME_SIZE = (320, 320)  # (width, height) px
IOD_PX = 100.0
EYE_MIDPOINT = np.array([160.0, 120.0], dtype=np.float32)

_BROWS = np.arange(17, 27)
_EYES = np.arange(36, 48)
_NOSE_LOWER = np.arange(31, 36)
_MOUTH = np.arange(48, 68)


def _shape_modes() -> dict[str, np.ndarray]:
    """Named shape modes, each a [68, 2] displacement (IOD units) for a unit weight."""
    t = CANONICAL_TEMPLATE.astype(np.float64)
    modes: dict[str, np.ndarray] = {}
    width = np.zeros_like(t)
    width[:, 0] = t[:, 0]  # scales the face horizontally about the midline
    modes["face_width"] = width
    lower = np.zeros_like(t)
    lower[:, 1] = np.clip(t[:, 1], 0.0, None)  # stretches below the eyes only
    modes["lower_face_length"] = lower
    brow = np.zeros_like(t)
    brow[_BROWS, 1] = -1.0
    modes["brow_height"] = brow
    eyes = np.zeros_like(t)
    eyes[_EYES, 0] = np.sign(t[_EYES, 0])
    modes["eye_spacing"] = eyes
    nose = np.zeros_like(t)
    nose[_NOSE_LOWER, 1] = 1.0
    nose[_MOUTH, 1] = 0.6  # the mouth follows a longer nose partly
    modes["nose_length"] = nose
    mouth = np.zeros_like(t)
    mouth[_MOUTH, 0] = t[_MOUTH, 0]
    modes["mouth_width"] = mouth
    return modes


#: Standard deviation of each shape mode's weight (IOD units per unit mode).
SHAPE_MODE_SD = {
    "face_width": 0.06,
    "lower_face_length": 0.06,
    "brow_height": 0.04,
    "eye_spacing": 0.03,
    "nose_length": 0.04,
    "mouth_width": 0.08,
}
POINT_JITTER_SD = 0.008


@dataclass(frozen=True)
class SubjectShape:
    """A subject's neutral face.

    Shapes:
        aligned: [68, 2] float32 canonical coordinates (IOD ≈ 1).
        points: [68, 2] float32 pixel coordinates in a ``FRAME_SIZE`` frame.
    """

    aligned: np.ndarray
    points: np.ndarray


def to_frame(aligned: np.ndarray) -> np.ndarray:
    """Canonical coordinates [..., 2] → pixel coordinates in the synthetic frame."""
    return (np.asarray(aligned, np.float32) * IOD_PX + EYE_MIDPOINT).astype(np.float32)


def subject_shape(rng: np.random.Generator | None = None) -> SubjectShape:
    """A seeded subject shape; ``rng=None`` gives the canonical face itself."""
    aligned = CANONICAL_TEMPLATE.astype(np.float64).copy()
    if rng is not None:
        for name, mode in _shape_modes().items():
            aligned += rng.normal(0.0, SHAPE_MODE_SD[name]) * mode
        aligned += rng.normal(0.0, POINT_JITTER_SD, size=aligned.shape)
    aligned = aligned.astype(np.float32)
    return SubjectShape(aligned=aligned, points=to_frame(aligned))
