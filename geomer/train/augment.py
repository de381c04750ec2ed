"""The training recipe: label-preserving augmentation, label smoothing, EMA, mirror-averaged tests.

``geomer train --augment SPEC`` (``TrainConfig.augment``; default ``flip,mirror``, below) says
which parts are on; SPEC is a comma-separated list of ``name`` or ``name=value``:

==============  =====================================================================  ==========
name            what                                                                   value
==============  =====================================================================  ==========
``flip``        horizontal mirror of a clip with probability ``p`` (below)             p (0.5)
``rotate``      rotation of geometry and flow image by an angle from ±value degrees    degrees (5)
``scale``       scaling of geometry and flow image by 1 + a draw from ±value           fraction (0.05)
``jitter``      every flow quantity of a clip times 1 + a draw from ±value             fraction (0.1)
``smooth``      label smoothing of the cross-entropy                                   ε (0.1)
``mixup``       each training batch mixed with a shuffled copy of itself (below)       α (0.2)
``ema``         exponential moving average of the weights (:func:`averaged_model`),    decay (0.99)
                evaluated instead of them
``mirror``      test (and validate, and measure occlusion) on the clip and its mirror  on (1)
                image, averaged (:class:`MirrorAveraged`)
==============  =====================================================================  ==========

e.g. ``--augment flip,jitter=0.2,ema``; ``none`` (or an empty SPEC) turns everything off. The
default is ``flip,mirror`` (:class:`~geomer.train.config.TrainConfig`): on a synthetic tuning
seed it raised every model's UF1 and occlusion relations (README, "Relations"), and ``flip`` was
the best part of the recipe for ``dere-grl`` on the real composite's hold-out protocol. A model
may name its own in its ``train_defaults``: ``dere-grl`` trains with
``flip,mirror,smooth,mixup=0.4`` (README, "Relations" and "Real data"), ``mmt`` (0.2.14) with
``flip,mirror,smooth``. The augmentations are drawn per clip
and per training step from a generator seeded by the fold's seed (the same seed gives the same
run); the test and validation clips are never augmented.

**The mirror** (:func:`flip_batch`) is exact on every input a clip carries, so a flipped clip is
the clip of the mirrored face:

- node features move to the mirrored landmark (iBUG 0 ↔ 16, 36 ↔ 45, 48 ↔ 54, …): the features of
  the right brow become those of the left brow's nodes, so the components' roles swap (left ↔
  right) while every node keeps its own component id;
- horizontal components are negated: the displacement's x, the flow's u; the 8-bin flow
  orientation histogram is mirrored (angle θ → π − θ: bin b ↔ 3 − b mod 8); positions x → −x
  (the canonical frame is centred between the eyes);
- patches (flow, texture, sequence frames) are mirrored left ↔ right, the flow patches' u
  negated; the whole-face flow image is mirrored, its u negated, the nodes' positions in it
  mirrored (x → F − 1 − x, moved with their node), and its component regions mirrored with
  left ↔ right component ids swapped;
- the edges' relative motion is rebuilt from the mirrored node motion (as the features make it).

Flipping twice is the identity. **Rotation and scale** act on the geometry (displacements,
positions) and on the whole-face flow image (resampled about its centre, its flow vectors turned
and scaled, the nodes' positions in it and its component regions moved with it); the node flow
statistics and patches are not resampled. **Jitter** multiplies u, v, the
magnitude and the strain of every flow input (node statistics, patches, the flow image).

**Mixup** (Zhang et al., ICLR 2018, "mixup: Beyond Empirical Risk Minimization";
:meth:`Augmenter.mix`): after the other augmentations, every clip of a batch is mixed with
another clip of the same batch (a random permutation), ``λ·input + (1 − λ)·partner's input``, for
every floating-point input of the clips (node features, patches, positions, the flow image,
the edges' motion), and the loss is ``λ·CE(y) + (1 − λ)·CE(y_partner)``. One ``λ`` a batch,
drawn from Beta(α, α) and folded to ``max(λ, 1 − λ)``, so each clip stays the larger part of its
mix. Every clip of geomer is on the same N nodes in the same order, so node i of one clip mixes
with node i of the other: the same landmark, the same facial component. Positions are mixed
too (the nodes' canonical positions and their places in the flow image): the mix is read at
the nodes of an intermediate face, which for aligned faces lies close to both. Integer inputs
(node components, the flow image's regions, the graph) are left as they are: the mixed flow
image is read by the first clip's regions (the region read-out of ``dere-grl`` and ``mmt``).

**EMA** (``torch.optim.swa_utils.AveragedModel``, buffers averaged too) replaces epoch picking by
weight averaging; the averaged model is the one validated, tested and saved.

**Mirror averaging** (:class:`MirrorAveraged`) makes the tested classifier mirror-symmetric by
construction: a clip and its mirror image pass through the trained model and their class
probabilities are averaged. A face's class does not change in the mirror, but a model trained
with ``flip`` may still rely on one side of the face where a bilateral action moves both (on a
synthetic tuning seed, ``dere-grl`` read surprise almost only from the left brow); averaged over
the mirror it reads both sides, so its occlusion relations and its predictions do too. The
checkpoint records it (``extra["mirror"]``), and a rebuilt model is wrapped again.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from geomer.data.pyg import CollatedGraphs, stack_batches
from geomer.errors import GeomerError

#: The iBUG 68-point mirror: MIRROR[i] is the landmark at the mirrored position of landmark i.
_PAIRS = (
    [(i, 16 - i) for i in range(8)]
    + [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22), (31, 35), (32, 34)]
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]
)
MIRROR = np.arange(68)
for _a, _b in _PAIRS:
    MIRROR[_a], MIRROR[_b] = _b, _a

#: Each part's default value (used when the spec names it without a value) and its valid range.
DEFAULTS = {"flip": 0.5, "rotate": 5.0, "scale": 0.05, "jitter": 0.1, "smooth": 0.1, "mixup": 0.2,
            "ema": 0.99, "mirror": 1.0}
_RANGES = {"flip": (0.0, 1.0), "rotate": (0.0, 45.0), "scale": (0.0, 0.5), "jitter": (0.0, 0.9),
           "smooth": (0.0, 0.5), "mixup": (0.0, 10.0), "ema": (0.0, 0.99999), "mirror": (0.0, 1.0)}

# Flow-stat channels: 0 u, 1 v, 2 magnitude, 3..10 orientation histogram, 11 strain.
_HISTOGRAM_MIRROR = 3 + (3 - np.arange(8)) % 8
_FLOW_CHANNELS = [0, 1, 2, 11]


@dataclass(frozen=True)
class Recipe:
    """The parsed ``--augment`` SPEC; 0 means off for every part."""

    flip: float = 0.0
    rotate: float = 0.0
    scale: float = 0.0
    jitter: float = 0.0
    smooth: float = 0.0
    mixup: float = 0.0
    ema: float = 0.0
    mirror: float = 0.0

    @property
    def augments(self) -> bool:
        """Whether any input augmentation is on."""
        return any((self.flip, self.rotate, self.scale, self.jitter, self.mixup))

    def spec(self) -> str:
        """The canonical SPEC (every part on, with its value; "" when all are off)."""
        return ",".join(f"{name}={getattr(self, name):g}" for name in DEFAULTS if getattr(self, name))


def parse_recipe(spec: str | None) -> Recipe:
    """``"flip,jitter=0.2"`` → :class:`Recipe`; one-line GeomerError for an unknown part or a
    value out of range."""
    values = {}
    if (spec or "").strip() == "none":
        return Recipe()
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, text = item.partition("=")
        name = name.strip()
        if name not in DEFAULTS:
            raise GeomerError(f"--augment {item!r}: unknown part {name!r}; known: {', '.join(DEFAULTS)}")
        if name in values:
            raise GeomerError(f"--augment {item!r}: {name} is given twice")
        try:
            value = float(text) if sep else DEFAULTS[name]
        except ValueError:
            raise GeomerError(f"--augment {item!r}: {text!r} is not a number") from None
        low, high = _RANGES[name]
        if not (np.isfinite(value) and low <= value <= high):
            raise GeomerError(f"--augment {item!r}: {name} must lie in [{low:g}, {high:g}]")
        if name == "mirror" and value not in (0.0, 1.0):
            raise GeomerError(f"--augment {item!r}: mirror is on (1) or off (0)")
        values[name] = value
    return Recipe(**values)


def mirror_nodes(graph) -> np.ndarray:
    """[N] int64: for each node of ``graph`` (a FaceGraph), the node at its mirrored position."""
    position = {int(i): k for k, i in enumerate(graph.node_ids)}
    mirrored = [position.get(int(MIRROR[i])) for i in graph.node_ids]
    if any(m is None for m in mirrored):
        raise GeomerError(f"graph {graph.name}: its nodes are not mirror-symmetric, which --augment flip and "
                          f"mirror (the default) need; choose symmetric nodes or --augment none")
    return np.asarray(mirrored, np.int64)


def mirror_components(graph) -> np.ndarray:
    """[K] int64: for each component, the component of the mirrored face (left ↔ right brow/eye;
    contour, nose and mouth map to themselves)."""
    nodes = mirror_nodes(graph)
    result = np.full(graph.num_components, -1, np.int64)
    for k in range(graph.num_components):
        targets = set(graph.component[nodes[graph.component == k]].tolist())
        if len(targets) != 1:
            raise GeomerError(f"graph {graph.name}: component {graph.component_names[k]} has no mirror component")
        result[k] = targets.pop()
    return result


def _displacement_width(x) -> int:
    """2 when the node features start with the onset→apex displacement (frame clips), else 0
    (``geomer.data.pyg.node_features``: 2 + 12·S or 12·S columns)."""
    width = int(x.shape[1])
    if width < 12 or width % 12 not in (0, 2):
        raise GeomerError(f"cannot augment node features x of {width} columns: geomer's layout is "
                          "2 + 12·S (displacement, flow statistics) or 12·S")
    return 2 if width % 12 == 2 else 0


def _flow_part(x):
    """The node features' flow statistics, [N, S, 12] (a view of ``x`` when it has no
    displacement columns, else a copy)."""
    start = _displacement_width(x)
    return x[:, start:].reshape(x.shape[0], -1, 12)


def _graph_of_node(batch):
    import torch

    if getattr(batch, "batch", None) is not None:
        return batch.batch
    return torch.zeros(batch.num_nodes, dtype=torch.long, device=batch.component.device)


def flip_batch(batch, graph, flip):
    """A new PyG batch in which the clips where ``flip`` [B] bool is set are mirrored (see the
    module doc); attributes the mirror does not change are shared with ``batch``, not copied.
    Every clip must be on ``graph``'s N nodes, in node order."""
    import copy

    import torch

    flip = torch.as_tensor(flip, dtype=torch.bool, device=batch.component.device)
    out = copy.copy(batch)  # a new batch object; every changed attribute below is a new tensor
    if not bool(flip.any()):
        return out
    nodes = torch.from_numpy(mirror_nodes(graph)).to(flip.device)
    n = len(nodes)
    owner = _graph_of_node(out)
    if out.num_nodes != n * len(flip):
        raise GeomerError(f"cannot mirror: {out.num_nodes} nodes for {len(flip)} clips of {n} nodes")
    everything = bool(flip.all())
    if everything:  # the mirror as one gather: node i of clip b takes its mirrored node's values
        source = owner * n + nodes[torch.arange(out.num_nodes, device=flip.device) - owner * n]
    else:  # only the flipped clips' nodes change: rows to write, and where each reads from
        rows = torch.nonzero(flip[owner]).squeeze(1)
        source = owner[rows] * n + nodes[rows - owner[rows] * n]

    def node_attribute(name, change):
        value = getattr(out, name, None)
        if value is None:
            return
        if everything:
            out[name] = change(value[source])
        else:
            out[name] = value.index_copy(0, rows, change(value[source]))

    def flow_stats(stats):  # [.., S, 12], a new tensor
        stats = stats.clone()
        stats[..., 0] = -stats[..., 0]
        stats[..., 3:11] = stats[..., _HISTOGRAM_MIRROR]
        return stats

    def features(x):  # a new tensor
        width = _displacement_width(x)
        x = x.clone()
        if width:
            x[:, 0] = -x[:, 0]
        x[:, width:] = flow_stats(_flow_part(x)).reshape(len(x), -1)
        return x

    def negate_x(values):  # [..., 2]
        return values * values.new_tensor([-1.0, 1.0])

    def flow_patches(patches):  # [n, S, 3, P, P]
        patches = patches.flip(-1)  # a copy
        patches[:, :, 0] = -patches[:, :, 0]
        return patches

    node_attribute("x", features)
    node_attribute("pos", negate_x)
    node_attribute("geometry", negate_x)
    node_attribute("flow_stats", flow_stats)
    node_attribute("flow_patches", flow_patches)
    for name in ("texture", "texture_apex", "sequence"):
        node_attribute(name, lambda patches: patches.flip(-1))
    image = getattr(out, "flow_image", None)
    if image is not None:
        last = image.shape[-1] - 1  # a mirrored pixel column x lands at F − 1 − x
        node_attribute("flow_image_points", lambda points: torch.stack([last - points[:, 0], points[:, 1]], 1))
        image = image.clone()
        mirrored = image[flip].flip(-1)
        mirrored[:, 0] = -mirrored[:, 0]
        image[flip] = mirrored
        out.flow_image = image
    regions = getattr(out, "flow_image_component", None)
    if regions is not None:
        swap = torch.from_numpy(np.append(mirror_components(graph), -1)).to(regions.device)
        regions = regions.clone()
        regions[flip] = swap[regions[flip].flip(-1)]  # −1 (off the face) indexes the appended −1
        out.flow_image_component = regions
    _rebuild_edge_motion(out)
    return out


