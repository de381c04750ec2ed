"""``mubert``: Micron-BERT over node-centred patches of two frames (onset, apex).

Paper: X.-B. Nguyen, C. N. Duong, X. Li, S. Gauch, H.-S. Seo, K. Luu, "Micron-BERT: BERT-based
Facial Micro-Expression Recognition", CVPR 2023 (arXiv:2304.03195; code
github.com/uark-cviu/Micron-BERT). What its abstract fixes: a BERT-style transformer pretrained
without labels on large unlabeled face data; **Diagonal Micro-Attention (DMA)** to detect tiny
differences between two frames; a **Patch of Interest (PoI)** module that localises
micro-expression regions and suppresses background; results on SAMM, CASME II, SMIC and CASME3.

How geomer builds it (reimplementation choices are marked *choice*):

* tokens: one per region-graph node: the node-centred grey patches of one frame at every feature
  scale, standardised, projected, plus the node's component and canonical-position embeddings
  (:mod:`geomer.models.tokens`); a learned **contextual token** is prepended. One ViT encoder is
  shared by both frames (*choice*: patches sit on landmarks instead of a regular grid, so tokens
  are face patches by construction — PoI's background suppression is partly done by the graph);
* change embedding (``change_embedding``, *choice*, on by default): each apex token also gets
  the projection of its node's onset→apex patch difference, standardised per scale with the
  training fold's statistics (``PatchProjection(..., "fold")``, as ``hsta``'s frame tokens).
  Why: each frame's patches are standardised on their own, so a 1–3 px shift reaches the
  encoder only as a small difference between two large tokens; the standardised difference
  gives it on the scale the training clips set;
* **DMA** (:class:`DiagonalMicroAttention`): single-head cross-attention, queries from the onset
  tokens, keys from the apex tokens, of which only the same-position terms are kept:
  ``out_i = a_ii · v_i`` with ``a = softmax(q kᵀ / √d)`` over all positions; *choice*: the values
  are projected from the token difference ``h_apex − h_onset`` so the output carries what changed;
* **PoI** (:class:`PatchOfInterest`): a patch-to-contextual-token similarity
  ``s_i = σ(α cos(h_i, c) + β)`` gates the DMA output (restricting it to face patches); the
  contextual token is pretrained with a variance–covariance (VICReg) objective over whole-face
  and local-crop views (:class:`MicronBERTPretraining`; the official code uses DINO, *choice*
  and why: see there), so the tokens of different clips cannot collapse to one vector;
* **blockwise swapping** (:func:`blockwise_swap`): a fraction ``swap_ratio`` of the apex frame's
  patches, in spatially contiguous blocks of neighbouring nodes, is replaced by the onset
  patches at the same positions; pretraining reconstructs the original apex patches from the
  encoded pair with a transformer decoder (:class:`MicronBERTPretraining`, ``geomer pretrain``,
  ``geomer train --pretrain per-fold``);
* classifier (``readout``, *choice*): the PoI-weighted mean of the DMA features **per facial
  component**, the K means concatenated, then LayerNorm, a hidden layer (GELU) and the class
  layer. Why: the DMA values are projected from a token difference, in which the node's own
  position and component embeddings cancel, so a whole-face mean (``readout="mean"``, the
  model up to geomer 0.2.7) loses where the change happened; and classes that move the same
  components differ in whether they move the same way or opposite ways (the synthetic
  repression / others pair), which no linear map of the pooled changes can tell;
* training budget (*choice*, 0.2.8): 200 optimiser steps per fold (``train_defaults``, as
  ``mmt`` and ``hsta``), rounded up to whole epochs of the fold's training set: 40 epochs of the
  synthetic standard's 150 training clips, 100 of a 50-clip set (an epoch budget of 20 gave
  such a set 40 steps). Chosen on the synthetic tuning seed (README, "Micron-BERT's readout");
* movement prior (``movement_prior``, *choice*, **off by default**): the encoder's attention
  logits get the log relative excess onset→apex grey-level change of each key node
  (:func:`geomer.models.attention.movement_key_bias`), the same bias for both frames' passes. It
  is a hand-made input statistic that steers the attention, so relations measured with it on
  are not the model's own. Without it the model learns from its own input: DMA's values are the
  token difference ``h_apex − h_onset``, which carries the change;
* ``relations`` (intrinsic): the shared rule
  (:func:`geomer.models.attention.attention_relations`) on the encoder's self-attention over the
  apex frame. Measured figures are in the README's models table, with the commands.

Sizes (68 nodes, 3 scales, 8×8 patches, 5 classes; ``sum(p.numel() for p in
model.parameters())``; the pretraining decoder, part of :class:`MicronBERTPretraining`, apart):
``mubert`` (dim 48, depth 2, 4 heads; decoder 48 wide, 1 deep) 81 895 parameters (decoder
33 120); ``mubert-base`` has the encoder and decoder sizes of the official code's only model,
``mae_vit_small_patch8`` (``models/mae.py`` of github.com/uark-cviu/Micron-BERT: dim 512, depth
4, 4 heads, MLP ratio 4; decoder 512 wide, 4 deep, 4 heads) on geomer's 68 node tokens instead of
784 grid patches: 15 454 215 parameters (decoder 13 233 856). geomer ships no pretrained weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from geomer.errors import GeomerError
from geomer.features.types import FeatureSettings
from geomer.models.attention import TransformerEncoder, attention_relations, movement_key_bias
from geomer.models.output import ModelOutput
from geomer.models.registry import check_inputs, register_model
from geomer.models.settings import check_at_least, check_positive, check_probability
from geomer.models.tokens import (
    NodeTokenEmbedding, PatchProjection, component_means, dense_nodes, sized_variant,
)

#: How the classifier reads the DMA features (:meth:`MicronBERT.pool`).
READOUTS = ("component", "mean")

#: The official encoder's size (``mae_vit_small_patch8``), registered as ``mubert-base`` (the
#: class defaults are ``mubert``).
BASE_CONFIG = dict(dim=512, depth=4, heads=4, mlp_ratio=4.0, decoder_dim=512, decoder_depth=4)


def diagonal_micro_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Single-head cross-attention keeping only the same-position terms.

    ``a = softmax(q kᵀ / √d)`` over the key positions; ``out_i = a_ii · v_i``.

    Shapes: query, key, value ``[B, N, D]`` → output ``[B, N, D]``, diagonal ``[B, N]``.
    """
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    diagonal = scores.softmax(dim=-1).diagonal(dim1=-2, dim2=-1)
    return diagonal[..., None] * value, diagonal


