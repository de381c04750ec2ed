"""Conversion of :class:`ClipFeatures` to a PyTorch Geometric ``Data`` graph.

Node-major layout: every per-node tensor has the node axis first, so PyG's default collation
concatenates them along nodes when batching (``torch_geometric.loader.DataLoader``). No per-node
attribute name contains "index" (PyG would shift such attributes by the node count).
"""

from __future__ import annotations

import numpy as np

from geomer.errors import GeomerError
from geomer.features.types import ClipFeatures


def node_features(features: ClipFeatures) -> np.ndarray:
    """The generic node feature matrix ``x``: [N, F] float32.

    ``x = concat(apex_displacement [N, 2] (aligned, IOD units; only when the clip has an onset),
    flow_stats flattened [N, S * 12])``, so F = 2 + 12·S for frame clips and 12·S for flow-image
    clips (megc2019-flow).
    """
    parts = []
    if features.apex_displacement is not None:
        parts.append(features.apex_displacement)
    parts.append(features.flow_stats.reshape(features.num_nodes, -1))
    return np.concatenate(parts, axis=1).astype(np.float32)


def edge_motion(features: ClipFeatures, edges: np.ndarray) -> np.ndarray:
    """Relative motion along each undirected edge (i, j): [E, 2].

    The aligned onset→apex ``edge_displacement`` when the clip has one; for flow-image clips
    (no onset landmarks) the difference of the mean flow (u, v) at the smallest scale,
    ``flow[j] - flow[i]``.
    """
    if features.edge_displacement is not None:
        return features.edge_displacement
    flow = features.flow_stats[:, 0, :2]
    return (flow[edges[:, 1]] - flow[edges[:, 0]]).astype(np.float32)


def to_pyg(features: ClipFeatures, graph, label: int, **meta):
    """A ``torch_geometric.data.Data`` for one clip.

    Args:
        features: the clip's :class:`ClipFeatures` on ``graph``'s nodes.
        graph: the :class:`geomer.graph.FaceGraph`.
        label: class index.
        meta: strings stored as attributes (``clip`` defaults to ``features.clip``; ``subject``,
            ``dataset``, …).

    Shapes:
        x [N, F] (see :func:`node_features`), pos [N, 2] aligned canonical positions,
        edge_index [2, 2E] long, edge_attr [2E, 2] (edge (i, j) carries :func:`edge_motion`,
        its reverse the negative), component [N] long, y [1] long; when the clip has them:
        geometry [N, T, 2], flow_stats [N, S, 12], flow_patches [N, S, 3, P, P],
        texture [N, S, 2, P, P] (onset, apex), texture_apex [N, S, P, P],
        sequence [N, Tseq, P, P]; flow_image [1, 3, F, F] (a per-clip image, not per node: a
        batch holds [B, 3, F, F]) and, where the features place the nodes in it,
        flow_image_points [N, 2] (each node's (x, y) in the flow image's pixels) and
        flow_image_component [1, F, F] long: each pixel's component, −1 off the face
        (:func:`geomer.features.flow_image.flow_image_regions`).
    """
    import torch
    from torch_geometric.data import Data

    if features.num_nodes != graph.num_nodes:
        raise GeomerError(
            f"clip {features.clip}: features have {features.num_nodes} nodes, graph "
            f"{graph.name} has {graph.num_nodes}"
        )
    motion = edge_motion(features, graph.edges)
    tensor = lambda array: torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))  # noqa: E731
    data = Data(
        x=tensor(node_features(features)),
        pos=tensor(features.points),
        edge_index=graph.edge_index.clone(),
        edge_attr=tensor(np.concatenate([motion, -motion], axis=0)),
        component=torch.from_numpy(graph.component.copy()),
        y=torch.tensor([int(label)], dtype=torch.long),
    )
    if features.geometry is not None:
        data.geometry = tensor(features.geometry.transpose(1, 0, 2))
    data.flow_stats = tensor(features.flow_stats)
    data.flow_patches = tensor(features.flow_patches)
    if features.texture_onset is not None:
        data.texture = tensor(np.stack([features.texture_onset, features.texture_apex], axis=2))
    data.texture_apex = tensor(features.texture_apex)
    if features.sequence is not None:
        data.sequence = tensor(features.sequence.transpose(1, 0, 2, 3))
    if features.flow_image is not None:
        data.flow_image = tensor(features.flow_image[None])
        if features.flow_image_points is not None:
            data.flow_image_points = tensor(features.flow_image_points)
            data.flow_image_component = torch.from_numpy(_flow_image_component(features, graph)[None])
    data.clip = str(meta.pop("clip", features.clip))
    for name, value in meta.items():
        if "index" in name:
            raise GeomerError(f"meta attribute {name!r}: names containing 'index' are reserved")
        data[name] = str(value)
    return data


