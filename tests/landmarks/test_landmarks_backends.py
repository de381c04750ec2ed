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
