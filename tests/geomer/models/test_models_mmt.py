"""mmt: the contrastive loss by hand, the aux loss wiring, megc2019-flow support."""

from __future__ import annotations

import math

import pytest
import torch

from geomer.models import create
from geomer.models.attention import movement_key_bias
from geomer.models.mmt import info_nce


def test_info_nce_equals_hand_computed_value():
    first = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    second = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    tau = 0.5
    # normalised: a1=(1,0) a2=(0,1); b1=(1,0) b2=(1,1)/√2 → S = [[1, 1/√2], [0, 1/√2]] / τ
    s = [[1 / tau, (1 / math.sqrt(2)) / tau], [0.0, (1 / math.sqrt(2)) / tau]]

    def ce(row, target):
        return -row[target] + math.log(sum(math.exp(v) for v in row))

    rows = ce(s[0], 0) + ce(s[1], 1)
    columns = ce([s[0][0], s[1][0]], 0) + ce([s[0][1], s[1][1]], 1)
    expected = 0.5 * (rows / 2 + columns / 2)
    assert info_nce(first, second, tau).item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_is_low_for_matching_pairs_and_high_for_swapped_ones():
    embeddings = torch.eye(4) * 3
    assert info_nce(embeddings, embeddings, 0.1) < 1e-3
    assert info_nce(embeddings, embeddings.flip(0), 0.1) > 5


def test_aux_loss_is_the_weighted_contrastive_loss(batch, face_graph):
    torch.manual_seed(0)
    model = create("mmt", 3, face_graph, dim=16, depth=1, heads=2, contrastive_weight=0.0).eval()
    assert model(batch).aux_loss.item() == 0.0
    model.contrastive_weight = 2.0
    output = model(batch)
    patches, mask = _dense(batch, "flow_patches")
    energy = patches[:, :, :, :2].pow(2).sum(3).sqrt().flatten(2).mean(-1)
    bias = movement_key_bias(energy, mask)
    flow = model.motion(patches, mask, bias)[0]
    texture = model.texture(*_dense(batch, "texture_apex"), bias)[0]
    expected = 2.0 * info_nce(model.motion_projection(flow), model.texture_projection(texture), 0.1)
    torch.testing.assert_close(output.aux_loss, expected)
    assert output.embedding.shape == (4, 32)


def test_patch_importance_is_a_distribution_over_tokens(batch, face_graph):
    model = create("mmt", 3, face_graph, dim=16, depth=2, heads=2, scale_tokens=True)
    _, attention, components, importance = model.motion(*_dense(batch, "flow_patches"))
    assert importance.shape == (4, 68 * 3) and components.shape == (1 + 68 * 3,)
    torch.testing.assert_close(importance.sum(-1), torch.ones(4))
    assert len(attention) == 2


def test_movement_prior_draws_the_summary_to_moving_nodes(batch, face_graph):
    torch.manual_seed(0)
    patches, mask = _dense(batch, "flow_patches")
    still = torch.zeros_like(patches)
    still[:, 48:68, :, :2] = 1.0  # only the mouth moves
    with_prior = create("mmt", 3, face_graph, dim=16, depth=1, heads=2).eval()
    energy = still[:, :, :, :2].norm(dim=3).flatten(2).mean(-1)
    importance = with_prior.motion(still, mask, movement_key_bias(energy, mask))[3]
    assert importance[:, 48:68].sum(-1).min() > 0.9
    torch.manual_seed(0)
    without = create("mmt", 3, face_graph, dim=16, depth=1, heads=2, movement_prior=False).eval()
    batch_relations = with_prior(batch).relations
    assert not torch.allclose(batch_relations, without(batch).relations)


def test_runs_on_megc2019_flow_like_data(flow_batch, face_graph):
    output = create("mmt", 3, face_graph, dim=16, depth=1, heads=2)(flow_batch)
    assert output.logits.shape == (4, 3)
    torch.testing.assert_close(output.relations.sum(-1), torch.ones(4, 7))


def _dense(batch, name):
    from geomer.models.tokens import dense_nodes

    return dense_nodes(batch, name)