def _flow_image_component(features: ClipFeatures, graph) -> np.ndarray:
    """[F, F] int64: the component of each pixel of the clip's flow image (−1 off the face)."""
    from geomer.features.flow_image import flow_image_regions

    eyes = tuple(np.flatnonzero(np.isin(graph.node_ids, ids)) for ids in (range(36, 42), range(42, 48)))
    return flow_image_regions(features.flow_image_points, graph.component, features.flow_image.shape[-1],
                              eyes=eyes if all(len(e) for e in eyes) else None)


def stack_batches(batches):
    """One PyG batch of the clips of ``batches``, in order (so one forward pass sees them all).

    The batches must carry the same attributes (e.g. a loader's batch and copies of it that
    :func:`geomer.train.augment.flip_batch` or :func:`geomer.relations.neutralise` made). Node and graph attributes
    are concatenated, ``edge_index`` (every attribute PyG increments) is offset by the nodes
    before it, ``batch`` and ``ptr`` by the graphs and nodes before them, lists (clip names)
    are joined.

    Shapes: batches of B_1, B_2, … graphs and N_1, N_2, … nodes → B_1 + B_2 + … graphs and
    N_1 + N_2 + … nodes.
    """
    import torch
    from torch_geometric.data import Batch

    first = batches[0]
    keys = list(first.keys())
    if any(sorted(b.keys()) != sorted(keys) for b in batches[1:]):
        raise GeomerError("cannot stack batches with different attributes")
    graphs = np.cumsum([0] + [int(b.num_graphs) for b in batches])
    nodes = np.cumsum([0] + [int(b.num_nodes) for b in batches])
    values = {}
    for key in keys:
        parts = [b[key] for b in batches]
        if key == "batch":
            values[key] = torch.cat([part + int(offset) for part, offset in zip(parts, graphs)])
        elif key == "ptr":
            values[key] = torch.cat([parts[0]] + [part[1:] + int(offset) for part, offset in zip(parts[1:], nodes[1:])])
        elif key == "num_nodes":
            values[key] = int(nodes[-1])
        elif torch.is_tensor(parts[0]):
            increments = np.cumsum([0] + [int(b.__inc__(key, part)) for b, part in zip(batches[:-1], parts[:-1])])
            if increments[-1]:
                parts = [part + int(offset) for part, offset in zip(parts, increments)]
            values[key] = torch.cat(parts, dim=first.__cat_dim__(key, parts[0]))
        elif isinstance(parts[0], list):
            values[key] = [item for part in parts for item in part]
        else:
            raise GeomerError(f"cannot stack batches: attribute {key} is a {type(parts[0]).__name__}")
    out = Batch(**values)
    out._num_graphs = int(graphs[-1])
    return out