class DiagonalMicroAttention(nn.Module):
    """DMA between the onset and apex tokens (see :func:`diagonal_micro_attention`).

    Shapes: onset, apex ``[B, N, D]`` → ``[B, N, D]``, diagonal ``[B, N]``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)

    def forward(self, onset: torch.Tensor, apex: torch.Tensor):
        return diagonal_micro_attention(
            self.query(onset), self.key(apex), self.value(apex - onset)
        )


class PatchOfInterest(nn.Module):
    """Patch-to-contextual-token similarity ``s_i = σ(α cos(h_i, c) + β)``.

    Shapes: tokens ``[B, N, D]``, context ``[B, D]`` → scores ``[B, N]`` in (0, 1).
    """

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(5.0))
        self.bias = nn.Parameter(torch.tensor(0.0))

    def forward(self, tokens: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        similarity = F.cosine_similarity(tokens, context[:, None, :], dim=-1)
        return torch.sigmoid(self.scale * similarity + self.bias)


def blockwise_swap(
    target: torch.Tensor,
    source: torch.Tensor,
    ratio: float,
    positions: torch.Tensor,
    block_size: int = 4,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace ``round(ratio · N)`` of ``target``'s patches by ``source``'s at the same positions.

    The swapped positions come in blocks: a random not-yet-swapped node and its
    ``block_size - 1`` nearest not-yet-swapped neighbours (canonical ``positions``), repeated
    until exactly ``round(ratio · N)`` positions are swapped (the last block is cut short).

    Shapes: target, source ``[B, N, ...]``, positions ``[N, 2]`` →
    swapped ``[B, N, ...]``, swapped mask ``[B, N]`` bool (True where taken from ``source``).
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"swap ratio must be in [0, 1], got {ratio}")
    b, n = target.shape[:2]
    count = int(round(ratio * n))
    distances = torch.cdist(positions.float(), positions.float())  # [N, N]
    mask = torch.zeros(b, n, dtype=torch.bool)
    for row in range(b):
        while int(mask[row].sum()) < count:
            free = (~mask[row]).nonzero().flatten()
            seed = free[torch.randint(len(free), (1,), generator=generator)].item()
            order = distances[seed, free].argsort()
            need = min(block_size, count - int(mask[row].sum()))
            mask[row, free[order[:need]]] = True
    mask = mask.to(target.device)
    shape = (b, n) + (1,) * (target.dim() - 2)
    return torch.where(mask.view(shape), source, target), mask


def crop_indices(
    positions: torch.Tensor, batch_size: int, keep: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random local "crop" of the face per sample: the ``keep`` fraction of nodes nearest a
    random node (a local view on the region graph).

    Shapes: positions ``[N, 2]`` → ``[B, round(keep · N)]`` long node indices, ascending.
    """
    n = positions.shape[0]
    count = max(1, int(round(keep * n)))
    distances = torch.cdist(positions.float(), positions.float())
    centres = torch.randint(n, (batch_size,), generator=generator)
    return distances[centres].argsort(dim=-1)[:, :count].sort(dim=-1).values


