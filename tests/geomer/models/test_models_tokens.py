"""Token encoders: training-fold standardisation and the explicit flow-magnitude feature."""

from __future__ import annotations

import torch

from geomer.models.tokens import MagnitudeEmbedding, PatchProjection


def test_fold_standardisation_uses_training_statistics_in_evaluation():
    # a 1-px flow is standardised to an O(1) input in training; evaluation reuses the training
    # statistics, so a test clip's own scale does not re-normalise it
    torch.manual_seed(0)
    projection = PatchProjection((3, 8, 8), 16, "fold")
    train = 0.01 * torch.randn(8, 68, 3, 8, 8)
    for _ in range(150):  # running estimates (momentum 0.1) forget their start after ~100 steps
        prepared = projection.prepare(train)
    assert 0.9 < float(prepared.std()) < 1.1
    projection.eval()
    torch.testing.assert_close(projection.prepare(train).std(), prepared.std(), rtol=0.05, atol=0)
    assert float(projection.prepare(10 * train).std()) > 5  # not re-standardised at test time


def test_fold_standardisation_is_per_channel():
    projection = PatchProjection((2, 4, 4), 8, "fold")
    values = torch.randn(64, 2, 4, 4)
    values[:, 1] *= 100.0  # channel 1 a hundred times larger
    prepared = projection.prepare(values).view(64, 2, 16)
    stds = prepared.transpose(0, 1).reshape(2, -1).std(dim=1)
    torch.testing.assert_close(stds, torch.ones(2), rtol=0.02, atol=0)


def test_magnitude_is_the_mean_flow_length_per_scale():
    flow = torch.zeros(1, 2, 3, 4, 4)  # [N, S, C, P, P]
    flow[0, 0, 0] = 3.0
    flow[0, 0, 1] = 4.0  # |(3, 4)| = 5 everywhere at scale 0
    flow[0, 1, 0, :2] = -2.0  # half the pixels move 2 px at scale 1
    flow[0, 1, 2] = 7.0  # strain is not motion
    torch.testing.assert_close(MagnitudeEmbedding.magnitude(flow), torch.tensor([[5.0, 1.0]]))
    embedding = MagnitudeEmbedding(2, 8)
    assert embedding(torch.randn(5, 68, 2, 3, 4, 4)).shape == (5, 68, 2, 8)


def test_standardise_matches_torch_std():
    from geomer.models.tokens import standardise

    values = torch.randn(5, 7, 64) * 3 + 1
    for unbiased in (True, False):
        std = values.std(-1, keepdim=True, unbiased=unbiased)
        expected = (values - values.mean(-1, keepdim=True)) / (std + 1e-3)
        torch.testing.assert_close(standardise(values, unbiased=unbiased), expected)


def test_dense_nodes_pads_unequal_graphs_and_views_equal_ones():
    from torch_geometric.data import Batch, Data
    from torch_geometric.utils import to_dense_batch

    from geomer.models.tokens import dense_nodes

    def batch_of(*sizes):
        return Batch.from_data_list([Data(texture=torch.randn(n, 2, 3), num_nodes=n) for n in sizes])

    equal, unequal = batch_of(4, 4, 4), batch_of(4, 2, 3)
    for batch in (equal, unequal):
        dense, mask = dense_nodes(batch, "texture")
        expected, expected_mask = to_dense_batch(batch.texture.reshape(batch.num_nodes, -1), batch.batch)
        assert torch.equal(dense, expected.view(3, 4, 2, 3)) and torch.equal(mask, expected_mask)
    assert dense_nodes(equal, "texture")[0].data_ptr() == equal.texture.data_ptr()  # no copy
    assert not bool(dense_nodes(unequal, "texture")[1].all())
    single = Data(texture=torch.randn(5, 2, 3), num_nodes=5)
    dense, mask = dense_nodes(single, "texture")
    assert dense.shape == (1, 5, 2, 3) and bool(mask.all()) and torch.equal(dense[0], single.texture)
