"""``mmt``: the multi-modal multi-scale transformer over region-graph patch tokens.

Paper: "Multi-scale multi-modal micro-expression recognition algorithm based on transformer",
arXiv:2301.02969 (2023). What its abstract fixes: two modalities of micro-expression features,
**motion** and **texture**; patch features learned at **different scales** for both; features
obtained by **weighting the patch features with fused multi-layer multi-head attention
weights**; **cross-modal contrastive learning** added to the optimisation. Reported: SMIC
accuracy 78.73 % (single database) and CASME II F1 0.9071 within the composite (MEGC2019)
database. These numbers are the paper's, on its own protocol; geomer measures its own.

Reimplementation choices (not from the paper):

* tokens are the region-graph nodes: a **motion token** is built from the optical-flow patches
  (u, v, optical strain) centred on the node, a **texture token** from the apex grey patches, at
  every feature scale (each scale its own projection and learned scale embedding); ``mmt-base``
  gives each (node, scale) patch its own token, the small ``mmt`` sums a node's scales into one
  multi-scale token for speed. Every token carries its component id and a canonical-position
  embedding (:mod:`geomer.models.tokens`);
* one transformer encoder per modality with a summary token; the fused attention is the
  rollout of :func:`geomer.models.attention.attention_rollout` (heads averaged, ``(A + I)``
  normalised and multiplied across layers); the summary token's row over the patch tokens is the
  patch importance, and the modality embedding is the importance-weighted sum of the final
  patch features;
* the contrastive loss is the symmetric InfoNCE (CLIP-style) between the projected motion and
  texture embeddings of the same clip, the other clips of the batch as negatives
  (``temperature``), scaled by ``contrastive_weight`` and returned as ``aux_loss``;
* the classifier sees both modality embeddings, concatenated (also the ``embedding`` output);
* motion tokens: the flow patches, ``asinh``-compressed (signs and magnitudes kept), projected,
  with N(0, 1) component embeddings (``nn.Embedding``'s start). With these inputs the model learns
  the synthetic task without any hand-made attention bias, so it does not use the training-fold
  standardisation, the magnitude feature or the small component embeddings that ``hsta`` has
  (the README's models section has the measurements);
* movement prior (``movement_prior``, *choice*, **off by default**): the motion encoder's
  attention logits get the log relative excess optical-flow magnitude of each key node
  (:func:`geomer.models.attention.movement_key_bias`). It never reaches the texture encoder,
  whose attention and features see the apex texture only (modality-clean: each modality's
  importance is its own encoder's). It is a hand-made input statistic that steers the
  attention, so relations measured with it on are not the model's own;
* ``relations`` (intrinsic): the shared rule
  (:func:`geomer.models.attention.attention_relations`) applied to each modality's encoder, the
  two [B, K, K] averaged. Measured figures (LOSO UF1, relations) are in the README's models table,
  with the commands.

Sizes (68 nodes, 3 scales, 8×8 patches, 5 classes; counted with ``sum(p.numel() for p in
model.parameters())``): ``mmt`` (dim 48, depth 2, 4 heads, one multi-scale token per node)
125 957 parameters; ``mmt-base`` (dim 256, depth 6, 8 heads, a token per node and scale)
9 957 381. The paper does not give its size (its abstract does not, and we have no other source),
so ``mmt-base`` is geomer's larger configuration, not the paper's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geomer.errors import check_shape
from geomer.features.types import FeatureSettings
from geomer.models.attention import (
    TransformerEncoder,
    attention_relations,
    attention_rollout,
    mean_relations,
    movement_key_bias,
)
from geomer.models.output import ModelOutput
from geomer.models.registry import check_inputs, register_model
from geomer.models.tokens import (
    MagnitudeEmbedding,
    NodeTokenEmbedding,
    PatchProjection,
    dense_nodes,
    sized_variant,
)

#: geomer's larger configuration, registered as ``mmt-base`` (the class defaults are ``mmt``;
#: the paper's size is not known to us).
BASE_CONFIG = dict(dim=256, depth=6, heads=8, mlp_ratio=4.0, scale_tokens=True)


def info_nce(first: torch.Tensor, second: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE between paired embeddings; row i of each is the same clip.

    ``loss = ½ [CE(S, arange) + CE(Sᵀ, arange)]`` with ``S = norm(first) norm(second)ᵀ / τ``.

    Shapes: first ``[B, D]``, second ``[B, D]`` → scalar.
    """
    first = F.normalize(first, dim=-1)
    second = F.normalize(second, dim=-1)
    similarity = first @ second.T / temperature
    targets = torch.arange(first.shape[0], device=first.device)
    return 0.5 * (F.cross_entropy(similarity, targets) + F.cross_entropy(similarity.T, targets))


