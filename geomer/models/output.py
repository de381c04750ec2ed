"""What every geomer model returns: logits, a component-relation matrix and an embedding."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


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
        if self.logits.dim() != 2:
            raise ValueError(f"ModelOutput.logits must be [B, C], got {tuple(self.logits.shape)}")
        batch = self.logits.shape[0]
        if self.relations.dim() != 3 or self.relations.shape[1] != self.relations.shape[2]:
            raise ValueError(
                f"ModelOutput.relations must be [B, K, K], got {tuple(self.relations.shape)}"
            )
        if self.embedding.dim() != 2:
            raise ValueError(
                f"ModelOutput.embedding must be [B, D], got {tuple(self.embedding.shape)}"
            )
        if self.relations.shape[0] != batch or self.embedding.shape[0] != batch:
            raise ValueError(
                "ModelOutput fields disagree on the batch size: "
                f"logits {batch}, relations {self.relations.shape[0]}, "
                f"embedding {self.embedding.shape[0]}"
            )
        if self.aux_loss is not None and self.aux_loss.dim() != 0:
            raise ValueError(
                f"ModelOutput.aux_loss must be a scalar, got {tuple(self.aux_loss.shape)}"
            )

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
