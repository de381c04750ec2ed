"""The building blocks of DeRe-GRL: learnable adjacency, Action Decomposition, Relation
Reconstruction.

Each block is an ``nn.Module`` with the shapes in its docstring; :mod:`geomer.models.dere_grl`
assembles them into the model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geomer.models.output import row_normalise

from torch_geometric.nn import DenseGCNConv

RRM_FORMS = ("vector", "matrix")


def gcn_normalise(adjacency: Tensor) -> Tensor:
    """``DenseGCNConv``'s normalisation of a dense adjacency: self-loops set to 1, then
    ``D^-1/2 A D^-1/2`` with degrees clamped at 1.

    Shapes:
        - adjacency: [N, N]
        - output: [N, N]
    """
    eye = torch.eye(adjacency.shape[-1], dtype=adjacency.dtype, device=adjacency.device)
    with_loops = adjacency * (1 - eye) + eye
    scale = with_loops.sum(dim=-1).clamp(min=1).pow(-0.5)
    return scale[:, None] * with_loops * scale[None, :]


class SharedGraphConv(nn.Module):
    """A ``torch_geometric.nn.DenseGCNConv`` applied to a batch of graphs that share one
    adjacency, with the features laid out node-first.

    ``DenseGCNConv`` takes ``[B, N, F]`` and multiplies a (broadcast) ``[N, N]`` adjacency into
    every graph, which on a CPU costs a transposed copy per call. Node-first features
    ``[N, B, F]`` make the propagation one ``[N, N] × [N, B·F]`` product. The parameters and the
    arithmetic are the PyG layer's (``conv.lin``, ``conv.bias``; the adjacency normalised by
    :func:`gcn_normalise`, once per forward for all layers); a test checks equality with
    ``DenseGCNConv.forward``.

    Shapes:
        - x: [N, B, F_in], normalised adjacency: [N, N]
        - output: [N, B, F_out]
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = DenseGCNConv(in_channels, out_channels)

    def forward(self, x: Tensor, normalised_adjacency: Tensor) -> Tensor:
        out = self.conv.lin(x)
        out = torch.matmul(normalised_adjacency, out.reshape(out.shape[0], -1)).reshape(out.shape)
        return out + self.conv.bias if self.conv.bias is not None else out


class LearnableAdjacency(nn.Module):
    """The prior face-graph adjacency plus a learned symmetric, non-negative N×N weight.

    ``A = A_prior + (softplus(W) + softplus(W)ᵀ) / 2``, with ``A_prior`` the 0/1 adjacency of the
    FaceGraph edges. The learned part starts small (``softplus(init)`` per pair) so training
    begins from the prior graph and adds long-range links (e.g. brow ↔ mouth) only where they
    help. Self-loops and the symmetric degree normalisation are left to the GCN layer
    (``DenseGCNConv``), so the learned weights are normalised together with the prior ones.

    Shapes:
        - edge_index: [2, 2E] (both directions)
        - output: [N, N]
    """

    def __init__(self, edge_index: Tensor, num_nodes: int, learn: bool = True, init: float = -5.0):
        super().__init__()
        prior = torch.zeros(num_nodes, num_nodes)
        prior[edge_index[0], edge_index[1]] = 1.0
        prior = torch.maximum(prior, prior.T)  # undirected whatever the input lists
        self.register_buffer("prior", prior)
        self.learn = learn
        self.logits = nn.Parameter(torch.full((num_nodes, num_nodes), float(init))) if learn else None

    def learned(self) -> Tensor:
        """The learned, symmetric, non-negative part [N, N] (zeros when not learned)."""
        if self.logits is None:
            return torch.zeros_like(self.prior)
        weight = F.softplus(self.logits)
        return (weight + weight.T) / 2

    def forward(self) -> Tensor:
        return self.prior + self.learned()


class ActionDecomposition(nn.Module):
    """Action Decomposition Module: per component k, a map matrix M_k [m × n_k] turns the
    n_k node features of that component into m action features.

    All K map matrices live in one block matrix ``M`` [K·m, N] whose row ``a`` may only weigh
    nodes of component ``a // m`` (a fixed mask zeroes the rest), so the whole module is one
    matrix product. Rows start at the component mean with a random perturbation so the m actions
    of a component differ from the first step.

    Shapes:
        - component: [N] component id of each node, in 0..K-1
        - input: [B, N, d], or node-first [N, B, d] with ``node_first=True``
        - output: [B, K·m, d] (actions of component k at rows k·m … k·m + m - 1), or
          [K·m, B, d] with ``node_first=True``
    """

    def __init__(self, component: Tensor, num_components: int, actions_per_component: int):
        super().__init__()
        component = torch.as_tensor(component, dtype=torch.long)
        self.num_components = int(num_components)
        self.actions_per_component = int(actions_per_component)
        owner = torch.arange(self.num_components).repeat_interleave(self.actions_per_component)
        mask = (owner[:, None] == component[None, :]).float()  # [K·m, N]
        sizes = mask.sum(dim=1, keepdim=True)
        if bool((sizes == 0).any()):
            empty = sorted({int(k) for k in owner[(sizes[:, 0] == 0)]})
            raise ValueError(f"components {empty} have no nodes in the graph")
        self.register_buffer("mask", mask)
        init = mask / sizes * (1.0 + 0.5 * torch.randn_like(mask))
        self.weight = nn.Parameter(init)

    @property
    def num_actions(self) -> int:
        return self.num_components * self.actions_per_component

    def map_matrix(self) -> Tensor:
        """The masked block matrix [K·m, N] (zero outside each action's own component)."""
        return self.weight * self.mask

    def map_matrices(self) -> list[Tensor]:
        """The per-component map matrices M_k, each [m, n_k] (one per component; the abstract says
        only "the map matrix", so this shape is geomer's reading)."""
        matrix = self.map_matrix()
        m = self.actions_per_component
        return [
            matrix[k * m : (k + 1) * m][:, self.mask[k * m].bool()]
            for k in range(self.num_components)
        ]

    def forward(self, nodes: Tensor, node_first: bool = False) -> Tensor:
        if not node_first:
            return torch.matmul(self.map_matrix(), nodes)
        flat = torch.matmul(self.map_matrix(), nodes.reshape(nodes.shape[0], -1))
        return flat.reshape(self.num_actions, *nodes.shape[1:])


