"""``geomer bench features``: flow + node sampling per onset→apex pair, and full clip extraction.

The face is scikit-image's astronaut photo (``landmarks.render``), moved by a known sub-pixel
shift; the landmark track is built from the rendered truth (i.e. cached landmarks), so the
figures measure feature extraction alone. Single-threaded (``cv2.setNumThreads(1)``), median of
``repeats`` runs after one warm-up.
"""

from __future__ import annotations

import time

import numpy as np

Row = tuple[str, float, str]


def _median_ms(function, repeats: int) -> float:
    function()  # warm-up: imports, graph construction, OpenCV buffers
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def bench_features(repeats: int = 20) -> list[Row]:
    """Rows (what, value, unit): flow+sampling per pair on a 256² face for each flow method and
    mode, and full extraction of a 64-frame clip with cached landmarks."""
    import cv2

    from geomer.features.crop import pixel_to_crop, to_grey, warp_to_crop
    from geomer.features.extract import extract_clip
    from geomer.features.flow import has_tvl1
    from geomer.features.flow_nodes import flow_at_nodes
    from geomer.features.types import FeatureSettings
    from landmarks import LandmarkTrack
    from landmarks.render import shift_transforms, transformed_photo_clip

    previous_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        length = 64
        shifts = np.zeros((length, 2))
        # a smooth 1.5-px excursion peaking at frame 32, like a micro-expression's time course
        shifts[:, 0] = 1.5 * np.exp(-0.5 * ((np.arange(length) - 32) / 6.0) ** 2)
        frames, truth = transformed_photo_clip(shift_transforms(shifts))
        track = LandmarkTrack(
            points=truth, valid=np.ones(length, bool), frame_index=np.arange(length),
            box=np.zeros((length, 4)), fps=200.0, source="bench", backend="truth",
        )
        settings = FeatureSettings()
        graph = settings.graph()
        transform = pixel_to_crop(track.alignment(), settings.face_size)
        onset = warp_to_crop(to_grey(frames[0]), transform, settings.face_size)
        apex = warp_to_crop(to_grey(frames[32]), transform, settings.face_size)
        centres = (truth[0, graph.node_ids] @ transform[:, :2].T + transform[:, 2]).astype(np.float32)

        rows: list[Row] = []
        methods = ["farneback", "dis"] + (["tvl1"] if has_tvl1() else [])
        for method in methods:
            for mode in ("dense", "patches"):
                ms = _median_ms(
                    lambda: flow_at_nodes(onset, apex, centres, settings.scales,
                                          settings.patch_size, method, mode),
                    repeats,
                )
                rows.append((f"flow+sampling {method} {mode} (256² face, 68 nodes)", ms, "ms/pair"))
        for method in ("farneback", "dis"):
            clip_settings = FeatureSettings(flow_method=method)
            ms = _median_ms(
                lambda: extract_clip(frames, track, 0, 32, length - 1, clip_settings, clip="bench"),
                repeats,
            )
            rows.append((f"full extraction {method} (64-frame clip, cached landmarks)", ms, "ms/clip"))
        return rows
    finally:
        cv2.setNumThreads(previous_threads)
