"""``track()``: 68-point landmarks for every frame of a clip, detecting rarely.

Design (the expensive part is face detection, 15-35 ms per 640×360 frame with dlib's HOG; the
68-point predictor costs about 2.5 ms):

1. Detect once on the first frame with the thorough search (``find_faces``: upsampled, then
   retries for tight face crops) and follow the LARGEST face; its box is re-fitted by the
   re-detection of step 4, so that later re-detections agree with it.
2. Carry that face box from frame to frame and predict 68 points in it every frame.
3. The box is NOT re-fitted to every frame's points: dlib's predictor output depends on the box it
   is given, so a box following each frame's noisy points feeds noise back (jitter as large as a
   micro-expression). The box stays fixed and is translated only when the face has moved more
   than ``move_fraction`` of the box width since the box was set.
4. Every ``redetect_every`` frames the detector runs on a region around the box, scaled so the
   face is about ``backends.DETECT_FACE_PX`` pixels wide (``detect_near``, a few ms); the detection that overlaps the box
   is the followed face. It replaces the box only when it differs materially (centre or size by
   more than ``move_fraction``). No overlapping detection there nor on the full frame → the face
   is lost: ``valid=False``, and every following frame runs a full detection until it returns
   (the thorough search on the first lost frame and every ``redetect_every`` frames after it, the
   plain one in between, so a clip without a face stays affordable). Regions reaching outside the
   frame (a face crop's box) are padded by repeating the border.
5. Two cheap per-frame loss tests force an early re-detection: the box's content, shrunk to
   16×16 grey, against the same thumbnail at the last detection (a face leaving, an occlusion or a
   cut changes it by tens of grey levels, a micro-expression by a few), and the predicted shape's
   extent and centre against the box. So a lost face is marked from the first frame it is gone.
6. Optional smoothing (``smooth`` = an odd window): a running median over each run of valid
   frames. A median keeps steps (a 1-px move survives intact) while removing single-frame spikes.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from landmarks.backends import (
    SAME_FACE_IOU,
    box_iou,
    detect_near,
    find_faces,
    refit_box,
    resolve_backend,
    to_gray,
)
from landmarks.errors import LandmarksError
from landmarks.io import MAX_FPS, open_frames
from landmarks.track import LandmarkTrack

#: Side of the grey thumbnail of the box content compared frame to frame.
THUMBNAIL_PX = 16
#: Mean absolute thumbnail change (grey levels) that triggers a re-detection.
CHANGE_LEVELS = 20.0


class _Tracker:
    def __init__(self, backend, redetect_every: int, move_fraction: float) -> None:
        self.backend = backend
        self.redetect_every = int(redetect_every)
        self.move_fraction = float(move_fraction)
        self.box: np.ndarray | None = None  # float32 (x0, y0, x1, y1), integer-valued
        self.last_box: np.ndarray | None = None  # where the face was before it was lost
        self.reference: np.ndarray | None = None  # points' centroid when the box was set
        self.since_detection = 0
        self.thumbnail: np.ndarray | None = None  # box content at the last detection
        self.lost_frames = 0  # consecutive frames searched without finding the face
        self.redetections = 0
        self.full_detections = 0

    # -- detection -------------------------------------------------------------------------
    def _detect_full(self, gray: np.ndarray, thorough: bool = False) -> np.ndarray:
        self.full_detections += 1
        return find_faces(gray, self.backend, thorough=thorough)

    def _detect_near(self, gray: np.ndarray, box: np.ndarray) -> np.ndarray:
        self.redetections += 1
        return detect_near(gray, box, self.backend)

    @staticmethod
    def _pick(boxes: np.ndarray, previous: np.ndarray | None) -> np.ndarray | None:
        """The followed face among ``boxes`` (largest first): the one overlapping the previous box
        most, or the largest when there is no previous box or none overlaps."""
        if len(boxes) == 0:
            return None
        if previous is not None:
            overlap = box_iou(previous, boxes)
            if overlap.max() >= SAME_FACE_IOU:
                return boxes[int(overlap.argmax())]
        return boxes[0]

    def _differs(self, new: np.ndarray, old: np.ndarray) -> bool:
        width = old[2] - old[0]
        shift = np.abs((new[:2] + new[2:]) / 2 - (old[:2] + old[2:]) / 2).max()
        size_change = abs((new[2] - new[0]) / width - 1.0)
        return shift > self.move_fraction * width or size_change > self.move_fraction

    def _lose(self) -> None:
        self.last_box, self.box = self.box, None

    def _set_box(self, box: np.ndarray) -> None:
        self.box = np.round(box).astype(np.float32)
        self.reference = None
        self.since_detection = 0
        self.thumbnail = None

    def _thumbnail(self, gray: np.ndarray) -> np.ndarray:
        height, width = gray.shape
        x0, y0, x1, y1 = (int(v) for v in self.box)
        crop = gray[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]
        if crop.size == 0:
            return np.zeros((THUMBNAIL_PX, THUMBNAIL_PX), np.float32)
        return cv2.resize(crop, (THUMBNAIL_PX, THUMBNAIL_PX), interpolation=cv2.INTER_AREA).astype(np.float32)

    def _changed(self, gray: np.ndarray) -> bool:
        if self.thumbnail is None:
            return False
        return float(np.abs(self._thumbnail(gray) - self.thumbnail).mean()) > CHANGE_LEVELS

    # -- per frame -------------------------------------------------------------------------
    def _plausible(self, points: np.ndarray) -> bool:
        if not np.isfinite(points).all():
            return False
        box = self.box
        width = box[2] - box[0]
        extent = (points.max(axis=0) - points.min(axis=0)) / width
        centre = (points.max(axis=0) + points.min(axis=0)) / 2
        offset = np.abs(centre - (box[:2] + box[2:]) / 2).max() / width
        return bool(0.5 < extent[0] < 1.6 and 0.5 < extent[1] < 1.8 and offset < 0.35)

    def step(self, gray: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Points [68, 2] and the box used for one frame, or (None, None) when the face is lost."""
        if self.box is None:
            # (re-)acquire: prefer the face where the lost one was, else the largest
            thorough = self.lost_frames % self.redetect_every == 0
            found = self._pick(self._detect_full(gray, thorough=thorough), self.last_box)
            if found is None:
                self.lost_frames += 1
                return None, None
            self.lost_frames = 0
            # The box as the later re-detections near it will fit it: a box from another search
            # (upsampled, padded) would be replaced at the first re-detection, and every box
            # change moves the predicted points by a fraction of a pixel.
            self.redetections += 1
            self._set_box(refit_box(gray, found, self.backend))
        elif self.since_detection >= self.redetect_every or self._changed(gray):
            if not self._redetect(gray):
                return None, None
        points = self.backend.predict(gray, self.box)
        if not self._plausible(points):
            if not self._redetect(gray):
                return None, None
            points = self.backend.predict(gray, self.box)
            if not self._plausible(points):
                self._lose()
                return None, None
        if self.thumbnail is None:
            self.thumbnail = self._thumbnail(gray)
        centroid = points.mean(axis=0)
        if self.reference is None:
            self.reference = centroid
        else:
            moved = centroid - self.reference
            if np.abs(moved).max() > self.move_fraction * (self.box[2] - self.box[0]):
                # The face moved materially: move the box with it and re-predict this frame so the
                # points always come from the box recorded beside them.
                self.box = self.box + np.round(np.tile(moved, 2)).astype(np.float32)
                points = self.backend.predict(gray, self.box)
                self.reference = points.mean(axis=0)
                self.thumbnail = self._thumbnail(gray)
        self.since_detection += 1
        return points, self.box

    def _redetect(self, gray: np.ndarray) -> bool:
        previous = self.box
        found = self._pick(self._detect_near(gray, previous), previous)
        if found is not None and box_iou(previous, found[None])[0] < SAME_FACE_IOU:
            found = None
        if found is None:
            candidate = self._pick(self._detect_full(gray), previous)
            if candidate is not None and box_iou(previous, candidate[None])[0] >= SAME_FACE_IOU:
                found = candidate
        if found is None:
            self._lose()
            return False
        if self._differs(found, previous):
            self._set_box(found)
        else:
            self.since_detection = 0
            self.thumbnail = None  # re-taken on this frame: slow lighting drift never accumulates
        return True


