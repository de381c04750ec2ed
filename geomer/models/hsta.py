"""``hsta``: Hierarchical Space-Time Attention over region-graph node patches.

Paper: H. Hao, S. Wang, H. Ben, Y. Hao, Y. Wang, W. Wang, "Hierarchical Space-Time Attention for
Micro-Expression Recognition", arXiv:2405.03202 (2024; code github.com/OceanSummerDay/HSTA_MER).
What its abstract fixes: ME video frames and special frames/data are processed in parallel by
cascaded **Unimodal Space-Time Attention (USTA)**; **Crossmodal Space-Time Attention (CSTA)**
fuses the modalities while keeping each one's content; USTA and CSTA are integrated
**hierarchically**; reported gain of about 3 % on CASME3 seven-class. geomer evaluates it
**subject-independently** (LOSO over global subject keys, docs/architecture.md, "Evaluation") whatever split the paper
used, so its numbers are not comparable with the paper's.

How geomer builds it (reimplementation choices are marked *choice*):

* **frame branch**: space-time tokens = node patches × time from ``sequence`` (grey patches at
  the middle scale, Tseq frames onset..offset); *choice*: ``tubelet`` consecutive frames form one
  token (default 4, i.e. 2 time tokens per node for Tseq 8, to keep joint space-time attention
  fast on CPU; ``hsta-base`` uses 1, a token per frame), each node's sequence is standardised over time and
  space so temporal change survives; tokens carry component, canonical-position and time
  embeddings;
* **special-data branch**: one token per node from the onset and apex patches (``texture``) and
  the onset→apex flow patches (``flow_patches``) at every scale;
* each branch has a summary token; a USTA block is joint space-time self-attention over all of
  the branch's tokens (:class:`geomer.models.attention.TransformerBlock`);
* **CSTA** (:class:`CrossmodalSpaceTimeAttention`): each branch's summary token, projected,
  queries the other branch's tokens; the result is added to the summary token and written back;
* a stage = ``special_blocks`` USTA blocks on special data, ``frame_blocks`` USTA blocks on
  frames, then CSTA; ``stages`` stages are stacked. Published layout (``hsta-base``):
  4 stages of 1 block on special data and 2 on frames; the small default ``hsta`` has 2 stages
  of 1 + 1 blocks;
* head over both summary tokens, concatenated (also the ``embedding``);
* **motion reaches the tokens** (*choice*): the special branch's flow patches are standardised
  per channel with the training fold's statistics (``PatchProjection(normalise="fold")``) and
  each special token gets the node's mean flow magnitude per scale as an explicit feature
  (:class:`geomer.models.tokens.MagnitudeEmbedding`); each frame token adds the projection of
  the frames' change from the node's first frame, also standardised with the training fold's
  statistics (a 1–3 px motion changes the grey levels by a few per cent of the texture's
  contrast, too little to survive in the standardised frames alone). Why: without a hand-made
  attention bias the model did not learn the task on the synthetic data before these changes;
* movement prior (``movement_prior``, *choice*, **off by default**): the special-data branch's
  USTA attention logits get the log relative excess optical-flow magnitude of each key node
  (:func:`geomer.models.attention.movement_key_bias`). The frame branch's attention never gets
  it: it sees frames only (modality-clean); the branches meet only in CSTA. It is a hand-made
  input statistic that steers the attention, so relations measured with it on are not the
  model's own;
* ``relations`` (intrinsic): the shared rule
  (:func:`geomer.models.attention.attention_relations`) applied to each branch's self-attention
  layers (frame tokens keep their node's component), the two [B, K, K] averaged. Measured figures
  are in the README's models table, with the commands.

Missing modality: ``megc2019-flow`` has no frame sequence and no onset patches, so ``hsta``
fails at the start naming ``sequence`` (``requires``); use ``mmt`` or ``dere-grl`` there.

Sizes (68 nodes, 3 scales, 8×8 patches, Tseq 8, 5 classes; ``sum(p.numel() for p in
model.parameters())``): ``hsta`` (dim 48, 4 heads, 2 stages, tubelet 4) 196 613 parameters;
``hsta-base`` (dim 256 in both branches, 8 heads, 4 stages of 1 + 2 blocks, tubelet 1)
12 409 349. ``hsta-base`` has the published stage layout but not the official widths: the
official code's ``VisionTransformer`` (``hsta_model_core/_model_hsta.py``) defaults to
``embed_dim=(384, 768)``, ``num_heads=(6, 12)``, one width per branch, and its training scripts
add macro-expression data (``use_macro_exp_train_fold_*.csv``); geomer's branches share one width
and it has neither the official initialisation nor that data. So ``hsta-base`` is geomer's larger
configuration, not the paper's model.
"""

