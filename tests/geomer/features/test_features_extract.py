"""Feature extraction on clips rendered from the astronaut photo with known motion.

Tracks are built from the renderer's true landmark positions ("cached landmarks"), so these tests
exercise the features alone, not the tracker.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from geomer.errors import GeomerError
from geomer.features import ClipFeatures, FeatureSettings, extract_clip, spot_apex
from geomer.features.crop import pixel_to_crop, to_grey, warp_to_crop
from geomer.features.flow import compute_flow, has_tvl1, optical_strain
from geomer.features.flow_nodes import flow_at_nodes
from geomer.features.geometry import resample_displacement
from geomer.features.sampling import patch_flow_statistics, sample_patches
from landmarks import LandmarkTrack
from landmarks.render import shift_transforms, transformed_photo_clip
from landmarks.template import CANONICAL_TEMPLATE

SHIFT = np.array([1.5, -0.75])  # source pixels; about (3.5, -2.0) px in the 256-px crop


def make_track(points, valid=None, first_frame=100, fps=30.0):
    length = len(points)
    return LandmarkTrack(
        points=points,
        valid=np.ones(length, bool) if valid is None else valid,
        frame_index=np.arange(length) + first_frame,
        box=np.zeros((length, 4)),
        fps=fps,
        source="synthetic",
        backend="truth",
    )


@pytest.fixture(scope="module")
def shifted_clip():
    """8 frames: still for frames 100..103, shifted by SHIFT from 104 on; the track holds the
    onset landmarks throughout (the clip's single alignment is what matters)."""
    shifts = np.zeros((8, 2))
    shifts[4:] = SHIFT
    frames, truth = transformed_photo_clip(shift_transforms(shifts))
    return frames, make_track(np.repeat(truth[:1], 8, axis=0))


@pytest.mark.parametrize("method", ["farneback", "dis"])
def test_flow_recovers_known_shift_at_nodes(shifted_clip, method):
    """Measured: median error over the 51 inner nodes ~0.16 px (Farneback) / ~0.09 px (DIS) of the
    256-px crop for a (3.5, -2.0) px shift; asserted: median ≤ 0.3 px, 90th percentile ≤ 0.75 px."""
    frames, track = shifted_clip
    settings = FeatureSettings(flow_method=method)
    features = extract_clip(frames, track, 100, 104, 107, settings, clip="shift")
    expected = pixel_to_crop(track.alignment(), settings.face_size)[:, :2] @ SHIFT
    error = np.linalg.norm(features.flow_stats[17:, 1, :2] - expected, axis=1)
    assert np.median(error) <= 0.3
    assert np.percentile(error, 90) <= 0.75
    # mean magnitude agrees, the orientation histogram is normalised and points the right way
    magnitude = np.median(features.flow_stats[17:, 1, 2])
    assert magnitude == pytest.approx(np.linalg.norm(expected), abs=0.4)
    histogram = features.flow_stats[17:, 1, 3:11]
    np.testing.assert_allclose(histogram.sum(axis=1), 1.0, atol=1e-4)
    angle = np.degrees(np.arctan2(expected[1], expected[0])) % 360  # ≈ 330°: bin 7
    assert np.median(histogram[:, int(angle // 45)]) > 0.5
    # the static geometry track (truth points do not move) has zero displacement
    assert np.abs(features.geometry).max() == 0


def test_patch_mode_agrees_with_dense(shifted_clip):
    frames, track = shifted_clip
    dense = extract_clip(frames, track, 100, 104, 107, FeatureSettings(flow_method="dis"), clip="d")
    windows = extract_clip(
        frames, track, 100, 104, 107, FeatureSettings(flow_method="dis", flow_mode="patches"),
        clip="p",
    )
    difference = np.linalg.norm(dense.flow_stats[17:, 1, :2] - windows.flow_stats[17:, 1, :2], axis=1)
    assert np.median(difference) < 0.3


def test_feature_shapes_and_ranges(shifted_clip):
    frames, track = shifted_clip
    settings = FeatureSettings(scales=(8, 16, 32), patch_size=8, steps=5, sequence_steps=3)
    f = extract_clip(frames, track, 100, 104, 107, settings, clip="shapes")
    n, s, p = 68, 3, 8
    assert f.points.shape == (n, 2) and f.geometry.shape == (5, n, 2)
    assert f.apex_displacement.shape == (n, 2) and f.edge_displacement.shape == (182, 2)
    assert f.flow_stats.shape == (n, s, 12) and f.flow_patches.shape == (n, s, 3, p, p)
    assert f.texture_onset.shape == (n, s, p, p) and f.texture_apex.shape == (n, s, p, p)
    assert f.sequence.shape == (3, n, p, p)
    for array in (f.texture_onset, f.texture_apex, f.sequence):
        assert array.dtype == np.float32 and 0 <= array.min() and array.max() <= 1
    assert (f.onset, f.apex, f.offset, f.apex_spotted) == (100, 104, 107, False)
    np.testing.assert_allclose(f.points, track.aligned()[0], atol=1e-5)
    # onset and apex texture differ (the face moved); sequence frame 0 is the onset texture
    assert np.abs(f.texture_onset - f.texture_apex).mean() > 1e-3
    # (OpenCV's remap quantises sample positions to 1/32 px: equal up to that)
    np.testing.assert_allclose(f.sequence[0], f.texture_onset[:, 1], atol=5e-3)
    # the whole-face flow image: F×F (u, v, strain), u and v centred on no motion
    assert f.flow_image.shape == (3, 28, 28) and np.isfinite(f.flow_image).all()
    assert abs(np.median(f.flow_image[0])) < 1e-6 and f.flow_image[2].min() >= 0
    # the whole flow record round-trips through its array form
    again = ClipFeatures.from_arrays(f.to_arrays())
    np.testing.assert_array_equal(again.flow_patches, f.flow_patches)
    np.testing.assert_array_equal(again.flow_image, f.flow_image)
    assert again.apex == 104 and again.clip == "shapes"


@pytest.fixture(scope="module")
def moving_clip():
    """8 frames (100..107), onset 101, apex 104, offset 107: the face shifts by SHIFT / 2 in
    frame 103, by SHIFT in 104..106 and back to SHIFT / 2 in 107 (so apex and offset frames
    differ); the track's landmarks follow the face, sit 3 px off in frame 100 (before the onset)
    and the mouth rises by up to 4 px after the onset (so edges stretch)."""
    shifts = np.zeros((8, 2))
    shifts[3] = shifts[7] = SHIFT / 2
    shifts[4:7] = SHIFT
    frames, truth = transformed_photo_clip(shift_transforms(shifts))
    points = truth.astype(np.float64)
    points[0] += (3.0, -2.0)
    points[:, 48:68, 1] -= np.array([0, 0, 1, 2, 4, 3, 2, 1])[:, None]
    return frames, make_track(points.astype(np.float32))


MOVING_SETTINGS = FeatureSettings(flow_method="dis", scales=(8, 16), patch_size=4, steps=4,
                                  sequence_steps=3, flow_image_size=14)


def test_displacements_are_measured_from_the_onset(moving_clip):
    """Geometry and apex displacement are aligned points minus the ONSET's (not the track's first
    frame's): zero at the onset; edges move by d[j] - d[i] for edge (i, j)."""
    frames, track = moving_clip
    f = extract_clip(frames, track, 101, 104, 107, MOVING_SETTINGS, clip="moving")
    graph = MOVING_SETTINGS.graph()
    aligned = track.aligned()[:, graph.node_ids]
    assert np.abs(aligned[0] - aligned[1]).max() > 0.01  # the pre-onset frame's landmarks differ
    assert (f.geometry[0] == 0).all()
    # steps at positions 1, 3, 5, 7 (linspace(onset, offset, 4) on frames 101..107)
    np.testing.assert_allclose(f.geometry, aligned[[1, 3, 5, 7]] - aligned[1], atol=1e-6)
    np.testing.assert_allclose(f.apex_displacement, aligned[4] - aligned[1], atol=1e-6)
    np.testing.assert_allclose(f.points, aligned[1], atol=1e-6)
    d, edges = f.apex_displacement, graph.edges
    assert np.abs(d[edges[:, 1]] - d[edges[:, 0]]).max() > 0.01  # the mouth's edges stretch
    np.testing.assert_allclose(f.edge_displacement, d[edges[:, 1]] - d[edges[:, 0]], atol=1e-6)


def test_patches_and_flow_image_points_come_from_the_onset_nodes(moving_clip):
    """Nodes are the ONSET landmarks in the crop (the apex's lie elsewhere): flow_image_points
    are them mapped to the F×F image ((p + 0.5)·F / face_size − 0.5), texture_onset is sampled
    there, and the sequence runs onset..offset (its last frame is the offset's, not the apex's)."""
    frames, track = moving_clip
    settings = MOVING_SETTINGS
    f = extract_clip(frames, track, 101, 104, 107, settings, clip="moving")
    transform = pixel_to_crop(track.alignment(), settings.face_size)
    node_ids = settings.graph().node_ids
    centres = track.points[1, node_ids].astype(np.float64) @ transform[:, :2].T + transform[:, 2]
    apex_centres = track.points[4, node_ids].astype(np.float64) @ transform[:, :2].T + transform[:, 2]
    assert np.linalg.norm(apex_centres - centres, axis=1).min() > 2  # the nodes moved by the apex
    expected = (centres + 0.5) * settings.flow_image_size / settings.face_size - 0.5
    np.testing.assert_allclose(f.flow_image_points, expected, atol=1e-4)

    def texture(frame, scales=settings.scales):
        crop = warp_to_crop(to_grey(frames[frame]), transform, settings.face_size)
        patches = sample_patches(crop.astype(np.float32) / 255.0, centres, scales, settings.patch_size)
        return patches[:, :, 0]

    np.testing.assert_allclose(f.texture_onset, texture(1), atol=5e-3)
    np.testing.assert_allclose(f.texture_apex, texture(4), atol=5e-3)
    # sequence frames 101, 104, 107 at the middle scale (16)
    for step, frame in enumerate((1, 4, 7)):
        np.testing.assert_allclose(f.sequence[step], texture(frame, (16,))[:, 0], atol=5e-3)
    assert np.abs(f.sequence[-1] - f.texture_apex[:, 1]).mean() > 1e-3


def test_patch_mode_keeps_each_nodes_own_window():
    """In the patches mode each node's statistics and patches come from its own window: with only
    the right half of the image moving (2 px right), nodes there see u ≈ 2, nodes on the still
    half u ≈ 0, as in the dense mode."""
    rng = np.random.default_rng(0)
    first = cv2.GaussianBlur((rng.random((96, 160)) * 255).astype(np.uint8), (0, 0), 2)
    moved = cv2.warpAffine(first, np.float32([[1, 0, 2.0], [0, 1, 0]]), (160, 96),
                           borderMode=cv2.BORDER_REFLECT)
    second = first.copy()
    second[:, 80:] = moved[:, 80:]
    centres = np.array([[40, 48], [120, 48], [40.5, 30], [120.5, 60]], np.float32)  # still, moving, ...
    stats, patches = flow_at_nodes(first, second, centres, (8, 16), 4, "farneback", "patches")
    dense, _ = flow_at_nodes(first, second, centres, (8, 16), 4, "farneback", "dense")
    moving = np.array([False, True, False, True])
    np.testing.assert_allclose(stats[moving][..., 0], 2.0, atol=0.1)
    np.testing.assert_allclose(stats[~moving][..., 0], 0.0, atol=0.05)
    np.testing.assert_allclose(stats[..., :2], dense[..., :2], atol=0.1)
    np.testing.assert_allclose(patches[moving][:, :, 0], 2.0, atol=0.1)
    np.testing.assert_allclose(patches[~moving][:, :, 0], 0.0, atol=0.05)


def test_frames_given_as_folder(tmp_path, shifted_clip):
    frames, track = shifted_clip
    for k, image in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"img{100 + k}.png"), image)
    from_folder = extract_clip(tmp_path, track, 100, 104, 107, FeatureSettings(flow_method="dis"))
    in_memory = extract_clip(frames, track, 100, 104, 107, FeatureSettings(flow_method="dis"))
    np.testing.assert_allclose(from_folder.flow_stats, in_memory.flow_stats, atol=1e-5)


def test_strain_of_translation_is_zero_and_of_shear_is_known():
    flow = np.zeros((64, 64, 2), np.float32)
    flow[..., 0], flow[..., 1] = 2.5, -1.0
    assert np.abs(optical_strain(flow)).max() == 0
    y = np.arange(64, dtype=np.float32)[:, None]
    shear = np.zeros((64, 64, 2), np.float32)
    shear[..., 0] = 0.1 * y  # du/dy = 0.1 → exy = 0.05, strain = sqrt(2 * 0.05²)
    np.testing.assert_allclose(optical_strain(shear), np.sqrt(2) * 0.05, rtol=1e-5)
    # measured flow of a pure image translation has near-zero strain too
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur((rng.random((128, 128)) * 255).astype(np.uint8), (0, 0), 2)
    moved = cv2.warpAffine(image, np.float32([[1, 0, 1.0], [0, 1, 0.5]]), (128, 128),
                           borderMode=cv2.BORDER_REFLECT)
    measured = optical_strain(compute_flow(image, moved, "dis"))
    assert np.median(measured[16:-16, 16:-16]) < 0.05


def test_strain_of_a_pure_normal_strain_field_is_its_stretch():
    """v = 0.1·y, u = 0: a vertical stretch, dv/dy = 0.1 and no shear, so strain = 0.1
    (sqrt(exx² + eyy² + 2·exy²) with eyy = 0.1); likewise u = 0.1·x."""
    y = np.arange(48, dtype=np.float32)[:, None]
    x = np.arange(40, dtype=np.float32)[None, :]
    stretch = np.zeros((48, 40, 2), np.float32)
    stretch[..., 1] = 0.1 * y
    np.testing.assert_allclose(optical_strain(stretch)[2:-2, 2:-2], 0.1, rtol=1e-5)
    widen = np.zeros((48, 40, 2), np.float32)
    widen[..., 0] = 0.1 * x
    np.testing.assert_allclose(optical_strain(widen)[2:-2, 2:-2], 0.1, rtol=1e-5)
    # a stretch in both directions: sqrt(0.1² + 0.2²)
    both = np.zeros((48, 40, 2), np.float32)
    both[..., 0], both[..., 1] = 0.1 * x, 0.2 * y
    np.testing.assert_allclose(optical_strain(both)[2:-2, 2:-2], np.hypot(0.1, 0.2), rtol=1e-5)


def test_dis_flow_of_a_pair_does_not_depend_on_the_sizes_flowed_before():
    """An OpenCV DIS object keeps state from a small image (a patch window) into later larger
    ones; the flow of a pair must not depend on which sizes the process computed before."""
    astronaut = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    moved = cv2.warpAffine(astronaut, np.float32([[1, 0, 1.3], [0, 1, 0.7]]), (512, 512))
    pairs = {size: (cv2.resize(astronaut, (size, size)), cv2.resize(moved, (size, size)))
             for size in (32, 64, 128, 256)}
    alone = {}
    for size, (first, second) in pairs.items():
        alone[size] = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST).calc(first, second, None)
    for size in (32, 256, 64, 128, 256):
        np.testing.assert_array_equal(compute_flow(*pairs[size], "dis"), alone[size])


def test_patches_and_statistics_at_image_borders():
    rng = np.random.default_rng(1)
    canvas = rng.random((40, 50, 3)).astype(np.float32)
    centres = np.array([[0, 0], [49, 39], [-10, 20], [25.5, 20.5]], np.float32)
    patches = sample_patches(canvas, centres, (8, 16), 4)
    assert patches.shape == (4, 2, 3, 4, 4) and np.isfinite(patches).all()
    # a node far left of the image sees the replicated first column: constant along x
    left = patches[2, 0]
    np.testing.assert_allclose(left, np.repeat(left[..., :1], 4, axis=-1), atol=1e-6)
    # an interior patch equals OpenCV's area resize of the exact square (pixels 18..33, 13..28)
    expected = cv2.resize(canvas[13:29, 18:34], (4, 4), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(patches[3, 1].transpose(1, 2, 0), expected, atol=1e-5)

    flow = rng.normal(size=(40, 50, 2)).astype(np.float32)
    strain = rng.random((40, 50)).astype(np.float32)
    stats = patch_flow_statistics(flow, strain, centres, (8, 16))
    assert stats.shape == (4, 2, 12) and np.isfinite(stats).all()
    # the corner node's 16-px box keeps its inside quarter: pixels 0..7 × 0..7
    inside = flow[0:8, 0:8].reshape(-1, 2)
    np.testing.assert_allclose(stats[0, 1, :2], inside.mean(axis=0), atol=1e-4)
    np.testing.assert_allclose(stats[0, 1, 2], np.linalg.norm(inside, axis=1).mean(), atol=1e-4)
    np.testing.assert_allclose(stats[0, 1, 11], strain[0:8, 0:8].mean(), atol=1e-4)
    np.testing.assert_allclose(stats[[0, 1, 3], :, 3:11].sum(axis=2), 1.0, atol=1e-4)
    assert (stats[2] == 0).all()  # its boxes lie wholly outside the canvas: zeros, not NaN
    # a node entirely outside gives zeros rather than NaN
    far = patch_flow_statistics(flow, strain, np.array([[-100.0, -100.0]]), (8,))
    assert (far == 0).all()


def test_statistics_average_the_pixels_whose_centres_lie_in_the_square():
    """An interior node's statistics are the mean over exactly the pixels whose centres lie in
    its square [c - s/2, c + s/2], wherever the centre falls between pixel centres (0.2.20 and
    earlier started the box half a pixel early: one pixel up-left for most off-grid centres)."""
    rng = np.random.default_rng(2)
    flow = rng.normal(size=(40, 50, 2)).astype(np.float32)
    strain = rng.random((40, 50)).astype(np.float32)
    for centre, side, (x0, y0) in (((25.5, 20.5), 8, (22, 17)), ((25.5, 20.5), 16, (18, 13)),
                                   ((25.0, 20.0), 5, (23, 18)), ((25.3, 20.3), 16, (18, 13)),
                                   ((25.6, 20.6), 5, (24, 19)), ((25.6, 20.2), 8, (22, 17))):
        stats = patch_flow_statistics(flow, strain, np.array([centre]), (side,))[0, 0]
        box = (slice(y0, y0 + side), slice(x0, x0 + side))
        np.testing.assert_allclose(stats[:2], flow[box].reshape(-1, 2).mean(axis=0), atol=1e-4)
        np.testing.assert_allclose(stats[2], np.linalg.norm(flow[box], axis=-1).mean(), atol=1e-4)
        np.testing.assert_allclose(stats[11], strain[box].mean(), atol=1e-4)


def expression_track(length=40, apex_position=23, amplitude=0.04, drift=0.0, valid=None, seed=0):
    """Template points at 100 px/IOD; mouth and brows move with a Gaussian time course peaking at
    ``apex_position``; the head drifts by ``drift`` px per frame; small landmark noise."""
    rng = np.random.default_rng(seed)
    base = CANONICAL_TEMPLATE * 100 + np.array([320, 150])
    course = np.exp(-0.5 * ((np.arange(length) - apex_position) / 4.0) ** 2)
    motion = np.zeros((68, 2))
    motion[48:68, 1] = -amplitude * 100  # lips up
    motion[17:27, 1] = -amplitude * 100  # brows up
    points = base + course[:, None, None] * motion
    points = points + drift * np.arange(length)[:, None, None]
    points = points + rng.normal(scale=0.15, size=points.shape)
    return make_track(points.astype(np.float32), valid=valid, first_frame=0, fps=100.0)


@pytest.mark.parametrize("apex_position", [9, 23, 31])
def test_apex_spotting_known_apex(apex_position):
    track = expression_track(apex_position=apex_position, drift=0.3)
    assert abs(spot_apex(track, 0, 39) - apex_position) <= 1


def test_apex_spotting_bridges_lost_frames_and_drives_extraction():
    valid = np.ones(40, bool)
    valid[[5, 22, 24]] = False
    track = expression_track(valid=valid)
    points = track.points.copy()
    points[~valid] = np.nan  # the tracker writes NaN where the face is lost
    track = make_track(points, valid=valid, first_frame=0, fps=100.0)
    assert abs(spot_apex(track, 0, 39) - 23) <= 1
    frames = [np.full((360, 640), 120, np.uint8)] * 40
    features = extract_clip(frames, track, 0, None, 39, FeatureSettings(flow_method="dis"), clip="c")
    assert features.apex_spotted and abs(features.apex - 23) <= 1


def test_apex_spotting_ignores_a_single_frame_jitter_spike():
    """One jittery frame (the lips and brows jump twice as far as at the true apex, for a single
    frame) has more raw motion energy than the broad expression peak, yet the spotted apex stays
    at the expression's peak."""
    from geomer.features.apex import motion_energy

    track = expression_track(apex_position=23, drift=0.3)
    points = track.points.astype(np.float64).copy()
    points[10, 48:68, 1] -= 8.0  # 0.08 IOD: twice the expression's amplitude
    points[10, 17:27, 1] -= 8.0
    jittery = make_track(points.astype(np.float32), first_frame=0, fps=100.0)
    energy = motion_energy(jittery.aligned(), jittery.valid, 0, 39)
    assert int(np.argmax(energy)) == 10 and energy[10] > 1.5 * energy[23]  # the spike wins raw
    assert abs(spot_apex(jittery, 0, 39) - 23) <= 1


def test_geometry_is_linearly_resampled_in_iod_units():
    # landmarks move linearly from 0 to 0.2 IOD (20 px at 100 px/IOD) over frames 0..10
    track = expression_track(length=11, amplitude=0.0)
    points = CANONICAL_TEMPLATE[None] * 100 + np.array([320, 150])
    points = np.repeat(points, 11, axis=0).astype(np.float64)
    points[:, 48:68, 0] += np.linspace(0, 20, 11)[:, None]
    track = make_track(points.astype(np.float32), first_frame=0)
    aligned = track.aligned()
    geometry = resample_displacement(aligned, track.valid, 0, 10, 6)
    # the alignment averages the first 5 frames, in which the mouth has moved a little: compare
    # in the aligned frame's own scale (mouth-only motion barely changes the similarity)
    np.testing.assert_allclose(geometry[:, 50, 0], np.linspace(0, 0.2, 6), atol=0.01)
    np.testing.assert_allclose(geometry[:, 30], 0.0, atol=0.01)


def bad(match):
    return pytest.raises(GeomerError, match=match)


def test_bad_inputs_name_clip_and_frame(shifted_clip):
    frames, track = shifted_clip
    settings = FeatureSettings(flow_method="dis")
    mixed = list(frames)
    mixed[5] = cv2.resize(frames[5], (320, 180))
    with bad(r"clip c1 \(synthetic\): frame 105 is 320×180"):
        extract_clip(mixed, track, 100, 104, 107, settings, clip="c1")
    with bad(r"clip c2 \(synthetic\): onset frame 99 is outside the clip"):
        extract_clip(frames, track, 99, 104, 107, settings, clip="c2")
    with bad(r"clip c3 \(synthetic\): apex frame 120 is outside the clip"):
        extract_clip(frames, track, 100, 120, 107, settings, clip="c3")
    with bad(r"clip c4 \(synthetic\): apex frame 106 is outside onset..offset"):
        extract_clip(frames, track, 100, 106, 105, settings, clip="c4")
    lost = track.points.copy()
    valid = np.ones(8, bool)
    valid[0] = False
    lost[0] = np.nan
    with bad(r"clip c5 \(synthetic\): no face in onset frame 100"):
        extract_clip(frames, make_track(lost, valid=valid), 100, 104, 107, settings, clip="c5")
    broken = track.points.copy()
    broken[3, 7] = np.nan
    with bad(r"clip c6 \(synthetic\): landmark track has NaN at frame 103"):
        extract_clip(frames, make_track(broken), 100, 104, 107, settings, clip="c6")
    with bad(r"clip c7 \(synthetic\): 7 frames given for a track of 8"):
        extract_clip(frames[:7], track, 100, 104, 107, settings, clip="c7")
    with pytest.raises(GeomerError) as info:
        extract_clip(frames, track, 99, 104, 107, settings, clip="c2")
    assert "\n" not in str(info.value)


@pytest.mark.skipif(has_tvl1(), reason="opencv-contrib present")
def test_tvl1_without_contrib_is_a_clear_error(shifted_clip):
    frames, track = shifted_clip
    with bad("opencv-contrib"):
        extract_clip(frames, track, 100, 104, 107, FeatureSettings(flow_method="tvl1"), clip="t")


def test_settings_key_changes_with_every_field():
    base = FeatureSettings()
    variants = [
        FeatureSettings(backend="fan"), FeatureSettings(face_size=128), FeatureSettings(scales=(8, 16)),
        FeatureSettings(patch_size=4), FeatureSettings(flow_method="dis"),
        FeatureSettings(flow_mode="patches"), FeatureSettings(steps=8),
        FeatureSettings(sequence_steps=4), FeatureSettings(partition="k9"),
        FeatureSettings(nodes="inner51"), FeatureSettings(flow_image_size=14),
    ]
    keys = {base.key()} | {v.key() for v in variants}
    assert len(keys) == len(variants) + 1
    assert FeatureSettings.from_dict(base.to_dict()) == base
    for name, value in (("face_size", "256"), ("face_size", True), ("scales", [8, "16"]), ("nodes", 3),
                        ("backend", 1)):
        with bad(rf"feature setting {name}=.*: wrong type"):
            FeatureSettings.from_dict({**base.to_dict(), name: value})
    with bad("flow method"):
        FeatureSettings(flow_method="lucas")


def test_flow_image_of_a_moving_region_and_one_convention_with_the_composite():
    """A field whose right half moves right: u is high there and zero (the median) on the
    still half, strain marks the boundary; encoded as the composite's PNGs (per-channel min-max
    to 0..255) and decoded, it gives the same image up to the 8-bit quantisation."""
    from geomer.features import decode_flow_image
    from geomer.features.flow import optical_strain
    from geomer.features.flow_image import flow_image_of_decoded, flow_image_of_field

    field = np.zeros((112, 112, 2), np.float32)
    field[:, 70:, 0] = 2.0
    field[:, :, 1] = np.linspace(-0.1, 0.1, 112)[:, None]
    image = flow_image_of_field(field, 28)
    assert image.shape == (3, 28, 28)
    assert image[0, :, 20:].min() > 0.9 and np.abs(image[0, :, :15]).max() < 1e-6
    assert image[2, :, 16:19].mean() > 5 * image[2, :, :10].mean()
    small = cv2.resize(np.dstack([field, optical_strain(field)]), (28, 28), interpolation=cv2.INTER_AREA)
    low, high = small.reshape(-1, 3).min(0), small.reshape(-1, 3).max(0)
    png = np.round((small - low) / (high - low) * 255).astype(np.uint8)
    decoded = flow_image_of_decoded(decode_flow_image(png), 28)
    np.testing.assert_allclose(decoded, image, atol=1 / 255 + 1e-6)
    assert flow_image_of_decoded(decode_flow_image(png), 14).shape == (3, 14, 14)
