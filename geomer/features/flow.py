"""Dense optical flow between two aligned grey face crops, and optical strain.

Methods (``FeatureSettings.flow_method``):

* ``farneback``: ``cv2.calcOpticalFlowFarneback`` with a 2-level pyramid, 13-px window, 2
  iterations (a micro-expression moves 1–3 px at a 256-px face, so a shallow pyramid suffices and
  keeps one 256² pair around 5–10 ms on one core);
* ``dis``: ``cv2.DISOpticalFlow`` with the ``FAST`` preset (about 1–2 ms per 256² pair);
* ``tvl1``: ``cv2.optflow.DualTVL1OpticalFlow`` when opencv-contrib is installed.

Optical strain (Shreve et al.; used by STSTNet/Off-ApexNet): with the flow gradients from
``np.gradient``, ``exx = du/dx``, ``eyy = dv/dy``, ``exy = ½(du/dy + dv/dx)`` and the strain
magnitude ``sqrt(exx² + eyy² + 2·exy²)``. A pure translation has zero strain.
"""

from __future__ import annotations

import cv2
import numpy as np

from geomer.errors import GeomerError

_DIS_BY_SHAPE: dict[tuple[int, ...], object] = {}


def _dis(shape: tuple[int, ...]):
    # One DIS object per process and image shape: creating one costs more than a small flow
    # computation, but an OpenCV DIS object keeps state from a smaller image (a patch window) into
    # later larger ones (their flow then differs by up to several pixels), so one object shared
    # across shapes made a clip's features depend on what the process had computed before.
    if shape not in _DIS_BY_SHAPE:
        _DIS_BY_SHAPE[shape] = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    return _DIS_BY_SHAPE[shape]


def has_tvl1() -> bool:
    """True when opencv-contrib's TV-L1 flow is importable."""
    return hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")


def compute_flow(first: np.ndarray, second: np.ndarray, method: str = "farneback") -> np.ndarray:
    """Flow from ``first`` to ``second`` (uint8 grey, same shape): [H, W, 2] float32 (u, v) px,
    such that ``second(x + u, y + v) ≈ first(x, y)``."""
    if first.shape != second.shape:
        raise GeomerError(f"flow needs two images of one size, got {first.shape} and {second.shape}")
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(first, second, None, 0.5, 2, 13, 2, 5, 1.1, 0)
    if method == "dis":
        return _dis(first.shape).calc(first, second, None)
    if method == "tvl1":
        if not has_tvl1():
            raise GeomerError(
                "flow method 'tvl1' needs opencv-contrib (cv2.optflow); use 'farneback' or 'dis'"
            )
        return cv2.optflow.DualTVL1OpticalFlow_create().calc(first, second, None)
    raise GeomerError(f"unknown flow method {method!r}; known: farneback, dis, tvl1")


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """Optical strain magnitude of ``flow`` [H, W, 2] → [H, W] float32."""
    u = flow[..., 0]
    v = flow[..., 1]
    du_dy, du_dx = np.gradient(u)
    dv_dy, dv_dx = np.gradient(v)
    exy = 0.5 * (du_dy + dv_dx)
    return np.sqrt(du_dx**2 + dv_dy**2 + 2.0 * exy**2).astype(np.float32)
