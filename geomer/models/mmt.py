"""``mmt``: the multi-modal multi-scale transformer over region-graph patch tokens.

Paper: "Multi-scale multi-modal micro-expression recognition algorithm based on transformer",
arXiv:2301.02969 (2023). What its abstract fixes: two modalities of micro-expression features,
**motion** and **texture**; patch features learned at **different scales** for both; features
obtained by **weighting the patch features with fused multi-layer multi-head attention
weights**; **cross-modal contrastive learning** added to the optimisation. Reported: SMIC
accuracy 78.73 % (single database) and CASME II F1 0.9071 within the composite (MEGC2019)
database. These numbers are the paper's, on its own protocol; geomer measures its own.

Reimplementation choices (not from the paper):

* **multi-scale, hierarchical** (*choice*; the paper's abstract fixes per-scale patch features
  weighted by fused attention, not how): every (node, scale) patch — optical-flow patches
  (u, v, optical strain) for a **motion token**, apex grey patches for a **texture token** — is
  projected by its scale's own linear map plus a learned scale embedding. A per-node
  :class:`ScaleAttention` (the node's mean scale token queries its S scale tokens, multi-head;
  S + 1 with the flow-image scale below, S + 2 with the region token too) weights the scales
  and pools them into one node token, which gets the node's component id and canonical-position
  embedding (:mod:`geomer.models.tokens`); the transformer then runs over the 68 node tokens. So each
  patch scale has its own features and its own importance, at the cost of a token per node: a
  transformer token per (node, scale) is about 5× slower on CPU (L = 1 + 68·3 instead of
  1 + 68) for the same per-scale information;
* one transformer encoder per modality with a summary token; the fused attention is the
  rollout of :func:`geomer.models.attention.attention_rollout` (heads averaged, ``(A + I)``
  normalised and multiplied across layers) continued through the scale attention: the patch
  importance ``importance[n, s] = R[summary, n] · mean_h w[n, h, s]`` (a distribution over all
  N·S patches, S counting the flow-image scale and the region token where they are read); the
  patch features are each scale's token (normalised) plus its node's final transformer feature,
  and the modality embedding is the summary token's feature plus the importance-weighted sum of
  the patch features;
* the contrastive loss is the symmetric InfoNCE (CLIP-style) between the projected motion and
  texture embeddings of the same clip, the other clips of the batch as negatives
  (``temperature``), scaled by ``contrastive_weight`` and returned as ``aux_loss``;
* the classifier (``readout``, *choice*, 0.2.8): for each modality, the summary token's feature
  and the attention-weighted patch features **split by facial component** (each component's
  patches' share of the weighted sum; the K shares sum to the paper's weighted feature), all
  2·(1 + K) concatenated, then LayerNorm, one hidden layer (GELU) and the class layer.
  ``readout="fused"`` (geomer up to 0.2.7) gives the classifier the two modality embeddings
  (summary + weighted sum) instead. Why: with the whole sum, the model's evidence did not sit
  on the components a class is defined by (its occlusion relations agreed with the relevance
  ground truth less than the input-only read-out of the motion); kept apart per component, the
  same attention-weighted features put it there. Chosen on the synthetic tuning seed (README,
  "Relations", with the figures). The ``embedding`` output is the classifier's input;
* motion tokens: the flow patches, ``asinh``-compressed (signs and magnitudes kept), projected,
  with N(0, 1) component embeddings (``nn.Embedding``'s start). With these inputs the model learns
  the synthetic task without any hand-made attention bias, so its landmark patches do not use the
  training-fold standardisation, the magnitude feature or the small component embeddings that
  ``hsta`` has (the README's models section has the measurements; the flow-image scale below is
  standardised);
* **the flow image as one more motion scale** (``flow_image_patch`` P, 5 by default; 0 turns it
  off; *choice*): where a clip carries its whole-face flow image (``flow_image`` with the nodes'
  positions in it), each node also gets the P×P flow pixels centred on it
  (:func:`geomer.models.flow_image.flow_image_patches`), standardised per channel with the
  training fold's statistics (the image's units are relative to its own range) and projected: one
  more scale token of the node, with its own scale embedding, weighted by the same scale
  attention. Why: on flow-image data (the MEGC 2019 composite) the landmark patches of 8–32 px
  span 1–3.5 pixels of the 28×28 flow image, so the motion tokens saw little of what it holds;
  a patch sized in flow pixels reads it at its own resolution and stays on its node, so the
  relations stay per component. Kept after a comparison on validation subjects drawn from each
  LOSO fold's training subjects (README, real-data results);
* **each component's region of the flow image as one more motion token** (``flow_region_channels``
  c, 8 by default since 0.2.12; 0 turns it off; *choice*): the region read-out of ``dere-grl``
  (:class:`geomer.models.flow_image.FlowRegionReadout`: every flow-image pixel standardised with
  the training fold's statistics of that pixel, weighted by c learned weights of its own and
  summed over its facial component's region), projected to a token that every node of the
  component gets as one more scale token (the projection's bias is its scale embedding). The
  P×P patches read the image next to the nodes; this reads all of it, split by component, so
  the relations and the occlusion rule (which neutralises these regions) stay per component.
  As in ``dere-grl``, only clips without a landmark trajectory (``geometry``, read for nothing
  else) read it, and its initial weights come from a random stream of their own, so for every
  other clip the model and its training are exactly those of 0.2.11 (the same initial weights
  and dropout masks). Chosen on validation subjects drawn from the LOSO folds' training
  subjects (README, "Real data");
* dropout (*choice*): 0.1 in the MLPs and before the head, none on the attention weights
  (``attention_dropout`` 0, as ``hsta`` and the official ``VisionTransformer``); chosen on the
  synthetic tuning seed, where dropping attention weights cost UF1 and a sixth of the training
  time (README, models section);
* training budget (*choice*, 0.2.7): 200 optimiser steps per fold (``train_defaults``), rounded
  up to whole epochs of the fold's training set: 40 epochs of the synthetic standard's 150
  training clips, 15 of a composite LOSO fold's 430 or so. Chosen on the synthetic tuning seed
  (200 steps learned the task better than 100) and on the composite's cross-dataset hold-out
  (about 100, 200 and 300 steps: 200 at least as good as 300, 100 clearly worse); README,
  "Models";
* training recipe (*choice*, 0.2.14): ``flip,mirror,smooth`` (``train_defaults``; the engine's
  default ``flip,mirror`` plus label smoothing 0.1, as ``dere-grl``). Why: on the synthetic
  tuning seed of the standard level (generator seed 1) the smoothed model's occlusion relations
  agreed with the relevance ground truth better at the same UF1, and on the composite's
  cross-dataset hold-out it was as accurate as without (the figures: README, "Relations", "The
  standard level of 0.2.14"); ``mmt-large`` shares the recipe (not measured);
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
model.parameters())``): ``mmt`` (dim 48, depth 2, 4 heads, 5×5 flow-image patches, 8 region
weights a pixel of the 28×28 flow image) 192 005 parameters (172 757 without the region
read-out); ``mmt-large`` (dim 256, depth 6, 8 heads, MLP ratio 4) 11 186 565. The paper does not
give its size (its abstract does not, and we have no other source; no official code is known to
us), so there is no ``mmt-base``: ``mmt-large`` is geomer's larger configuration, named for what it is.
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
from geomer.models.flow_image import FlowRegionReadout, flow_image_patches
from geomer.models.output import ModelOutput
from geomer.models.registry import check_inputs, register_model
from geomer.models.settings import check_at_least, check_positive, check_probability
from geomer.models.tokens import (
    MagnitudeEmbedding,
    NodeTokenEmbedding,
    PatchProjection,
    component_sums,
    dense_nodes,
    sized_variant,
)

#: geomer's larger configuration, registered as ``mmt-large`` (the class defaults are ``mmt``;
#: the paper's size is not known to us, so no ``mmt-base`` claims it).
LARGE_CONFIG = dict(dim=256, depth=6, heads=8, mlp_ratio=4.0)

#: Mixed into the CPU generator's seed for the region read-out's own random stream (``__init__``).
REGION_SEED = 0x9E3779B97F4A7C15

#: What the classifier reads (module docstring): each modality's summary feature and its
#: attention-weighted patch features per facial component, or their sum as the paper's feature.
READOUTS = ("component", "fused")


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


class ScaleAttention(nn.Module):
    """Per node, multi-head attention of the node over its S scale tokens: the per-scale importance.

    The node's query is a linear map of its mean scale token, ``q = W_q LN(mean_s x[n, s]) + b``
    (the bias is a learned query of its own); the keys are the normalised scale tokens
    ``LN(x[n, s])`` and the values the scale tokens themselves (both identity maps: the scale
    tokens are already per-scale projections). Head ``h`` works on its slice of the width:
    ``w[n, h, s] = softmax_s(q_h · LN(x[n, s])_h / sqrt(D / H))``, and head ``h``'s slice of the
    node token is ``Σ_s w[n, h, s] x[n, s]_h``. The query depends on the node's content, so a scale
    is weighted by how it agrees with the node's other scales (e.g. a motion pattern seen at
    every scale), with either sign of the motion. Cost: one ``D × D`` map per node and ``O(S·D)``
    per scale token, no attention between different nodes' scales.

    Shapes: per-scale tokens ``[B, N, S, D]`` → node tokens ``[B, N, D]``, scale weights
    ``[B, N, H, S]`` (each head's row sums to 1).
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.temperature = (dim // heads) ** -0.5

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, s, d = tokens.shape
        h = self.heads
        query = self.query(self.norm(tokens.mean(dim=2))).view(b, n, 1, h, d // h)
        keys = self.norm(tokens).view(b, n, s, h, d // h)
        weights = ((query * keys).sum(-1) * self.temperature).softmax(dim=2)  # [B, N, S, H]
        values = tokens.view(b, n, s, h, d // h)
        pooled = (weights[..., None] * values).sum(dim=2).reshape(b, n, d)
        return pooled, weights.transpose(2, 3)


class ModalityEncoder(nn.Module):
    """Multi-scale node-patch tokens of one modality → scale attention → transformer → feature.

    Hierarchical (see the module docstring): each (node, scale) patch is its own token
    (projection per scale + scale embedding); :class:`ScaleAttention` pools a node's S scale
    tokens into one node token (per-scale importance, cheap), which gets the node's component
    and position embedding; the transformer runs over the N node tokens and a summary token. The
    fused attention over patches is the transformer's rollout continued through the scale
    pooling: ``importance[n, s] = R[summary, n] · mean_h w[n, h, s]`` (sums to 1 over all
    patches). The patch features are each scale token (normalised) plus its node's contextual
    feature from the transformer; the embedding is the summary token's feature plus the
    importance-weighted sum of the patch features. That sum is also returned split by facial
    component (``parts``: each component's patches' share), so a classifier can read where the
    weighted features come from; ``parts.sum(1)`` is the sum.

    Shapes: patches ``[B, N, S, *patch_shape]``, node mask ``[B, N]``, node_bias ``[B, N]`` or
    None (attention logit bias for each node token as a key), extra ``[B, N, E, D]`` or None
    (further scale tokens, already projected; the first ``extra_scales`` get a learned scale
    embedding, any beyond them none: their projection's bias serves) →
    embedding ``[B, D]``, transformer attention per layer ``[B, H, 1 + N, 1 + N]``, token
    components ``[1 + N]`` (-1 for the summary token), patch importance ``[B, N, S + E]``,
    summary feature ``[B, D]``, parts ``[B, K, D]``.
    """

    def __init__(
        self,
        graph,
        patch_shape: tuple[int, ...],
        num_scales: int,
        normalise: str,
        extra_scales: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
        dropout: float,
        attention_dropout: float,
    ) -> None:
        super().__init__()
        self.num_scales = num_scales
        self.patch_shape = tuple(patch_shape)
        # N(0, 1) component embeddings, as nn.Embedding starts them (see the module docstring)
        self.nodes = NodeTokenEmbedding(graph, dim, component_std=1.0)
        self.projections = nn.ModuleList(
            PatchProjection(patch_shape, dim, normalise) for _ in range(num_scales)
        )
        self.scale_embedding = nn.Parameter(torch.zeros(num_scales + extra_scales, dim))
        self.summary = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.scale_embedding, std=0.02)
        nn.init.trunc_normal_(self.summary, std=0.02)
        self.scale_attention = ScaleAttention(dim, heads)
        self.encoder = TransformerEncoder(dim, depth, heads, mlp_ratio, dropout, attention_dropout)
        self.patch_norm = nn.LayerNorm(dim)
        component = self.nodes.component
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
        b, n = patches.shape[:2]
        per_scale = torch.stack(
            [proj(patches[:, :, k]) for k, proj in enumerate(self.projections)], dim=2
        )  # [B, N, S, D]
        if extra is not None:  # tokens of further scales, already projected: [B, N, E, D]
            per_scale = torch.cat([per_scale, extra], dim=2)
        embedding = self.scale_embedding[: per_scale.shape[2]]
        if per_scale.shape[2] > len(embedding):  # further tokens bring their own (a projection's bias)
            embedding = F.pad(embedding, (0, 0, 0, per_scale.shape[2] - len(embedding)))
        per_scale = per_scale + embedding
        # the node's own embedding is the same for all its scales: added after the pooling (whose
        # weights sum to 1), so the scale weights are read from the patch content and scale alone
        node_tokens, scale_weights = self.scale_attention(per_scale)
        node_tokens = node_tokens + self.nodes()[None]
        tokens = torch.cat([self.summary.expand(b, 1, -1), node_tokens], dim=1)
        padding = torch.cat([node_mask.new_zeros(b, 1), ~node_mask], dim=1)
        key_padding = padding if padding.any() else None
        key_bias = None
        if node_bias is not None:  # the summary token gets none
            key_bias = torch.cat([node_bias.new_zeros(b, 1), node_bias], dim=1)
        features, attention = self.encoder(tokens, key_padding, need_weights=True, key_bias=key_bias)
        node_importance = attention_rollout(attention)[:, 0, 1:].masked_fill(~node_mask, 0.0)
        node_importance = node_importance / node_importance.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        importance = node_importance[..., None] * scale_weights.mean(dim=2)  # [B, N, S]
        patch_features = features[:, 1:, None, :] + self.patch_norm(per_scale)  # [B, N, S, D]
        per_node = (importance[..., None] * patch_features).sum(dim=2)  # [B, N, D]
        parts = component_sums(per_node, self.nodes.component, self.nodes.num_components)
        summary = features[:, 0]
        return summary + parts.sum(dim=1), attention, self.token_component, importance, summary, parts


@register_model("mmt")
class MultiModalMultiScaleTransformer(nn.Module):
    """Motion (flow patches) and texture (apex patches) encoders, fused, with an InfoNCE loss.

    Input: a PyG ``Batch`` with ``flow_patches`` ``[N_total, S, 3, P, P]`` and ``texture_apex``
    ``[N_total, S, P, P]`` (node-major); optionally ``flow_image`` ``[B, 3, F, F]`` with
    ``flow_image_points`` ``[N_total, 2]`` (the flow-image scale) and ``flow_image_component``
    ``[B, F, F]`` (the region token; not read where ``geometry`` is present). Output:
    :class:`ModelOutput` with ``embedding`` ``[B, 2·(1 + K)·D]`` (``readout="fused"``: ``[B, 2D]``)
    and ``aux_loss = contrastive_weight × InfoNCE`` while training (also in eval, for logging).
    """

    paper = (
        "Multi-scale multi-modal micro-expression recognition algorithm based on transformer, "
        "arXiv:2301.02969 (2023)"
    )
    requires: tuple[str, ...] = ("flow_patches", "texture_apex")
    # every Data attribute forward() reads (the flow image where a clip has one; geometry only
    # to tell whether a clip has a landmark trajectory): the engine drops the rest before collating
    inputs: tuple[str, ...] = requires + ("flow_image", "flow_image_points", "flow_image_component", "geometry")
    # the settings earlier checkpoints were trained with: before 0.2.4 without the flow-image
    # token and with dropout on the attention weights, before 0.2.8 the fused readout, before
    # 0.2.12 without the region token
    earlier_defaults = {"0.2.4": {"flow_image_patch": 0, "attention_dropout": 0.1},
                        "0.2.8": {"readout": "fused"}, "0.2.12": {"flow_region_channels": 0}}
    small_config = dict(dim=16, depth=1, heads=2)
    train_defaults = {"steps": 200, "augment": "flip,mirror,smooth"}

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
        attention_dropout: float = 0.0,
        temperature: float = 0.1,
        contrastive_weight: float = 0.1,
        movement_prior: bool = False,
        flow_image_patch: int = 5,
        readout: str = "component",
        flow_region_channels: int = 8,
    ) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {', '.join(READOUTS)}, got {readout!r}")
        check_at_least("mmt", 1, dim=dim, depth=depth, heads=heads)
        check_positive("mmt", mlp_ratio=mlp_ratio, temperature=temperature)
        check_at_least("mmt", 0, contrastive_weight=contrastive_weight)
        check_probability("mmt", dropout=dropout, attention_dropout=attention_dropout)
        self.readout = readout
        check_at_least("mmt", 0, flow_image_patch=flow_image_patch, flow_region_channels=flow_region_channels)
        self.movement_prior = movement_prior
        self.flow_image_patch = int(flow_image_patch)
        self.num_components = int(graph.num_components)
        self.temperature = temperature
        self.contrastive_weight = contrastive_weight
        common = dict(dim=dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio, dropout=dropout,
                      attention_dropout=attention_dropout)
        p, num_scales = features.patch_size, len(features.scales)
        self.motion = ModalityEncoder(graph, (3, p, p), num_scales, "asinh",
                                      extra_scales=int(self.flow_image_patch > 0), **common)
        self.texture = ModalityEncoder(graph, (p, p), num_scales, "patch", extra_scales=0, **common)
        # the flow image's own scale (see the module docstring): its patches standardised per
        # channel with the training fold's statistics (the image's units are relative)
        self.flow_image_projection = PatchProjection(
            (3, self.flow_image_patch, self.flow_image_patch), dim, "fold"
        ) if self.flow_image_patch else None
        self.motion_projection = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.texture_projection = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        if readout == "component":
            width = 2 * (self.num_components + 1) * dim
            self.head = nn.Sequential(
                nn.LayerNorm(width), nn.Linear(width, dim), nn.GELU(), nn.Dropout(dropout),
                nn.Linear(dim, num_classes),
            )
        else:
            self.head = nn.Sequential(nn.LayerNorm(2 * dim), nn.Dropout(dropout), nn.Linear(2 * dim, num_classes))
        # the region read-out (module docstring) draws its initial weights from a random stream
        # of its own, derived from the seed of torch's CPU generator, which is restored after:
        # the rest of the model (its initial weights and the dropout masks drawn in training) is
        # the same as without it
        region = int(flow_region_channels)
        self.flow_region, self.flow_region_projection = None, None
        if region:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(torch.initial_seed() ^ REGION_SEED)
                self.flow_region = FlowRegionReadout(features.flow_image_size, region, self.num_components, "mmt")
                self.flow_region_projection = nn.Linear(region, dim)

    def _flow_image_tokens(self, batch, num_nodes: int) -> torch.Tensor | None:
        """The flow image's scale token of every node, or None (no projection, or the batch has
        no flow image). Shapes: → ``[B, N, 1, D]``."""
        if self.flow_image_projection is None:
            return None
        patches = flow_image_patches(batch, num_nodes, self.flow_image_patch, "mmt")
        return None if patches is None else self.flow_image_projection(patches)[:, :, None]

    def _flow_region_tokens(self, batch) -> torch.Tensor | None:
        """Each node's token of its component's region read-out, or None (no read-out, or
        :meth:`FlowRegionReadout.per_node` reads none: clips with a landmark trajectory, or no
        flow image with regions). Shapes: → ``[B, N, 1, D]``."""
        if self.flow_region is None:
            return None
        per_node = self.flow_region.per_node(batch, self.motion.nodes.component)  # [B, N, c]
        return None if per_node is None else self.flow_region_projection(per_node)[:, :, None]

    def forward(self, batch) -> ModelOutput:
        check_inputs(self, batch)
        flow, mask = dense_nodes(batch, "flow_patches")
        texture, _ = dense_nodes(batch, "texture_apex")
        bias = None
        if self.movement_prior:  # node energy: mean optical-flow magnitude over scales and pixels
            bias = movement_key_bias(MagnitudeEmbedding.magnitude(flow).mean(dim=-1), mask)
        extra = [t for t in (self._flow_image_tokens(batch, flow.shape[1]), self._flow_region_tokens(batch))
                 if t is not None]
        motion, motion_attn, motion_tokens, _, motion_summary, motion_parts = self.motion(
            flow, mask, bias, torch.cat(extra, dim=2) if extra else None
        )
        # the texture encoder sees texture only: no flow-derived bias or feature reaches it
        appearance, texture_attn, texture_tokens, _, texture_summary, texture_parts = self.texture(
            texture, mask
        )
        if self.readout == "component":  # [B, 2·(1 + K)·D]: each modality's summary, then its parts
            embedding = torch.cat(
                [motion_summary[:, None], motion_parts, texture_summary[:, None], texture_parts], dim=1
            ).flatten(1)
        else:
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


mmt_large = register_model("mmt-large")(
    sized_variant(MultiModalMultiScaleTransformer, "mmt-large", **LARGE_CONFIG)
)