def _rebuild_edge_motion(batch) -> None:
    """edge (i, j) carries motion[j] − motion[i] (``geomer.data.pyg.edge_motion``), from the node
    features' displacement, or their mean flow at the smallest scale for clips without an onset."""
    x = getattr(batch, "x", None)
    if getattr(batch, "edge_attr", None) is None or x is None or getattr(batch, "edge_index", None) is None:
        return
    motion = x[:, :2] if _displacement_width(x) else _flow_part(x)[:, 0, :2]
    source, target = batch.edge_index
    batch.edge_attr = (motion[target] - motion[source]).to(batch.edge_attr.dtype)


def _turn(matrix, vectors):
    """Each clip's ``matrix`` [B, 2, 2] applied to its nodes' 2-vectors: ``vectors`` [B·N, ..., 2],
    the N nodes of each clip in a row (as a batch holds them). One batched product per clip: a
    product per node (B·N tiny matrices) costs several times more."""
    import torch

    per_clip = vectors.reshape(len(matrix), -1, 2)
    return torch.bmm(per_clip, matrix.transpose(1, 2).to(vectors.dtype)).reshape(vectors.shape)


def _rotate_scale_flow_image(batch, matrix) -> None:
    """Turn and scale each clip's whole-face flow image about its centre ``c``, in place on the
    batch object (new tensors): the pixel at ``p`` moves to ``c + M (p − c)`` with ``M`` the
    clip's [2, 2] matrix (rotation times scale), each flow vector (u, v) becomes ``M (u, v)`` (a
    face turned and s× larger moves turned and s× as far), the strain (a ratio of lengths) is
    kept; outside the image is no motion (zeros). The nodes' positions in the image move with
    their pixels, and the component regions are resampled (nearest; −1 off the face).

    Shapes: batch.flow_image [B, 3, F, F], batch.flow_image_points [B·N, 2], matrix [B, 2, 2].
    """
    import torch
    import torch.nn.functional as F

    image = batch.flow_image.float()
    size = image.shape[-1]
    # affine_grid maps each output pixel to where it is read from: M⁻¹ in coordinates centred on
    # the image (align_corners=True: the same scale on both axes of a square image)
    a, b, c, d = matrix.to(image.dtype).reshape(-1, 4).unbind(1)
    inverse = torch.stack([d, -b, -c, a], 1).reshape(-1, 2, 2) / (a * d - b * c)[:, None, None]
    theta = torch.cat([inverse, inverse.new_zeros(len(inverse), 2, 1)], dim=-1)
    grid = F.affine_grid(theta, list(image.shape), align_corners=True)
    turned = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    vectors = torch.einsum("bij,bjhw->bihw", matrix.to(image.dtype), turned[:, :2])
    batch.flow_image = torch.cat([vectors, turned[:, 2:]], dim=1).to(batch.flow_image.dtype)
    centre = (size - 1) / 2
    points = getattr(batch, "flow_image_points", None)
    if points is not None:
        moved = _turn(matrix, points - centre) + centre
        batch.flow_image_points = moved
    regions = getattr(batch, "flow_image_component", None)
    if regions is not None:  # ids + 1 so that zero padding reads as −1, off the face
        shifted = (regions[:, None].to(image.dtype) + 1)
        nearest = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=True)
        batch.flow_image_component = nearest[:, 0].round().to(regions.dtype) - 1


