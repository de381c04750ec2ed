"""STSTNet, the reference model on whole flow images (the contract tests cover the rest)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

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


def test_occlusion_relations_find_the_regions_a_trained_ststnet_uses(face_graph, separable_batches, fit,
                                                                     make_clip, class_components):
    """Each class of the separable task moves two components; the flow image shows the motion
    at their nodes. A trained STSTNet's occlusion relevance is highest where its class moves, while
    its intrinsic relations stay uniform."""
    from geomer.relations import occlusion_relations

    torch.manual_seed(0)
    model = create("ststnet", 3, face_graph, dropout=0.0)
    batches, _ = separable_batches
    fit(model, batches, steps=150, lr=1e-2)
    test = [make_clip(i % 3, 90_000 + i, subject="t") for i in range(30)]
    result = occlusion_relations(model, test, num_components=7, batch_size=30)
    labels = np.array([int(g.y) for g in test])
    hits = 0
    for label in range(3):
        relevance = result.relevance[labels == label].mean(axis=0)
        moved = set(class_components(label, 7))
        hits += len(moved & set(np.argsort(relevance)[-2:].tolist()))
    assert hits >= 4  # of the 6 class-moved components, most are among their class's top two
    model.eval()
    with torch.no_grad():
        relations = model(Batch.from_data_list(test[:4])).relations
    torch.testing.assert_close(relations, torch.full((4, 7, 7), 1 / 7))


def test_the_strain_channel_reaches_the_logits(face_graph, batch):
    """All three flow-image channels are read: changing only channel 2 (optical strain)
    changes the logits."""
    torch.manual_seed(0)
    model = create("ststnet", 3, face_graph).eval()
    changed = batch.clone()
    changed.flow_image = batch.flow_image.clone()
    changed.flow_image[:, 2] = torch.rand_like(batch.flow_image[:, 2]) * 3.0
    with torch.no_grad():
        assert not torch.allclose(model(changed).logits, model(batch).logits)
