"""Time courses and distractors of a synthetic clip.

* **Expression**: intensity 0 before onset, a smooth (raised-cosine) rise to 1 at apex and a smooth
  fall back to 0 at offset; flat 0 in the lead frames before onset / after offset.
* **Head motion** (distractor): a rigid similarity about the eye midpoint — a linear drift plus one
  slow oscillation in translation (peak ``head_shift_px``) and rotation (peak ``head_rotation_deg``),
  independent per clip.
* **Blinks** (distractor): with probability ``blink_probability`` a clip gets one partial blink
  (closure ``blink_closure`` of the lid opening, 80–150 ms) at a random time; upper lids move down,
  lower lids slightly up.
* **Landmark noise**: Gaussian noise ``landmark_noise_px`` added to the ground-truth landmark series
  (what a tracker would report), never to the rendering.
* **Image noise**: Gaussian sensor noise (grey levels) on every rendered frame.

Difficulty scales the expression amplitude against the distractors (amplitude = displacement of
an AU's strongest landmark at apex, px on the 100-px-IOD face, drawn per AU, times the subject's
expressivity):

========= ============ ========== ========== ======= ======= ========== ============ ============
level     amplitude px  head px    head deg   blinks  closure lmk noise  image noise  expressivity
========= ============ ========== ========== ======= ======= ========== ============ ============
easy      2.5 – 4.0     0.3        0.1        0       –       0.2        0.5          ±10 %
standard  1.5 – 3.0     0.6        0.25       15 %    .3–.5   0.4        1.0          ±20 %
hard      1.0 – 2.0     1.2        0.5        40 %    .3–.7   0.7        2.0          ±30 %
========= ============ ========== ========== ======= ======= ========== ============ ============
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geomer.errors import GeomerError
from landmarks.registry import Registry
from geomer.synth.face import EYE_MIDPOINT


@dataclass(frozen=True)
class Difficulty:
    name: str
    amplitude_px: tuple[float, float]
    head_shift_px: float
    head_rotation_deg: float
    blink_probability: float
    blink_closure: tuple[float, float]
    landmark_noise_px: float
    image_noise: float
    expressivity_sd: float


DIFFICULTIES: Registry[Difficulty] = Registry("difficulty", GeomerError, {
    "easy": Difficulty("easy", (2.5, 4.0), 0.3, 0.1, 0.0, (0.3, 0.5), 0.2, 0.5, 0.1),
    "standard": Difficulty("standard", (1.5, 3.0), 0.6, 0.25, 0.15, (0.3, 0.5), 0.4, 1.0, 0.2),
    "hard": Difficulty("hard", (1.0, 2.0), 1.2, 0.5, 0.4, (0.3, 0.7), 0.7, 2.0, 0.3),
})


def difficulty(name: str) -> Difficulty:
    return DIFFICULTIES[name]


def _smooth_step(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * x)


def expression_course(n_frames: int, onset: int, apex: int, offset: int) -> np.ndarray:
    """Intensity [T] float32 over positions 0..T-1: 0 until onset, 1 at apex, 0 from offset."""
    t = np.arange(n_frames, dtype=np.float64)
    rise = _smooth_step((t - onset) / max(apex - onset, 1))
    fall = 1.0 - _smooth_step((t - apex) / max(offset - apex, 1))
    course = np.where(t <= apex, rise, fall)
    course[t < onset] = 0.0
    course[t >= offset] = 0.0
    return course.astype(np.float32)


def head_motion(rng: np.random.Generator, n_frames: int, level: Difficulty) -> np.ndarray:
    """Per-frame rigid transforms [T, 2, 3] (identity at frame 0) about the eye midpoint."""
    t = np.linspace(0.0, 1.0, n_frames)

    def wander(peak: float) -> np.ndarray:
        drift = rng.uniform(-1, 1) * t
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t + phase) - np.sin(phase)
        path = drift + 0.5 * wave
        scale = np.abs(path).max()
        return path / scale * peak * rng.uniform(0.5, 1.0) if scale > 0 else path

    dx, dy = wander(level.head_shift_px), wander(level.head_shift_px)
    angle = np.deg2rad(wander(level.head_rotation_deg))
    cos, sin = np.cos(angle), np.sin(angle)
    transforms = np.zeros((n_frames, 2, 3))
    transforms[:, 0, 0], transforms[:, 0, 1] = cos, -sin
    transforms[:, 1, 0], transforms[:, 1, 1] = sin, cos
    centre = EYE_MIDPOINT.astype(np.float64)
    rotated_centre = np.einsum("tij,j->ti", transforms[:, :, :2], centre)
    transforms[:, :, 2] = centre - rotated_centre + np.stack([dx, dy], axis=1)
    return transforms.astype(np.float32)


def apply_rigid(points: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """Points [T, 68, 2] moved by transforms [T, 2, 3] → [T, 68, 2]."""
    return np.einsum("tij,tnj->tni", transforms[:, :, :2], points) + transforms[:, None, :, 2]


def blink_field(neutral_points: np.ndarray) -> np.ndarray:
    """[68, 2] px displacement of a full blink of this face (upper lids onto the lower lids)."""
    field = np.zeros((68, 2), np.float32)
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        gap = neutral_points[lower, 1] - neutral_points[upper, 1]
        field[upper, 1] = 0.85 * gap
        field[lower, 1] = -0.15 * gap
    return field


def blink_course(rng: np.random.Generator, n_frames: int, fps: float, level: Difficulty) -> np.ndarray:
    """Closure [T] float32 in 0..1 (0 = open): one partial blink with the level's probability."""
    course = np.zeros(n_frames, np.float32)
    if rng.uniform() >= level.blink_probability:
        return course
    length = max(int(round(rng.uniform(0.08, 0.15) * fps)), 3)
    start = int(rng.integers(0, max(n_frames - length, 1)))
    closure = rng.uniform(*level.blink_closure)
    shape = np.sin(np.pi * np.linspace(0, 1, length)) ** 2 * closure
    end = min(start + length, n_frames)
    course[start:end] = shape[: end - start]
    return course
