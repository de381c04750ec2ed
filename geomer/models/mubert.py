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
* **DMA** (:class:`DiagonalMicroAttention`): single-head cross-attention, queries from the onset
  tokens, keys from the apex tokens, of which only the same-position terms are kept:
  ``out_i = a_ii · v_i`` with ``a = softmax(q kᵀ / √d)`` over all positions; *choice*: the values
  are projected from the token difference ``h_apex − h_onset`` so the output carries what changed;
* **PoI** (:class:`PatchOfInterest`): a patch-to-contextual-token similarity
  ``s_i = σ(α cos(h_i, c) + β)`` gates the DMA output (restricting it to face patches); the
  contextual token is trained in pretraining to agree between the full face and a crop (a random
  contiguous subset of nodes; cosine agreement with a stop-gradient on the full view, *choice*);
* **blockwise swapping** (:func:`blockwise_swap`): a fraction ``swap_ratio`` of the apex frame's
  patches, in spatially contiguous blocks of neighbouring nodes, is replaced by the onset
  patches at the same positions; pretraining reconstructs the original apex patches from the
  encoded pair (:meth:`MicronBERT.pretraining_losses`, ``geomer pretrain``);
* classifier on the PoI-weighted mean of the DMA features;
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
model.parameters())``): ``mubert`` (dim 48, depth 2, 4 heads) 74 695 parameters; ``mubert-base``
has the encoder width, depth and heads of the official code's ``mae_vit_small_patch8``
(``models/mae.py`` of github.com/uark-cviu/Micron-BERT: dim 512, depth 4, 4 heads, MLP ratio 4)
on geomer's 68 node tokens, with geomer's one-layer decoder instead of the official 512-wide,
4-deep one: 13 712 583 parameters. geomer ships no pretrained weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from geomer.features.types import FeatureSettings
from geomer.models.attention import TransformerEncoder, attention_relations, movement_key_bias
from geomer.models.output import ModelOutput
from geomer.models.registry import check_inputs, register_model
from geomer.models.tokens import NodeTokenEmbedding, PatchProjection, dense_nodes, sized_variant

#: The official encoder's size (``mae_vit_small_patch8``), registered as ``mubert-base`` (the
#: class defaults are ``mubert``).
BASE_CONFIG = dict(dim=512, depth=4, heads=4, mlp_ratio=4.0)


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


