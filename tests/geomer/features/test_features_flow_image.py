"""megc2019-flow clips: apex crop + 28×28 u/v/strain flow PNG (STSNet_whole_norm_u_v_os style)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from geomer.errors import GeomerError
from geomer.features import FeatureSettings, decode_flow_image, extract_flow_image_clip
from landmarks.render import photo_face


@pytest.fixture(scope="module")
def apex_crop_and_points():
    rgb, points = photo_face()
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    side = 1.5 * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = int(cx - side / 2), int(cy - side / 2)
    square = rgb[top : top + int(side), left : left + int(side)]
    scale = 224 / square.shape[0]
    crop = cv2.resize(cv2.cvtColor(square, cv2.COLOR_RGB2BGR), (224, 224))
    return crop, (points - [left, top]) * scale


def test_flow_image_sampled_at_apex_landmarks(tmp_path, apex_crop_and_points):
    crop, points = apex_crop_and_points
    # u = 128 (no motion) everywhere but the mouth region, where it is 255; v flat; strain high there
    flow = np.zeros((28, 28, 3), np.uint8)
    flow[..., 0] = 128
    flow[..., 1] = 128
    mouth = points[48:68] / 8.0
    (mx0, my0), (mx1, my1) = np.floor(mouth.min(0)).astype(int), np.ceil(mouth.max(0)).astype(int)
    flow[my0 - 1 : my1 + 2, mx0 - 1 : mx1 + 2, 0] = 255
    flow[my0 - 1 : my1 + 2, mx0 - 1 : mx1 + 2, 2] = 255
    apex_path, flow_path = tmp_path / "apex.png", tmp_path / "sub01_EP01 .png"
    cv2.imwrite(str(apex_path), crop)
    cv2.imwrite(str(flow_path), flow[..., ::-1])  # the PNG's RGB channels are (u, v, strain)

    settings = FeatureSettings(scales=(8, 16), patch_size=4)
    f = extract_flow_image_clip(apex_path, flow_path, settings, clip="megc/sub01/EP01")
    assert f.geometry is None and f.texture_onset is None and f.sequence is None
    assert f.apex_displacement is None and f.onset is None and f.offset is None
    assert f.flow_stats.shape == (68, 2, 12) and f.flow_patches.shape == (68, 2, 3, 4, 4)
    assert f.texture_apex.shape == (68, 2, 4, 4)
    # the mouth moves right (u ≈ 1 - median), the eyes do not; strain follows
    mouth_u = f.flow_stats[60:68, 0, 0]
    eye_u = f.flow_stats[36:48, 0, 0]
    assert mouth_u.min() > 0.3 and np.abs(eye_u).max() < 0.05
    assert f.flow_stats[60:68, 0, 11].min() > 0.5 and f.flow_stats[36:48, 0, 11].max() < 0.05
    assert np.abs(f.flow_stats[:, :, 1]).max() < 1e-6  # v is flat: zero after re-centring
    # arrays in (u, v, strain) order give the same result as the file
    same = extract_flow_image_clip(crop, flow, settings, clip="megc/sub01/EP01")
    np.testing.assert_allclose(same.flow_stats, f.flow_stats, atol=1e-5)
    # the whole flow image is kept as decoded (28×28, channels first)
    np.testing.assert_allclose(f.flow_image, decode_flow_image(flow).transpose(2, 0, 1))



def test_flow_image_points_are_the_apex_landmarks_scaled_to_the_flow_image(apex_crop_and_points):
    """flow_image_points are the landmarks detected on the apex image, each axis scaled by its own
    side onto the F×F flow image ((p + 0.5)·F / side − 0.5; a non-square apex image)."""
    from landmarks.backends import landmarks_on_image

    crop, _ = apex_crop_and_points
    apex = np.concatenate([crop, np.full((40, 224, 3), 128, np.uint8)])  # 224 wide, 264 high
    flow = np.full((28, 28, 3), 128, np.uint8)
    settings = FeatureSettings(scales=(8, 16), patch_size=4, flow_image_size=14)
    f = extract_flow_image_clip(apex, flow, settings, clip="megc/sub01/EP01")
    points = landmarks_on_image(apex, backend=settings.backend)[settings.graph().node_ids]
    expected = (points.astype(np.float64) + 0.5) * [14 / 224, 14 / 264] - 0.5
    assert f.flow_image_points.shape == (68, 2)
    np.testing.assert_allclose(f.flow_image_points, expected, atol=1e-4)


def test_decode_recentres_u_and_v_on_median():
    flow = np.full((4, 4, 3), 100, np.uint8)
    flow[0, 0] = (255, 0, 50)
    decoded = decode_flow_image(flow)
    assert decoded[1, 1, 0] == 0 and decoded[1, 1, 1] == 0
    assert decoded[0, 0, 0] == pytest.approx((255 - 100) / 255)
    assert decoded[0, 0, 2] == pytest.approx(50 / 255)


def test_flow_image_bad_inputs(tmp_path):
    blank = np.full((224, 224, 3), 90, np.uint8)
    flow = np.full((28, 28, 3), 128, np.uint8)
    with pytest.raises(GeomerError, match="clip c1: flow image: .*missing.png: no such file"):
        extract_flow_image_clip(blank, tmp_path / "missing.png", FeatureSettings(), clip="c1")
    # a JPEG cut short still decodes (grey rows) with a libjpeg warning: refused, naming the file
    noisy = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    apex = tmp_path / "apex.jpg"
    cv2.imwrite(str(apex), noisy)
    apex.write_bytes(apex.read_bytes()[: apex.stat().st_size * 85 // 100])
    with pytest.raises(GeomerError, match=f"clip c4: apex image: {apex}: the image decodes with an error"):
        extract_flow_image_clip(apex, flow, FeatureSettings(), clip="c4")
    with pytest.raises(GeomerError, match="clip c2: apex image"):
        extract_flow_image_clip(blank, flow, FeatureSettings(), clip="c2")
    grey = tmp_path / "grey.png"  # one channel: read as colour it would become u = v = strain
    cv2.imwrite(str(grey), flow[..., 0])
    with pytest.raises(GeomerError, match=f"clip c3: flow image {grey}.*u, v, strain"):
        extract_flow_image_clip(blank, grey, FeatureSettings(), clip="c3")


def test_points_map_pixel_centres_onto_pixel_centres():
    from geomer.features.flow_image import points_in_flow_image

    points = np.array([[127.5, 127.5], [0.0, 0.0], [255.0, 255.0]])
    mapped = points_in_flow_image(points, 256, 28)
    edge = 0.5 * 28 / 256 - 0.5
    np.testing.assert_allclose(mapped, [[13.5, 13.5], [edge, edge], [27 - edge, 27 - edge]], atol=1e-5)
    # a (width, height) image: each axis scaled by its own side, the centre still on the centre
    wide = points_in_flow_image(np.array([[159.5, 59.5], [0.0, 0.0]]), (320, 120), 28)
    np.testing.assert_allclose(wide, [[13.5, 13.5], [0.5 * 28 / 320 - 0.5, 0.5 * 28 / 120 - 0.5]],
                               atol=1e-5)
