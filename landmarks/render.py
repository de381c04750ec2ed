"""Rendered test clips: scikit-image's bundled ``astronaut`` photo moved by known transforms.

Used by the tests and the benchmark, so that tracking accuracy can be measured against a known
truth without any data file. The photo's top 360 rows (the face and shoulders, the face about
90 px wide) are placed at the centre of a grey canvas (640×360 by default) and each frame is one
``cv2.warpAffine`` (bilinear) of it, so sub-pixel shifts are real sub-pixel image motion.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from landmarks.align import apply_transform

#: Rows of the astronaut photo kept (its face is at rows ~80-180).
PHOTO_ROWS = 360
CANVAS_GREY = 128


@functools.lru_cache(maxsize=1)
def _photo() -> tuple[np.ndarray, np.ndarray]:
    from skimage import data

    from landmarks.backends import landmarks_on_image

    rgb = np.ascontiguousarray(data.astronaut())
    points = landmarks_on_image(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    rgb.setflags(write=False)
    points.setflags(write=False)
    return rgb, points


def photo_face() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut photo (RGB uint8 [512, 512, 3]) and its dlib landmarks [68, 2] float32."""
    rgb, points = _photo()
    return rgb.copy(), points.copy()


def placement(size: tuple[int, int] = (640, 360)) -> np.ndarray:
    """The [2, 3] transform placing the cropped photo at the centre of a ``size`` (W, H) canvas."""
    width, height = size
    rgb, _ = _photo()
    return np.array(
        [[1.0, 0.0, (width - rgb.shape[1]) / 2], [0.0, 1.0, (height - PHOTO_ROWS) / 2]]
    )


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """[2, 3] transform applying ``inner`` then ``outer``."""
    full = lambda m: np.vstack([m, [0.0, 0.0, 1.0]])  # noqa: E731
    return (full(outer) @ full(inner))[:2]


def transformed_photo_clip(
    transforms: np.ndarray, size: tuple[int, int] = (640, 360)
) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames of the photo under per-frame canvas transforms, and the true points.

    Shapes:
        transforms: [T, 2, 3] affine maps applied on the canvas AFTER centring the photo
            (identity = the photo centred).
        returns: T BGR uint8 frames of ``size`` (W, H), and true points [T, 68, 2] (the photo's
            dlib landmarks moved by the same maps).
    """
    rgb, points = _photo()
    bgr = cv2.cvtColor(rgb[:PHOTO_ROWS], cv2.COLOR_RGB2BGR)
    base = placement(size)
    frames, truth = [], []
    for transform in np.asarray(transforms, dtype=np.float64):
        matrix = _compose(transform, base)
        frames.append(
            cv2.warpAffine(
                bgr, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                borderValue=(CANVAS_GREY,) * 3,
            )
        )
        truth.append(apply_transform(points, matrix))
    return frames, np.stack(truth)


def shift_transforms(shifts: np.ndarray) -> np.ndarray:
    """[T, 2] (dx, dy) shifts → [T, 2, 3] translations."""
    shifts = np.asarray(shifts, dtype=np.float64).reshape(-1, 2)
    transforms = np.tile(np.eye(2, 3), (len(shifts), 1, 1))
    transforms[:, :, 2] = shifts
    return transforms


def shifted_photo_clip(shifts: np.ndarray, size: tuple[int, int] = (640, 360)) -> list[np.ndarray]:
    """BGR frames of the photo translated by ``shifts`` [T, 2] (dx, dy) pixels, sub-pixel allowed."""
    frames, _ = transformed_photo_clip(shift_transforms(shifts), size)
    return frames


def similarity_transform(angle_degrees: float, scale: float, shift, centre) -> np.ndarray:
    """[2, 3] rotation by ``angle_degrees`` and ``scale`` about ``centre``, then ``shift``."""
    matrix = cv2.getRotationMatrix2D(tuple(float(c) for c in centre), angle_degrees, scale)
    matrix[:, 2] += np.asarray(shift, dtype=np.float64)
    return matrix
