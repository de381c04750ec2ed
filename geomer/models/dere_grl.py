"""DeRe-GRL: decomposition and reconstruction-based graph representation learning.

Paper: Jinsheng Wei, Haoyu Chen, Guanming Lu, Jingjie Yan, Yue Xie, Guoying Zhao, "Prior
Information Based Decomposition and Reconstruction Learning for Micro-Expression Recognition",
IEICE Transactions on Information and Systems E106-D(10):1752-1756, 2023 (arXiv:2303.01776).

What the abstract fixes (the only part of the paper we had access to):

- the prior: the micro-expression class can be inferred from the relations between the actions
  of the face's key components;
- a graph-model backbone extracts *geometric movement features*;
- the **Action Decomposition Module (ADM)** divides those features by facial key component into
  sub-features and learns a *map matrix* that maps each sub-feature to several *action features*;
- the **Relation Reconstruction Module (RRM)** learns *weights over all action features* to build
  the relations between them.

Reimplementation choices (not from the paper; its numbers are not reproduced here because we
could not read them):

- input: the aligned landmark displacement trajectory from onset (``geometry`` [N, T, 2],
  resampled to ``steps``; with ``center=True`` the mean over nodes is removed at each step so that
  residual head translation does not look like an action) and, with ``use_flow``, the optical-flow
  statistics at the nodes (``flow_stats`` [N, S, 12]); clips with no onset landmarks
  (``megc2019-flow``) have no ``geometry``, and then the movement features are the flow sampled at
  the apex landmarks (``flow_stats``), whatever ``use_flow`` says;
- **the whole-face flow image read at the nodes** (``flow_image_channels`` c, 8 by default; 0
  turns it off): where a clip carries its flow image (``flow_image`` [3, F, F], u, v, strain) and
  the nodes' positions in it (``flow_image_points``), each node reads the 5×5 flow pixels
  centred on it (bilinear) through a small CNN (two 3×3 convolutions with BatchNorm and ReLU,
  5×5 → 1×1, c channels), encoded like the other node signals. Why: at a 256-px aligned face,
  node patches of 8–32 px cover 1–3.5 pixels of the composite's 28×28 flow image, so
  ``flow_stats`` alone saw little of what the image holds; patches sized in flow pixels read it
  at its own resolution, and every feature stays on a node, so the ADM's per-component
  decomposition and the relations stay per component. A node's patch reaches up to 3 flow
  pixels from it, so near a border between two components' regions it also reads a little of
  the neighbour's; occlusion neutralises by region (``geomer.relations.neutralise``), so such a
  node's input changes slightly when its neighbour is occluded. Reading the image was chosen on
  validation subjects drawn from each LOSO fold's training subjects (README, real-data results),
  not on a test fold; its size (5×5 patches, 8 channels) for speed;
- **each component's region of the flow image, read pixel by pixel** (``flow_region_channels``
  c, 8 by default since 0.2.11; 0 turns it off): every pixel of the flow image is standardised
  with the training fold's statistics of that pixel and weighted by c learned weights of its own,
  and the weighted pixels are summed over each facial component's region
  (``flow_image_component``: the component of the pixel's nearest node, off-face pixels left
  out), so each component gets a linear read-out of its part of the image
  (:class:`FlowRegionReadout`), a node signal of every node of the component. Why: on the
  composite a linear classifier on the whole image scores above the flow at the nodes (README,
  "Per-dataset diagnosis": much of the motion lies between and around the nodes, which the 5×5
  patches miss), and a sum split by region keeps every feature on its component, so the ADM's
  decomposition, the relations and the occlusion rule (which neutralises exactly these regions)
  stay per component. Chosen on validation subjects drawn from the LOSO folds' training
  subjects; the hold-out protocol showed no gain (README, "Real data"). Only clips without a
  landmark trajectory (``geometry``; the preprocessed composite) read it: on the small synthetic
  tuning draw, where the trajectories carry the motion, its per-pixel weights cost UF1 and
  occlusion agreement (README, "Real data"); for clips with a trajectory the model is that of
  0.2.10 with the same initial weights (the read-out's parts are made last; the random stream
  after them, the dropout masks', differs). Under mixup the mixed image is read with the first
  clip's regions;
- inputs are normalised by BatchNorm inside the model (displacements are ~0.01 IOD), so the
  statistics come from the training fold only;
- backbone: two streams on the region graph, each 1–4 ``torch_geometric.nn.DenseGCNConv`` layers
  with residual connections over one **learnable adjacency** (prior FaceGraph adjacency + a learned
  symmetric non-negative N×N weight, :class:`LearnableAdjacency`): the *node* stream starts from
  each node's own movement, the *edge* stream from relative movement along the graph's edges
  (``x_j - x_i`` of the node signals, displacement trajectories and flow statistics alike, plus
  ``edge_attr`` when the data have it) averaged into the receiving node; the two streams are
  concatenated and projected, and a learned per-node embedding tells nodes apart;
- ADM: one map matrix M_k [m × n_k] per component (``actions`` = m), as a masked block matrix;
- RRM: ``"vector"`` (one input-conditioned weight per action feature, a softmax over all K·m
  actions) or ``"matrix"`` (a (K·m)×(K·m) relation matrix = learned static part +
  input-conditioned attention), see :class:`RelationReconstruction`;
- **relations** (intrinsic: the RRM's own weights, nothing else by default): the action-level
  relation matrix P (vector form: ``P = w wᵀ``, the co-activation of the weighted actions;
  matrix form: the attention matrix, rows summing to 1) is averaged over each component pair's
  block of actions and each row is scaled to sum to 1
  (:func:`~geomer.models.dere_grl_modules.component_relations`). For the vector form the block
  mean is ``W_k W_l / m²`` (``W_k`` the component's total weight), so every row is the
  distribution of the RRM weight over the components. ``self_relation`` (default 0, a display
  setting) adds ``self_relation / m²`` on the diagonal before the rows are normalised, which
  keeps the row of a component the RRM does not weight on itself; it is not tuned;
- **movement prior** (``movement_prior``, an explicit setting, **off by default**): the RRM
  scores get each action's *movement evidence*, ``log(activity_a / mean_a activity)``
  (:meth:`DeReGRL.action_prior`: the optical-flow magnitude at the node averaged over scales
  when the model reads flow, else the RMS over time of the landmark displacement with the
  residual head motion removed; minus a per-node noise floor, the running median over training
  clips; pooled per action by the absolute ADM map weights), and the learned vector-form score is
  bounded (``learned_bound·tanh``, so it re-weights the evidence by at most e^±learned_bound).
  With the prior on, the RRM weights — and so the relations — are mostly that hand-made input
  statistic rather than what the model learned, which is why it is off; ``learned_bound`` (0.5)
  only acts with the prior on, and its value was chosen by scoring relations against the
  synthetic ground truth of an earlier generator, so prior-on relations are not an independent
  measurement. Without the prior the model needs nothing else to learn: its inputs are
  standardised by BatchNorm with training-fold statistics (above);
- layout: node-first tensors ``[N, B, d]`` so that a batch sharing one adjacency is propagated
  with one matrix product (:class:`~geomer.models.dere_grl_modules.SharedGraphConv`, the
  ``DenseGCNConv`` parameters and arithmetic);
- classifier: the reconstructed action features, flattened → linear → ReLU (the ``embedding``)
  → dropout → linear (the logits);
- training budget (0.2.10): 200 optimiser steps per fold (``train_defaults``), as for the
  transformers, rounded up to whole epochs of the fold's training set. The earlier 20 epochs
  gave a fold of a small dataset few steps (40 for 54 training clips) and the model did not
  learn there. Chosen on the synthetic tuning seed and on a small synthetic draw of its own; on
  the composite's cross-dataset hold-out the same as 20 epochs (README, "Models").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import scatter

from geomer.errors import GeomerError, check_shape
from geomer.features.sampling import NUM_FLOW_STATS as FLOW_STATS
from geomer.features.types import FeatureSettings
from geomer.models.dere_grl_modules import (
    RRM_FORMS,
    ActionDecomposition,
    LearnableAdjacency,
    RelationReconstruction,
    SharedGraphConv,
    component_relations,
    gcn_normalise,
)
from geomer.models.flow_image import FlowRegionReadout, flow_image_patches
from geomer.models.settings import check_at_least, check_probability
from geomer.models.output import ModelOutput
from geomer.models.registry import register_model

STREAMS = ("node", "edge")
NOISE_MOMENTUM = 0.1  # running per-node noise floor (see DeReGRL.node_activity)
FLOW_IMAGE_PATCH = 5  # flow pixels on a side read around each node (two 3×3 convolutions: 5 → 1)


class _PatchStem(nn.Sequential):
    """Two 3×3 convolutions (each with BatchNorm and ReLU) from a node's ``FLOW_IMAGE_PATCH``²
    flow pixels down to one pixel of ``c`` channels.

    The second convolution sees its whole 3×3 input once, so it is computed as the linear map of
    the flattened input it is: the same function and parameters (and state-dict keys), without
    the convolution kernel's cost for a one-pixel output (README, "Speed").

    Shapes: [M, 3, P, P] → [M, c]
    """

    def __init__(self, channels: int):
        super().__init__(
            nn.Conv2d(3, channels, kernel_size=3), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=3), nn.BatchNorm2d(channels), nn.ReLU(),
        )

    def forward(self, patches: Tensor) -> Tensor:
        conv, norm, relu, last_conv, last_norm, last_relu = self
        hidden = relu(norm(conv(patches))).flatten(1)  # [M, c·3·3]
        out = F.linear(hidden, last_conv.weight.flatten(1), last_conv.bias)
        return last_relu(last_norm(out[..., None, None])).flatten(1)


class _Encoder(nn.Module):
    """BatchNorm (statistics from training batches only) then a linear map to the width.

    Shapes:
        - input: [..., F]
        - output: [..., width]
    """

    def __init__(self, features: int, width: int):
        super().__init__()
        # no affine part: the linear map that follows has its own scale and shift
        self.norm = nn.BatchNorm1d(features, affine=False)
        self.linear = nn.Linear(features, width)

    def forward(self, x: Tensor) -> Tensor:
        normalised = self.norm(x.reshape(-1, x.shape[-1])).reshape(x.shape)
        return self.linear(normalised)


class _Stream(nn.Module):
    """Residual graph-convolution layers (DenseGCNConv, see SharedGraphConv) over a shared
    normalised adjacency.

    Shapes:
        - x: [N, B, width] (node-first), normalised adjacency: [N, N]
        - output: [N, B, width]
    """

    def __init__(self, width: int, layers: int):
        super().__init__()
        self.convs = nn.ModuleList(SharedGraphConv(width, width) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(layers))

    def forward(self, x: Tensor, adjacency: Tensor) -> Tensor:
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = x + F.relu(norm(conv(x, adjacency)))
        return x


@register_model("dere-grl")
class DeReGRL(nn.Module):
    """DeRe-GRL: graph backbone → Action Decomposition → Relation Reconstruction → classifier.

    See the module docstring for what comes from the paper and what is a reimplementation
    choice, and for the rule that turns RRM weights into ``relations``.

    Settings:
        actions: m, action features per component.
        rrm: RRM form, ``"vector"`` or ``"matrix"``.
        hidden: node / action feature width d.
        layers: message-passing layers per stream.
        embedding: width D of the embedding before the classifier.
        dropout: dropout on the embedding, before the classifier.
        use_flow: add ``flow_stats`` beside the displacements (always used without geometry).
        streams: which backbone streams run, a subset of ``("node", "edge")`` (``geomer train
            --set streams=node,edge``).
        center: remove the per-step mean displacement over nodes (residual head translation).
        learn_adjacency: add the learned N×N weight to the prior adjacency.
        movement_prior: add each action's log movement evidence (activity above the noise
            floor, relative to the clip's mean) to the RRM scores (off by default: a hand-made
            input statistic, see the module docstring).
        learned_bound: the vector-form learned score is ``learned_bound·tanh(·)`` when the
            prior is on (re-weights the evidence by at most e^±learned_bound); unused without it.
        self_relation: the vector-form self term on the diagonal, relative to a component
            that carries all the weight (a display setting, default 0; see the module
            docstring).
        flow_image_channels: c, the channels of the small CNN that reads the 5×5 flow pixels
            around every node in the whole-face flow image (0 turns it off; see the module
            docstring).
        flow_region_channels: c, the learned weights of every flow-image pixel, summed over
            each component's region (:class:`FlowRegionReadout`; 0 turns it off).

    Input geometry (from the ``features`` settings): T = ``features.steps``, the displacement
    trajectory's steps (data of another T are resampled to it); S = ``len(features.scales)``.

    Shapes:
        - batch.geometry: [B·N, T, 2] (optional), batch.flow_stats: [B·N, S, 12] (optional),
          batch.flow_image: [B, 3, F, F] with batch.flow_image_points: [B·N, 2] (optional),
          batch.edge_index: [2, B·2E], batch.edge_attr: [B·2E, 2] (optional)
        - output: logits [B, C], relations [B, K, K], embedding [B, D]
    """

    paper = (
        "Wei, Chen, Lu, Yan, Xie, Zhao: Prior Information Based Decomposition and Reconstruction "
        "Learning for Micro-Expression Recognition, IEICE Trans. Inf. & Syst. E106-D(10), 2023, "
        "arXiv:2303.01776"
    )
    requires: tuple[str, ...] = ()
    requires_any: tuple[tuple[str, ...], ...] = (("geometry", "flow_stats"),)
    small_config = {"hidden": 16, "actions": 2, "layers": 2, "embedding": 32}
    # The engine's recipe for this model (``geomer train`` / ``bench train`` read it; measured
    # figures are in the README's models table). Its augmentation adds label smoothing and
    # (0.2.10) mixup to the engine's default ``flip,mirror``: chosen on the synthetic tuning seed
    # and the composite's cross-dataset hold-out protocol (README, "Relations" and "Real data"),
    # never on a LOSO test fold; rotation and scale added nothing there and cost time, and
    # hsta and mubert did not gain from smoothing or mixup, so the recipe is this model's, not
    # the engine's (mmt smooths too since 0.2.14). The budget is 200 optimiser steps per fold
    # (0.2.10; before, 20 epochs), as for the transformers: an epoch budget trains a small
    # dataset far less (README, "Models").
    train_defaults = {"steps": 200, "batch_size": 32, "lr": 3e-3, "weight_decay": 1e-2,
                      "augment": "flip,mirror,smooth,mixup=0.4"}
    # checkpoints of geomer before 0.2.2 were trained without the flow-image stem,
    # and before 0.2.11 without the region read-out
    earlier_defaults = {"0.2.2": {"flow_image_channels": 0}, "0.2.11": {"flow_region_channels": 0}}
    # Data attributes forward() reads when present (the engine may drop the others before
    # collating; texture and sequence tensors dominate collation time).
    inputs: tuple[str, ...] = (
        "geometry", "flow_stats", "flow_image", "flow_image_points", "flow_image_component", "edge_attr",
        "edge_index", "y"
    )

    def __init__(
        self,
        num_classes: int,
        graph,
        *,
        features: FeatureSettings = FeatureSettings(),
        actions: int = 4,
        rrm: str = "vector",
        hidden: int = 16,
        layers: int = 2,
        embedding: int = 64,
        dropout: float = 0.2,
        use_flow: bool = True,
        streams: Sequence[str] = STREAMS,
        center: bool = True,
        learn_adjacency: bool = True,
        movement_prior: bool = False,
        learned_bound: float = 0.5,
        self_relation: float = 0.0,
        flow_image_channels: int = 8,
        flow_region_channels: int = 8,
    ):
        super().__init__()
        streams = tuple(streams)
        if rrm not in RRM_FORMS:
            raise GeomerError(f"dere-grl: unknown rrm {rrm!r}; choose one of {', '.join(RRM_FORMS)}")
        if not streams or any(s not in STREAMS for s in streams) or len(set(streams)) != len(streams):
            raise GeomerError(f"dere-grl: streams must be a non-empty subset of {STREAMS}, got {streams}")
        check_at_least("dere-grl", 1, actions=actions, hidden=hidden, layers=layers, embedding=embedding)
        check_at_least("dere-grl", 0, flow_image_channels=flow_image_channels,
                       flow_region_channels=flow_region_channels, learned_bound=learned_bound,
                       self_relation=self_relation)
        check_probability("dere-grl", dropout=dropout)

        self.num_classes = int(num_classes)
        self.num_nodes = int(graph.num_nodes)
        self.num_components = int(graph.num_components)
        self.component_names = tuple(getattr(graph, "component_names", ()))
        self.graph_name = str(getattr(graph, "name", ""))
        self.streams = streams
        self.use_flow = bool(use_flow)
        self.steps = features.steps
        self.scales = len(features.scales)
        self.center = bool(center)
        self.dropout = float(dropout)
        self.movement_prior = bool(movement_prior)
        width = int(hidden)

        # Encoders for every input the data may carry; forward sums those that are present,
        # so one model serves both the landmark datasets and megc2019-flow.
        signal_features = {"geometry": 2 * self.steps, "flow": FLOW_STATS * self.scales}
        channels = int(flow_image_channels)
        # the flow image read at each node (see _flow_image_signal)
        self.flow_image_stem = _PatchStem(channels) if channels else None
        if channels:
            signal_features["flow_image"] = channels
        self.node_encoders = nn.ModuleDict(
            {name: _Encoder(size, width) for name, size in signal_features.items()}
        ) if "node" in streams else None
        self.edge_encoders = nn.ModuleDict(
            {name: _Encoder(size, width) for name, size in {**signal_features, "edge_attr": 2}.items()}
        ) if "edge" in streams else None
        self.node_embedding = nn.Parameter(torch.zeros(self.num_nodes, width))  # tells nodes apart
        nn.init.normal_(self.node_embedding, std=0.1)

        self.adjacency = LearnableAdjacency(
            torch.as_tensor(graph.edge_index, dtype=torch.long), self.num_nodes, learn=learn_adjacency
        )
        prior = self.adjacency.prior
        self.register_buffer("neighbour_mean", prior / prior.sum(dim=1, keepdim=True).clamp_min(1.0))
        self.stream_layers = nn.ModuleDict({s: _Stream(width, int(layers)) for s in streams})
        self.fuse = nn.Linear(width * len(streams), width)

        self.adm = ActionDecomposition(
            torch.as_tensor(graph.component, dtype=torch.long), self.num_components, int(actions)
        )
        self.rrm = RelationReconstruction(self.adm.num_actions, width, rrm, learned_bound=learned_bound)
        # vector form: the block mean of w wᵀ is W_k W_l / m² (W_k the component's total
        # weight), so self_relation / m² on the diagonal reads as "W_k W_l + self_relation·δ_kl":
        # a component with W_k ≪ self_relation relates mainly to itself (see
        # component_relations); the matrix form's rows already sum to 1
        self._self_weight = float(self_relation) / int(actions) ** 2 if rrm == "vector" else 0.0
        # movement evidence: per-node noise floor (running, training batches only) and the
        # rigid fields (scaling P, rotation P⊥ of the centred template) removed before measuring
        self.register_buffer("noise_floor", torch.zeros(self.num_nodes))
        self.register_buffer("noise_batches", torch.zeros((), dtype=torch.long))
        template = torch.as_tensor(graph.template, dtype=torch.float32)
        template = template - template.mean(dim=0)
        rotated = torch.stack([-template[:, 1], template[:, 0]], dim=1)
        basis = torch.stack([template, rotated])
        self.register_buffer("rigid_basis", basis / basis.flatten(1).norm(dim=1)[:, None, None])
        self.embed = nn.Linear(self.adm.num_actions * width, int(embedding))
        self.classifier = nn.Linear(int(embedding), self.num_classes)

        # the region read-out and its encoders are made last, so every other part starts from
        # the initial weights of 0.2.10: for clips with a landmark trajectory, which do not read
        # it, the model is that of 0.2.10
        region = int(flow_region_channels)
        self.flow_region = FlowRegionReadout(features.flow_image_size, region, self.num_components, "dere-grl") if region else None
        self.register_buffer("node_component", torch.as_tensor(graph.component, dtype=torch.long),
                             persistent=False)
        for encoders in (self.node_encoders, self.edge_encoders):
            if encoders is not None and region:
                encoders["flow_region"] = _Encoder(region, width)

    # -- inputs ---------------------------------------------------------------------------

    def _node_signals(self, batch) -> dict[str, Tensor]:
        """The per-node movement signals present in ``batch``, flattened to [B·N, F]."""
        signals: dict[str, Tensor] = {}
        geometry = getattr(batch, "geometry", None)
        flow = getattr(batch, "flow_stats", None)
        if geometry is None and flow is None:
            raise GeomerError(
                "dere-grl needs node movement: the batch has neither 'geometry' nor 'flow_stats'"
            )
        self._num_graphs(batch, (geometry if geometry is not None else flow).shape[0])
        if geometry is not None:
            geometry = geometry.float()
            check_shape(geometry, ("B·N", "T", 2), "dere-grl: geometry")
            if geometry.shape[1] != self.steps:
                # Resampling keeps a model usable on data cached with another T.
                geometry = F.interpolate(
                    geometry.transpose(1, 2), size=self.steps, mode="linear", align_corners=True
                ).transpose(1, 2)
            if self.center:
                per_graph = geometry.reshape(-1, self.num_nodes, self.steps, 2)
                geometry = per_graph - per_graph.mean(dim=1, keepdim=True)
            signals["geometry"] = geometry.reshape(-1, 2 * self.steps)
        if flow is not None and (self.use_flow or geometry is None):
            flow = flow.float()
            check_shape(flow, ("B·N", self.scales, FLOW_STATS), "dere-grl: flow_stats",
                        hint=f" (built for {self.scales} feature scales)")
            signals["flow"] = flow.reshape(flow.shape[0], -1)
        image_signal = self._flow_image_signal(batch)
        if image_signal is not None:
            signals["flow_image"] = image_signal
        region_signal = self._flow_region_signal(batch)
        if region_signal is not None:  # clips with a trajectory do not read it (module docstring)
            signals["flow_region"] = region_signal
        return signals

    def _flow_image_signal(self, batch) -> Tensor | None:
        """The whole-face flow image read at every node (:func:`flow_image_patches`, the
        ``FLOW_IMAGE_PATCH``² flow pixels centred on the node) through the stem; None when the
        model has no stem or the batch has no flow image with node positions.

        Shapes: batch.flow_image [B, 3, F, F], batch.flow_image_points [B·N, 2] →
        [B·N, flow_image_channels]
        """
        if self.flow_image_stem is None:
            return None
        patches = flow_image_patches(batch, self.num_nodes, FLOW_IMAGE_PATCH, "dere-grl")
        if patches is None:
            return None
        return self.flow_image_stem(patches.flatten(0, 1))  # [B·N, c]

    def _flow_region_signal(self, batch) -> Tensor | None:
        """The region read-out of each node's component (:meth:`FlowRegionReadout.per_node`:
        None without the read-out, a flow image with regions, or for clips with a trajectory).

        Shapes: batch.flow_image [B, 3, F, F], batch.flow_image_component [B, F, F] →
        [B·N, flow_region_channels]
        """
        per_node = None if self.flow_region is None else self.flow_region.per_node(batch, self.node_component)
        return None if per_node is None else per_node.flatten(0, 1)

    def _num_graphs(self, batch, num_rows: int) -> int:
        if num_rows % self.num_nodes:
            raise GeomerError(
                f"dere-grl was built for graphs of {self.num_nodes} nodes ({self.graph_name or 'FaceGraph'}), "
                f"but the batch has {num_rows} node rows"
            )
        graphs = num_rows // self.num_nodes
        declared = getattr(batch, "num_graphs", graphs)
        if declared != graphs:
            raise GeomerError(
                f"dere-grl was built for graphs of {self.num_nodes} nodes, but the batch has "
                f"{declared} graphs and {num_rows} nodes"
            )
        return graphs

    # -- model ----------------------------------------------------------------------------

    def _neighbour_difference(self, signal: Tensor) -> Tensor:
        """Mean over each node's prior neighbours of (x_j - x_i).

        Shapes:
            - signal: [N, B, F] (node-first)
            - output: [N, B, F]
        """
        flat = signal.reshape(self.num_nodes, -1)
        return (torch.matmul(self.neighbour_mean, flat) - flat).reshape(signal.shape)

    def backbone(self, batch) -> Tensor:
        """Graph features of every node after message passing, node-first.

        Shapes:
            - output: [N, B, hidden]
        """
        flat = self._node_signals(batch)
        rows = next(iter(flat.values())).shape[0]
        graphs = rows // self.num_nodes
        # Node-first layout: every graph shares the adjacency, so propagation and the ADM are
        # single matrix products (see SharedGraphConv).
        signals = {
            name: value.reshape(graphs, self.num_nodes, -1).transpose(0, 1).contiguous()
            for name, value in flat.items()
        }
        adjacency = gcn_normalise(self.adjacency())
        embedding = self.node_embedding[:, None, :]
        outputs = []
        if self.node_encoders is not None:
            x = sum(self.node_encoders[name](value) for name, value in signals.items())
            outputs.append(self.stream_layers["node"](x + embedding, adjacency))
        if self.edge_encoders is not None:
            # Relative movement along the prior edges, averaged into the receiving node:
            # mean_j (x_j - x_i) = (P x)_i - x_i with P the row-normalised prior adjacency. One
            # dense product instead of per-edge gathers keeps a training step in milliseconds.
            relative = [
                self.edge_encoders[name](self._neighbour_difference(value))
                for name, value in signals.items()
            ]
            edge_attr = getattr(batch, "edge_attr", None)
            if edge_attr is not None:
                source, target = batch.edge_index
                check_shape(edge_attr, (source.shape[0], 2), "dere-grl: edge_attr",
                            hint=f" for {source.shape[0]} edges")
                incoming = scatter(edge_attr.float(), target, dim=0, dim_size=rows, reduce="mean")
                incoming = incoming.reshape(graphs, self.num_nodes, 2).transpose(0, 1)
                relative.append(self.edge_encoders["edge_attr"](incoming))
            outputs.append(self.stream_layers["edge"](sum(relative) + embedding, adjacency))
        return F.relu(self.fuse(torch.cat(outputs, dim=-1)))

    def _rigid_residual(self, geometry: Tensor) -> Tensor:
        """Displacements with each step's residual head motion taken out: the translation (the
        mean over nodes) and, to first order, the rotation and scaling about the template
        centroid (projections on the orthogonal fields ``P`` and ``P⊥`` of the centred template).

        Shapes:
            - geometry: [B, N, T, 2]
            - output: [B, N, T, 2]
        """
        residual = geometry - geometry.mean(dim=1, keepdim=True)
        for basis in (self.rigid_basis[0], self.rigid_basis[1]):  # each [N, 2], unit norm
            coefficient = torch.einsum("bntk,nk->bt", residual, basis)
            residual = residual - coefficient[:, None, :, None] * basis[None, :, None, :]
        return residual

    def raw_node_activity(self, batch) -> Tensor:
        """Per node, how much it moves, linear in the movement's amplitude: the optical-flow
        magnitude at the node (``flow_stats`` mean magnitude, averaged over scales) when the
        model reads flow (``use_flow``, or no geometry); otherwise the RMS over time of the
        landmark displacement after the residual head motion is removed
        (:meth:`_rigid_residual`).

        Flow first because it is the cleaner evidence (tracked landmarks jitter, the contour
        most).

        Shapes:
            - output: [B, N]
        """
        geometry = getattr(batch, "geometry", None)
        flow = getattr(batch, "flow_stats", None)
        if flow is not None and (self.use_flow or geometry is None):
            return flow.float()[..., 2].abs().mean(-1).reshape(-1, self.num_nodes)
        geometry = geometry.float().reshape(-1, self.num_nodes, geometry.shape[1], 2)
        return self._rigid_residual(geometry).pow(2).sum(-1).mean(-1).sqrt()

    def node_activity(self, batch) -> Tensor:
        """:meth:`raw_node_activity` above each node's noise floor, ``relu(raw - floor)``.

        The floor is the activity of the node in a typical clip (tracker jitter: dlib's contour
        points jitter about twice as much as the inner points, so without it the contour looks
        as active as a moving mouth): in training, the per-node median over the batch's clips
        feeds a running estimate (momentum 0.1, like BatchNorm's statistics: training fold only,
        no labels); in evaluation the running estimate is used as it is.

        Shapes:
            - output: [B, N], non-negative
        """
        raw = self.raw_node_activity(batch)
        if self.training and raw.shape[0] > 1:
            with torch.no_grad():
                median = raw.median(dim=0).values
                if int(self.noise_batches) == 0:
                    self.noise_floor.copy_(median)
                else:
                    self.noise_floor.mul_(1 - NOISE_MOMENTUM).add_(NOISE_MOMENTUM * median)
                self.noise_batches.add_(1)
        return F.relu(raw - self.noise_floor)

    def action_activity(self, batch) -> Tensor:
        """Activity of every action: node activities (:meth:`node_activity`) pooled by the
        absolute ADM map weights of the action, each row normalised (a weighted mean over the
        action's own component).

        Shapes:
            - output: [B, K·m], non-negative
        """
        pooling = self.adm.map_matrix().detach().abs()
        pooling = pooling / pooling.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return torch.matmul(self.node_activity(batch), pooling.T)

    def action_prior(self, batch) -> Tensor:
        """The RRM prior: the log activity of every action relative to the clip's mean
        (:func:`_log_relative` of :meth:`action_activity`), so that the RRM weights are
        proportional to the activity before the learned re-weighting.

        Shapes:
            - output: [B, K·m]
        """
        return _log_relative(self.action_activity(batch))

    def forward(self, batch) -> ModelOutput:
        nodes = self.backbone(batch)
        actions = self.adm(nodes, node_first=True).transpose(0, 1)  # [B, K·m, hidden]
        prior = self.action_prior(batch) if self.movement_prior else None
        reconstructed, pairs = self.rrm(actions, prior)
        embedding = F.relu(self.embed(reconstructed.flatten(1)))
        logits = self.classifier(F.dropout(embedding, self.dropout, self.training))
        return ModelOutput(
            logits=logits,
            relations=component_relations(pairs, self.num_components, self._self_weight),
            embedding=embedding,
        )


def _log_relative(activity: Tensor) -> Tensor:
    """Log of each action's activity relative to the clip's mean action activity (scale-free:
    IOD or pixel units alike); actions below the noise floor get ≈ 1e-3 of the mean.

    Shapes:
        - activity: [B, K·m], non-negative
        - output: [B, K·m]
    """
    relative = activity / activity.mean(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.log(relative + 1e-3)