class Augmenter:
    """Applies a :class:`Recipe`'s input augmentations to training batches.

    ``generator``: a seeded ``torch.Generator`` (draws per clip: flip, angle, scale, jitter; per
    batch: the mixup partners and weight).
    """

    def __init__(self, recipe: Recipe, graph, generator):
        self.recipe = recipe
        self.graph = graph
        self.generator = generator
        if recipe.flip:
            mirror_components(graph)  # a graph without a mirror is refused before training

    def _uniform(self, size: int, half_width: float):
        import torch

        return (torch.rand(size, generator=self.generator) * 2 - 1) * half_width

    def batch(self, table: CollatedGraphs, indices):
        """The augmented training batch of the clips ``indices`` of ``table``.

        The mirror is not computed per batch: the whole table is mirrored once
        (:func:`flip_batch`, kept with the table) and a flipped clip is gathered from the mirrored
        copy, which gives the same batch (flipping is exact and per clip) for a fraction of the time.
        """
        import torch

        recipe = self.recipe
        indices = torch.as_tensor(list(indices), dtype=torch.long)
        size = len(indices)
        if recipe.flip:
            everything = torch.ones(len(table), dtype=torch.bool)
            mirrored = table.extended(f"mirror on {self.graph.name}",
                                      lambda full: flip_batch(full, self.graph, everything))
            flip = torch.rand(size, generator=self.generator) < recipe.flip
            out = mirrored.batch(indices + len(table) * flip)  # clip i's mirror is clip n + i
        else:
            out = table.batch(indices)
        if recipe.rotate or recipe.scale:
            out = self._rotate_scale(out, self._uniform(size, np.radians(recipe.rotate)),
                                     1 + self._uniform(size, recipe.scale))
        if recipe.jitter:
            out = self._jitter(out, 1 + self._uniform(size, recipe.jitter))
        return out

    def mix(self, batch):
        """Mixup (see the module doc): ``(mixed batch, partner [B] long, weight λ)``; clip b of
        the mixed batch is ``λ·clip b + (1 − λ)·clip partner[b]``. Without ``mixup`` in the
        recipe: the batch itself, no partner and weight 1.

        Every float tensor of the batch whose rows are the clips' rows in order (a multiple of
        B: per clip, per node, per edge) is mixed; the others are shared with ``batch``.
        """
        import torch

        if not self.recipe.mixup:
            return batch, None, 1.0
        size = int(batch.num_graphs)
        # torch's Beta sampler has no generator argument: numpy's, seeded from the augmenter's
        # stream, keeps the run reproducible from the fold's seed
        seed = int(torch.randint(2**31 - 1, (), generator=self.generator))
        weight = float(np.random.default_rng(seed).beta(self.recipe.mixup, self.recipe.mixup))
        weight = max(weight, 1.0 - weight)
        partner = torch.randperm(size, generator=self.generator)
        out = copy.copy(batch)
        for name in batch.keys():
            value = batch[name]
            if not torch.is_tensor(value) or not torch.is_floating_point(value):
                continue
            if value.shape[0] % size:  # every input of a collated batch has the same rows per clip
                raise GeomerError(f"cannot mix {name!r}: {value.shape[0]} rows for {size} clips")
            rows = value.reshape(size, -1, *value.shape[1:])
            out[name] = (weight * rows + (1.0 - weight) * rows[partner]).reshape(value.shape)
        return out, partner, weight

    def _rotate_scale(self, batch, angle, scale):
        """Rotate and scale the geometry and the flow image of each clip ([B] angles in radians, [B]
        factors)."""
        import torch

        out = copy.copy(batch)  # shallow: every attribute changed below gets a new tensor
        if out.num_nodes != len(angle) * self.graph.num_nodes:  # _turn needs each clip's nodes in a row
            raise GeomerError(f"a batch of {len(angle)} clips has {out.num_nodes} nodes, not "
                              f"{self.graph.num_nodes} a clip as graph {self.graph.name!r} has")
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        matrix = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # [B, 2, 2]

        x = getattr(out, "x", None)
        displaced = x is not None and _displacement_width(x) > 0
        if displaced:
            x = x.clone()
            x[:, :2] = _turn(matrix, x[:, :2])
            out.x = x
        for name in ("geometry", "pos"):
            value = getattr(out, name, None)
            if value is not None:
                out[name] = _turn(matrix, value)
        if getattr(out, "flow_image", None) is not None:
            _rotate_scale_flow_image(out, matrix)
        if displaced:  # the edges' motion is the nodes' displacement, else flow it does not turn
            _rebuild_edge_motion(out)
        return out

    def _jitter(self, batch, factor):
        """Every flow quantity of clip b times ``factor[b]``."""
        out = copy.copy(batch)  # shallow: every attribute changed below gets a new tensor
        owner = _graph_of_node(out)
        per_node = factor[owner]
        x = getattr(out, "x", None)
        if x is not None:
            x = x.clone()
            flow = _flow_part(x)
            flow[..., _FLOW_CHANNELS] = flow[..., _FLOW_CHANNELS] * per_node[:, None, None].to(x.dtype)
            x[:, _displacement_width(x):] = flow.reshape(len(x), -1)
            out.x = x
        stats = getattr(out, "flow_stats", None)
        if stats is not None:
            stats = stats.clone()
            stats[..., _FLOW_CHANNELS] = stats[..., _FLOW_CHANNELS] * per_node[:, None, None].to(stats.dtype)
            out.flow_stats = stats
        patches = getattr(out, "flow_patches", None)
        if patches is not None:
            out.flow_patches = patches * per_node.view(-1, *[1] * (patches.dim() - 1)).to(patches.dtype)
        image = getattr(out, "flow_image", None)
        if image is not None:
            out.flow_image = image * factor.view(-1, 1, 1, 1).to(image.dtype)
        _rebuild_edge_motion(out)
        return out


