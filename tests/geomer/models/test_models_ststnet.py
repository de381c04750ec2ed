"""STSTNet, the reference model on whole flow images (the contract tests cover the rest)."""

from __future__ import annotations

import pytest
import torch

from geomer.errors import GeomerError
from geomer.features import FeatureSettings
from geomer.models import create


def test_paper_size_and_uniform_relations(face_graph, batch):
    model = create("ststnet", 3, face_graph)
    # three streams of 3, 5 and 8 filters, 5×5×16 = 400 pooled features: about 1.7 k parameters
    assert [stream[0].out_channels for stream in model.streams] == [3, 5, 8]
    assert sum(p.numel() for p in model.parameters()) == 1683
    out = model(batch)
    assert out.embedding.shape == (batch.num_graphs, 400)
    torch.testing.assert_close(out.relations, torch.full((batch.num_graphs, 7, 7), 1 / 7))


def test_image_size_follows_the_features_and_is_checked(face_graph, batch):
    features = FeatureSettings(flow_image_size=14)
    with pytest.raises(GeomerError, match=r"flow_image must be \[B, 3, 14, 14\].*flow_image_size"):
        create("ststnet", 3, face_graph, features)(batch)
    small = batch.clone()
    small.flow_image = torch.nn.functional.avg_pool2d(batch.flow_image, 2)
    assert create("ststnet", 3, face_graph, features)(small).embedding.shape[1] == 16 * 9
    with pytest.raises(GeomerError, match="no setting 'image_size'"):
        create("ststnet", 3, face_graph, image_size=14)
    with pytest.raises(GeomerError, match="dropout"):
        create("ststnet", 3, face_graph, dropout=1.5)
