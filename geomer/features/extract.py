"""Per-clip feature extraction: :func:`extract_clip` and :func:`extract_flow_image_clip`.

Every error a user can cause (bad frame numbers, no face at onset, NaN in a track, frames of
different sizes) is a one-line :class:`GeomerError` naming the clip and the frame.
"""

from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np

from geomer.errors import GeomerError, check_shape
from geomer.features.apex import spot_apex
from geomer.features.crop import canonical_to_crop, compose, pixel_to_crop, to_grey, warp_to_crop
from geomer.features.flow import compute_flow
from geomer.features.flow_image import flow_image_of_decoded, flow_image_of_field, points_in_flow_image
from geomer.features.flow_nodes import flow_at_nodes
from geomer.features.geometry import edge_displacement, resample_displacement
from geomer.features.sampling import sample_patches
from geomer.features.types import ClipFeatures, FeatureSettings

Frames = str | os.PathLike | Sequence[np.ndarray]


def _apply(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return (points.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def _check_track(track, name: str) -> None:
    finite = np.isfinite(track.points).all(axis=(1, 2))
    bad = np.flatnonzero(track.valid & ~finite)
    if bad.size:
        raise GeomerError(
            f"clip {name}: landmark track has NaN at frame {int(track.frame_index[bad[0]])}"
        )


def _position(track, frame: int, what: str, name: str) -> int:
    hits = np.flatnonzero(track.frame_index == int(frame))
    if hits.size == 0:
        first, last = (int(track.frame_index[0]), int(track.frame_index[-1])) if len(track) else (None, None)
        raise GeomerError(f"clip {name}: {what} frame {frame} is outside the clip (frames {first}..{last})")
    return int(hits[0])


def _load_frames(frames: Frames, positions: list[int], track, name: str) -> dict[int, np.ndarray]:
    if isinstance(frames, (str, os.PathLike)):
        from landmarks.errors import LandmarksError
        from landmarks.io import read_frames

        try:
            images = read_frames(frames, positions, numbers=track.frame_index[positions])
        except LandmarksError as error:
            raise GeomerError(f"clip {name}: {error}") from None
        loaded = dict(zip(positions, images))
        shapes = {p: image.shape[:2] for p, image in loaded.items()}
    else:
        if len(frames) != len(track):
            raise GeomerError(
                f"clip {name}: {len(frames)} frames given for a track of {len(track)} frames"
            )
        loaded = {p: np.asarray(frames[p]) for p in positions}
        shapes = {p: np.asarray(image).shape[:2] for p, image in enumerate(frames)}
    reference = shapes[positions[0]]
    for position, shape in shapes.items():
        if shape != reference:
            raise GeomerError(
                f"clip {name}: frame {int(track.frame_index[position])} is {shape[1]}×{shape[0]}, "
                f"frame {int(track.frame_index[positions[0]])} is {reference[1]}×{reference[0]}"
            )
    return loaded


def extract_clip(
    frames: Frames,
    track,
    onset: int,
    apex: int | None = None,
    offset: int | None = None,
    settings: FeatureSettings = FeatureSettings(),
    clip: str = "",
) -> ClipFeatures:
    """Features of one clip from its frames and landmark track.

    Args:
        frames: a video file or frame folder (read with ``landmarks.io.read_frames``), or the
            clip's images (uint8 grey or BGR) in track order.
        track: the clip's ``landmarks.LandmarkTrack``.
        onset, apex, offset: frame NUMBERS (``track.frame_index``); ``apex=None`` → spotted with
            :func:`geomer.features.spot_apex`; ``offset=None`` → the track's last frame.
        settings: :class:`FeatureSettings`; clip: a name for messages and the record.

    Only the onset, apex and ``sequence_steps`` frames are read and warped; shapes of the result
    are documented on :class:`ClipFeatures`.
    """
    name = clip or str(track.source)
    # messages name the clip and the video or frame folder it was read from
    where = f"{clip} ({track.source})" if clip and track.source else name
    graph = settings.graph()
    _check_track(track, where)
    start = _position(track, onset, "onset", where)
    stop = len(track) - 1 if offset is None else _position(track, offset, "offset", where)
    if not track.valid[start]:
        raise GeomerError(f"clip {where}: no face in onset frame {onset}")
    if stop <= start:
        raise GeomerError(f"clip {where}: offset frame {offset} is not after onset frame {onset}")
    spotted = apex is None
    if spotted:
        apex = spot_apex(track, onset, int(track.frame_index[stop]))
    peak = _position(track, apex, "apex", where)
    if not start <= peak <= stop:
        raise GeomerError(
            f"clip {where}: apex frame {apex} is outside onset..offset "
            f"({onset}..{int(track.frame_index[stop])})"
        )
    if not track.valid[peak]:
        raise GeomerError(f"clip {where}: no face in apex frame {apex}")

    alignment = track.alignment()
    aligned = _apply(track.points[:, graph.node_ids], alignment)  # [T, N, 2] canonical
    geometry = resample_displacement(aligned, track.valid, start, stop, settings.steps)
    apex_displacement = aligned[peak] - aligned[start]

    sequence_positions = np.round(np.linspace(start, stop, settings.sequence_steps)).astype(int)
    # Sequence frames where the face was lost still show the face region (the crop is fixed).
    needed = sorted({start, peak, *sequence_positions.tolist()})
    images = _load_frames(frames, needed, track, where)
    transform = pixel_to_crop(alignment, settings.face_size)
    crops = {p: warp_to_crop(to_grey(images[p]), transform, settings.face_size) for p in needed}
    centres = _apply(track.points[start, graph.node_ids], transform)

    # One dense flow of the whole crop: the whole-face flow image, and the node samples in the
    # dense mode (the patches mode computes its own windows' flow).
    dense = compute_flow(crops[start], crops[peak], settings.flow_method)
    flow_stats, flow_patches = flow_at_nodes(
        crops[start], crops[peak], centres, settings.scales, settings.patch_size,
        settings.flow_method, settings.flow_mode, dense_flow=dense,
    )
    pair = np.stack([crops[start], crops[peak]], axis=-1).astype(np.float32) / 255.0
    texture = sample_patches(pair, centres, settings.scales, settings.patch_size)
    middle = (settings.scales[len(settings.scales) // 2],)
    stack = np.stack([crops[p] for p in sequence_positions], axis=-1).astype(np.float32) / 255.0
    sequence = sample_patches(stack, centres, middle, settings.patch_size)[:, 0]  # [N, Tseq, P, P]

    return ClipFeatures(
        clip=name,
        onset=int(onset),
        apex=int(apex),
        offset=int(track.frame_index[stop]),
        apex_spotted=spotted,
        points=aligned[start],
        geometry=geometry,
        apex_displacement=apex_displacement,
        edge_displacement=edge_displacement(apex_displacement, graph.edges),
        flow_stats=flow_stats,
        flow_patches=flow_patches,
        texture_onset=texture[:, :, 0],
        texture_apex=texture[:, :, 1],
        sequence=sequence.transpose(1, 0, 2, 3),
        flow_image=flow_image_of_field(dense, settings.flow_image_size),
        # the flow image is the face crop shrunk to F×F: the onset nodes' crop positions, scaled
        flow_image_points=points_in_flow_image(centres, settings.face_size, settings.flow_image_size),
    )


def _read_image(image, name: str, what: str) -> np.ndarray:
    """A path read by the landmarks package's decoder (grey stays grey; a decoder warning, e.g. a
    truncated JPEG that still decodes with grey rows, is an error naming the file), or an array."""
    from landmarks.errors import LandmarksError
    from landmarks.io import read_image

    if isinstance(image, (str, os.PathLike)):
        try:
            return read_image(image)
        except LandmarksError as error:
            raise GeomerError(f"clip {name}: {what}: {error}") from None
    return np.asarray(image)


def decode_flow_image(flow_image: np.ndarray) -> np.ndarray:
    """A u/v/strain flow image (RGB channels min-max normalised to 0..255 per image, as the
    widely shared STSNet_whole_norm_u_v_os PNGs) → [h, w, 3] float32 (u, v, strain).

    Each channel is mapped to [0, 1]; u and v are re-centred by subtracting their median, because
    most of a face crop does not move, so the median is the normalised value of zero motion (the
    per-image min-max normalisation lost the true zero). Strain is non-negative and stays in
    [0, 1]. The units are therefore relative to each image's flow range, not pixels.
    """
    values = flow_image.astype(np.float32) / 255.0
    values[..., 0] -= np.median(values[..., 0])
    values[..., 1] -= np.median(values[..., 1])
    return values  # the convention of geomer.features.flow_image.normalise_flow_image


def extract_flow_image_clip(
    apex_image,
    flow_image,
    settings: FeatureSettings = FeatureSettings(),
    clip: str = "",
    *,
    apex_frame: int = -1,
) -> ClipFeatures:
    """Features of a megc2019-flow clip: an apex face crop plus its onset→apex flow image.

    Args:
        apex_image: path or uint8 image (grey or BGR), e.g. the 224×224 apex crop.
        flow_image: path (a PNG whose RGB channels are u, v, strain) or an array [h, w, 3] already
            in (u, v, strain) channel order, 0..255.
        apex_frame: the apex frame number when known (-1: unknown).

    Landmarks are detected on the apex crop (``landmarks.landmarks_on_image`` with
    ``settings.backend``: the shared composite's crops have no margin, and the landmarks package
    searches again on the image padded, upsampled and with the CNN detector before it reports no
    face; then a GeomerError names the clip and the image). The flow image is decoded
    (:func:`decode_flow_image`), upsampled to the apex crop's size (bilinear), warped with the apex
    crop into the aligned face crop and sampled at the apex landmarks; it is also kept whole as
    ``flow_image``. There is no onset: geometry, texture_onset and sequence are None, and
    ``points`` are the aligned apex landmarks.
    """
    from landmarks.align import estimate_similarity
    from landmarks.backends import landmarks_on_image
    from landmarks.errors import LandmarksError
    from landmarks.template import CANONICAL_TEMPLATE

    name = clip or (str(apex_image) if isinstance(apex_image, (str, os.PathLike)) else "flow clip")
    graph = settings.graph()
    image = _read_image(apex_image, name, "apex image")
    # a one-channel flow image stays one channel (not copied into u, v and strain alike), so the
    # shape check below refuses it
    flow_pixels = _read_image(flow_image, name, "flow image")
    described = f"clip {name}: flow image" + (f" {flow_image}" if isinstance(flow_image, (str, os.PathLike)) else "")
    check_shape(flow_pixels, ("H", "W", 3), described, hint=" (channels u, v, strain)")
    if isinstance(flow_image, (str, os.PathLike)):
        flow_pixels = flow_pixels[..., ::-1]  # OpenCV reads BGR; the file's RGB is (u, v, strain)
    try:
        points = landmarks_on_image(image, backend=settings.backend)
    except LandmarksError as error:
        where = apex_image if isinstance(apex_image, (str, os.PathLike)) else "apex image"
        raise GeomerError(f"clip {name}: {where}: {error}") from None
    if not np.isfinite(points).all():
        raise GeomerError(f"clip {name}: apex landmarks contain NaN")
    alignment = estimate_similarity(points, CANONICAL_TEMPLATE)
    transform = compose(canonical_to_crop(settings.face_size), alignment)
    height, width = image.shape[:2]
    decoded = decode_flow_image(np.ascontiguousarray(flow_pixels))
    field = cv2.resize(decoded, (width, height), interpolation=cv2.INTER_LINEAR)
    field = warp_to_crop(field, transform, settings.face_size)
    crop = warp_to_crop(to_grey(image), transform, settings.face_size)
    centres = _apply(points[graph.node_ids], transform)

    from geomer.features.sampling import patch_flow_statistics

    flow_stats = patch_flow_statistics(field[..., :2], field[..., 2], centres, settings.scales)
    flow_patches = sample_patches(field, centres, settings.scales, settings.patch_size)
    texture_apex = sample_patches(crop.astype(np.float32) / 255.0, centres, settings.scales,
                                  settings.patch_size)[:, :, 0]
    return ClipFeatures(
        clip=name,
        onset=None,
        apex=int(apex_frame),
        offset=None,
        apex_spotted=False,
        points=_apply(points[graph.node_ids], alignment),
        geometry=None,
        apex_displacement=None,
        edge_displacement=None,
        flow_stats=flow_stats,
        flow_patches=flow_patches,
        texture_onset=None,
        texture_apex=texture_apex,
        sequence=None,
        flow_image=flow_image_of_decoded(decoded, settings.flow_image_size),
        # the flow image covers the apex crop (not the aligned face): the detected apex points,
        # scaled from the crop's pixels to the F×F image's
        flow_image_points=points_in_flow_image(points[graph.node_ids], (width, height),
                                               settings.flow_image_size),
    )
