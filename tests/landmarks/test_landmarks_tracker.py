"""The tracker on rendered clips of the astronaut photo moved by known amounts.

Measured errors (mean over the 68 points of the displacement from frame 0, against the true
shift; dlib backend with its default 3× enlarged-crop prediction): sub-pixel shifts in 0.25-px
steps up to 2.5 px plus two 1-px steps → mean error 0.07 px, max 0.13 px (IOD 43 px); the 1-px
steps are recovered as 1.05 px (x) and 0.89 px (y). Plain dlib (integer points) gave a mean error
of 0.18 px, max 0.43 px on such shifts. The asserts leave headroom over these figures.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from landmarks import LandmarksError, landmarks_on_image, track
from landmarks.align import apply_transform
from landmarks.render import (
    photo_face,
    shift_transforms,
    shifted_photo_clip,
    similarity_transform,
    transformed_photo_clip,
)
from landmarks.tracker import smooth_points


def _displacement(points: np.ndarray) -> np.ndarray:
    """Mean displacement of the 68 points from frame 0: [T, 2]."""
    return (points - points[:1]).mean(axis=1)


def test_single_photo_equals_single_image_landmarks():
    rgb, points = photo_face()
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    result = track([bgr])
    assert result.points.shape == (1, 68, 2) and result.valid.tolist() == [True]
    np.testing.assert_array_equal(result.points[0], points)
    np.testing.assert_array_equal(result.points[0], landmarks_on_image(bgr))


def test_sub_pixel_and_one_pixel_shifts_are_recovered():
    steps = np.arange(11) * 0.25  # 0 .. 2.5 px in quarter pixels
    shifts = np.concatenate(
        [
            np.stack([steps, 0.5 * steps], axis=1),
            np.tile([[2.5, 1.25]], (5, 1)),
            np.tile([[3.5, 1.25]], (5, 1)),  # a 1-px step right
            np.tile([[3.5, 2.25]], (5, 1)),  # a 1-px step down
        ]
    )
    frames, truth = transformed_photo_clip(shift_transforms(shifts))
    result = track(frames)
    assert result.valid.all()
    assert np.isfinite(result.box).all() and len(np.unique(result.box, axis=0)) == 1  # box held fixed
    error = np.abs(_displacement(result.points) - _displacement(truth))
    assert error.mean() < 0.1 and error.max() < 0.35, (error.mean(), error.max())
    recovered = _displacement(result.points)
    step_x = recovered[16:21, 0].mean() - recovered[11:16, 0].mean()
    step_y = recovered[21:26, 1].mean() - recovered[16:21, 1].mean()
    assert step_x == pytest.approx(1.0, abs=0.2) and step_y == pytest.approx(1.0, abs=0.2)


def test_smoothing_keeps_a_one_pixel_step():
    shifts = np.zeros((16, 2))
    shifts[8:, 0] = 1.0
    frames = shifted_photo_clip(shifts)
    raw = track(frames)
    smoothed = track(frames, smooth=5)
    step = _displacement(smoothed.points)[:, 0]
    assert step[8:].mean() - step[:8].mean() == pytest.approx(1.0, abs=0.2)
    # within each plateau the smoothed points wobble no more than the raw ones
    assert np.abs(np.diff(smoothed.points[:8], axis=0)).mean() <= np.abs(np.diff(raw.points[:8], axis=0)).mean()


def test_smoothing_removes_a_one_frame_jump():
    """``track(smooth=5)`` is the raw track through a running median of 5 frames: a face that
    jumps 2 px for one frame and back stays put in the smoothed track."""
    shifts = np.zeros((11, 2))
    shifts[5, 0] = 2.0
    frames = shifted_photo_clip(shifts)
    raw = track(frames)
    smoothed = track(frames, smooth=5)
    assert raw.valid.all() and smoothed.valid.all()
    jump = _displacement(raw.points)[:, 0]
    assert jump[5] - np.delete(jump, 5).mean() == pytest.approx(2.0, abs=0.3)  # the raw track follows it
    np.testing.assert_array_equal(smoothed.points, smooth_points(raw.points, raw.valid, 5))
    kept = _displacement(smoothed.points)[:, 0]
    assert abs(kept[5] - np.delete(kept, 5).mean()) < 0.3


def test_smooth_points_removes_spikes_keeps_steps_and_gaps():
    points = np.zeros((12, 68, 2), np.float32)
    points[6:] += 1.0  # a 1-px step
    points[1, 5] += 4.0  # a one-frame spike
    valid = np.ones(12, bool)
    valid[9] = False
    points[9] = np.nan
    out = smooth_points(points, valid, 5)
    assert out[1, 5, 0] == 0.0  # spike gone
    np.testing.assert_array_equal(out[:6], 0.0)
    np.testing.assert_array_equal(out[6:9], 1.0)
    assert np.isnan(out[9]).all() and (out[10:] == 1.0).all()
    with pytest.raises(LandmarksError, match="odd"):
        smooth_points(points, valid, 4)


def test_box_follows_a_large_move_and_points_follow_the_face():
    shifts = np.zeros((24, 2))
    shifts[:, 0] = np.linspace(0, 40, 24)  # 40 px: several box widths' fractions
    frames, truth = transformed_photo_clip(shift_transforms(shifts))
    result = track(frames, redetect_every=100)
    assert result.valid.all()
    assert result.box[-1, 0] - result.box[0, 0] > 25  # the box moved with the face
    error = np.abs(_displacement(result.points) - _displacement(truth))
    assert error.max() < 1.0


def test_lost_face_is_invalid_then_recovered():
    frames = shifted_photo_clip(np.zeros((30, 2)))
    blank = np.full_like(frames[0], 128)
    clip = frames[:10] + [blank] * 10 + frames[20:]
    result = track(clip, redetect_every=5, min_valid_fraction=0.5)
    np.testing.assert_array_equal(result.valid, np.r_[np.ones(10), np.zeros(10), np.ones(10)].astype(bool))
    assert np.isnan(result.points[10:20]).all() and np.isfinite(result.points[20:]).all()
    # Re-acquired by the plain or the upsampled detector, whose boxes differ by up to a pyramid
    # step: the points of the same face agree within a pixel.
    np.testing.assert_allclose(result.points[25], result.points[5], atol=1.0)


def test_follows_the_largest_face_among_several():
    rgb, _ = photo_face()
    face = cv2.cvtColor(rgb[40:240, 120:330], cv2.COLOR_RGB2BGR)  # head and some margin
    frames, truths = [], []
    for dx in np.linspace(0, 2, 6):
        canvas = np.full((360, 640, 3), 128, np.uint8)
        big = np.array([[1.4, 0, 40 + dx], [0, 1.4, 20.0]])
        small = np.array([[1.0, 0, 400.0], [0, 1.0, 60.0]])
        for matrix in (small, big):
            cv2.warpAffine(face, matrix, (640, 360), dst=canvas, borderMode=cv2.BORDER_TRANSPARENT)
        frames.append(canvas)
        offset = np.array([[1, 0, -120], [0, 1, -40]], float)
        truths.append(apply_transform(apply_transform(photo_face()[1], offset), big))
    # both faces are found by the detector
    from landmarks import get_backend

    assert len(get_backend().detect(cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY))) == 2
    result = track(frames, redetect_every=2)
    assert result.valid.all()
    assert np.abs(result.points - np.stack(truths)).mean() < 2.0  # on the big face, not the small one


def test_no_face_ever_and_too_few_faces(tmp_path):
    blank = np.full((360, 640, 3), 128, np.uint8)
    with pytest.raises(LandmarksError, match="no face found in any of its 4 frames"):
        track([blank] * 4)
    for k in range(4):
        cv2.imwrite(str(tmp_path / f"img{k}.png"), blank)
    with pytest.raises(LandmarksError, match=f"{tmp_path.name}: no face found"):
        track(tmp_path)
    face = shifted_photo_clip(np.zeros((1, 2)))[0]
    clip = [face] * 3 + [blank] * 7
    with pytest.raises(LandmarksError, match="only 3 of 10 frames"):
        track(clip, min_valid_fraction=0.5)
    assert track(clip, min_valid_fraction=0.2).valid.sum() == 3


def test_frames_of_different_sizes_are_named():
    frames = shifted_photo_clip(np.zeros((2, 2)))
    with pytest.raises(LandmarksError, match="frame 1 is 320x180"):
        track([frames[0], cv2.resize(frames[1], (320, 180))])


def test_track_from_a_video_file_keeps_frame_numbers_and_fps(tmp_path):
    path = tmp_path / "face.avi"
    frames = shifted_photo_clip(np.zeros((8, 2)))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 50.0, (640, 360))
    for frame in frames:
        writer.write(frame)
    writer.release()
    result = track(path)
    assert result.frame_index.tolist() == list(range(8)) and result.fps == 50.0
    assert result.source == str(path) and result.backend == "dlib" and result.valid.all()


def test_alignment_invariance_rotated_scaled_shifted_clip():
    """The same micro-motion seen through a rotated, scaled and shifted camera gives the same
    aligned points (one similarity per clip). Measured: mean 0.006 IOD (≈ 0.3 px at this face
size), max 0.03 IOD."""
    wobble = np.zeros((6, 2))
    wobble[3:, 0] = 1.0
    plain = shift_transforms(wobble)
    centre = (320, 180)
    camera = similarity_transform(12.0, 1.25, (-20.0, 10.0), centre)
    moved = np.stack([np.vstack([camera, [0, 0, 1]])[:2] @ np.vstack([m, [0, 0, 1]]) for m in plain])
    first, _ = transformed_photo_clip(plain)
    second, _ = transformed_photo_clip(moved)
    a, b = track(first).aligned(), track(second).aligned()
    assert np.abs(a - b).mean() < 0.03
    # the 1-px step survives alignment in both, by the same canonical amount
    step_a = _displacement(a)[3:, 0].mean()
    step_b = _displacement(b)[3:].mean(axis=0)
    assert step_a > 0.01 and np.linalg.norm(step_b) == pytest.approx(np.linalg.norm(_displacement(a)[3:].mean(0)), abs=0.01)


def _place_face(canvas: np.ndarray, scale: float, centre, mirror: bool = False) -> np.ndarray:
    """Warp the grey astronaut photo onto ``canvas`` (in place) with its landmarks' centre at
    ``centre`` and ``scale``; returns the moved landmarks [68, 2]."""
    rgb, points = photo_face()
    photo = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if mirror:
        photo = np.ascontiguousarray(photo[:, ::-1])
        points = points.copy()
        points[:, 0] = photo.shape[1] - 1 - points[:, 0]
    shift = np.asarray(centre, float) - scale * points.mean(axis=0)
    matrix = np.array([[scale, 0.0, shift[0]], [0.0, scale, shift[1]]])
    cv2.warpAffine(photo, matrix, canvas.shape[::-1], dst=canvas, flags=cv2.INTER_LINEAR,
                   borderMode=cv2.BORDER_TRANSPARENT)
    return apply_transform(points, matrix)


def test_first_detection_takes_the_largest_face_of_a_1080p_frame():
    canvas = np.full((1080, 1920), 128, np.uint8)
    _place_face(canvas, 1.6, (1500, 400), mirror=True)  # a face about 150 px wide
    large = _place_face(canvas, 4.3, (650, 560))  # about 400 px wide
    result = track([canvas])
    assert result.valid.all()
    assert np.abs(result.points[0] - large).mean() < 2.0


def test_first_detection_upsamples_then_later_redetections_stay_cheap():
    canvas = np.full((360, 640), 128, np.uint8)
    small = _place_face(canvas, 0.5, (320, 180))  # about 46 px wide: below HOG's 80 px window
    from landmarks import get_backend

    assert len(get_backend().detect(canvas)) == 0  # the plain detector misses it
    stats: dict = {}
    result = track([canvas] * 8, redetect_every=2, stats=stats)
    assert result.valid.all()
    assert np.abs(result.points - small).mean() < 1.0
    assert stats["full_detections"] == 1 and stats["redetections"] >= 3


def test_a_clip_of_tight_face_crops_is_tracked_throughout():
    rgb, points = photo_face()
    low, high = points.min(axis=0), points.max(axis=0)
    size = int(round(0.88 * (high - low).max()))
    x0, y0 = (np.round((low + high) / 2) - size // 2).astype(int)
    frames, truths = [], []
    for dx in np.linspace(0.0, 2.0, 6):  # the face drifts by 2 px inside a fixed crop window
        matrix = np.array([[224 / size, 0, (dx - x0) * 224 / size], [0, 224 / size, -y0 * 224 / size]])
        frames.append(cv2.warpAffine(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), matrix, (224, 224), flags=cv2.INTER_LINEAR))
        truths.append(apply_transform(points, matrix))
    stats: dict = {}
    result = track(frames, redetect_every=2, stats=stats)
    assert result.valid.all() and stats["full_detections"] == 1  # re-detections near the box succeed
    moved = _displacement(result.points)[:, 0]
    assert np.abs(moved[-1] - 2.0 * 224 / size) < 1.0


# -- the tracker's decisions, with a stub backend ------------------------------------------------
#
# Frames are grey canvases (BACKGROUND) with "faces": filled rectangles of FACE grey. The stub
# detector returns the rectangles it sees in whatever image it is given (the whole frame or the
# region ``detect_near`` cuts out), largest first; the stub predictor puts 68 fixed points inside
# the rectangle the box overlaps most. So the true place of every face is known exactly, and the
# low contrast keeps a slow drift below the tracker's thumbnail-change threshold.

BACKGROUND, FACE = 100, 140
#: 68 fixed points in the unit square spanning 0.1..0.9 on both axes (extent 0.8 of the face).
_UNIT_SHAPE = np.random.default_rng(0).uniform(0.1, 0.9, (68, 2)).astype(np.float32)
_UNIT_SHAPE[:2] = [[0.1, 0.1], [0.9, 0.9]]


def _rectangles(gray: np.ndarray, min_side: int = 8) -> np.ndarray:
    """Bright rectangles of ``gray`` as boxes [F, 4] float32 (x0, y0, x1, y1), largest first."""
    count, _, stats, _ = cv2.connectedComponentsWithStats((gray > (BACKGROUND + FACE) // 2).astype(np.uint8))
    boxes = [(x, y, x + w, y + h) for x, y, w, h, _ in stats[1:count] if w >= min_side and h >= min_side]
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[np.argsort(-areas, kind="stable")]


class _StubBackend:
    """Rectangle detector + a predictor that fits the rectangle under the box. ``spoil``: called
    with the frame and the predicted points, returns the points to give back (a failing predictor)."""

    name = "stub"
    upsample = 0

    def __init__(self, spoil=None) -> None:
        self.spoil = spoil

    def detect(self, gray, upsample=None):
        return _rectangles(gray)

    def predict(self, gray, box):
        from landmarks.backends import box_iou

        box = np.asarray(box, np.float32)
        faces = _rectangles(gray)
        overlap = box_iou(box, faces) if len(faces) else np.zeros(0)
        if not len(faces) or overlap.max() == 0:
            points = np.full((68, 2), np.nan, np.float32)  # nothing there: a nonsense shape
        else:
            x0, y0, x1, y1 = faces[int(overlap.argmax())]
            points = (_UNIT_SHAPE * [x1 - x0, y1 - y0] + [x0, y0]).astype(np.float32)
        return self.spoil(gray, points) if self.spoil else points


def _canvas(*faces) -> np.ndarray:
    """A 360×640 grey frame with a FACE rectangle per (x0, y0, side)."""
    frame = np.full((360, 640), BACKGROUND, np.uint8)
    for x0, y0, side in faces:
        frame[y0 : y0 + side, x0 : x0 + side] = FACE
    return frame


def _centres(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, :2] + boxes[:, 2:]) / 2


@pytest.fixture
def no_cnn(monkeypatch):
    """The thorough search's last retry (dlib's CNN detector) finds nothing, fast."""
    import landmarks.backends as backends

    monkeypatch.setattr(backends, "_dlib_detector", lambda kind: (lambda image, upsample: []))


def test_stub_box_follows_a_slow_drift_without_re_detecting():
    # 1 px per frame to the right, 1 px every other frame down; no periodic re-detection, and the
    # box content changes far below the thumbnail threshold: only the move test moves the box.
    faces = [(150 + k, 100 + k // 2, 100) for k in range(60)]
    stats: dict = {}
    result = track([_canvas(face) for face in faces], backend=_StubBackend(), redetect_every=1000, stats=stats)
    assert result.valid.all()
    assert stats == {"redetections": 1, "full_detections": 1}  # the first detection and its refit only
    truth = np.array([(x0 + 50, y0 + 50) for x0, y0, _ in faces], np.float32)
    # the box is moved once the face is more than move_fraction (0.1) of its width away
    assert np.abs(_centres(result.box) - truth).max() <= 0.1 * 100 + 1
    assert result.box[-1, 0] - result.box[0, 0] >= 50
    # the points always come from the box beside them, and follow the face exactly
    np.testing.assert_allclose(result.points.mean(axis=1), truth - 50 + 100 * _UNIT_SHAPE.mean(axis=0), atol=1e-3)


@pytest.mark.parametrize("failure", ["nan", "collapsed"])
def test_stub_implausible_prediction_marks_the_frame_lost(failure):
    marked = 4

    def spoil(gray, points):
        if gray[0, 0] != 101:  # the marked frame's corner pixel (too dark to be a face)
            return points
        if failure == "nan":
            return np.full_like(points, np.nan)
        return np.repeat(points.mean(axis=0, keepdims=True), 68, axis=0)  # all points on one spot

    frames = [_canvas((200, 120, 100)) for _ in range(10)]
    frames[marked][0, 0] = 101
    stats: dict = {}
    result = track(frames, backend=_StubBackend(spoil), redetect_every=1000, stats=stats)
    expected = np.ones(10, bool)
    expected[marked] = False
    np.testing.assert_array_equal(result.valid, expected)
    assert np.isnan(result.points[marked]).all() and np.isnan(result.box[marked]).all()
    assert np.isfinite(result.points[expected]).all()
    # the failed frame re-detected near its box (and predicted again) before giving up; the next
    # frame re-acquired the face by a full detection (and its refit)
    assert stats == {"redetections": 3, "full_detections": 2}


def test_stub_lost_face_is_re_acquired_where_it_was_not_as_the_largest(no_cnn):
    followed, larger = (120, 120, 100), (400, 100, 160)
    frames = [_canvas(followed)] * 4 + [_canvas()] * 2 + [_canvas(followed, larger)] * 4
    result = track(frames, backend=_StubBackend(), redetect_every=1000, min_valid_fraction=0.1)
    np.testing.assert_array_equal(result.valid, [True] * 4 + [False] * 2 + [True] * 4)
    np.testing.assert_allclose(_centres(result.box[6:]), [[170, 170]] * 4, atol=1)  # not (480, 180)
    np.testing.assert_allclose(result.points[6:], result.points[:4], atol=1e-3)


def test_stub_pick_prefers_the_previous_face_over_the_largest():
    from landmarks.tracker import _Tracker

    boxes = np.array([[300, 100, 460, 260], [120, 120, 220, 220]], np.float32)  # largest first
    np.testing.assert_array_equal(_Tracker._pick(boxes, np.array([118, 121, 219, 222], np.float32)), boxes[1])
    np.testing.assert_array_equal(_Tracker._pick(boxes, None), boxes[0])
    # a previous box that overlaps neither: the largest
    np.testing.assert_array_equal(_Tracker._pick(boxes, np.array([0, 0, 50, 50], np.float32)), boxes[0])


def test_stub_re_detection_of_another_face_does_not_move_the_track_onto_it():
    # A smaller face beside the followed one (inside the region searched near its box); on frame 5
    # the followed face is gone: that frame is lost, not tracked on the neighbour.
    followed, neighbour = (200, 120, 100), (320, 140, 50)
    frames = [_canvas(followed, neighbour)] * 5 + [_canvas(neighbour)] * 3
    result = track(frames, backend=_StubBackend(), redetect_every=1000, min_valid_fraction=0.1)
    assert result.valid[:5].all()
    np.testing.assert_allclose(_centres(result.box[:5]), [[250, 170]] * 5, atol=1)
    assert not result.valid[5] and np.isnan(result.points[5]).all() and np.isnan(result.box[5]).all()
