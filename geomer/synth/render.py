"""Piecewise-affine rendering of a face texture onto moving landmarks.

Per subject (once): the texture (scikit-image's ``astronaut`` photo, with the subject's appearance:
skin-tone channel gains, contrast, brightness, optional mirroring, slight blur) is warped onto the
subject's neutral landmarks by a piecewise-affine map over a Delaunay triangulation of the 68
landmarks plus anchor points on and just outside the frame border (anchors follow the photo by
the similarity that best maps the landmarks, so the background comes along undistorted). The same
triangulation gives, for every output pixel, its triangle and barycentric coordinates, stored as a
sparse [H·W, V] interpolation matrix.

Per frame: the vertex displacements (landmarks: expression + head motion + blink; anchors: 0, so
the background stays still) are interpolated to a dense forward displacement field D (one sparse
product); the backward map x ↦ x − D(x − D(x)) (one fixed-point step of the inverse, accurate to
≪ 0.1 px for micro-motions) is applied to the neutral image with ``cv2.remap``; Gaussian sensor
noise is added (a pre-drawn bank of noise images). The displacement field is piecewise linear, so it
is computed on a half-resolution grid and upsampled bilinearly. About 2–4 ms per 320×320 colour frame on one core.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import scipy.sparse
from scipy.spatial import Delaunay

from geomer.errors import GeomerError
from geomer.synth.face import FRAME_SIZE
from landmarks.align import apply_transform, estimate_similarity
from landmarks.template import MIRROR


def texture_face() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut photo (RGB uint8 [512, 512, 3]) and its 68 dlib landmarks [68, 2] float32."""
    from landmarks.render import photo_face

    return photo_face()