class RelationReconstruction(nn.Module):
    """Relation Reconstruction Module: learned weights over all K·m action features, and the
    action-level relation matrix P [K·m, K·m] the component relations are read from.

    Two forms (``form``):

    - ``"vector"``: one weight per action feature, conditioned on the input and normalised
      over all K·m actions: ``w = softmax_a(u_a · f_a + b_a)`` with a learned vector ``u_a`` and
      bias ``b_a`` per action; the reconstructed features are ``K·m · w_a f_a``. Because the
      weights compete (they sum to 1), the actions that carry the expression take the weight.
      Two actions relate as much as both are weighted: ``P_ab = w_a w_b`` (co-activation, the
      action-level analogue of ``a aᵀ``).
    - ``"matrix"``: a (K·m)×(K·m) relation matrix, a learned static part plus input-conditioned
      attention: ``P = softmax_b(S_ab + (f W_q)_a · (f W_k)_b / √d)`` (each row sums to 1); the
      reconstructed features are ``f_a + Σ_b P_ab (f_b W_v)``.

    Both forms accept a ``prior`` [B, K·m] of log-weights added to the scores (DeRe-GRL passes the
    log movement evidence of each action, so actions that do not move get little weight); with a
    prior the vector form's learned score is bounded, ``learned_bound·tanh(u_a · f_a + b_a)``, so
    it re-weights the prior by at most e^±learned_bound.

    :func:`component_relations` turns P into the K×K ``relations``.

    Shapes:
        - input: [B, K·m, d]
        - output: (reconstructed [B, K·m, d], P [B, K·m, K·m] with entries in [0, 1])
    """

    def __init__(self, num_actions: int, width: int, form: str = "vector", learned_bound: float = 0.5):
        super().__init__()
        self.learned_bound = float(learned_bound)
        if form not in RRM_FORMS:
            raise ValueError(f"unknown RRM form {form!r}; known: {', '.join(RRM_FORMS)}")
        self.form = form
        self.width = width
        if form == "vector":
            self.gate_weight = nn.Parameter(torch.randn(num_actions, width) / math.sqrt(width))
            self.gate_bias = nn.Parameter(torch.zeros(num_actions))
        else:
            self.static = nn.Parameter(torch.zeros(num_actions, num_actions))
            self.query = nn.Linear(width, width, bias=False)
            self.key = nn.Linear(width, width, bias=False)
            self.value = nn.Linear(width, width)

    def forward(self, actions: Tensor, prior: Tensor | None = None) -> tuple[Tensor, Tensor]:
        count = actions.shape[1]
        if self.form == "vector":
            weights = self.action_weights(actions, prior)
            pairs = weights[:, :, None] * weights[:, None, :]
            return actions * (count * weights)[..., None], pairs
        scores = torch.matmul(self.query(actions), self.key(actions).transpose(1, 2))
        scores = self.static + scores / math.sqrt(self.width)
        if prior is not None:
            scores = scores + prior[:, None, :]  # every action attends more to moving ones
        pairs = torch.softmax(scores, dim=-1)
        return actions + torch.matmul(pairs, self.value(actions)), pairs

    def action_weights(self, actions: Tensor, prior: Tensor | None = None) -> Tensor:
        """Vector form: the weight of every action feature, summing to 1 per sample.

        ``prior`` (log-weights, e.g. the log movement energy of each action) is added to the
        learned scores before the softmax.

        Shapes:
            - actions: [B, K·m, d], prior: [B, K·m] or None
            - output: [B, K·m]
        """
        if self.form != "vector":
            raise ValueError("action_weights exists for the vector RRM form only")
        scores = (actions * self.gate_weight).sum(-1) + self.gate_bias
        if prior is None:
            return torch.softmax(scores, dim=-1)
        # bounded learned term: with a prior it re-weights actions by at most e^±learned_bound
        return torch.softmax(self.learned_bound * torch.tanh(scores) + prior, dim=-1)


def component_relations(pairs: Tensor, num_components: int, self_weight: float = 0.0) -> Tensor:
    """Component relations from action-level relations: the mean of P over each component
    pair's block of actions, plus ``self_weight`` on the diagonal, then each row scaled to sum
    to 1.

    With the vector RRM (``P = w wᵀ``) and ``self_weight`` = the pair weight of uniform action
    weights, a component the model does not weight keeps (almost) only its self-relation, and a
    weighted component relates to the other weighted ones in proportion to their weights.

    Shapes:
        - pairs: [B, K·m, K·m], non-negative
        - output: [B, K, K], non-negative, rows sum to 1
    """
    batch, actions, _ = pairs.shape
    m = actions // num_components
    blocks = pairs.reshape(batch, num_components, m, num_components, m).mean(dim=(2, 4))
    if self_weight:
        blocks = blocks + self_weight * torch.eye(num_components, dtype=blocks.dtype, device=blocks.device)
    return row_normalise(blocks)
