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
  fast on CPU; ``hsta-base`` uses the official 2), each node's sequence is standardised over time
  and space so temporal change survives; tokens carry component, canonical-position and time
  embeddings; width ``frame_dim``;
* **special-data branch**: one token per node from the onset and apex patches (``texture``) and
  the onset→apex flow patches (``flow_patches``) at every scale; width ``special_dim``. Each
  branch has its own width, as in the official code (``embed_dim`` per branch), and its own
  component and position embeddings;
* each branch has a summary token; a USTA block is joint space-time self-attention over all of
  the branch's tokens (:class:`geomer.models.attention.TransformerBlock`);
* **CSTA** (:class:`CrossmodalSpaceTimeAttention`): each branch's summary token, projected into
  the other branch's width, queries that branch's tokens; the result, projected back, is added
  to the summary token and written back (the official ``MultiScaleBlock`` projects the class
  token across and back the same way);
* a stage = ``special_blocks`` USTA blocks on special data, ``frame_blocks`` USTA blocks on
  frames, then CSTA; ``stages`` stages are stacked. Official layout (``hsta-base``, below):
  4 stages of 1 block on special data and 2 on frames; the small default ``hsta`` has 2 stages
  of 1 + 1 blocks;
* classifier (``readout``, *choice*, 0.2.9): both branches' summary tokens and, per branch, the
  mean token of each facial component after the last stage (frame tokens of every tubelet of
  the component's nodes), all concatenated (also the ``embedding``), then LayerNorm, a hidden
  layer (GELU) and the class layer. Why: each summary token mixes every component's evidence
  into one vector, and with the summaries alone the model's evidence did not sit on the
  components a class is defined by (its occlusion relations agreed with the relevance ground
  truth less than the input-only read-out; README, "`hsta`'s readout"). The readout and its
  hidden layer were tried together, not apart. ``readout="summary"`` is the paper's head over
  the two summary tokens (geomer up to 0.2.8);
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
  it: its tokens are made from the frames only and its first stage's attention sees frames only
  (modality-clean; tested); the branches meet only in CSTA, so from the second stage on the
  special data reaches the frame branch through its summary token alone, which is what the
  hierarchical fusion is for (the official code feeds the fused class token to the next
  stage's blocks the same way). It is a hand-made
  input statistic that steers the attention, so relations measured with it on are not the
  model's own;
* ``relations`` (intrinsic): the shared rule
  (:func:`geomer.models.attention.attention_relations`) applied to each branch's self-attention
  layers (frame tokens keep their node's component), the two [B, K, K] averaged. Measured figures
  are in the README's models table, with the commands.

Missing modality: ``megc2019-flow`` has no frame sequence and no onset patches, so ``hsta``
fails at the start naming ``sequence`` (``requires``); use ``mmt`` or ``dere-grl`` there.

Sizes (68 nodes, 3 scales, 8×8 patches, Tseq 8, 5 classes; ``sum(p.numel() for p in
model.parameters())``): ``hsta`` (both widths 48, 4 heads, 2 stages of 1 + 1 blocks, tubelet 4)
235 973 parameters; ``hsta-base`` 81 570 437 (``readout="summary"``: 197 765 and 78 016 517).

``hsta-base`` is the official configuration, read in the official code
(github.com/OceanSummerDay/HSTA_MER): ``hsta_model_core/_model_hsta.py`` registers
``cross_uni_hsta_base_224`` with ``embed_dim=[384, 768]`` (special data, frames),
``num_heads=[12, 12]``, ``mlp_ratio`` 4, ``tubelet_size`` 2 (the ``VisionTransformer``
default); its published training command (README, ``script_for_start_train/
5_folds_casme3_hsta4_usta21.sh``) runs that model with ``--hsta_num 4 --depth_choice_num 2``,
which ``get_depth`` turns into 4 stages of ``[1, 2, 0]``: 1 block on special data, 2 on frames,
one cross-attention without MLP. geomer's tokens are region-graph node patches, not the official
image patches (12- and 16-pixel patches of 224-pixel frames), so the sequence lengths and the
patch embeddings differ, and its branches use its own dropout (0.1 in the MLPs and before the
class layer) instead of the official ``drop 0.2, drop_path 0.2``. The attention weights are not dropped
(``attention_dropout`` 0), as in the official ``VisionTransformer`` (``attn_drop_rate=0.``, which
the published command leaves at its default); before 0.2.3 geomer dropped them at ``dropout``.
``hsta`` and ``hsta-base`` train 200 optimiser steps per fold by default (``train_defaults``;
*choice*), rounded up to whole epochs: 40 epochs of the synthetic standard's 150 training clips,
twice the engine's 20 (0.2.6 set 40 epochs; 0.2.7 states the budget in steps, as ``mmt``'s, so a
larger training set gets fewer epochs: 15 of about 430 clips, not measured). Chosen for ``hsta``
on the synthetic tuning seed (README, "Relations"), not read in the official code; not measured
for ``hsta-base``.

What geomer does not have: (1) the official **pretrained initialisation** — the README's command
template has a ``MODEL_PATH`` ("path to pretrain model") placeholder and the code is built on the
VideoMAE fine-tuning code, but no checkpoint is published in the repository; the code also has a
``--pretrain_on_macro`` mode that trains on CAS(ME)^3 macro-expression clips only
(``only_Macro_train_dataset.csv``); (2) the **extra macro-expression data** — the published
command passes ``--use_extra_macro_data``, which trains every fold on
``use_macro_exp_train_fold_*.csv``: the fold's micro-expression clips plus CAS(ME)^3
macro-expression clips. geomer trains from a random start on micro-expression clips only, so
even ``hsta-base`` is not the paper's trained model.
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
from geomer.models.settings import check_at_least, check_positive, check_probability
from geomer.models.tokens import (
    MagnitudeEmbedding,
    NodeTokenEmbedding,
    PatchProjection,
    component_means,
    dense_nodes,
    sized_variant,
    standardise,
)

#: The official configuration, registered as ``hsta-base`` (the class defaults are ``hsta``): the
#: official code's ``cross_uni_hsta_base_224`` widths and heads with the stage layout of its
#: published training script (see the module docstring).
BASE_CONFIG = dict(
    special_dim=384, frame_dim=768, heads=12, stages=4, special_blocks=1, frame_blocks=2,
    mlp_ratio=4.0, tubelet=2,
)

#: What the classifier reads (module docstring): the summary tokens and each component's mean
#: token per branch, or the summary tokens alone as in the paper.
READOUTS = ("component", "summary")


class CrossmodalSpaceTimeAttention(nn.Module):
    """CSTA: each branch's summary token, projected into the other branch's width, queries that branch's tokens.

    The attention runs at the width of the branch it reads (its keys and values are that branch's
    tokens); its output projection maps back to the querying branch's width, and the result is
    added to the querying branch's summary token. Nothing else changes.

    Shapes: special ``[B, 1+Ls, Ds]``, frames ``[B, 1+Lf, Df]`` (summary token first), and each
    branch's padding ``[B, 1+L]`` bool (True: a padded token, never attended to) or None → the same
    shapes with the summary tokens updated.
    """

    def __init__(self, special_dim: int, frame_dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.special_query = nn.Sequential(nn.LayerNorm(special_dim), nn.Linear(special_dim, frame_dim))
        self.frame_query = nn.Sequential(nn.LayerNorm(frame_dim), nn.Linear(frame_dim, special_dim))
        self.special_context = nn.LayerNorm(special_dim)
        self.frame_context = nn.LayerNorm(frame_dim)
        self.special_from_frames = MultiHeadAttention(frame_dim, heads, dropout, out_dim=special_dim)
        self.frames_from_special = MultiHeadAttention(special_dim, heads, dropout, out_dim=frame_dim)

    def forward(self, special: torch.Tensor, frames: torch.Tensor,
                special_padding: torch.Tensor | None = None, frame_padding: torch.Tensor | None = None):
        special_summary, frame_summary = special[:, :1], frames[:, :1]
        from_frames, _ = self.special_from_frames(
            self.special_query(special_summary), self.frame_context(frames[:, 1:]),
            key_padding_mask=None if frame_padding is None else frame_padding[:, 1:],
        )
        from_special, _ = self.frames_from_special(
            self.frame_query(frame_summary), self.special_context(special[:, 1:]),
            key_padding_mask=None if special_padding is None else special_padding[:, 1:],
        )
        special = torch.cat([special_summary + from_frames, special[:, 1:]], dim=1)
        frames = torch.cat([frame_summary + from_special, frames[:, 1:]], dim=1)
        return special, frames


@register_model("hsta")
class HierarchicalSpaceTimeAttention(nn.Module):
    """HSTA: frame and special-data branches of space-time attention, fused hierarchically by CSTA.

    Input: a PyG ``Batch`` with ``sequence`` ``[N_total, Tseq, P, P]``, ``flow_patches``
    ``[N_total, S, 3, P, P]`` and ``texture`` ``[N_total, S, 2, P, P]`` (node-major).
    Output: :class:`ModelOutput` with ``embedding`` ``[B, (1 + K)·(special_dim + frame_dim)]``
    (``readout="summary"``: ``[B, special_dim + frame_dim]``).
    """

    paper = (
        "H. Hao et al., Hierarchical Space-Time Attention for Micro-Expression Recognition, "
        "arXiv:2405.03202 (2024)"
    )
    requires: tuple[str, ...] = ("sequence", "flow_patches", "texture")
    # every Data attribute forward() reads: the engine drops the rest before collating
    inputs: tuple[str, ...] = requires
    small_config = dict(special_dim=16, frame_dim=24, heads=2, stages=1)
    # its own budget (README, "Relations": chosen on the synthetic tuning seed, where 20 epochs
    # of 5 steps left it short of learning the task); `hsta-base` shares it (not measured there)
    train_defaults = {"steps": 200}
    # checkpoints of geomer before 0.2.3 dropped the attention weights at `dropout` (0.1 unless
    # set otherwise; a checkpoint trained with another `dropout` is rebuilt with 0.1 here, which
    # only matters for further training: dropout is off in evaluation)
    # and read the two summary tokens only before 0.2.9
    earlier_defaults = {"0.2.3": {"attention_dropout": 0.1}, "0.2.9": {"readout": "summary"}}

    def __init__(
        self,
        num_classes: int,
        graph,
        features: FeatureSettings = FeatureSettings(),
        special_dim: int = 48,
        frame_dim: int = 48,
        heads: int = 4,
        stages: int = 2,
        special_blocks: int = 1,
        frame_blocks: int = 1,
        mlp_ratio: float = 2.0,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        tubelet: int = 4,
        movement_prior: bool = False,
        readout: str = "component",
    ) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {', '.join(READOUTS)}, got {readout!r}")
        check_at_least("hsta", 1, special_dim=special_dim, frame_dim=frame_dim, heads=heads, stages=stages,
                       special_blocks=special_blocks, frame_blocks=frame_blocks, tubelet=tubelet)
        check_positive("hsta", mlp_ratio=mlp_ratio)
        check_probability("hsta", dropout=dropout, attention_dropout=attention_dropout)
        self.readout = readout
        self.movement_prior = movement_prior
        self.num_components = int(graph.num_components)
        self.tubelet = tubelet
        num_scales, p = len(features.scales), features.patch_size
        self.time_tokens = -(-features.sequence_steps // tubelet)
        # special-data branch, width special_dim
        self.special_nodes = NodeTokenEmbedding(graph, special_dim)
        self.texture = PatchProjection((num_scales, 2, p, p), special_dim, "patch")
        self.flow = PatchProjection((num_scales, 3, p, p), special_dim, "fold")
        self.flow_magnitude = MagnitudeEmbedding(num_scales, special_dim)
        self.special_summary = nn.Parameter(torch.zeros(1, 1, special_dim))
        # frame branch, width frame_dim
        self.frame_nodes = NodeTokenEmbedding(graph, frame_dim)
        self.frame_patches = PatchProjection((tubelet, p, p), frame_dim, "none")
        # each frame's change from the node's first frame, scaled by the training fold's
        # statistics: the grey-level change of a 1–3 px motion is a few % of the texture's
        # contrast, too small to survive in the standardised frames alone
        self.frame_changes = PatchProjection((tubelet, p, p), frame_dim, "fold")
        self.time_embedding = nn.Parameter(torch.zeros(self.time_tokens, frame_dim))
        self.frame_summary = nn.Parameter(torch.zeros(1, 1, frame_dim))
        for parameter in (self.time_embedding, self.special_summary, self.frame_summary):
            nn.init.trunc_normal_(parameter, std=0.02)
        self.special_stages = nn.ModuleList(
            nn.ModuleList(
                TransformerBlock(special_dim, heads, mlp_ratio, dropout, attention_dropout)
                for _ in range(special_blocks)
            )
            for _ in range(stages)
        )
        self.frame_stages = nn.ModuleList(
            nn.ModuleList(
                TransformerBlock(frame_dim, heads, mlp_ratio, dropout, attention_dropout)
                for _ in range(frame_blocks)
            )
            for _ in range(stages)
        )
        self.crossmodal = nn.ModuleList(
            CrossmodalSpaceTimeAttention(special_dim, frame_dim, heads, attention_dropout) for _ in range(stages)
        )
        self.special_norm = nn.LayerNorm(special_dim)
        self.frame_norm = nn.LayerNorm(frame_dim)
        if readout == "component":
            width = (1 + self.num_components) * (special_dim + frame_dim)
            self.head = nn.Sequential(
                nn.LayerNorm(width), nn.Linear(width, special_dim), nn.GELU(), nn.Dropout(dropout),
                nn.Linear(special_dim, num_classes),
            )
        else:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(special_dim + frame_dim, num_classes))
        component = self.special_nodes.component
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
        flat = standardise(flat, unbiased=True)
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
        return (tokens + self.frame_nodes()[None, :, None, :]).flatten(1, 2)

    def mean_tokens_per_component(
        self, tokens: torch.Tensor, component: torch.Tensor, keep: torch.Tensor
    ) -> torch.Tensor:
        """Each component's mean token, flattened: ``[B, 1+L, D]`` (summary first) → ``[B, K·D]``.

        ``component`` ``[1+L]`` and ``keep`` ``[B, 1+L]`` (real, not padded) describe the tokens.
        """
        weights = keep[:, 1:].to(tokens.dtype)  # [B, L]
        weighted = tokens[:, 1:] * weights[..., None]
        return component_means(weighted, weights, component[1:], self.num_components).flatten(1)

    def forward(self, batch) -> ModelOutput:
        check_inputs(self, batch)
        sequence, node_mask = dense_nodes(batch, "sequence")
        texture, _ = dense_nodes(batch, "texture")
        flow, _ = dense_nodes(batch, "flow_patches")
        b = sequence.shape[0]
        special = self.texture(texture) + self.flow(flow) + self.special_nodes()[None]
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
            special, frames = crossmodal(special, frames, special_padding, frame_padding)
        embedding = torch.cat(
            [self.special_norm(special[:, 0]), self.frame_norm(frames[:, 0])], dim=-1
        )
        if self.readout == "component":
            embedding = torch.cat(
                [embedding, self.mean_tokens_per_component(special, self.special_component, keep),
                 self.mean_tokens_per_component(frames, self.frame_component, frame_keep)], dim=-1,
            )
        relations = mean_relations(
            attention_relations(special_attention, self.special_component, self.num_components),
            attention_relations(frame_attention, self.frame_component, self.num_components),
        )
        return ModelOutput(logits=self.head(embedding), relations=relations, embedding=embedding)


hsta_base = register_model("hsta-base")(
    sized_variant(HierarchicalSpaceTimeAttention, "hsta-base", **BASE_CONFIG)
)