def averaged_model(model, decay: float):
    """The EMA of ``model``'s weights and buffers (``torch.optim.swa_utils.AveragedModel``); call
    ``.update_parameters(model)`` after each optimiser step; ``.module`` is the averaged model.

    The decay warms up: after n updates it is ``min(decay, (1 + n) / (10 + n))`` (the rule of
    TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``), so the weights of the first
    steps fade out of the average. Why: with a fixed 0.99, a run of 100 steps (a synthetic LOSO
    fold of 20 epochs) still held a third of its first, near-random steps' weights.
    Integer buffers (step counters) take the model's value.
    """
    import torch
    from torch.optim.swa_utils import AveragedModel

    @torch.no_grad()
    def update(averaged: list, current: list, updates) -> None:
        if not torch.is_floating_point(averaged[0]):
            torch._foreach_copy_(averaged, current)
            return
        steps = float(updates)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + steps) / (10.0 + steps)))

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


def refresh_batch_norm(model, batches) -> None:
    """Recompute ``model``'s BatchNorm statistics from ``batches``: one pass without gradient, the
    BatchNorm layers in training mode (a plain average over the batches, as
    ``torch.optim.swa_utils.update_bn``), every other layer in evaluation mode, so dropout draws
    nothing and no other running buffer moves. For an averaged model before it is evaluated.

    Why: averaged running statistics are not those of the averaged weights. With the fixed decay
    of geomer before 0.2.5 they also kept a share of the first steps' statistics (``decay^steps``:
    6 % after 280 steps at 0.99), whose running variance was still near its start of 1; on inputs
    of small scale (landmark displacements are about 0.01 inter-ocular distances, a variance of
    1e-4) the averaged model divided them by a standard deviation 25 times too large, and
    ``dere-grl`` trained with ``ema`` predicted near chance (README, "Relations").
    """
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    was_training, momenta = model.training, [m.momentum for m in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches
        norm.train()
    with torch.no_grad():
        for batch in batches:
            model(batch)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.train(was_training)


class MirrorAveraged:
    """A trained model tested on a clip and its mirror image (:func:`flip_batch`), averaged.

    ``logits``: the log of the mean of the two class distributions; ``relations`` and
    ``embedding``: the means, the mirror's relations with their components mapped back (left ↔
    right, :func:`mirror_components`); the embedding is averaged slot by slot, so the left and
    right parts of a per-component embedding (``readout="component"``) are mixed (nothing in
    geomer reads a mirror-averaged embedding). A thin callable wrapper (not an ``nn.Module``): weights and
    ``state_dict`` are the wrapped model's; ``eval``, ``train`` and ``to`` act on it and return the
    wrapper. In ``eval`` mode the clips and their mirrors go through the model as one batch of 2B
    (:func:`geomer.data.pyg.stack_batches`; the same result as two passes up to float rounding, since an evaluated
    clip does not depend on the others); in ``train`` mode in two passes, so that batch statistics
    and dropout stay per pass.

    Shapes: as the wrapped model's :class:`~geomer.models.output.ModelOutput` ([B, C], [B, K, K],
    [B, D]); every clip of a batch must be on ``graph``'s N nodes.
    """

    def __init__(self, model, graph):
        import torch

        self.model, self.graph = model, graph
        self.components = torch.from_numpy(mirror_components(graph))

    def __getattr__(self, name):  # parameters(), state_dict(), ... are the model's
        if name == "model" or name.startswith("__"):  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.model, name)

    # these return the wrapper, so `build_model().to(device).eval()` keeps mirror averaging
    def eval(self):
        self.model.eval()
        return self

    def train(self, mode: bool = True):
        self.model.train(mode)
        return self

    def to(self, *args, **kwargs):
        self.model.to(*args, **kwargs)
        return self

    def __call__(self, batch):
        import math

        import torch

        from geomer.models.output import ModelOutput

        b = int(batch.num_graphs)
        mirror = flip_batch(batch, self.graph, torch.ones(b, dtype=torch.bool))
        if self.model.training:  # two passes: batch statistics and dropout stay per pass
            plain, mirrored = self.model(batch), self.model(mirror)
        else:  # one pass over the clips and their mirrors (an evaluated clip does not see the others)
            both = self.model(stack_batches([batch, mirror]))
            plain, mirrored = (
                ModelOutput(logits=both.logits[part], relations=both.relations[part], embedding=both.embedding[part])
                for part in (slice(0, b), slice(b, 2 * b))
            )
        log_probs = torch.stack([torch.log_softmax(plain.logits, 1), torch.log_softmax(mirrored.logits, 1)])
        swap = self.components.to(plain.relations.device)
        back = mirrored.relations[:, swap][:, :, swap]
        return ModelOutput(
            logits=torch.logsumexp(log_probs, 0) - math.log(2.0),
            relations=(plain.relations + back) / 2,
            embedding=(plain.embedding + mirrored.embedding) / 2,
        )

    forward = __call__