def smooth_points(points: np.ndarray, valid: np.ndarray, window: int) -> np.ndarray:
    """Running median of odd length ``window`` along time within each run of valid frames.

    Shapes: points [T, 68, 2], valid [T] → [T, 68, 2] float32. A median preserves steps, so a
    1-px move that lasts longer than half the window is kept exactly.
    """
    from scipy.ndimage import median_filter

    if window <= 1:
        return points
    if window % 2 == 0:
        raise LandmarksError(f"smoothing window must be odd, got {window}")
    out = points.copy()
    edges = np.flatnonzero(np.diff(np.concatenate([[0], valid.astype(np.int8), [0]])))
    for start, stop in zip(edges[::2], edges[1::2]):
        out[start:stop] = median_filter(points[start:stop], size=(window, 1, 1), mode="nearest")
    return out


#: The widest running-median window (frames): 4 s at 250 frames/s, wider than any expression;
#: a window of 10^11 frames would ask for 93 GiB.
MAX_SMOOTH = 999


def check_track_options(
    *, redetect_every: int = 30, smooth: int = 0, min_valid_fraction: float = 0.5,
    move_fraction: float = 0.1, fps: float | None = None,
) -> None:
    """Raise ``LandmarksError`` for an option of ``track`` out of its range (before any work)."""
    if not (isinstance(redetect_every, numbers.Integral) and redetect_every >= 1):
        raise LandmarksError(f"redetect_every must be an integer >= 1, got {redetect_every!r}")
    if not (isinstance(smooth, numbers.Integral) and 0 <= smooth <= MAX_SMOOTH and (smooth <= 1 or smooth % 2 == 1)):
        raise LandmarksError(f"smooth must be 0 (off) or an odd window from 1 to {MAX_SMOOTH}, got {smooth!r}")
    if not 0.0 <= float(min_valid_fraction) <= 1.0:
        raise LandmarksError(f"min_valid_fraction must be within 0..1, got {min_valid_fraction!r}")
    if not 0.0 < float(move_fraction) < 1.0:
        raise LandmarksError(f"move_fraction must be within 0..1 (exclusive), got {move_fraction!r}")
    if fps is not None and not (math.isfinite(float(fps)) and 0 < float(fps) <= MAX_FPS):
        raise LandmarksError(f"fps must be a positive number up to {MAX_FPS:g}, got {fps!r}")


