"""Attention blocks that can keep their weights, the movement prior, and the one attention → relations rule.

Every transformer in geomer (``mmt``, ``mubert``, ``hsta``) turns its self-attention into the
component-relation matrix with :func:`attention_relations`, so their ``relations`` are comparable:

1. heads are averaged: ``A_l = mean_h attn_l[:, h]``                       ``[B, L, L]``
2. rolled out over layers (Abnar & Zuidema, ACL 2020, "Quantifying Attention Flow in
   Transformers"): ``Â_l = rownorm((A_l + I) / 2)``, ``R = Â_n ⋯ Â_2 Â_1`` (``R[i, j]``: how much
   top-layer token i draws from input token j; the residual path is the ``I``);
3. the summary token's row of ``R`` over the component tokens, normalised, is each token's
   **importance** ``w`` (what the model reads out; the patch importance of ``mmt``);
4. importance-weighted token→token flow ``w_i R[i, j]`` is **summed** per component pair
   ``(k, l)`` over ``i ∈ k, j ∈ l`` (``Sᵀ diag(w) R S`` with the [L, K] 0/1 membership ``S``),
   and each row is scaled to sum to 1 (a component without tokens, or one the model gives no
   importance, gets a uniform row). Tokens without a component (summary tokens, padding) carry
   id -1 and are left out.

These relations are **intrinsic**: nothing but the model's own attention goes into them. No
constant is added on the diagonal and no input statistic is mixed in (an earlier version added
``1/K`` on the diagonal, a value picked by scoring against the synthetic ground truth; it is gone).

The **movement prior** (:func:`movement_key_bias`, the ``movement_prior`` setting of every
transformer, **off by default**) adds ``log`` of each node's relative excess optical-flow
magnitude (or, for ``mubert``, onset→apex grey-level change) to the attention logits of that
node's tokens as keys. It is a hand-made input statistic: with it on, the attention — and so the
relations — partly restate how the input moved rather than what the model learned. It is kept as
an explicit, opt-in setting for comparison, and only ever biases the encoder of the modality it
is computed from (the flow-derived bias never reaches ``mmt``'s texture encoder or ``hsta``'s frame
branch).

Blocks use :func:`torch.nn.functional.scaled_dot_product_attention` unless asked to keep the
weights (``need_weights=True``), where the softmax is computed explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from geomer.models.output import row_normalise


class MultiHeadAttention(nn.Module):
    """Multi-head (cross-)attention that returns its weights on request.

    The attention works at width ``D``; ``out_dim`` (default ``D``) is the width of the output
    projection (e.g. back to the width of the branch the query came from).

    Shapes:
        query ``[B, Lq, D]``, context ``[B, Lk, D]`` (defaults to ``query``: self-attention),
        key_padding_mask ``[B, Lk]`` bool, True = ignore that key,
        key_bias ``[B, Lk]`` float added to every query's logit for that key
        (:func:`movement_key_bias`) →
        output ``[B, Lq, out_dim]``, weights ``[B, H, Lq, Lk]`` or None.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, out_dim: int | None = None) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim if out_dim is None else out_dim)
        self.dropout = dropout

    def forward(
        self,
        query: torch.Tensor,
        context: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = False,
        key_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        context = query if context is None else context
        b, lq, d = query.shape
        lk = context.shape[1]
        q = self.q(query).view(b, lq, self.heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(context).view(b, lk, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        bias = None
        if key_padding_mask is not None:
            bias = torch.zeros(b, 1, 1, lk, dtype=q.dtype, device=q.device)
            bias = bias.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        if key_bias is not None:
            added = key_bias[:, None, None, :].to(q.dtype)
            bias = added if bias is None else bias + added
        drop = self.dropout if self.training else 0.0
        if need_weights:
            # scaling q ([L, d] per head) costs less than scaling the [L, L] scores
            scores = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)
            if bias is not None:
                scores = scores + bias
            weights = scores.softmax(dim=-1)
            mixed = F.dropout(weights, drop, self.training) @ v
        else:
            weights = None
            mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop)
        mixed = mixed.transpose(1, 2).reshape(b, lq, d)
        return self.out(mixed), weights


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: self-attention then an MLP, both residual; ``dropout`` in the
    MLP and, unless ``attention_dropout`` says otherwise, on the attention weights.

    Shapes: tokens ``[B, L, D]`` → tokens ``[B, L, D]``, weights ``[B, H, L, L]`` or None.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0,
                 attention_dropout: float | None = None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        # dropout of the attention weights (default: ``dropout``, the MLP's)
        self.attn = MultiHeadAttention(dim, heads, dropout if attention_dropout is None else attention_dropout)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )

    def forward(
        self,
        tokens: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = False,
        key_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        mixed, weights = self.attn(
            self.norm1(tokens),
            key_padding_mask=key_padding_mask,
            need_weights=need_weights,
            key_bias=key_bias,
        )
        tokens = tokens + mixed
        tokens = tokens + self.mlp(self.norm2(tokens))
        return tokens, weights


class TransformerEncoder(nn.Module):
    """A stack of :class:`TransformerBlock` returning every layer's attention when asked.

    Shapes: tokens ``[B, L, D]`` → tokens ``[B, L, D]`` (final LayerNorm applied),
    list of ``depth`` weights ``[B, H, L, L]`` (empty when ``need_weights`` is False).
    """

    def __init__(
        self, dim: int, depth: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0,
        attention_dropout: float | None = None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, mlp_ratio, dropout, attention_dropout) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(
        self,
        tokens: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = False,
        key_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        kept = []
        for block in self.blocks:
            tokens, weights = block(tokens, key_padding_mask, need_weights, key_bias)
            if weights is not None:
                kept.append(weights)
        return self.norm(tokens), kept


def attention_rollout(attn_per_layer: Sequence[torch.Tensor]) -> torch.Tensor:
    """Heads averaged, ``(A + I) / 2`` row-normalised, multiplied across layers.

    Shapes: each layer ``[B, H, L, L]`` (or ``[B, L, L]`` already head-averaged) → ``[B, L, L]``
    whose row i is how much the top-layer token i draws from each input token.
    """
    if not attn_per_layer:
        raise ValueError("attention_rollout needs the attention of at least one layer")
    rollout = None
    for attn in attn_per_layer:
        step = _rollout_step(attn)
        rollout = step if rollout is None else step @ rollout
    return rollout


def _rollout_step(attn: torch.Tensor) -> torch.Tensor:
    """One layer's ``Â = rownorm((mean_h A + I) / 2)``: ``[B, H, L, L]`` or ``[B, L, L]`` → ``[B, L, L]``.

    Computed as ``rownorm(sum_h A + H·I)``, the same matrix (the row normalisation cancels the
    factor ``1 / 2H``) with two fewer passes over it.
    """
    heads = attn.shape[1] if attn.dim() == 4 else 1
    step = attn.sum(dim=1) if attn.dim() == 4 else attn.clone()
    step.diagonal(dim1=-2, dim2=-1).add_(heads)
    return step / step.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def attention_relations(
    attn_per_layer: Sequence[torch.Tensor],
    token_component: torch.Tensor,
    num_components: int,
    summary_token: int | None = 0,
) -> torch.Tensor:
    """The one attention → relations rule shared by every transformer (see the module docstring).

    Args:
        attn_per_layer: self-attention weights of consecutive layers over the same tokens,
            each ``[B, H, L, L]`` (or ``[B, L, L]``).
        token_component: component id of each token, ``[L]`` or ``[B, L]`` long; -1 for tokens
            that belong to no component (summary tokens, padding).
        num_components: K.
        summary_token: index of the summary token whose rollout row weights the query tokens
            (the tokens' importance); None weights every component token equally.

    Shapes: → ``[B, K, K]``, every row non-negative and summing to 1 (uniform for a component
    without tokens or importance).

    The relations are a read-out, never part of a loss, so no gradient flows through them (the
    rollout and pooling are not recorded for backward while training).
    """
    with torch.no_grad():
        return _pooled_relations(attn_per_layer, token_component, num_components, summary_token)


def _pooled_relations(attn_per_layer, token_component, num_components, summary_token):
    if not attn_per_layer:
        raise ValueError("attention_rollout needs the attention of at least one layer")
    # The rollout R = Â_n ⋯ Â_1 ([B, L, L]) is never formed: only R S and the summary token's row
    # of R enter the relations, and Â_n (⋯ (Â_1 S)) and e_sᵀ Â_n ⋯ Â_1 cost L²·K and L² per layer
    # instead of L³ (equal up to float rounding).
    steps = [_rollout_step(attn).to(torch.float32) for attn in attn_per_layer]
    k = num_components
    ids = token_component.to(steps[0].device)
    ids = ids if ids.dim() == 2 else ids[None].expand(steps[0].shape[0], -1)
    member = ids >= 0
    if summary_token is None:
        importance = member.to(torch.float32)
    else:
        row = steps[-1][:, summary_token]  # [B, L]: the summary token's row of R
        for step in reversed(steps[:-1]):
            row = (row[:, None] @ step)[:, 0]
        importance = row * member
    importance = importance / importance.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    membership = F.one_hot(ids.clamp_min(0), k).to(torch.float32) * member[..., None]  # [B, L, K]
    reach = membership
    for step in steps:
        reach = step @ reach  # ends as R S [B, L, K]
    # Sᵀ diag(w) R S: token i's row of R scaled by its importance, summed per component pair
    pooled = (membership * importance[..., None]).transpose(1, 2) @ reach  # [B, K, K]
    return row_normalise(pooled)


def movement_key_bias(
    energy: torch.Tensor, node_mask: torch.Tensor | None = None, floor: float = 0.01
) -> torch.Tensor:
    """Log relative movement energy of each node token: the attention prior toward what moves.

    ``excess = relu(e − median(e))`` over the clip's nodes (the median node is the still
    background: head motion and noise move every node a little), ``bias = log(excess /
    mean(excess) + floor)``; a clip where nothing stands out gets a constant bias (no effect).
    Added to the attention logits for each key, it makes every token attend to moving tokens in
    proportion to their excess movement (``floor`` bounds the penalty of still tokens at
    ``log floor``, ≈ −4.6); the content logits re-weight on top of it.

    Shapes: energy ``[B, N]`` (non-negative), node_mask ``[B, N]`` bool (True: a node) → ``[B, N]``
    (0 at padding).
    """
    energy = energy.float()
    if node_mask is None:
        node_mask = torch.ones_like(energy, dtype=torch.bool)
    masked = energy.masked_fill(~node_mask, float("nan"))
    median = masked.nanmedian(dim=-1, keepdim=True).values.nan_to_num(0.0)
    excess = (energy - median).clamp_min(0.0) * node_mask
    mean = excess.sum(-1, keepdim=True) / node_mask.sum(-1, keepdim=True).clamp_min(1)
    bias = torch.log(excess / mean.clamp_min(1e-12) + floor)
    return bias.masked_fill(~node_mask, 0.0)


def mean_relations(*relations: torch.Tensor) -> torch.Tensor:
    """Average several [B, K, K] row-normalised relation matrices (stays row-normalised)."""
    return torch.stack(relations).mean(dim=0)
