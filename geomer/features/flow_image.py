"""The whole face's onset→apex flow as one small image (u, v, optical strain), as STSTNet reads it.

Two sources give the same kind of image:

- frame clips: the dense flow of the aligned onset and apex face crops (``face_size``) and its
  optical strain, shrunk to F×F by area averaging;
- the shared composite's ``STSNet_whole_norm_u_v_os`` PNGs (28×28, each channel min-max
  normalised to 0..255 per image), decoded by :func:`geomer.features.decode_flow_image`.

Both are brought to one convention by :func:`normalise_flow_image`: each channel min-max
normalised to [0, 1] per image, then u and v re-centred on their median (most of a face does not
move, so the median is the value of no motion; the per-image normalisation lost the true zero).
The units are relative to each image's flow range, not pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from geomer.features.flow import optical_strain


def normalise_flow_image(values: np.ndarray) -> np.ndarray:
    """[h, w, 3] (u, v, strain) in any units → [h, w, 3] float32 in the convention above."""
    values = values.astype(np.float32).copy()
    low = values.reshape(-1, 3).min(axis=0)
    span = values.reshape(-1, 3).max(axis=0) - low
    values = (values - low) / np.where(span > 0, span, 1.0)
    values[..., 0] -= np.median(values[..., 0])
    values[..., 1] -= np.median(values[..., 1])
    return values


def resize_flow_image(values: np.ndarray, size: int) -> np.ndarray:
    """[h, w, 3] → [size, size, 3] (area averaging when shrinking, bilinear when enlarging)."""
    if values.shape[:2] == (size, size):
        return values.astype(np.float32)
    shrink = values.shape[0] > size
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(values.astype(np.float32), (size, size), interpolation=interpolation)


def flow_image_of_field(flow: np.ndarray, size: int) -> np.ndarray:
    """The flow image [3, size, size] of a dense flow field [H, W, 2] (pixels)."""
    field = np.concatenate([flow, optical_strain(flow)[..., None]], axis=-1)
    return normalise_flow_image(resize_flow_image(field, size)).transpose(2, 0, 1).copy()


def flow_image_of_decoded(decoded: np.ndarray, size: int) -> np.ndarray:
    """The flow image [3, size, size] of a decoded composite flow image [h, w, 3] (already in
    the convention: only resized)."""
    return resize_flow_image(decoded, size).transpose(2, 0, 1).copy()
