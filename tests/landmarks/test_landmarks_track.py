"""LandmarkTrack (.npz round trip, alignment, positions) and the similarity estimator."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from landmarks import CANONICAL_TEMPLATE, LandmarksError, LandmarkTrack
from landmarks.align import apply_transform, estimate_similarity
from landmarks.template import inter_ocular_distance


def _similarity(angle: float, scale: float, shift) -> np.ndarray:
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


def _track(length: int = 6, transform=None) -> LandmarkTrack:
    transform = _similarity(0.2, 60.0, (320, 180)) if transform is None else transform
    rng = np.random.default_rng(0)
    points = np.stack([apply_transform(CANONICAL_TEMPLATE, transform) for _ in range(length)])
    points = points + rng.normal(0, 0.05, points.shape).astype(np.float32)
    valid = np.ones(length, bool)
    valid[2] = False
    points[2] = np.nan
    box = np.tile(np.array([250, 110, 390, 250], np.float32), (length, 1))
    box[2] = np.nan
    return LandmarkTrack(points, valid, np.arange(46, 46 + length), box, 200.0, "sub01/EP02_01f", "dlib")


def test_estimate_similarity_recovers_transform():
    matrix = _similarity(-0.4, 2.5, (10.0, -3.0))
    estimated = estimate_similarity(CANONICAL_TEMPLATE, apply_transform(CANONICAL_TEMPLATE, matrix))
    np.testing.assert_allclose(estimated, matrix, atol=1e-4)


def test_apply_transform_keeps_nan():
    points = np.array([[0.0, 0.0], [np.nan, np.nan]])
    out = apply_transform(points, _similarity(0.1, 2.0, (1, 1)))
    assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()


def test_degenerate_points_raise():
    with pytest.raises(LandmarksError):
        estimate_similarity(np.zeros((68, 2)), CANONICAL_TEMPLATE)


def test_npz_round_trip(tmp_path):
    track = _track()
    path = track.save(tmp_path / "clip.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["clip.npz"]  # no temp file left behind
    with np.load(path) as archive:
        assert set(archive.files) == {"points", "valid", "fps", "frame_index", "box", "source", "backend", "settings"}
    loaded = LandmarkTrack.load(path)
    np.testing.assert_array_equal(loaded.points, track.points)
    np.testing.assert_array_equal(loaded.valid, track.valid)
    np.testing.assert_array_equal(loaded.frame_index, track.frame_index)
    np.testing.assert_array_equal(loaded.box, track.box)
    assert (loaded.fps, loaded.source, loaded.backend) == (200.0, "sub01/EP02_01f", "dlib")
    assert loaded.points.dtype == np.float32 and loaded.frame_index.dtype == np.int64


def test_saved_track_has_the_permissions_of_a_new_file(tmp_path):
    previous = os.umask(0o022)
    try:
        path = _track().save(tmp_path / "clip.npz")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not a temp file's 0600


def test_a_track_written_before_settings_existed_loads(tmp_path):
    track = _track()
    path = tmp_path / "old.npz"
    np.savez(path, points=track.points, valid=track.valid, fps=np.float64(track.fps), frame_index=track.frame_index,
             box=track.box, source=np.str_(track.source), backend=np.str_(track.backend))
    assert LandmarkTrack.load(path).settings == ""


def test_load_rejects_foreign_and_corrupt_files(tmp_path):
    foreign = tmp_path / "other.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(LandmarksError, match="other.npz: not a landmark track"):
        LandmarkTrack.load(foreign)
    corrupt = tmp_path / "bad.npz"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(LandmarksError, match="bad.npz"):
        LandmarkTrack.load(corrupt)
    with pytest.raises(LandmarksError, match="missing.npz"):
        LandmarkTrack.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("field", ["points", "box"])
def test_load_names_a_valid_frame_with_non_finite_points(tmp_path, field):
    track = _track()  # frame 2 is invalid and NaN: allowed
    path = track.save(tmp_path / "track.npz")
    assert LandmarkTrack.load(path).valid.sum() == 5
    arrays = dict(np.load(path))
    arrays[field][4] = np.inf
    np.savez(tmp_path / "edited.npz", **arrays)
    frame = int(track.frame_index[4])
    with pytest.raises(LandmarksError, match=rf"edited.npz: frame {frame}: non-finite landmark points or box"):
        LandmarkTrack.load(tmp_path / "edited.npz")


@pytest.mark.parametrize("content", [b"\x00\x00\x00\x18ftypisom video bytes", b"\x93NUMPY", b""])
def test_load_names_a_file_that_is_no_npz_archive(tmp_path, content):
    # np.load takes such a file for a pickle and talks of allow_pickle; the error must say what it is not
    other = tmp_path / "clip.mp4"
    other.write_bytes(content)
    with pytest.raises(LandmarksError, match=r"^.*clip\.mp4: not a landmark track \(not an \.npz archive\)$"):
        LandmarkTrack.load(other)


def test_aligned_is_canonical_and_invariant_to_similarity():
    aligned = _track().aligned()
    assert aligned.shape == (6, 68, 2) and aligned.dtype == np.float32
    assert np.isnan(aligned[2]).all()
    np.testing.assert_allclose(inter_ocular_distance(aligned[[0, 1, 3]]), 1.0, atol=0.01)
    np.testing.assert_allclose(aligned[0], CANONICAL_TEMPLATE, atol=0.01)
    other = _track(transform=_similarity(-0.5, 35.0, (100, 300))).aligned()
    np.testing.assert_allclose(other[[0, 1, 3]], aligned[[0, 1, 3]], atol=0.01)


def test_aligned_uses_one_transform_for_the_clip():
    """A frame after the alignment frames that moves by 1 px keeps that move (scaled by 1/IOD)
    after alignment: no per-frame refit."""
    track = _track(length=8)
    points = track.points.copy()
    points[7] += np.array([1.0, 0.0], np.float32)
    moved = LandmarkTrack(points, track.valid, track.frame_index, track.box, track.fps, track.source, track.backend)
    delta = moved.aligned()[7] - track.aligned()[7]
    np.testing.assert_allclose(np.linalg.norm(delta, axis=1), 1.0 / 60.0, rtol=0.05)


def test_alignment_is_estimated_on_the_mean_of_the_first_valid_frames():
    """The clip's alignment is the similarity of the mean shape of its first ALIGNMENT_FRAMES (5)
    valid frames, not of the first frame alone nor of every frame; invalid frames are skipped."""
    track = _track(length=9)
    points = track.points.copy()
    rng = np.random.default_rng(1)
    points[[0, 1, 3, 4, 5, 6, 7, 8]] += rng.normal(0, 2.0, (8, 68, 2)).astype(np.float32)  # noisy frames
    points[6:] += np.float32(15.0)  # after the alignment frames the face moves away
    noisy = LandmarkTrack(points, track.valid, track.frame_index, track.box, track.fps, track.source, track.backend)
    first = [0, 1, 3, 4, 5]  # frame 2 is not valid
    expected = estimate_similarity(points[first].mean(axis=0), CANONICAL_TEMPLATE)
    np.testing.assert_allclose(noisy.alignment(), expected, rtol=1e-5, atol=1e-6)
    for other in (points[0], points[[0, 1, 3, 4, 5, 6, 7, 8]].mean(axis=0)):
        assert not np.allclose(estimate_similarity(other, CANONICAL_TEMPLATE), expected, rtol=1e-3, atol=1e-4)


def test_position_by_frame_number():
    track = _track()
    assert track.position(46) == 0 and track.position(51) == 5
    with pytest.raises(LandmarksError, match="frame 7 is not in the track"):
        track.position(7)


def test_inconsistent_shapes_rejected():
    with pytest.raises(ValueError):
        LandmarkTrack(np.zeros((3, 68, 2)), np.ones(4, bool), np.arange(3), np.zeros((3, 4)), 30, "x", "dlib")
