"""The canonical 68-point face (iBUG 300-W order) in which aligned landmarks live.

Coordinates: x to the subject's left (image right), y down; the origin is the midpoint of the two
eye centres (means of points 36-41 and 42-47), the eyes lie on the x axis and the inter-ocular
distance is 1.

How it was made (a reimplementation choice, recorded so it can be reproduced): dlib's 68-point
predictor from ``face_recognition_models`` on scikit-image's bundled ``astronaut`` photo, averaged
with its mirror image (so the template is exactly left/right symmetric), then normalised as above.
The photo's mouth is slightly open (a smile); the template keeps that.
"""

import numpy as np

#: Index of each point's mirror partner (left/right swap), e.g. 36 (right eye, outer) ↔ 45.
MIRROR = np.array(
    [16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 27, 28, 29, 30, 35, 34, 33, 32, 31, 45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40, 54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65]
)

#: [68, 2] float32 canonical points (inter-ocular distance 1).
CANONICAL_TEMPLATE = np.array(
    [
        (-1.0767, 0.0838), (-1.0529, 0.3506), (-1.0190, 0.6167), (-0.9613, 0.8944),
        (-0.8676, 1.1497), (-0.7183, 1.3696), (-0.4976, 1.5549), (-0.2661, 1.7064),
        (-0.0000, 1.7417), (0.2661, 1.7064), (0.4976, 1.5549), (0.7183, 1.3696),
        (0.8676, 1.1497), (0.9613, 0.8944), (1.0190, 0.6167), (1.0529, 0.3506),
        (1.0767, 0.0838), (-0.9144, -0.1585), (-0.7875, -0.2977), (-0.6029, -0.3208),
        (-0.4168, -0.2977), (-0.2322, -0.2285), (0.2322, -0.2285), (0.4168, -0.2977),
        (0.6029, -0.3208), (0.7875, -0.2977), (0.9144, -0.1585), (-0.0000, 0.0023),
        (-0.0000, 0.1869), (-0.0000, 0.3730), (-0.0000, 0.5576), (-0.2315, 0.6629),
        (-0.1154, 0.6975), (-0.0000, 0.7206), (0.1154, 0.6975), (0.2315, 0.6629),
        (-0.6945, -0.0078), (-0.5791, -0.0770), (-0.4168, -0.0886), (-0.2899, 0.0506),
        (-0.4406, 0.0614), (-0.5791, 0.0614), (0.2899, 0.0506), (0.4168, -0.0886),
        (0.5791, -0.0770), (0.6945, -0.0078), (0.5791, 0.0614), (0.4406, 0.0614),
        (-0.5084, 0.8720), (-0.3123, 0.8482), (-0.1276, 0.8482), (-0.0000, 0.8835),
        (0.1276, 0.8482), (0.3123, 0.8482), (0.5084, 0.8720), (0.3353, 1.1035),
        (0.1500, 1.2073), (-0.0000, 1.2311), (-0.1500, 1.2073), (-0.3353, 1.1035),
        (-0.4507, 0.8944), (-0.1269, 0.9290), (-0.0000, 0.9528), (0.1269, 0.9290),
        (0.4507, 0.8944), (0.1385, 1.0912), (-0.0000, 1.0912), (-0.1385, 1.0912),
    ],
    dtype=np.float32,
)

RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)


def eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right and left eye centres of ``points`` [..., 68, 2] → two arrays [..., 2]."""
    return points[..., RIGHT_EYE, :].mean(axis=-2), points[..., LEFT_EYE, :].mean(axis=-2)


def inter_ocular_distance(points: np.ndarray) -> np.ndarray:
    """Distance between the eye centres of ``points`` [..., 68, 2] → [...]."""
    right, left = eye_centres(points)
    return np.linalg.norm(left - right, axis=-1)