class ModalityEncoder(nn.Module):
    """Multi-scale node-patch tokens of one modality → transformer → attention-weighted feature.

    ``scale_tokens=True`` gives every (node, scale) patch its own token (L = 1 + N·S, the
    importance is per patch and scale); ``False`` (default, ~5× faster on CPU) sums the node's
    per-scale projections into one multi-scale token (L = 1 + N).

    Shapes: patches ``[B, N, S, *patch_shape]``, node mask ``[B, N]``, node_bias ``[B, N]`` or
    None (attention logit bias for each node's tokens as keys), extra ``[B, N, S, D]`` or None
    (further per-patch token features, e.g. the flow magnitude) →
    embedding ``[B, D]``, attention per layer ``[B, H, L, L]``, token components ``[L]``
    (-1 for the summary token), patch importance ``[B, L - 1]``.
    """

    def __init__(
        self,
        graph,
        patch_shape: tuple[int, ...],
        num_scales: int,
        normalise: str,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
        dropout: float,
        scale_tokens: bool = False,
    ) -> None:
        super().__init__()
        self.num_scales = num_scales
        self.patch_shape = tuple(patch_shape)
        self.scale_tokens = scale_tokens
        # N(0, 1) component embeddings, as nn.Embedding starts them (see the module docstring)
        self.nodes = NodeTokenEmbedding(graph, dim, component_std=1.0)
        self.projections = nn.ModuleList(
            PatchProjection(patch_shape, dim, normalise) for _ in range(num_scales)
        )
        self.scale_embedding = nn.Parameter(torch.zeros(num_scales, dim))
        self.summary = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.scale_embedding, std=0.02)
        nn.init.trunc_normal_(self.summary, std=0.02)
        self.encoder = TransformerEncoder(dim, depth, heads, mlp_ratio, dropout)
        component = self.nodes.component
        if scale_tokens:
            component = component.repeat_interleave(num_scales)  # node-major, scale-minor
        self.register_buffer(
            "token_component", torch.cat([component.new_full((1,), -1), component]), persistent=False
        )

    def forward(
        self,
        patches: torch.Tensor,
        node_mask: torch.Tensor,
        node_bias: torch.Tensor | None = None,
        extra: torch.Tensor | None = None,
    ):
        check_shape(patches, ("B", "N", self.num_scales, *self.patch_shape), "mmt: patches",
                    error=ValueError, hint=" (node patches at the built feature scales)")
        b, n, s = patches.shape[:3]
        per_scale = torch.stack(
            [proj(patches[:, :, k]) for k, proj in enumerate(self.projections)], dim=2
        )  # [B, N, S, D]
        per_scale = per_scale + self.scale_embedding
        if extra is not None:
            per_scale = per_scale + extra
        if self.scale_tokens:
            tokens = (per_scale + self.nodes()[None, :, None, :]).flatten(1, 2)
            padding = ~node_mask.repeat_interleave(s, dim=1)
        else:
            tokens = per_scale.sum(dim=2) + self.nodes()[None]
            padding = ~node_mask
        tokens = torch.cat([self.summary.expand(b, 1, -1), tokens], dim=1)
        padding = torch.cat([padding.new_zeros(b, 1), padding], dim=1)
        key_padding = padding if padding.any() else None
        key_bias = None
        if node_bias is not None:  # per node → per token; the summary token gets none
            per_token = node_bias.repeat_interleave(s, dim=1) if self.scale_tokens else node_bias
            key_bias = torch.cat([per_token.new_zeros(b, 1), per_token], dim=1)
        features, attention = self.encoder(tokens, key_padding, need_weights=True, key_bias=key_bias)
        rollout = attention_rollout(attention)
        importance = rollout[:, 0, 1:].masked_fill(padding[:, 1:], 0.0)
        importance = importance / importance.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        embedding = (importance[..., None] * features[:, 1:]).sum(dim=1) + features[:, 0]
        return embedding, attention, self.token_component, importance