def track(
    source: str | os.PathLike | Sequence[np.ndarray],
    *,
    backend="dlib",
    redetect_every: int = 30,
    smooth: int = 0,
    min_valid_fraction: float = 0.5,
    move_fraction: float = 0.1,
    fps: float | None = None,
    progress: bool = False,
    stats: dict | None = None,
    name: str = "<images>",
) -> LandmarkTrack:
    """Track 68 landmarks through a video, a frame folder or a sequence of images.

    ``backend``: a name for ``get_backend`` or a backend object. ``redetect_every``: frames
    between re-detections near the tracked box. ``smooth``: odd running-median window over valid
    frames (0: off). ``min_valid_fraction``: below this fraction of frames with a face, raise.
    ``move_fraction``: how far (fraction of the box width) the face must move before the box
    follows it. ``fps`` overrides (or, for folders and image lists, supplies) the frame rate.
    ``stats``, when given a dict, receives counts (``redetections``, ``full_detections``).
    A path source is recorded as an absolute path, so the track finds its frames from anywhere;
    ``name`` names a sequence of images in errors and in the track (e.g. the file they came from).

    Raises ``LandmarksError`` naming the source when no face is ever found or too few frames have
    one, and for options out of range (``check_track_options``).
    """
    check_track_options(
        redetect_every=redetect_every, smooth=smooth, min_valid_fraction=min_valid_fraction,
        move_fraction=move_fraction, fps=fps,
    )
    backend = resolve_backend(backend)
    if isinstance(source, (str, os.PathLike)):
        frames = open_frames(source, fps=fps)
        name, rate, total = str(frames.path), frames.fps, len(frames)
        recorded = os.path.abspath(name)
        items: Iterable[tuple[int, np.ndarray]] = frames
    else:
        images = list(source)
        if not images:
            raise LandmarksError("track: the image sequence is empty")
        rate, total = (float(fps) if fps is not None else math.nan), len(images)
        recorded = name
        items = enumerate(images)
    if progress:
        from tqdm import tqdm

        items = tqdm(items, total=total, desc=os.path.basename(name) or name, unit="frame")

    tracker = _Tracker(backend, redetect_every, move_fraction)
    numbers, all_points, boxes, valid = [], [], [], []
    shape = None
    missing = np.full((68, 2), np.nan, dtype=np.float32)
    try:
        for number, image in items:
            if shape is None:
                shape = image.shape[:2]
            elif image.shape[:2] != shape:
                raise LandmarksError(
                    f"{name}: frame {number} is {image.shape[1]}x{image.shape[0]}, "
                    f"the first frame is {shape[1]}x{shape[0]}"
                )
            points, box = tracker.step(to_gray(image))
            numbers.append(number)
            valid.append(points is not None)
            all_points.append(missing if points is None else points)
            boxes.append(np.full(4, np.nan, np.float32) if box is None else box.copy())
    finally:
        if progress:  # the bar ends before any message about why the loop ended
            items.close()

    valid_mask = np.array(valid, dtype=bool)
    if not valid_mask.any():
        raise LandmarksError(f"{name}: no face found in any of its {len(valid)} frames")
    if valid_mask.mean() < min_valid_fraction:
        raise LandmarksError(
            f"{name}: a face was found in only {valid_mask.sum()} of {len(valid)} frames "
            f"(below the minimum fraction {min_valid_fraction:g})"
        )
    points_array = np.stack(all_points).astype(np.float32)
    if smooth:
        points_array = smooth_points(points_array, valid_mask, int(smooth))
    if stats is not None:
        stats.update(redetections=tracker.redetections, full_detections=tracker.full_detections)
    return LandmarkTrack(
        points=points_array,
        valid=valid_mask,
        frame_index=np.array(numbers, dtype=np.int64),
        box=np.stack(boxes),
        fps=rate,
        source=recorded,
        backend=getattr(backend, "name", str(backend)),
    )