from __future__ import annotations

import torch
from torch import nn

from geomer.features.types import FeatureSettings
from geomer.models.attention import (
    MultiHeadAttention,
    TransformerBlock,
    attention_relations,
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

#: The published stage layout at one width, registered as ``hsta-base`` (the class defaults are
#: ``hsta``; the official widths differ, see the module docstring).
BASE_CONFIG = dict(
    dim=256, heads=8, stages=4, special_blocks=1, frame_blocks=2, mlp_ratio=4.0, tubelet=1
)


class CrossmodalSpaceTimeAttention(nn.Module):
    """CSTA: each branch's summary token (projected) queries the other branch's tokens.

    Shapes: special ``[B, 1+Ls, D]``, frames ``[B, 1+Lf, D]`` (summary token first) → the same
    shapes with the summary tokens updated.
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.special_query = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))
        self.frame_query = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))
        self.special_context = nn.LayerNorm(dim)
        self.frame_context = nn.LayerNorm(dim)
        self.special_from_frames = MultiHeadAttention(dim, heads, dropout)
        self.frames_from_special = MultiHeadAttention(dim, heads, dropout)

    def forward(self, special: torch.Tensor, frames: torch.Tensor):
        special_summary, frame_summary = special[:, :1], frames[:, :1]
        from_frames, _ = self.special_from_frames(
            self.special_query(special_summary), self.frame_context(frames[:, 1:])
        )
        from_special, _ = self.frames_from_special(
            self.frame_query(frame_summary), self.special_context(special[:, 1:])
        )
        special = torch.cat([special_summary + from_frames, special[:, 1:]], dim=1)
        frames = torch.cat([frame_summary + from_special, frames[:, 1:]], dim=1)
        return special, frames


@register_model("hsta")
class HierarchicalSpaceTimeAttention(nn.Module):
    """HSTA: frame and special-data branches of space-time attention, fused hierarchically by CSTA.

    Input: a PyG ``Batch`` with ``sequence`` ``[N_total, Tseq, P, P]``, ``flow_patches``
    ``[N_total, S, 3, P, P]`` and ``texture`` ``[N_total, S, 2, P, P]`` (node-major).
    Output: :class:`ModelOutput` with ``embedding`` ``[B, 2D]``.
    """

    paper = (
        "H. Hao et al., Hierarchical Space-Time Attention for Micro-Expression Recognition, "
        "arXiv:2405.03202 (2024)"
    )
    requires: tuple[str, ...] = ("sequence", "flow_patches", "texture")
    # every Data attribute forward() reads: the engine drops the rest before collating
    inputs: tuple[str, ...] = requires
    small_config = dict(dim=16, heads=2, stages=1)

    def __init__(
        self,
        num_classes: int,
        graph,
        features: FeatureSettings = FeatureSettings(),
        dim: int = 48,
        heads: int = 4,
        stages: int = 2,
        special_blocks: int = 1,
        frame_blocks: int = 1,
        mlp_ratio: float = 2.0,
        dropout: float = 0.1,
        tubelet: int = 4,
        movement_prior: bool = False,
    ) -> None:
        super().__init__()
        self.movement_prior = movement_prior
        self.num_components = int(graph.num_components)
        self.tubelet = tubelet
        num_scales, p = len(features.scales), features.patch_size
        self.time_tokens = -(-features.sequence_steps // tubelet)
        self.nodes = NodeTokenEmbedding(graph, dim)
        self.texture = PatchProjection((num_scales, 2, p, p), dim, "patch")
        self.flow = PatchProjection((num_scales, 3, p, p), dim, "fold")
        self.flow_magnitude = MagnitudeEmbedding(num_scales, dim)
        self.frame_patches = PatchProjection((tubelet, p, p), dim, "none")
        # each frame's change from the node's first frame, scaled by the training fold's
        # statistics: the grey-level change of a 1–3 px motion is a few % of the texture's
        # contrast, too small to survive in the standardised frames alone
        self.frame_changes = PatchProjection((tubelet, p, p), dim, "fold")
        self.time_embedding = nn.Parameter(torch.zeros(self.time_tokens, dim))
        self.special_summary = nn.Parameter(torch.zeros(1, 1, dim))
        self.frame_summary = nn.Parameter(torch.zeros(1, 1, dim))
        for parameter in (self.time_embedding, self.special_summary, self.frame_summary):
            nn.init.trunc_normal_(parameter, std=0.02)
        self.special_stages = nn.ModuleList(
            nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio, dropout) for _ in range(special_blocks))
            for _ in range(stages)
        )
        self.frame_stages = nn.ModuleList(
            nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio, dropout) for _ in range(frame_blocks))
            for _ in range(stages)
        )
        self.crossmodal = nn.ModuleList(
            CrossmodalSpaceTimeAttention(dim, heads, dropout) for _ in range(stages)
        )
        self.special_norm = nn.LayerNorm(dim)
        self.frame_norm = nn.LayerNorm(dim)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * dim, num_classes))
        component = self.nodes.component
        summary = component.new_full((1,), -1)
        self.register_buffer("special_component", torch.cat([summary, component]), persistent=False)
        # Frame tokens are node-major, time-minor: token (node i, tubelet t) has i's component.
        self.register_buffer(
            "frame_component",
            torch.cat([summary, component.repeat_interleave(self.time_tokens)]),
            persistent=False,
        )

    def _frame_tokens(self, sequence: torch.Tensor) -> torch.Tensor:
        """``[B, N, T, P, P]`` → ``[B, N·T', D]`` tubelet tokens (node-major, time-minor)."""
        b, n, t = sequence.shape[:3]
        flat = sequence.reshape(b, n, -1).float()
        # Standardise each node's whole sequence: brightness differences between clips go,
        # changes over time stay.
        flat = (flat - flat.mean(-1, keepdim=True)) / (flat.std(-1, keepdim=True) + 1e-3)
        sequence = flat.view(sequence.shape)
        change = sequence - sequence[:, :, :1]
        missing = self.time_tokens * self.tubelet - t
        if missing > 0:  # repeat the last frame so the tubelets tile the sequence
            sequence = torch.cat([sequence, sequence[:, :, -1:].expand(-1, -1, missing, -1, -1)], 2)
            change = torch.cat([change, change[:, :, -1:].expand(-1, -1, missing, -1, -1)], 2)
        elif missing < 0:
            raise ValueError(
                f"hsta was built for {self.time_tokens * self.tubelet} sequence steps, got {t}"
            )
        tubelets = sequence.reshape(b, n, self.time_tokens, self.tubelet, *sequence.shape[-2:])
        changes = change.reshape(b, n, self.time_tokens, self.tubelet, *change.shape[-2:])
        tokens = self.frame_patches(tubelets) + self.frame_changes(changes) + self.time_embedding
        return (tokens + self.nodes()[None, :, None, :]).flatten(1, 2)

    def forward(self, batch) -> ModelOutput:
        check_inputs(self, batch)
        sequence, node_mask = dense_nodes(batch, "sequence")
        texture, _ = dense_nodes(batch, "texture")
        flow, _ = dense_nodes(batch, "flow_patches")
        b = sequence.shape[0]
        special = self.texture(texture) + self.flow(flow) + self.nodes()[None]
        special = special + self.flow_magnitude(flow).sum(dim=2)
        special = torch.cat([self.special_summary.expand(b, 1, -1), special], dim=1)
        frames = torch.cat([self.frame_summary.expand(b, 1, -1), self._frame_tokens(sequence)], 1)
        keep = torch.cat([node_mask.new_ones(b, 1), node_mask], dim=1)
        special_padding = None if keep.all() else ~keep
        frame_keep = torch.cat([keep[:, :1], node_mask.repeat_interleave(self.time_tokens, 1)], 1)
        frame_padding = None if frame_keep.all() else ~frame_keep
        special_bias = None
        if self.movement_prior:  # node energy: mean optical-flow magnitude over scales and pixels
            bias = movement_key_bias(MagnitudeEmbedding.magnitude(flow).mean(dim=-1), node_mask)
            special_bias = torch.cat([bias.new_zeros(b, 1), bias], dim=1)  # summary: none
        special_attention, frame_attention = [], []
        for special_blocks, frame_blocks, crossmodal in zip(
            self.special_stages, self.frame_stages, self.crossmodal
        ):
            for block in special_blocks:
                special, weights = block(special, special_padding, True, special_bias)
                special_attention.append(weights)
            for block in frame_blocks:
                frames, weights = block(frames, frame_padding, True)  # frames only
                frame_attention.append(weights)
            special, frames = crossmodal(special, frames)
        embedding = torch.cat(
            [self.special_norm(special[:, 0]), self.frame_norm(frames[:, 0])], dim=-1
        )
        relations = mean_relations(
            attention_relations(special_attention, self.special_component, self.num_components),
            attention_relations(frame_attention, self.frame_component, self.num_components),
        )
        return ModelOutput(logits=self.head(embedding), relations=relations, embedding=embedding)


hsta_base = register_model("hsta-base")(
    sized_variant(HierarchicalSpaceTimeAttention, "hsta-base", **BASE_CONFIG)
)
