"""What every geomer model returns: logits, a component-relation matrix and an embedding."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from geomer.errors import check_shape


@dataclass(frozen=True)
class ModelOutput:
    """The one output type of all four models (docs/architecture.md, "Where things go").

    ``relations`` holds non-negative weights between the K facial components whose rows sum to 1;
    how a model derives them is part of its design and documented on the model class.
    ``aux_loss`` is a scalar the training engine adds to the cross-entropy (for example the
    cross-modal contrastive loss of ``mmt``); ``None`` when the model has none.

    Shapes:
        - logits: [B, C]
        - relations: [B, K, K], rows sum to 1
        - embedding: [B, D]
        - aux_loss: [] (a scalar) or None
    """

    logits: Tensor
    relations: Tensor
    embedding: Tensor
    aux_loss: Tensor | None = None

    def __post_init__(self) -> None:
        # Checked at the door so that a model breaking the contract fails where it is built,
        # not later inside the engine's pooling code.
        sizes = check_shape(self.logits, ("B", "C"), "ModelOutput.logits", error=ValueError)
        batch = " (B: the batch size of the logits)"
        check_shape(self.relations, ("B", "K", "K"), "ModelOutput.relations", error=ValueError,
                    hint=batch, sizes=sizes)
        check_shape(self.embedding, ("B", "D"), "ModelOutput.embedding", error=ValueError,
                    hint=batch, sizes=sizes)
        if self.aux_loss is not None:
            check_shape(self.aux_loss, (), "ModelOutput.aux_loss (a scalar)", error=ValueError)

    @property
    def num_components(self) -> int:
        """K, the number of facial components the relations are over."""
        return int(self.relations.shape[-1])


def row_normalise(weights: Tensor, eps: float = 1e-12) -> Tensor:
    """Scale non-negative ``weights`` so that each row (last dimension) sums to 1.

    A row that is all zero becomes uniform, so the result is always a valid relation row.

    Shapes:
        - weights: [..., K]
        - output: [..., K]
    """
    total = weights.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(weights, 1.0 / weights.shape[-1])
    return torch.where(total > eps, weights / total.clamp_min(eps), uniform)