def variance_covariance(context: torch.Tensor, eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """VICReg's regularisers of a batch of embeddings (Bardes, Ponce, LeCun, ICLR 2022).

    ``variance = mean_d relu(1 − sqrt(Var_b z_d + eps))``: each dimension must vary across the
    batch (std ≥ 1), so the embeddings of different samples cannot all be one vector;
    ``covariance = Σ_{d≠e} Cov_b(z_d, z_e)² / D``: the dimensions must not be copies of one
    another (no collapse into a line). Both are 0 for a batch of one sample.

    Shapes: context ``[B, D]`` → two scalars.
    """
    b, d = context.shape
    if b < 2:
        zero = context.sum() * 0.0
        return zero, zero
    centred = context - context.mean(dim=0)
    variance = F.relu(1.0 - torch.sqrt(centred.var(dim=0) + eps)).mean()
    cov = centred.T @ centred / (b - 1)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    return variance, off_diagonal.pow(2).sum() / d


@register_model("mubert")
class MicronBERT(nn.Module):
    """Micron-BERT: ViT over node patches of onset and apex, DMA + PoI, blockwise-swap pretraining.

    Input: a PyG ``Batch`` with ``texture`` ``[N_total, S, 2, P, P]`` (onset, apex grey patches;
    node-major). ``megc2019-flow`` has no onset frame, so ``mubert`` does not run on it (it fails
    at the start naming ``texture``). Output: :class:`ModelOutput`, ``embedding`` ``[B, K·D]``
    (``readout="mean"``: ``[B, D]``).
    """

    paper = (
        "X.-B. Nguyen et al., Micron-BERT: BERT-based Facial Micro-Expression Recognition, "
        "CVPR 2023 (arXiv:2304.03195)"
    )
    requires: tuple[str, ...] = ("texture",)
    # every Data attribute forward() reads: the engine drops the rest before collating
    inputs: tuple[str, ...] = requires
    small_config = dict(dim=16, depth=1, heads=2)
    train_defaults = {"steps": 200}
    # checkpoints of geomer before 0.2.8 read the whole-face mean and had no change embedding
    earlier_defaults = {"0.2.8": {"readout": "mean", "change_embedding": False}}

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
        swap_ratio: float = 0.3,
        swap_block: int = 4,
        crop_keep: float = 0.5,
        movement_prior: bool = False,
        decoder_dim: int = 48,
        decoder_depth: int = 1,
        readout: str = "component",
        change_embedding: bool = True,
    ) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {', '.join(READOUTS)}, got {readout!r}")
        check_at_least("mubert", 1, dim=dim, depth=depth, heads=heads, swap_block=swap_block)
        check_positive("mubert", mlp_ratio=mlp_ratio)
        check_probability("mubert", dropout=dropout)
        if not 0.0 <= swap_ratio <= 1.0:
            raise GeomerError(f"mubert: swap_ratio must lie in [0, 1], got {swap_ratio}")
        self.readout = readout
        if not 0.0 < crop_keep <= 1.0:
            raise ValueError(f"crop_keep must be in (0, 1], got {crop_keep}")
        if decoder_depth < 1 or decoder_dim < 1 or decoder_dim % heads:
            raise ValueError(
                f"decoder_depth must be >= 1 and decoder_dim a positive multiple of heads ({heads}), "
                f"got {decoder_depth} and {decoder_dim}"
            )
        self.dim = dim
        self.movement_prior = movement_prior
        self.num_components = int(graph.num_components)
        self.swap_ratio = swap_ratio
        self.swap_block = swap_block
        self.crop_keep = crop_keep
        patch_shape = (len(features.scales), features.patch_size, features.patch_size)
        self.nodes = NodeTokenEmbedding(graph, dim)
        self.patches = PatchProjection(patch_shape, dim, "patch")
        self.change = PatchProjection(patch_shape, dim, "fold") if change_embedding else None
        self.context = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.context, std=0.02)
        self.encoder = TransformerEncoder(dim, depth, heads, mlp_ratio, dropout)
        self.dma = DiagonalMicroAttention(dim)
        self.poi = PatchOfInterest()
        if readout == "component":
            width = self.num_components * dim
            self.head = nn.Sequential(
                nn.LayerNorm(width), nn.Linear(width, dim), nn.GELU(), nn.Dropout(dropout),
                nn.Linear(dim, num_classes),
            )
        else:
            self.head = nn.Sequential(nn.LayerNorm(dim), nn.Dropout(dropout), nn.Linear(dim, num_classes))
        # The pretraining decoder's size; the decoder itself belongs to the pretraining objective
        # (MicronBERTPretraining), so the classifier carries no unused weights.
        self.decoder_size = (decoder_dim, decoder_depth, heads, mlp_ratio)
        component = self.nodes.component
        self.register_buffer(
            "token_component", torch.cat([component.new_full((1,), -1), component]), persistent=False
        )

    def encode(
        self,
        frame: torch.Tensor,
        node_mask: torch.Tensor,
        need_weights: bool = False,
        node_bias: torch.Tensor | None = None,
        nodes: torch.Tensor | None = None,
        added: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Encode one frame's node patches, all nodes or the subset ``nodes`` (a local crop:
        only its tokens enter the encoder, so a crop costs what its size costs).

        Shapes: frame ``[B, N, S, P, P]``, node_mask ``[B, N]`` (False: padding),
        node_bias ``[B, N]`` or None (attention logit bias of each node token as a key),
        nodes ``[B, M]`` long or None → context ``[B, D]``, tokens ``[B, M or N, D]``,
        attention per layer ``[B, H, 1+M, 1+M]``.
        """
        b = frame.shape[0]
        tokens = self.patches(frame) + self.nodes()[None]
        if added is not None:
            tokens = tokens + added
        if nodes is not None:
            tokens = tokens.gather(1, nodes[..., None].expand(-1, -1, tokens.shape[-1]))
            node_mask = node_mask.gather(1, nodes)
            node_bias = None if node_bias is None else node_bias.gather(1, nodes)
        tokens = torch.cat([self.context.expand(b, 1, -1), tokens], dim=1)
        padding = torch.cat([node_mask.new_zeros(b, 1), ~node_mask], dim=1)
        key_bias = None if node_bias is None else torch.cat([node_bias.new_zeros(b, 1), node_bias], 1)
        features, attention = self.encoder(
            tokens, padding if padding.any() else None, need_weights, key_bias
        )
        return features[:, 0], features[:, 1:], attention

    def movement_bias(self, onset: torch.Tensor, apex: torch.Tensor, node_mask: torch.Tensor):
        """The movement prior (:func:`movement_key_bias`) from the mean absolute grey-level change
        onset → apex of each node's patches, or None when ``movement_prior`` is off.

        Shapes: onset, apex ``[B, N, S, P, P]``, node_mask ``[B, N]`` → ``[B, N]`` or None.
        """
        if not self.movement_prior:
            return None
        energy = (apex.float() - onset.float()).abs().flatten(2).mean(dim=-1)
        return movement_key_bias(energy, node_mask)

    def _pair(self, onset: torch.Tensor, apex: torch.Tensor, node_mask: torch.Tensor, need_weights: bool = True):
        """Both frames through the shared encoder in one pass; the apex pass keeps its attention."""
        b = onset.shape[0]
        bias = self.movement_bias(onset, apex, node_mask)
        added = None
        if self.change is not None:
            change = self.change(apex.float() - onset.float())
            added = torch.cat([torch.zeros_like(change), change])
        context, tokens, attention = self.encode(
            torch.cat([onset, apex]),
            torch.cat([node_mask, node_mask]),
            need_weights=need_weights,
            node_bias=None if bias is None else torch.cat([bias, bias]),
            added=added,
        )
        apex_attention = [layer[b:] for layer in attention]
        return (context[:b], tokens[:b]), (context[b:], tokens[b:]), apex_attention

    def _dma_features(self, onset_tokens, apex_tokens, apex_context, node_mask):
        changed, _ = self.dma(onset_tokens, apex_tokens)
        interest = self.poi(apex_tokens, apex_context) * node_mask
        weighted = interest[..., None] * changed
        return weighted, interest

    def pool(self, weighted: torch.Tensor, interest: torch.Tensor) -> torch.Tensor:
        """The classifier's input: the PoI-weighted mean of the DMA features, per component
        (``readout="component"``, concatenated) or over the whole face (``"mean"``).

        Shapes: weighted ``[B, N, D]`` (PoI score × DMA feature), interest ``[B, N]`` →
        ``[B, K·D]`` or ``[B, D]``.
        """
        if self.readout == "mean":
            return weighted.sum(dim=1) / interest.sum(dim=1, keepdim=True).clamp_min(1e-6)
        return component_means(weighted, interest, self.nodes.component, self.num_components).flatten(1)

    def forward(self, batch) -> ModelOutput:
        check_inputs(self, batch)
        texture, node_mask = dense_nodes(batch, "texture")  # [B, N, S, 2, P, P]
        onset, apex = texture[:, :, :, 0], texture[:, :, :, 1]
        (_, onset_tokens), (apex_context, apex_tokens), attention = self._pair(onset, apex, node_mask)
        weighted, interest = self._dma_features(onset_tokens, apex_tokens, apex_context, node_mask)
        embedding = self.pool(weighted, interest)
        relations = attention_relations(attention, self.token_component, self.num_components)
        return ModelOutput(logits=self.head(embedding), relations=relations, embedding=embedding)

    def pretraining_objective(self, **settings) -> "MicronBERTPretraining":
        """The self-supervised objective of this model (``geomer pretrain``); see
        :class:`MicronBERTPretraining` for ``settings``."""
        return MicronBERTPretraining(self, **settings)



class MicronBERTPretraining(nn.Module):
    """Micron-BERT's self-supervised objective on frame pairs: blockwise-swap reconstruction plus
    a non-collapsing objective for the contextual (PoI) token.

    * ``reconstruction``: the apex frame with ``swap_ratio`` of its patches swapped, in blocks
      of neighbouring nodes, for the onset's is encoded with the onset; DMA compares the two;
      the decoder (a transformer over the node tokens) reconstructs the ORIGINAL apex patches
      (standardised, as the encoder sees them); mean squared error over the nodes.
    * ``context``: VICReg (Bardes et al., ICLR 2022) on the contextual token. Views: each frame
      of the pair whole (the onset and the swapped apex of the reconstruction pass, no extra
      encoder cost) and ``local_crops`` local crops (the ``crop_keep`` fraction of nodes around a
      random node, alternately of the apex and the onset; only the crop's tokens are encoded).
      ``invariance`` = mean squared difference between a crop's contextual token and its frame's
      whole-face one; ``variance`` and ``covariance`` (:func:`variance_covariance`) over the batch
      of every view. ``context = invariance + variance + 0.04 · covariance`` (VICReg's weights
      25, 25, 1, divided by 25). The variance term makes a batch whose contextual tokens are
      all alike cost ``≈ 1``, so the token cannot collapse to one vector: with the cosine
      agreement and stop-gradient used before, the tokens of 30 different clips reached mean
      cosine 0.999 within 100 steps.

    What the official code (github.com/uark-cviu/Micron-BERT ``models/mae.py``) does: DINO — a
    separate EMA teacher backbone and ``DINOHead``, the teacher's output centred and sharpened
    (temperature 0.04, student 0.1), cross-entropy between teacher and student over 2 global
    and 8 local crops of the reference frame. geomer's *choice* is VICReg instead: on the short
    runs geomer can afford (hundreds of steps, e.g. per fold), DINO's centred teacher targets
    stayed uniform (the context loss stuck at log of the prototype count, 30 clips, 100 steps)
    because the contextual tokens of different faces start almost parallel (mean cosine 0.99 at
    initialisation), while the variance term acts from the first step and needs no teacher copy.
    The official swap replaces random patches; geomer swaps blocks of neighbouring nodes, as the
    paper describes it. The official decoder is 512 wide and 4 deep (``mubert-base``'s).

    Shapes: onset, apex ``[B, N, S, P, P]``, node_mask ``[B, N]`` → dict of scalar losses.
    """

    def __init__(
        self,
        model: MicronBERT,
        local_crops: int = 2,
        invariance_weight: float = 1.0,
        variance_weight: float = 1.0,
        covariance_weight: float = 0.04,
    ) -> None:
        super().__init__()
        if local_crops < 1:
            raise ValueError(f"local_crops must be at least 1, got {local_crops}")
        self.student = model
        # A transformer over the node tokens, as the official MAE-style decoder; its input tokens
        # already carry each node's position (the encoder's embedding).
        decoder_dim, decoder_depth, heads, mlp_ratio = model.decoder_size
        self.decoder_embed = nn.Linear(2 * model.dim, decoder_dim)
        self.decoder = TransformerEncoder(decoder_dim, decoder_depth, heads, mlp_ratio, 0.0)
        self.decoder_predict = nn.Linear(decoder_dim, math.prod(model.patches.patch_shape))
        self.local_crops = local_crops
        self.weights = (invariance_weight, variance_weight, covariance_weight)

    def decode(self, changed: torch.Tensor, apex_tokens: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        """The standardised apex patches from the DMA features and the (swapped) apex tokens.

        Shapes: changed, apex_tokens ``[B, N, D]``, node_mask ``[B, N]`` → ``[B, N, S·P·P]``.
        """
        tokens = self.decoder_embed(torch.cat([changed, apex_tokens], dim=-1))
        padding = ~node_mask
        decoded, _ = self.decoder(tokens, padding if padding.any() else None)
        return self.decoder_predict(decoded)

    def forward(
        self,
        onset: torch.Tensor,
        apex: torch.Tensor,
        node_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        model = self.student
        b, n = onset.shape[:2]
        if node_mask is None:
            node_mask = torch.ones(b, n, dtype=torch.bool, device=onset.device)
        template = model.nodes.template.cpu()
        swapped, _ = blockwise_swap(apex, onset, model.swap_ratio, template, model.swap_block, generator)
        (onset_context, onset_tokens), (swapped_context, swapped_tokens), _ = model._pair(
            onset, swapped, node_mask, need_weights=False
        )
        changed, _ = model._dma_features(onset_tokens, swapped_tokens, swapped_context, node_mask)
        predicted = self.decode(changed, swapped_tokens, node_mask)
        target = model.patches.prepare(apex)
        per_node = ((predicted - target) ** 2).mean(dim=-1)
        reconstruction = (per_node * node_mask).sum() / node_mask.sum().clamp_min(1)

        bias = model.movement_bias(onset, apex, node_mask)
        frames, wholes = (onset, apex), (onset_context, swapped_context)
        views, invariance = [onset_context, swapped_context], []
        for crop in range(self.local_crops):
            which = (crop + 1) % 2
            nodes = crop_indices(template, b, model.crop_keep, generator).to(onset.device)
            context, _, _ = model.encode(frames[which], node_mask, node_bias=bias, nodes=nodes)
            invariance.append(F.mse_loss(context, wholes[which]))
            views.append(context)
        regularisers = [variance_covariance(view) for view in views]
        parts = {
            "invariance": torch.stack(invariance).mean(),
            "variance": torch.stack([v for v, _ in regularisers]).mean(),
            "covariance": torch.stack([c for _, c in regularisers]).mean(),
        }
        context_loss = sum(w * parts[k] for w, k in zip(self.weights, ("invariance", "variance", "covariance")))
        return {"reconstruction": reconstruction, "context": context_loss, **{k: v.detach() for k, v in parts.items()}}


mubert_base = register_model("mubert-base")(sized_variant(MicronBERT, "mubert-base", **BASE_CONFIG))
