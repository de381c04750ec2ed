from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch
from scipy.spatial import Delaunay

from geomer.errors import GeomerError
from geomer.graph import FaceGraph
from landmarks.template import CANONICAL_TEMPLATE


@pytest.mark.parametrize(
    "partition, nodes, n, sizes",
    [
        ("k7", None, 68, [17, 5, 5, 9, 6, 6, 20]),
        ("k5", None, 51, [5, 5, 12, 9, 20]),
        ("k9", None, 68, [17, 5, 5, 4, 5, 6, 6, 12, 8]),
        ("k7", "inner51", 51, [5, 5, 9, 6, 6, 20]),
    ],
)
def test_graph_invariants(partition, nodes, n, sizes):
    graph = FaceGraph(partition, nodes)
    assert graph.num_nodes == n
    assert np.bincount(graph.component).tolist() == sizes
    assert graph.num_components == len(sizes) == len(graph.component_names)
    edges = graph.edges
    assert edges.dtype == np.int64 and (edges[:, 0] < edges[:, 1]).all()
    assert len({tuple(e) for e in edges.tolist()}) == len(edges)  # no duplicates
    assert edges.max() < n
    # undirected edge_index: every edge both ways
    ei = graph.edge_index
    assert ei.dtype == torch.long and ei.shape == (2, 2 * len(edges))
    pairs = {tuple(p) for p in ei.T.tolist()}
    assert all((j, i) in pairs for i, j in pairs)
    nxg = graph.to_networkx()
    assert nx.is_connected(nxg) and nxg.number_of_edges() == len(edges)
    assert nxg.nodes[0]["ibug_id"] == graph.node_ids[0]
    np.testing.assert_allclose(graph.template, CANONICAL_TEMPLATE[graph.node_ids])


def test_k7_component_names_and_name():
    graph = FaceGraph()
    assert graph.name == "k7-68"
    assert graph.component_names == (
        "contour", "right_brow", "left_brow", "nose", "right_eye", "left_eye", "mouth",
    )
    assert graph.component[graph.node_position(48)] == 6
    assert FaceGraph("k5").name == "k5-51"
    assert FaceGraph("k7", range(17, 68)).name == "k7-51"


def test_edges_contain_template_triangulation_and_chains():
    graph = FaceGraph()
    edges = {tuple(e) for e in graph.edges.tolist()}
    for tri in Delaunay(CANONICAL_TEMPLATE.astype(np.float64)).simplices:
        for a, b in ((0, 1), (1, 2), (0, 2)):
            assert tuple(sorted((int(tri[a]), int(tri[b])))) in edges
    # closed eye loop and the contour chain
    assert (36, 41) in edges and (0, 1) in edges and (15, 16) in edges
    # a triangulation of 68 planar points has at most 3n - 6 edges; chains add a few more
    assert len(edges) <= 3 * 68 - 6 + 20


def test_bad_partition_and_nodes():
    with pytest.raises(GeomerError, match="partition"):
        FaceGraph("k3")
    with pytest.raises(GeomerError, match="subset"):
        FaceGraph("k7", "all70")
    with pytest.raises(GeomerError, match="iBUG"):
        FaceGraph("k7", [1, 2, 99])
