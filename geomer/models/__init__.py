"""geomer models: one registry, one output type, four models.

``create(name, num_classes, graph, features, **cfg)`` builds a registered model (its input
geometry read from the ``FeatureSettings`` ``features``); every model's
``forward(batch)`` returns :class:`ModelOutput` (logits [B, C], relations [B, K, K],
embedding [B, D]). See docs/architecture.md and each model's docstring.
"""

from __future__ import annotations

from geomer.models.output import ModelOutput, row_normalise
from geomer.models.registry import (
    ModelSpec,
    check_inputs,
    create,
    get_spec,
    list_models,
    register_model,
)

__all__ = [
    "ModelOutput",
    "ModelSpec",
    "check_inputs",
    "create",
    "get_spec",
    "list_models",
    "register_model",
    "row_normalise",
]
