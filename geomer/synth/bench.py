"""Speed of the synthetic renderer (an entry of ``geomer bench``)."""

from __future__ import annotations

import time

import cv2
import numpy as np


def bench_synth(frames: int = 300) -> list[tuple[str, float, str]]:
    """Frames/s of the piecewise-affine renderer alone and with JPEG encoding, on one subject.

    Returns rows (what, value, unit).
    """
    from geomer.synth.face import subject_shape
    from geomer.synth.render import Appearance, FaceRenderer, texture_face

    rng = np.random.default_rng(0)
    photo, points = texture_face()
    texture, texture_points = Appearance.sample(rng).apply(photo, points)
    shape = subject_shape(rng)
    start = time.perf_counter()
    renderer = FaceRenderer(texture, texture_points, shape.points, image_noise=1.0)
    setup = time.perf_counter() - start
    wobble = rng.normal(0, 1.0, (frames, 68, 2)).astype(np.float32)
    start = time.perf_counter()
    for i in range(frames):
        renderer.render(shape.points + wobble[i], i)
    render_only = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(frames):
        cv2.imencode(".jpg", renderer.render(shape.points + wobble[i], i))
    with_jpeg = time.perf_counter() - start
    return [
        ("synth renderer setup per subject", setup * 1000, "ms"),
        ("synth render 320x320 colour", frames / render_only, "frames/s"),
        ("synth render + JPEG encode", frames / with_jpeg, "frames/s"),
    ]