class CollatedGraphs:
    """Graphs collated once, so that a minibatch is a gather instead of a PyG collation.

    ``Batch.from_data_list`` walks every attribute of every clip in Python (about 3 ms for 32
    clips, as much as a training step of ``dere-grl``); here the whole list is collated once and
    :meth:`batch` gathers the chosen clips' rows of each attribute. Every clip must give each
    attribute the same number of rows (true of geomer's graphs: one face graph, the same
    attributes per clip); the result equals ``Batch.from_data_list([graphs[i] for i in
    indices])`` attribute by attribute (tested), ``to_data_list()`` excepted.

    Shapes: ``len(graphs)`` clips of N nodes each → :meth:`batch` of B indices: B clips, B·N nodes.
    """

    def __init__(self, graphs):
        import torch
        from torch_geometric.data import Batch

        if not graphs:
            raise GeomerError("cannot collate an empty list of graphs")
        self.full = Batch.from_data_list(list(graphs))
        self.count = len(graphs)
        if self.full.num_nodes % self.count:
            raise GeomerError("cannot collate graphs of different node counts")
        nodes = self._nodes = int(self.full.num_nodes) // self.count
        self._rows: dict[str, int] = {}  # rows per clip of every tensor attribute
        self._shifted: set[str] = set()  # attributes PyG increments by the node count
        self._extended: dict[str, CollatedGraphs] = {}  # see extended()
        first = graphs[0]
        for key, slices in self.full._slice_dict.items():
            value = self.full[key]
            if not torch.is_tensor(value):
                continue
            counts = torch.diff(torch.as_tensor(slices))
            if len(counts) != self.count or bool((counts != counts[0]).any()):
                raise GeomerError(f"cannot collate graphs whose attribute {key!r} differs in size between clips")
            if self.full.__cat_dim__(key, value) is None:
                raise GeomerError(f"cannot collate graphs whose attribute {key!r} is stacked along a new axis")
            if first.__inc__(key, first[key]):
                # PyG shifts such attributes (edge_index) by the nodes of the clips before
                if not torch.equal(self.full._inc_dict[key].reshape(-1), torch.arange(self.count) * nodes):
                    raise GeomerError(f"cannot collate graphs of different node counts (attribute {key!r})")
                self._shifted.add(key)
            self._rows[key] = int(counts[0])

    def __len__(self) -> int:
        return self.count

    def extended(self, name: str, transform) -> "CollatedGraphs":
        """A table of 2n clips: these n, then ``transform(batch of all n)`` (a batch of the same
        attributes and sizes, e.g. their mirror images), so clip n + i is clip i transformed.
        Made once per ``name`` and kept with this table."""
        import copy

        if name not in self._extended:
            out = copy.copy(self)
            out.full = stack_batches([self.full, transform(self.full)])
            out.count = 2 * self.count
            out._extended = {}
            self._extended[name] = out
        return self._extended[name]

    def batch(self, indices):
        """The PyG batch of the clips ``indices`` (a sequence of ints), in that order."""
        import torch
        from torch_geometric.data import Batch

        chosen = torch.as_tensor(list(indices), dtype=torch.long)
        size = len(chosen)
        values = {}
        for key in self.full.keys():
            value = self.full[key]
            if key in ("batch", "ptr"):
                continue
            if key == "num_nodes":
                values[key] = size * self._nodes
            elif key not in self._rows:
                values[key] = [value[int(i)] for i in chosen] if isinstance(value, list) else value
            else:
                values[key] = self._gather(key, value, chosen)
        values["batch"] = torch.arange(size).repeat_interleave(self._nodes)
        values["ptr"] = torch.arange(size + 1) * self._nodes
        out = Batch(**values)
        out._num_graphs = size
        return out

    def _gather(self, key: str, value, chosen):
        """The rows of attribute ``key`` that belong to the clips ``chosen`` [B], in order."""
        import torch

        rows = self._rows[key]
        dim = self.full.__cat_dim__(key, value)
        dim = dim + value.dim() if dim < 0 else dim
        where = (chosen[:, None] * rows + torch.arange(rows)).reshape(-1)
        part = value.index_select(dim, where)
        if key in self._shifted:
            # e.g. edge_index: clip i's node numbers start at i·N in the full batch, at b·N here
            shift = (torch.arange(len(chosen)) - chosen) * self._nodes
            part = part + shift.repeat_interleave(rows).reshape([-1 if d == dim else 1 for d in range(part.dim())])
        return part
