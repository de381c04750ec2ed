"""The action-unit library: each AU as a displacement field on the 68 landmarks.

A field is [68, 2] in IOD units (canonical face, x to the subject's left = image right, y down):
the displacement of every landmark at apex for intensity 1. Fields are built from per-point
direction vectors (weights relative to the AU's strongest point) following the FACS description
of each AU's appearance change, then scaled so the strongest point moves ``PEAK_IOD`` = 0.02 IOD
(2 px on the synthetic 100-px-IOD face) — the micro-expression range of 1–3 px. Clips scale them
by an intensity drawn per difficulty (see ``geomer.synth.motion.DIFFICULTIES``).

An AU's ``components`` are the k7 components (``geomer.graph.FaceGraph``) that hold a point moving
at least ``COMPONENT_THRESHOLD`` of the AU's strongest point: they are what the ground truth names.

AU codes follow the label sheets: ``"12"`` (both sides), ``"R12"`` / ``"L12"`` (one side; R = the
subject's right = image left, x < 0); midline points move at half weight for a one-sided AU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from geomer.errors import GeomerError
from geomer.graph import FaceGraph
from landmarks.template import CANONICAL_TEMPLATE, MIRROR

PEAK_IOD = 0.02
COMPONENT_THRESHOLD = 0.4

UP = (0.0, -1.0)
DOWN = (0.0, 1.0)


def _v(dx: float, dy: float) -> tuple[float, float]:
    return (dx, dy)


# Movements on the subject's RIGHT half (image left, x < 0) and the midline; the left half is the
# mirror image (x negated) through landmarks.template.MIRROR. "in" = toward the midline (+x on the
# right half), "out" = away from it (-x).
_RIGHT_HALF_MOVES: dict[str, dict[int, tuple[float, float]]] = {
    # inner brow raiser: inner brow ends up, fading outwards
    "1": {21: UP, 20: _v(0, -0.7), 19: _v(0, -0.4), 18: _v(0, -0.15)},
    # outer brow raiser: outer brow up (slightly outward), fading inwards
    "2": {17: _v(-0.2, -1.0), 18: _v(-0.1, -0.9), 19: _v(0, -0.6), 20: _v(0, -0.3), 21: _v(0, -0.1)},
    # brow lowerer: brows down and drawn together, strongest at the inner ends
    "4": {21: _v(0.5, 0.9), 20: _v(0.3, 0.8), 19: _v(0.15, 0.55), 18: _v(0, 0.35), 17: _v(0, 0.15)},
    # upper lid raiser
    "5": {37: UP, 38: UP, 36: _v(0, -0.2), 39: _v(0, -0.2)},
    # cheek raiser: lower lids pushed up, outer eye corner up/in, cheek bulge lifts the jaw line
    "6": {40: UP, 41: UP, 36: _v(0.3, -0.4), 2: _v(0, -0.5), 3: _v(0, -0.55), 4: _v(0, -0.4)},
    # lid tightener: lower lids up, upper lids slightly down
    "7": {40: _v(0, -0.8), 41: _v(0, -0.8), 37: _v(0, 0.4), 38: _v(0, 0.4)},
    # nose wrinkler: nose wings and base up, bridge up, the upper lip follows
    "9": {31: _v(0.3, -1.0), 32: _v(0, -0.8), 33: _v(0, -0.8), 30: _v(0, -0.5), 29: _v(0, -0.4),
          50: _v(0, -0.5), 51: _v(0, -0.5), 49: _v(0, -0.3), 61: _v(0, -0.4), 62: _v(0, -0.4)},
    # upper lip raiser: upper lip up, nose wings follow a little
    "10": {50: UP, 51: UP, 49: _v(0, -0.8), 61: _v(0, -0.9), 62: _v(0, -0.9), 48: _v(0, -0.3),
           31: _v(0, -0.35), 32: _v(0, -0.2), 33: _v(0, -0.2)},
    # lip corner puller: corners up and out
    "12": {48: _v(-0.8, -0.6), 60: _v(-0.7, -0.55), 49: _v(-0.35, -0.35), 59: _v(-0.3, -0.3),
           50: _v(-0.1, -0.15), 58: _v(-0.1, -0.15)},
    # dimpler: corners tightened, drawn inwards
    "14": {48: _v(0.7, -0.2), 60: _v(0.7, -0.15), 49: _v(0.3, 0), 59: _v(0.3, 0)},
    # lip corner depressor: corners down
    "15": {48: _v(-0.1, 1.0), 60: _v(-0.1, 0.9), 59: _v(0, 0.5), 49: _v(0, 0.4), 58: _v(0, 0.2)},
    # chin raiser: chin boss and lower lip pushed up
    "17": {8: UP, 7: UP, 6: _v(0, -0.6), 57: _v(0, -0.8), 58: _v(0, -0.8), 59: _v(0, -0.5),
           66: _v(0, -0.6), 67: _v(0, -0.6), 51: _v(0, -0.2)},
    # lip stretcher: corners pulled horizontally out, lips flattened
    "20": {48: _v(-1.0, 0.15), 60: _v(-0.9, 0.1), 49: _v(-0.5, 0), 59: _v(-0.5, 0)},
    # lip tightener: corners in, red of the lips narrowed vertically
    "23": {48: _v(0.8, 0), 60: _v(0.6, 0), 50: _v(0, 0.4), 51: _v(0, 0.4), 57: _v(0, -0.4),
           58: _v(0, -0.4), 61: _v(0, 0.3), 62: _v(0, 0.3), 66: _v(0, -0.3), 67: _v(0, -0.3)},
    # lip pressor: lips pressed together
    "24": {50: DOWN, 51: DOWN, 57: UP, 58: UP, 61: _v(0, 0.6), 62: _v(0, 0.6),
           66: _v(0, -0.6), 67: _v(0, -0.6), 49: _v(0, 0.5), 59: _v(0, -0.5)},
    # lips part: lower lip down, upper inner lip slightly up
    "25": {57: DOWN, 58: DOWN, 66: DOWN, 67: DOWN, 59: _v(0, 0.6), 61: _v(0, -0.3), 62: _v(0, -0.3)},
    # jaw clencher: the masseter bulges, the lower jaw line pushed outwards
    "31": {4: _v(-1.0, 0), 5: _v(-0.8, 0.1), 3: _v(-0.6, 0), 6: _v(-0.4, 0.1)},
    # nostril dilator: the nose wings flare outwards
    "38": {31: _v(-1.0, 0.1), 32: _v(-0.5, 0), 30: _v(0, 0)},
}
# Midline points (x == 0) that an AU moves, listed once (not mirrored).
_MIDLINE_POINTS = {8, 27, 28, 29, 30, 33, 51, 57, 62, 66}

_AU_NAMES = {
    "1": "inner brow raiser", "2": "outer brow raiser", "4": "brow lowerer",
    "5": "upper lid raiser", "6": "cheek raiser", "7": "lid tightener", "9": "nose wrinkler",
    "10": "upper lip raiser", "12": "lip corner puller", "14": "dimpler",
    "15": "lip corner depressor", "17": "chin raiser", "20": "lip stretcher",
    "23": "lip tightener", "24": "lip pressor", "25": "lips part", "31": "jaw clencher",
    "38": "nostril dilator",
}
AU_NUMBERS: tuple[str, ...] = tuple(_AU_NAMES)


@dataclass(frozen=True)
class ActionUnit:
    """One (possibly one-sided) action unit.

    Shapes:
        field: [68, 2] float32, IOD units at intensity 1 (strongest point moves PEAK_IOD).
    """

    code: str
    name: str
    field: np.ndarray
    components: tuple[str, ...]


def _symmetric_field(number: str) -> np.ndarray:
    field = np.zeros((68, 2), np.float64)
    for point, (dx, dy) in _RIGHT_HALF_MOVES[number].items():
        # the table uses the right half's ids; midline ids carry their own vector once
        field[point] = (dx, dy)
        if point not in _MIDLINE_POINTS:
            field[MIRROR[point]] = (-dx, dy)
    return field


def _side_mask(side: str) -> np.ndarray:
    x = CANONICAL_TEMPLATE[:, 0]
    on_side = x < -1e-3 if side == "R" else x > 1e-3
    return np.where(np.abs(x) <= 1e-3, 0.5, on_side.astype(np.float64))


def components_moved(field: np.ndarray, threshold: float = COMPONENT_THRESHOLD) -> tuple[str, ...]:
    """k7 component names holding a point that moves ≥ ``threshold`` × the strongest point."""
    graph = FaceGraph("k7")
    norms = np.linalg.norm(field, axis=1)
    peak = norms.max()
    if peak <= 0:
        return ()
    moved = []
    for k, name in enumerate(graph.component_names):
        ids = graph.node_ids[graph.component == k]
        if norms[ids].max() >= threshold * peak:
            moved.append(name)
    return tuple(moved)


_CODE = re.compile(r"^([LR]?)(\d+)$")


@lru_cache(maxsize=None)
def action_unit(code: str) -> ActionUnit:
    """The AU for a sheet code such as ``"12"``, ``"R14"``, ``"L12"``."""
    match = _CODE.match(code.strip().upper())
    if not match or match.group(2) not in _RIGHT_HALF_MOVES:
        raise GeomerError(f"unknown action unit {code!r}; known: {', '.join(AU_NUMBERS)} (optionally L/R)")
    side, number = match.groups()
    field = _symmetric_field(number)
    peak = np.linalg.norm(field, axis=1).max()
    field = field / peak * PEAK_IOD
    if side:
        field = field * _side_mask(side)[:, None]
    field = field.astype(np.float32)
    field.setflags(write=False)
    return ActionUnit(
        code=f"{side}{number}",
        name=("right " if side == "R" else "left " if side == "L" else "") + _AU_NAMES[number],
        field=field,
        components=components_moved(field),
    )


def au_library() -> dict[str, ActionUnit]:
    """Every bilateral AU of the library by number."""
    return {number: action_unit(number) for number in AU_NUMBERS}
