"""The facial-landmark region graph: 68 iBUG nodes grouped into K facial components.

Edges are the union of

* the usual iBUG drawing chains inside each component (contour 0–16, each brow, the nose bridge and
  base, each eye as a closed loop, the outer and inner lips as closed loops), kept only where both
  ends lie in the same component, and
* a Delaunay triangulation (``scipy.spatial.Delaunay``) of the canonical template restricted to the
  graph's nodes, which links neighbouring components (brow ↔ eye, nose ↔ mouth, …).

Partitions (component names index the rows/columns of every model's ``relations`` [K, K]):

==========  ==================================================================================
``k7``      contour 0–16, right_brow 17–21, left_brow 22–26, nose 27–35, right_eye 36–41,
            left_eye 42–47, mouth 48–67 (default; default nodes: all 68)
``k5``      the five key components without the contour: right_brow 17–21, left_brow 22–26,
            eyes 36–47, nose 27–35, mouth 48–67 (default nodes: the 51 inner points). The brows
            stay separate because AU1/2/4 are often one-sided; the eyes are merged because blinks
            and AU6/7 move both eyes together.
``k9``      contour, right_brow, left_brow, nose_bridge 27–30, nose_base 31–35, right_eye,
            left_eye, outer_lips 48–59, inner_lips 60–67 (default nodes: all 68)
==========  ==================================================================================

Node subsets: ``nodes=None`` (the partition's default), ``"all68"``, ``"inner51"`` (17–67) or a
sequence of iBUG ids. Components left without nodes by a subset are dropped (every component has a node) and ``component_names`` lists only the components present.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from typing import Sequence

import numpy as np
from scipy.spatial import Delaunay

from geomer.errors import GeomerError
from landmarks.template import CANONICAL_TEMPLATE

#: Component ranges of each partition: name → list of (component name, iBUG ids).
PARTITIONS: dict[str, list[tuple[str, list[int]]]] = {
    "k7": [
        ("contour", list(range(0, 17))),
        ("right_brow", list(range(17, 22))),
        ("left_brow", list(range(22, 27))),
        ("nose", list(range(27, 36))),
        ("right_eye", list(range(36, 42))),
        ("left_eye", list(range(42, 48))),
        ("mouth", list(range(48, 68))),
    ],
    "k5": [
        ("right_brow", list(range(17, 22))),
        ("left_brow", list(range(22, 27))),
        ("eyes", list(range(36, 48))),
        ("nose", list(range(27, 36))),
        ("mouth", list(range(48, 68))),
    ],
    "k9": [
        ("contour", list(range(0, 17))),
        ("right_brow", list(range(17, 22))),
        ("left_brow", list(range(22, 27))),
        ("nose_bridge", list(range(27, 31))),
        ("nose_base", list(range(31, 36))),
        ("right_eye", list(range(36, 42))),
        ("left_eye", list(range(42, 48))),
        ("outer_lips", list(range(48, 60))),
        ("inner_lips", list(range(60, 68))),
    ],
}

#: Named node subsets (iBUG ids).
NODE_SUBSETS: dict[str, tuple[int, ...]] = {
    "all68": tuple(range(68)),
    "inner51": tuple(range(17, 68)),
}

_DEFAULT_NODES = {"k7": "all68", "k5": "inner51", "k9": "all68"}


def _chain(ids: Sequence[int], closed: bool = False) -> list[tuple[int, int]]:
    pairs = list(zip(ids[:-1], ids[1:]))
    if closed:
        pairs.append((ids[-1], ids[0]))
    return pairs


#: The iBUG drawing chains (pairs of iBUG ids); the nose bridge joins the nose base at 30–33.
IBUG_CHAINS: list[tuple[int, int]] = (
    _chain(range(0, 17))
    + _chain(range(17, 22))
    + _chain(range(22, 27))
    + _chain(range(27, 31))
    + [(30, 33)]
    + _chain(range(31, 36))
    + _chain(list(range(36, 42)), closed=True)
    + _chain(list(range(42, 48)), closed=True)
    + _chain(list(range(48, 60)), closed=True)
    + _chain(list(range(60, 68)), closed=True)
    + [(48, 60), (54, 64)]
)


class FaceGraph:
    """The region graph over a subset of the 68 iBUG landmarks.

    Args:
        partition: ``"k7"`` (default), ``"k5"`` or ``"k9"`` (see the module docstring).
        nodes: ``None`` (the partition's default), a subset name (``"all68"``, ``"inner51"``) or a
            sequence of iBUG ids.

    Shapes:
        node_ids [N] int64 iBUG ids, ascending; component [N] int64 in 0..K-1; template [N, 2]
        float32 canonical positions (inter-ocular distance 1); edges [E, 2] int64 local indices with
        i < j; edge_index torch.long [2, 2E] (both directions).
    """

    def __init__(self, partition: str = "k7", nodes: str | Sequence[int] | None = None):
        if partition not in PARTITIONS:
            raise GeomerError(
                f"unknown graph partition {partition!r}; known: {', '.join(sorted(PARTITIONS))}"
            )
        self.partition = partition
        if nodes is None:
            nodes = _DEFAULT_NODES[partition]
        if isinstance(nodes, str):
            if nodes not in NODE_SUBSETS:
                raise GeomerError(
                    f"unknown node subset {nodes!r}; known: {', '.join(sorted(NODE_SUBSETS))}"
                )
            ids = np.array(NODE_SUBSETS[nodes], dtype=np.int64)
            subset_name = str(len(ids))
        else:
            ids = np.unique(np.asarray(list(nodes), dtype=np.int64))
            if ids.size < 3 or ids.min() < 0 or ids.max() > 67:
                raise GeomerError(
                    f"graph nodes must be at least 3 distinct iBUG ids in 0..67, got {list(nodes)}"
                )
            if ids.size == 68:
                subset_name = "68"
            elif np.array_equal(ids, np.arange(17, 68)):
                subset_name = "51"
            else:
                digest = hashlib.sha1(ids.tobytes()).hexdigest()[:8]
                subset_name = f"{ids.size}n{digest}"
        self.node_ids = ids
        self.name = f"{partition}-{subset_name}"

        owner = {}
        present = []
        for name, members in PARTITIONS[partition]:
            members_here = [i for i in members if i in set(ids.tolist())]
            if members_here:
                present.append(name)
                for i in members_here:
                    owner[i] = len(present) - 1
        self.component_names: tuple[str, ...] = tuple(present)
        self.num_components = len(present)
        self.component = np.array([owner[i] for i in ids.tolist()], dtype=np.int64)
        self.num_nodes = int(ids.size)
        self.template = CANONICAL_TEMPLATE[ids].astype(np.float32)
        self.edges = self._build_edges()

    def _build_edges(self) -> np.ndarray:
        local = {int(i): k for k, i in enumerate(self.node_ids)}
        pairs: set[tuple[int, int]] = set()
        for a, b in IBUG_CHAINS:
            if a in local and b in local and self.component[local[a]] == self.component[local[b]]:
                i, j = sorted((local[a], local[b]))
                pairs.add((i, j))
        # scipy's default Qhull options triangulate cocircular points of the (symmetric) template
        # deterministically, and every point is a vertex (no 'coplanar' leftovers).
        triangles = Delaunay(self.template.astype(np.float64)).simplices
        for tri in triangles:
            for a, b in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[0], tri[2])):
                i, j = sorted((int(a), int(b)))
                pairs.add((i, j))
        return np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)

    @property
    def num_edges(self) -> int:
        """E, the number of undirected edges."""
        return int(self.edges.shape[0])

    @cached_property
    def edge_index(self):
        """torch.long [2, 2E]: every undirected edge in both directions (PyG convention)."""
        import torch

        both = np.concatenate([self.edges, self.edges[:, ::-1]], axis=0).T
        return torch.from_numpy(np.ascontiguousarray(both))

    def node_position(self, ibug_id: int) -> int:
        """Local index of iBUG landmark ``ibug_id`` (GeomerError when not in the graph)."""
        hits = np.nonzero(self.node_ids == ibug_id)[0]
        if hits.size == 0:
            raise GeomerError(f"landmark {ibug_id} is not a node of graph {self.name}")
        return int(hits[0])

    def to_networkx(self):
        """An undirected ``networkx.Graph``; nodes are local indices with attributes
        ``ibug_id``, ``component`` (int), ``component_name`` and ``pos`` (canonical x, y)."""
        import networkx as nx

        graph = nx.Graph(name=self.name)
        for k in range(self.num_nodes):
            graph.add_node(
                k,
                ibug_id=int(self.node_ids[k]),
                component=int(self.component[k]),
                component_name=self.component_names[self.component[k]],
                pos=(float(self.template[k, 0]), float(self.template[k, 1])),
            )
        graph.add_edges_from((int(i), int(j)) for i, j in self.edges)
        return graph

    def to_record(self) -> dict:
        """What rebuilds this graph, JSON-ready: ``{"partition", "nodes" (iBUG ids), "name"}``."""
        return {"partition": self.partition, "nodes": [int(i) for i in self.node_ids], "name": self.name}

    @classmethod
    def from_record(cls, record: dict) -> FaceGraph:
        """The graph :meth:`to_record` described (``nodes`` None: the partition's default)."""
        try:
            return cls(partition=record["partition"], nodes=record.get("nodes"))
        except (KeyError, TypeError, AttributeError):
            raise GeomerError(f"not a graph record (needs 'partition'): {record!r}") from None

    def __repr__(self) -> str:
        return (
            f"FaceGraph(name={self.name!r}, nodes={self.num_nodes}, edges={self.num_edges}, "
            f"components={self.component_names})"
        )