def crop_mask(
    positions: torch.Tensor, batch_size: int, keep: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random "crop" of the face per sample: the ``keep`` fraction of nodes nearest a random node.

    Shapes: positions ``[N, 2]`` → ``[B, N]`` bool, True for the nodes inside the crop.
    """
    n = positions.shape[0]
    count = max(1, int(round(keep * n)))
    distances = torch.cdist(positions.float(), positions.float())
    centres = torch.randint(n, (batch_size,), generator=generator)
    nearest = distances[centres].argsort(dim=-1)[:, :count]
    mask = torch.zeros(batch_size, n, dtype=torch.bool)
    mask.scatter_(1, nearest, True)
    return mask


@register_model("mubert")
class MicronBERT(nn.Module):
    """Micron-BERT: ViT over node patches of onset and apex, DMA + PoI, blockwise-swap pretraining.

    Input: a PyG ``Batch`` with ``texture`` ``[N_total, S, 2, P, P]`` (onset, apex grey patches;
    node-major). ``megc2019-flow`` has no onset frame, so ``mubert`` does not run on it (it fails
    at the start naming ``texture``). Output: :class:`ModelOutput`, ``embedding`` ``[B, D]``.
    """

    paper = (
        "X.-B. Nguyen et al., Micron-BERT: BERT-based Facial Micro-Expression Recognition, "
        "CVPR 2023 (arXiv:2304.03195)"
    )
    requires: tuple[str, ...] = ("texture",)
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
        swap_ratio: float = 0.3,
        swap_block: int = 4,
        crop_keep: float = 0.5,
        movement_prior: bool = False,
    ) -> None:
        super().__init__()
        self.movement_prior = movement_prior
        self.num_components = int(graph.num_components)
        self.swap_ratio = swap_ratio
        self.swap_block = swap_block
        self.crop_keep = crop_keep
        num_scales, patch_size = len(features.scales), features.patch_size
        self.nodes = NodeTokenEmbedding(graph, dim)
        self.patches = PatchProjection((num_scales, patch_size, patch_size), dim, "patch")
        self.context = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.context, std=0.02)
        self.encoder = TransformerEncoder(dim, depth, heads, mlp_ratio, dropout)
        self.dma = DiagonalMicroAttention(dim)
        self.poi = PatchOfInterest()
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Dropout(dropout), nn.Linear(dim, num_classes))
        # Pretraining only: reconstructs a frame's standardised patches from the DMA features.
        self.decoder = nn.Sequential(
            nn.LayerNorm(2 * dim), nn.Linear(2 * dim, num_scales * patch_size * patch_size)
        )
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
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Encode one frame's node patches.

        Shapes: frame ``[B, N, S, P, P]``, node_mask ``[B, N]`` (False: padding or cropped out),
        node_bias ``[B, N]`` or None (attention logit bias of each node token as a key)
        → context ``[B, D]``, tokens ``[B, N, D]``, attention per layer ``[B, H, 1+N, 1+N]``.
        """
        b = frame.shape[0]
        tokens = self.patches(frame) + self.nodes()[None]
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

    def _pair(self, onset: torch.Tensor, apex: torch.Tensor, node_mask: torch.Tensor):
        """Both frames through the shared encoder in one pass; the apex pass keeps its attention."""
        b = onset.shape[0]
        bias = self.movement_bias(onset, apex, node_mask)
        context, tokens, attention = self.encode(
            torch.cat([onset, apex]),
            torch.cat([node_mask, node_mask]),
            need_weights=True,
            node_bias=None if bias is None else torch.cat([bias, bias]),
        )
        apex_attention = [layer[b:] for layer in attention]
        return (context[:b], tokens[:b]), (context[b:], tokens[b:]), apex_attention

    def _dma_features(self, onset_tokens, apex_tokens, apex_context, node_mask):
        changed, _ = self.dma(onset_tokens, apex_tokens)
        interest = self.poi(apex_tokens, apex_context) * node_mask
        weighted = interest[..., None] * changed
        return weighted, interest

    def forward(self, batch) -> ModelOutput:
        check_inputs(self, batch)
        texture, node_mask = dense_nodes(batch, "texture")  # [B, N, S, 2, P, P]
        onset, apex = texture[:, :, :, 0], texture[:, :, :, 1]
        (_, onset_tokens), (apex_context, apex_tokens), attention = self._pair(onset, apex, node_mask)
        weighted, interest = self._dma_features(onset_tokens, apex_tokens, apex_context, node_mask)
        embedding = weighted.sum(dim=1) / interest.sum(dim=1, keepdim=True).clamp_min(1e-6)
        relations = attention_relations(attention, self.token_component, self.num_components)
        return ModelOutput(logits=self.head(embedding), relations=relations, embedding=embedding)

    def pretraining_losses(
        self,
        onset: torch.Tensor,
        apex: torch.Tensor,
        node_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Self-supervised losses on a frame pair: blockwise-swap reconstruction + PoI agreement.

        ``reconstruction``: the apex frame with ``swap_ratio`` of its patches swapped for the
        onset's is encoded with the onset; the decoder reconstructs the original apex patches
        (standardised, as the encoder sees them) from the DMA features and the apex tokens.
        ``context``: ``1 − cos`` between the contextual token of a crop of the apex frame and
        that of the full apex frame (stop-gradient on the full view).

        Shapes: onset, apex ``[B, N, S, P, P]``, node_mask ``[B, N]`` → scalars.
        """
        b, n = onset.shape[:2]
        if node_mask is None:
            node_mask = torch.ones(b, n, dtype=torch.bool, device=onset.device)
        template = self.nodes.template.cpu()
        swapped, _ = blockwise_swap(apex, onset, self.swap_ratio, template, self.swap_block, generator)
        (_, onset_tokens), (context, apex_tokens), _ = self._pair(onset, swapped, node_mask)
        weighted, _ = self._dma_features(onset_tokens, apex_tokens, context, node_mask)
        predicted = self.decoder(torch.cat([weighted, apex_tokens], dim=-1))
        target = self.patches.prepare(apex)
        per_node = ((predicted - target) ** 2).mean(dim=-1)
        reconstruction = (per_node * node_mask).sum() / node_mask.sum().clamp_min(1)
        crop = crop_mask(template, b, self.crop_keep, generator).to(onset.device) & node_mask
        bias = self.movement_bias(onset, apex, node_mask)
        full_context, _, _ = self.encode(apex, node_mask, node_bias=bias)
        crop_context, _, _ = self.encode(apex, crop, node_bias=bias)
        agreement = 1.0 - F.cosine_similarity(crop_context, full_context.detach(), dim=-1).mean()
        return {"reconstruction": reconstruction, "context": agreement}


mubert_base = register_model("mubert-base")(sized_variant(MicronBERT, "mubert-base", **BASE_CONFIG))
