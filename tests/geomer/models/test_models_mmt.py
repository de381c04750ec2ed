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
    flow = model.motion(patches, mask)[0]
    texture = model.texture(*_dense(batch, "texture_apex"))[0]
    expected = 2.0 * info_nce(model.motion_projection(flow), model.texture_projection(texture), 0.1)
    torch.testing.assert_close(output.aux_loss, expected)
    assert output.embedding.shape == (4, 32)


def test_patch_importance_is_a_distribution_over_tokens(batch, face_graph):
    model = create("mmt", 3, face_graph, dim=16, depth=2, heads=2, scale_tokens=True)
    _, attention, components, importance = model.motion(*_dense(batch, "flow_patches"))
    assert importance.shape == (4, 68 * 3) and components.shape == (1 + 68 * 3,)
    torch.testing.assert_close(importance.sum(-1), torch.ones(4))
    assert len(attention) == 2


def test_movement_prior_is_off_by_default_and_draws_the_summary_to_moving_nodes(batch, face_graph):
    torch.manual_seed(0)
    patches, mask = _dense(batch, "flow_patches")
    still = torch.zeros_like(patches)
    still[:, 48:68, :, :2] = 1.0  # only the mouth moves
    with_prior = create("mmt", 3, face_graph, dim=16, depth=1, heads=2, movement_prior=True).eval()
    energy = still[:, :, :, :2].norm(dim=3).flatten(2).mean(-1)
    importance = with_prior.motion(still, mask, movement_key_bias(energy, mask))[3]
    assert importance[:, 48:68].sum(-1).min() > 0.9
    torch.manual_seed(0)
    default = create("mmt", 3, face_graph, dim=16, depth=1, heads=2).eval()
    assert default.movement_prior is False
    assert not torch.allclose(with_prior(batch).relations, default(batch).relations)


def test_the_texture_encoder_never_sees_the_flow(batch, face_graph):
    # modality-clean: with the prior on, changing only the flow leaves the texture encoder's
    # output and attention untouched
    torch.manual_seed(0)
    model = create("mmt", 3, face_graph, dim=16, depth=1, heads=2, movement_prior=True).eval()
    seen = []
    model.texture.register_forward_hook(lambda module, args, out: seen.append(out))
    changed = batch.clone()
    changed.flow_patches = changed.flow_patches * 3.0 + torch.randn_like(changed.flow_patches)
    with torch.no_grad():
        first, second = model(batch), model(changed)
    torch.testing.assert_close(seen[0][0], seen[1][0], rtol=0, atol=0)
    torch.testing.assert_close(seen[0][1][0], seen[1][1][0], rtol=0, atol=0)
    assert not torch.allclose(first.logits, second.logits)  # the motion encoder did see it


def test_runs_on_megc2019_flow_like_data(flow_batch, face_graph):
    output = create("mmt", 3, face_graph, dim=16, depth=1, heads=2)(flow_batch)
    assert output.logits.shape == (4, 3)
    torch.testing.assert_close(output.relations.sum(-1), torch.ones(4, 7))


def _dense(batch, name):
    from geomer.models.tokens import dense_nodes

    return dense_nodes(batch, name)
