"""The aligned face crop on which flow and texture are computed.

Geometry (fixed, documented here once): the canonical template (inter-ocular distance 1, eye-centre
midpoint at the origin) is scaled by ``IOD_FRACTION * face_size`` and its origin placed at
``EYE_MIDPOINT * face_size``. With the defaults the brows sit at about 0.14 and the chin at about
0.97 of the crop height and the contour spans 0.07..0.93 of its width, so the whole 68-point face
fits. A clip's frames are warped with ONE transform (the clip's similarity onto the template,
followed by this scaling), never per frame, so that the crop does not jitter.
"""

from __future__ import annotations

import cv2
import numpy as np

IOD_FRACTION = 0.4
EYE_MIDPOINT = (0.5, 0.27)


def canonical_to_crop(face_size: int) -> np.ndarray:
    """[2, 3] affine taking canonical coordinates to crop pixels."""
    scale = IOD_FRACTION * face_size
    return np.array(
        [[scale, 0.0, EYE_MIDPOINT[0] * face_size], [0.0, scale, EYE_MIDPOINT[1] * face_size]],
        dtype=np.float64,
    )


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The [2, 3] affine ``outer ∘ inner``."""
    outer3 = np.vstack([outer, [0.0, 0.0, 1.0]])
    inner3 = np.vstack([inner, [0.0, 0.0, 1.0]])
    return (outer3 @ inner3)[:2]


def pixel_to_crop(alignment: np.ndarray, face_size: int) -> np.ndarray:
    """[2, 3] affine from source-frame pixels to crop pixels, given the clip's ``alignment``
    (source pixels → canonical, as from ``LandmarkTrack.alignment()``)."""
    return compose(canonical_to_crop(face_size), alignment)


def to_grey(image: np.ndarray) -> np.ndarray:
    """uint8 H×W grey from a grey, BGR or BGRA image."""
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def warp_to_crop(image: np.ndarray, transform: np.ndarray, face_size: int) -> np.ndarray:
    """Warp ``image`` (any channels) with ``transform`` [2, 3] into a face_size² crop (bilinear,
    replicated borders so a face near the frame edge gives no black wedge)."""
    return cv2.warpAffine(
        image,
        transform.astype(np.float64),
        (face_size, face_size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