@register_model("mmt")
class MultiModalMultiScaleTransformer(nn.Module):
    """Motion (flow patches) and texture (apex patches) encoders, fused, with an InfoNCE loss.

    Input: a PyG ``Batch`` with ``flow_patches`` ``[N_total, S, 3, P, P]`` and ``texture_apex``
    ``[N_total, S, P, P]`` (node-major). Output: :class:`ModelOutput` with ``embedding`` ``[B, 2D]``
    and ``aux_loss = contrastive_weight × InfoNCE`` while training (also in eval, for logging).
    """

    paper = (
        "Multi-scale multi-modal micro-expression recognition algorithm based on transformer, "
        "arXiv:2301.02969 (2023)"
    )
    requires: tuple[str, ...] = ("flow_patches", "texture_apex")
    # every Data attribute forward() reads: the engine drops the rest before collating
    inputs: tuple[str, ...] = requires
    small_config = dict(dim=16, depth=1, heads=2)

    def __init__(
        self,
        num_classes: int,
        graph,
        features: FeatureSettings = FeatureSettings(),
        dim: int = 48,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.1,
        scale_tokens: bool = False,
        temperature: float = 0.1,
        contrastive_weight: float = 0.1,
        movement_prior: bool = False,
    ) -> None:
        super().__init__()
        self.movement_prior = movement_prior
        self.num_components = int(graph.num_components)
        self.temperature = temperature
        self.contrastive_weight = contrastive_weight
        common = dict(
            dim=dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio, dropout=dropout,
            scale_tokens=scale_tokens,
        )
        p, num_scales = features.patch_size, len(features.scales)
        self.motion = ModalityEncoder(graph, (3, p, p), num_scales, "asinh", **common)
        self.texture = ModalityEncoder(graph, (p, p), num_scales, "patch", **common)
        self.motion_projection = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.texture_projection = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.head = nn.Sequential(nn.LayerNorm(2 * dim), nn.Dropout(dropout), nn.Linear(2 * dim, num_classes))

    def forward(self, batch) -> ModelOutput:
        check_inputs(self, batch)
        flow, mask = dense_nodes(batch, "flow_patches")
        texture, _ = dense_nodes(batch, "texture_apex")
        bias = None
        if self.movement_prior:  # node energy: mean optical-flow magnitude over scales and pixels
            bias = movement_key_bias(MagnitudeEmbedding.magnitude(flow).mean(dim=-1), mask)
        motion, motion_attn, motion_tokens, _ = self.motion(flow, mask, bias)
        # the texture encoder sees texture only: no flow-derived bias or feature reaches it
        appearance, texture_attn, texture_tokens, _ = self.texture(texture, mask)
        embedding = torch.cat([motion, appearance], dim=-1)
        contrastive = info_nce(
            self.motion_projection(motion), self.texture_projection(appearance), self.temperature
        )
        relations = mean_relations(
            attention_relations(motion_attn, motion_tokens, self.num_components),
            attention_relations(texture_attn, texture_tokens, self.num_components),
        )
        return ModelOutput(
            logits=self.head(embedding),
            relations=relations,
            embedding=embedding,
            aux_loss=self.contrastive_weight * contrastive,
        )


mmt_base = register_model("mmt-base")(
    sized_variant(MultiModalMultiScaleTransformer, "mmt-base", **BASE_CONFIG)
)
