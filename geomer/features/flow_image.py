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

Each clip also records where its nodes lie in the flow image (``ClipFeatures.flow_image_points``:
the aligned crop's onset nodes for frame clips, the apex crop's detected nodes for the composite),
so the image can be split into facial-component regions (:func:`flow_image_regions`): every pixel
of the face belongs to the component of its nearest node. The occlusion relations neutralise a
component by its region (``geomer.relations.neutralise``).
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


#: How far outside the nodes' convex hull a pixel still counts as face, in inter-ocular distances
#: (the forehead above the brows and the cheeks beyond the jaw line move with them).
FACE_MARGIN_IOD = 0.25


def points_in_flow_image(points: np.ndarray, image_size, size: int) -> np.ndarray:
    """Positions [N, 2] (x, y) in the pixels of an image of ``image_size`` (a side, or (width,
    height)) → the same positions in the F×F flow image made from that image by resizing
    (pixel centres on pixel centres: ``(p + 0.5)·F / side − 0.5``)."""
    width, height = (image_size, image_size) if np.isscalar(image_size) else image_size
    scale = np.array([size / float(width), size / float(height)])
    return ((np.asarray(points, np.float64) + 0.5) * scale - 0.5).astype(np.float32)


def flow_image_regions(points: np.ndarray, component: np.ndarray, size: int,
                       eyes: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Which facial component each pixel of an F×F flow image shows: [F, F] int64, −1 off the face.

    A pixel belongs to the component of its nearest node (``points`` [N, 2] in flow-image pixels,
    ``component`` [N]) when it lies on the face: inside the nodes' convex hull grown by
    :data:`FACE_MARGIN_IOD` inter-ocular distances (``eyes``: the index arrays of the two eyes'
    nodes, whose centres give the distance; without them, the hull's larger side / 2.5, about a
    face's width in inter-ocular distances).
    """
    from scipy.spatial import cKDTree

    points = np.asarray(points, np.float64)
    component = np.asarray(component, np.int64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(component) or len(points) < 3:
        raise ValueError(f"need [N, 2] points (N ≥ 3) and [N] components, got {points.shape} and {component.shape}")
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="xy"), axis=-1).reshape(-1, 2)
    _, nearest = cKDTree(points).query(grid)
    if eyes is not None:
        iod = float(np.linalg.norm(points[eyes[0]].mean(axis=0) - points[eyes[1]].mean(axis=0)))
    else:
        iod = float(np.ptp(points, axis=0).max()) / 2.5
    hull = cv2.convexHull(points.astype(np.float32))
    # signed distance to the hull (positive inside); a pixel is face within the margin outside it
    inside = np.array([cv2.pointPolygonTest(hull, (float(x), float(y)), True) for x, y in grid])
    on_face = inside >= -FACE_MARGIN_IOD * iod
    return np.where(on_face, component[nearest], -1).reshape(size, size)
