"""Range checks of a model's settings, made in its constructor.

``geomer train`` builds every model once before it writes anything
(:func:`geomer.train.run.check_model_settings`), so a setting out of range is a one-line error
naming the model, the setting and its range, before a run directory exists. Without these checks
a zero depth or width failed later, inside the first forward pass or as a division by zero, and
a zero temperature or a negative loss weight trained to NaN or to nonsense.
"""

from __future__ import annotations

import math

from geomer.errors import GeomerError


def check_at_least(model: str, low: float, **settings: float) -> None:
    """Every ``settings`` value is a finite number ≥ ``low``, else a GeomerError naming it."""
    for name, value in settings.items():
        if not (math.isfinite(float(value)) and value >= low):
            raise GeomerError(f"{model}: {name} must be ≥ {low}, got {value}")


def check_positive(model: str, **settings: float) -> None:
    """Every ``settings`` value is a finite number > 0, else a GeomerError naming it."""
    for name, value in settings.items():
        if not (math.isfinite(float(value)) and value > 0):
            raise GeomerError(f"{model}: {name} must be > 0, got {value}")


def check_probability(model: str, **settings: float) -> None:
    """Every ``settings`` value (a dropout rate) lies in [0, 1), else a GeomerError naming it."""
    for name, value in settings.items():
        if not 0.0 <= float(value) < 1.0:
            raise GeomerError(f"{model}: {name} must lie in [0, 1), got {value}")
