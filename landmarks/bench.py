"""``bench_landmarks``: naive per-frame detection vs the tracker, speed and jitter (``geomer bench landmarks``)."""

from __future__ import annotations

import time

import cv2
import numpy as np

from landmarks.backends import get_backend, to_gray
from landmarks.errors import LandmarksError


def jitter(points: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean per-frame point motion relative to the face's mean motion, px/frame.

    For consecutive valid frames the 68 point displacements minus their mean (the face's own
    motion) are what no rigid motion explains: jitter (plus any real expression change).
    Shapes: points [T, 68, 2], valid [T] bool.
    """
    points = np.asarray(points, dtype=np.float64)
    valid = np.ones(len(points), bool) if valid is None else np.asarray(valid, bool)
    pairs = valid[1:] & valid[:-1]
    if not pairs.any():
        return float("nan")
    motion = np.diff(points, axis=0)[pairs]
    residual = motion - motion.mean(axis=1, keepdims=True)
    return float(np.linalg.norm(residual, axis=-1).mean())


def rendered_clip(frames: int, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """A 640×360 clip of the astronaut photo drifting slowly with sub-pixel steps and 1-px jumps;
    returns the BGR frames and the true points [T, 68, 2]."""
    from landmarks.render import shift_transforms, transformed_photo_clip

    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, 0.15, size=(frames, 2))
    steps[rng.random(frames) < 0.05] += 1.0  # occasional 1-px jumps, like a micro-movement
    shifts = np.cumsum(steps, axis=0) - steps[0]
    return transformed_photo_clip(shift_transforms(shifts))


def _load(video: str, frames: int) -> list[np.ndarray]:
    from landmarks.io import open_frames

    loaded = []
    for _, image in open_frames(video):
        loaded.append(image)
        if len(loaded) >= frames:
            break
    return loaded


def bench_landmarks(video: str | None = None, frames: int = 300) -> list[tuple[str, float, str]]:
    """Rows (what, value, unit): frames/s of naive per-frame detect+predict and of the tracker on
    the same in-memory frames (one thread; by wall clock and per CPU-second), the tracker's
    re-detections, and the jitter of both (see ``jitter``). Frames are decoded before timing; for
    a video the decoding rate is a separate row.

    ``video``: a face video (its first ``frames`` frames); None renders a 640×360 clip from the
    bundled astronaut photo, for which the error against the true motion is reported too.
    """
    from landmarks.tracker import track

    truth = None
    if video is None:
        images, truth = rendered_clip(frames)
    else:
        images = _load(video, frames)
    if not images:
        raise LandmarksError(f"{video}: no frames")
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        backend = get_backend("dlib")
        backend.predict(to_gray(images[0]), np.array([0, 0, 100, 100], np.float32))  # warm the cache

        start, cpu_start = time.perf_counter(), time.process_time()
        naive, naive_valid, naive_boxes = [], [], []
        for image in images:
            gray = to_gray(image)
            boxes = backend.detect(gray)
            naive_valid.append(len(boxes) > 0)
            naive_boxes.append(boxes[0] if len(boxes) else None)
            naive.append(backend.predict(gray, boxes[0]) if len(boxes) else np.full((68, 2), np.nan))
        naive_seconds, naive_cpu = time.perf_counter() - start, time.process_time() - cpu_start

        stats: dict = {}
        start, cpu_start = time.perf_counter(), time.process_time()
        tracked = track(images, backend=backend, min_valid_fraction=0.0, stats=stats,
                        name=str(video) if video is not None else "<images>")
        track_seconds, track_cpu = time.perf_counter() - start, time.process_time() - cpu_start

        # plain dlib (integer points on the original image) with the naive boxes, for reference
        plain = get_backend("dlib", upscale=1)
        plain_points = [
            plain.predict(to_gray(image), box) if box is not None else np.full((68, 2), np.nan)
            for image, box in zip(images, naive_boxes)
        ]
    finally:
        cv2.setNumThreads(threads)

    count = len(images)
    naive_valid = np.array(naive_valid)
    rows = [
        ("frames", float(count), "frames"),
        ("naive detect+predict", count / naive_seconds, "frames/s"),
        ("tracker", count / track_seconds, "frames/s"),
        # per CPU-second of this process: one core's throughput even on a shared machine
        ("naive detect+predict, CPU time", count / max(naive_cpu, 1e-9), "frames/s"),
        ("tracker, CPU time", count / max(track_cpu, 1e-9), "frames/s"),
        ("tracker re-detections", float(stats["redetections"] + stats["full_detections"]), "count"),
        ("tracker valid fraction", tracked.valid_fraction, "fraction"),
        ("jitter naive, plain dlib", jitter(np.stack(plain_points), naive_valid), "px/frame"),
        ("jitter naive", jitter(np.stack(naive), naive_valid), "px/frame"),
        ("jitter tracker", jitter(tracked.points, tracked.valid), "px/frame"),
    ]
    if video is not None:
        start = time.perf_counter()
        cv2.setNumThreads(1)
        try:
            from landmarks.io import open_frames

            source = open_frames(video)
            decoded = 0
            for _ in source:
                decoded += 1
                if decoded >= frames:
                    break
        finally:
            cv2.setNumThreads(threads)
        rows.append(("video decoding alone", decoded / (time.perf_counter() - start), "frames/s"))
    if truth is not None:
        true_motion = (truth - truth[0]).mean(axis=1)
        for name, points in (("naive", np.stack(naive)), ("tracker", tracked.points)):
            measured = (points - points[0]).mean(axis=1)
            error = np.abs(measured - true_motion)[np.isfinite(measured).all(axis=1)]
            rows.append((f"{name} mean-displacement error", float(error.mean()), "px"))
    return rows
