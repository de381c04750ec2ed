"""to_pyg: the Data layout and collation of several graphs with the PyG DataLoader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

from geomer.data.pyg import node_features, to_pyg
from geomer.errors import GeomerError
from geomer.features import ClipFeatures
from geomer.graph import FaceGraph


def features_for(graph, seed, with_onset=True, steps=4, scales=2, patch=4, tseq=3):
    rng = np.random.default_rng(seed)
    n, e = graph.num_nodes, graph.num_edges
    onset = lambda array: array if with_onset else None  # noqa: E731
    return ClipFeatures(
        clip=f"clip{seed}", onset=0 if with_onset else None, apex=2,
        offset=5 if with_onset else None, apex_spotted=False,
        points=graph.template, geometry=onset(rng.random((steps, n, 2))),
        apex_displacement=onset(rng.random((n, 2))), edge_displacement=onset(rng.random((e, 2))),
        flow_stats=rng.random((n, scales, 12)), flow_patches=rng.random((n, scales, 3, patch, patch)),
        texture_onset=onset(rng.random((n, scales, patch, patch))),
        texture_apex=rng.random((n, scales, patch, patch)),
        sequence=onset(rng.random((tseq, n, patch, patch))),
        flow_image=rng.random((3, 28, 28)),
    )


def test_data_layout():
    graph = FaceGraph()
    f = features_for(graph, 0)
    data = to_pyg(f, graph, label=2, subject="casme2/sub01", dataset="casme2")
    n, e = 68, graph.num_edges
    assert data.num_nodes == n
    assert data.x.shape == (n, 2 + 2 * 12)
    np.testing.assert_allclose(data.x[:, :2].numpy(), f.apex_displacement)
    np.testing.assert_allclose(data.x[:, 2:].numpy(), f.flow_stats.reshape(n, -1))
    assert data.edge_index.shape == (2, 2 * e) and data.edge_attr.shape == (2 * e, 2)
    np.testing.assert_allclose(data.edge_attr[:e].numpy(), f.edge_displacement)
    np.testing.assert_allclose(data.edge_attr[e:].numpy(), -f.edge_displacement)
    assert data.component.dtype == torch.long and data.y.tolist() == [2]
    assert data.geometry.shape == (n, 4, 2)
    np.testing.assert_allclose(data.geometry[:, 1].numpy(), f.geometry[1])
    assert data.flow_stats.shape == (n, 2, 12) and data.flow_patches.shape == (n, 2, 3, 4, 4)
    assert data.texture.shape == (n, 2, 2, 4, 4) and data.texture_apex.shape == (n, 2, 4, 4)
    np.testing.assert_allclose(data.texture[:, :, 0].numpy(), f.texture_onset)
    assert data.sequence.shape == (n, 3, 4, 4)
    assert (data.clip, data.subject, data.dataset) == ("clip0", "casme2/sub01", "casme2")
    assert not [key for key in data.keys() if "index" in key and key != "edge_index"]


def test_flow_image_clip_layout():
    graph = FaceGraph()
    f = features_for(graph, 1, with_onset=False)
    data = to_pyg(f, graph, label=0)
    assert data.x.shape == (68, 24)
    assert "geometry" not in data and "texture" not in data and "sequence" not in data
    flow = f.flow_stats[:, 0, :2]
    expected = flow[graph.edges[:, 1]] - flow[graph.edges[:, 0]]
    np.testing.assert_allclose(data.edge_attr[: graph.num_edges].numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("partition", ["k7", "k5"])
def test_batching_several_graphs(partition):
    graph = FaceGraph(partition)
    n, e = graph.num_nodes, graph.num_edges
    graphs = [to_pyg(features_for(graph, s), graph, label=s % 3, subject=f"s{s}") for s in range(5)]
    batches = list(DataLoader(graphs, batch_size=3, shuffle=False))
    assert [b.num_graphs for b in batches] == [3, 2]
    batch = batches[0]
    assert batch.x.shape == (3 * n, node_features(features_for(graph, 0)).shape[1])
    assert batch.y.tolist() == [0, 1, 2]
    assert batch.geometry.shape == (3 * n, 4, 2) and batch.flow_patches.shape == (3 * n, 2, 3, 4, 4)
    assert batch.texture.shape == (3 * n, 2, 2, 4, 4) and batch.sequence.shape == (3 * n, 3, 4, 4)
    # edge_index is shifted per graph, node-level attributes are not
    assert batch.edge_index.shape == (2, 3 * 2 * e)
    assert torch.equal(batch.edge_index[:, 2 * e : 4 * e], graphs[1].edge_index + n)
    assert torch.equal(batch.component, torch.cat([graphs[k].component for k in range(3)]))
    assert batch.batch.tolist() == sum(([k] * n for k in range(3)), [])
    assert batch.subject == ["s0", "s1", "s2"] and batch.clip == ["clip0", "clip1", "clip2"]
    assert torch.equal(batch.get_example(1).sequence, graphs[1].sequence)
    # the whole-face flow image is per clip: [1, 3, F, F] per graph, [B, 3, F, F] per batch
    assert graphs[0].flow_image.shape == (1, 3, 28, 28) and batch.flow_image.shape == (3, 3, 28, 28)
    assert torch.equal(batch.flow_image[1], graphs[1].flow_image[0])


def test_bad_input():
    graph = FaceGraph()
    with pytest.raises(GeomerError, match="features have 68 nodes, graph k5-51 has 51"):
        to_pyg(features_for(graph, 0), FaceGraph("k5"), label=0)
    with pytest.raises(GeomerError, match="index"):
        to_pyg(features_for(graph, 0), graph, label=0, sample_index="3")