@dataclass(frozen=True)
class Appearance:
    """A subject's look: per-channel (B, G, R) gains, contrast, brightness, mirror, blur sigma."""

    gains: tuple[float, float, float]
    contrast: float
    brightness: float
    mirrored: bool
    blur_sigma: float

    @staticmethod
    def sample(rng: np.random.Generator) -> "Appearance":
        warmth = rng.normal(0.0, 0.08)  # skin tone: redder/yellower vs bluer
        gains = (1.0 - warmth + rng.normal(0, 0.03), 1.0 + rng.normal(0, 0.03), 1.0 + warmth + rng.normal(0, 0.03))
        return Appearance(
            gains=tuple(float(g) for g in gains),
            contrast=float(rng.uniform(0.8, 1.2)),
            brightness=float(rng.uniform(-20, 20)),
            mirrored=bool(rng.uniform() < 0.5),
            blur_sigma=float(rng.uniform(0.0, 0.8)),
        )

    def apply(self, image_rgb: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The texture as BGR uint8 with this look, and its landmarks (mirrored with it)."""
        bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR).astype(np.float32)
        if self.mirrored:
            bgr = bgr[:, ::-1]
            points = points.copy()
            points[:, 0] = bgr.shape[1] - 1 - points[:, 0]
            points = points[MIRROR]
        mean = bgr.mean()
        bgr = (bgr - mean) * self.contrast + mean + self.brightness
        bgr = bgr * np.asarray(self.gains, np.float32)
        if self.blur_sigma > 0.05:
            bgr = cv2.GaussianBlur(bgr, (0, 0), self.blur_sigma)
        return np.clip(bgr, 0, 255).astype(np.uint8), points.astype(np.float32)


NOISE_BANK = 32


def _anchors(width: int, height: int) -> np.ndarray:
    """Points just outside the frame border (5 per side) so every pixel lies in a triangle."""
    xs = np.linspace(-2.0, width + 1.0, 5)
    ys = np.linspace(-2.0, height + 1.0, 5)
    border = [(x, -2.0) for x in xs] + [(x, height + 1.0) for x in xs]
    border += [(-2.0, y) for y in ys[1:-1]] + [(width + 1.0, y) for y in ys[1:-1]]
    return np.asarray(border, np.float64)


class FaceRenderer:
    """Renders one subject's face for any landmark positions near its neutral ones.

    Shapes:
        neutral_points: [68, 2] px in the output frame.
        render(points [68, 2]) → uint8 [H, W, 3] BGR.

    ``image_noise``: standard deviation (grey levels) of the sensor noise; a bank of
    ``NOISE_BANK`` noise images (seeded by ``noise_seed``) is drawn once and frames pick one each,
    which costs no time per frame.
    """

    def __init__(
        self,
        texture_bgr: np.ndarray,
        texture_points: np.ndarray,
        neutral_points: np.ndarray,
        size: tuple[int, int] = FRAME_SIZE,
        image_noise: float = 0.0,
        noise_seed: int = 0,
    ) -> None:
        width, height = size
        self.size = size
        self.neutral_points = np.asarray(neutral_points, np.float32)
        anchors = _anchors(width, height)
        to_texture = estimate_similarity(self.neutral_points, np.asarray(texture_points, np.float32))
        vertices = np.vstack([self.neutral_points, anchors])
        texture_vertices = np.vstack([texture_points, apply_transform(anchors.astype(np.float32), to_texture)])
        self.num_vertices = len(vertices)

        pixels = _grid(width, height, step=1)
        triangulation = Delaunay(vertices)
        self._interpolate = _interpolation_matrix(triangulation, pixels, self.num_vertices)
        source = self._interpolate @ texture_vertices.astype(np.float32)
        self.neutral = cv2.remap(
            texture_bgr,
            source[:, 0].reshape(height, width).astype(np.float32),
            source[:, 1].reshape(height, width).astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
        # the displacement field is smooth (piecewise linear): computed on a half-resolution grid
        # whose samples sit where cv2.resize's bilinear upsampling expects them (2j + 0.5)
        self._half = ((width + 1) // 2, (height + 1) // 2)
        self._interpolate_half = _interpolation_matrix(triangulation, _grid(width, height, step=2), self.num_vertices)
        self._grid_x, self._grid_y = (g.astype(np.float32) for g in np.meshgrid(np.arange(width), np.arange(height)))
        half_x, half_y = np.meshgrid(np.arange(self._half[0]), np.arange(self._half[1]))
        self._half_x, self._half_y = half_x.astype(np.float32), half_y.astype(np.float32)
        noise_rng = np.random.default_rng(noise_seed)
        self._noise = [
            np.round(noise_rng.normal(0.0, image_noise, (height, width, 1))).astype(np.int16).repeat(3, axis=2)
            for _ in range(NOISE_BANK if image_noise > 0 else 0)
        ]

    def render(self, points: np.ndarray, noise_index: int | None = None) -> np.ndarray:
        """The frame whose face has landmarks ``points`` [68, 2] (BGR uint8 [H, W, 3]).

        ``noise_index`` picks one of the renderer's ``NOISE_BANK`` sensor-noise images (None: none).
        """
        width, height = self.size
        displacement = np.zeros((self.num_vertices, 2), np.float32)
        displacement[:68] = np.asarray(points, np.float32) - self.neutral_points
        half = (self._interpolate_half @ displacement).reshape(self._half[1], self._half[0], 2)
        # one fixed-point step of the inverse map: D evaluated where the pixel came from
        half = cv2.remap(
            half,
            self._half_x - half[..., 0] / 2,
            self._half_y - half[..., 1] / 2,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        dense = cv2.resize(half, (width, height), interpolation=cv2.INTER_LINEAR)
        frame = cv2.remap(
            self.neutral,
            self._grid_x - dense[..., 0],
            self._grid_y - dense[..., 1],
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
        if noise_index is not None and self._noise:
            frame = cv2.add(frame, self._noise[noise_index % len(self._noise)], dtype=cv2.CV_8U)
        return frame


def _grid(width: int, height: int, step: int) -> np.ndarray:
    """[n, 2] pixel positions of a grid with ``step`` (step 2: centres 2j + 0.5)."""
    offset = 0.0 if step == 1 else (step - 1) / 2
    xs = np.arange(0, width, step, dtype=np.float64) + offset
    ys = np.arange(0, height, step, dtype=np.float64) + offset
    grid_x, grid_y = np.meshgrid(xs, ys)
    return np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)


def _interpolation_matrix(triangulation: Delaunay, pixels: np.ndarray, num_vertices: int):
    """Sparse [n, V] barycentric weights of each pixel in its triangle's three vertices."""
    simplex = triangulation.find_simplex(pixels)
    if (simplex < 0).any():  # the anchors enclose the frame, so this means a degenerate face
        raise GeomerError("synthetic face landmarks do not triangulate the frame")
    affine = triangulation.transform[simplex]
    partial = np.einsum("pij,pj->pi", affine[:, :2], pixels - affine[:, 2])
    barycentric = np.column_stack([partial, 1.0 - partial.sum(axis=1)])
    rows = np.repeat(np.arange(len(pixels)), 3)
    return scipy.sparse.csr_matrix(
        (barycentric.ravel().astype(np.float32), (rows, triangulation.simplices[simplex].ravel())),
        shape=(len(pixels), num_vertices),
    )
