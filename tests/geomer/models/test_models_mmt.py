"""mmt: the contrastive loss by hand, the aux loss wiring, the per-scale importance, megc2019-flow support."""

from __future__ import annotations

import math

import pytest
import torch

from geomer.errors import GeomerError
from geomer.models import create
from geomer.models.attention import movement_key_bias
from geomer.models.mmt import ScaleAttention, info_nce


@pytest.mark.parametrize("tau", [0.5, None])
def test_info_nce_equals_hand_computed_value(tau):
    """The symmetric InfoNCE by hand; without a temperature it uses the default τ = 0.1."""
    first = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    second = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    loss = info_nce(first, second) if tau is None else info_nce(first, second, tau)
    tau = 0.1 if tau is None else tau
    # normalised: a1=(1,0) a2=(0,1); b1=(1,0) b2=(1,1)/√2 → S = [[1, 1/√2], [0, 1/√2]] / τ
    s = [[1 / tau, (1 / math.sqrt(2)) / tau], [0.0, (1 / math.sqrt(2)) / tau]]

    def ce(row, target):
        return -row[target] + math.log(sum(math.exp(v) for v in row))

    rows = ce(s[0], 0) + ce(s[1], 1)
    columns = ce([s[0][0], s[1][0]], 0) + ce([s[0][1], s[1][1]], 1)
    expected = 0.5 * (rows / 2 + columns / 2)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


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
    flow = model.motion(patches, mask, None, model._flow_image_tokens(batch, patches.shape[1]))[0]
    texture = model.texture(*_dense(batch, "texture_apex"))[0]
    expected = 2.0 * info_nce(model.motion_projection(flow), model.texture_projection(texture), 0.1)
    torch.testing.assert_close(output.aux_loss, expected)
    assert output.embedding.shape == (4, 2 * (1 + 7) * 16)  # the component readout


def test_the_classifier_reads_the_weighted_patch_features_per_component(batch, face_graph):
    """The default readout gives the classifier each modality's summary feature and its
    attention-weighted patch features split by component; the parts add up to the paper's
    weighted feature, and each part holds only its own component's patches."""
    torch.manual_seed(0)
    model = create("mmt", 3, face_graph, dim=16, depth=1, heads=2).eval()
    patches, mask = _dense(batch, "flow_patches")
    image_tokens = model._flow_image_tokens(batch, patches.shape[1])
    embedding, _, _, importance, summary, parts = model.motion(patches, mask, None, image_tokens)
    assert parts.shape == (4, 7, 16)
    torch.testing.assert_close(summary + parts.sum(dim=1), embedding)
    read = model(batch).embedding.view(4, 2, 1 + 7, 16)  # [B, modality, summary + K parts, D]
    torch.testing.assert_close(read[:, 0, 0], summary)
    torch.testing.assert_close(read[:, 0, 1:], parts)
    # a component none of whose patches carries importance contributes a zero part
    component = torch.as_tensor(face_graph.component)
    _, _, _, _, _, without = model.motion(patches, mask & (component != 3), None, image_tokens)
    assert torch.all(without[:, 3] == 0) and torch.all(without[:, 2] != 0)
    fused = create("mmt", 3, face_graph, dim=16, depth=1, heads=2, readout="fused")
    assert fused(batch).embedding.shape == (4, 32)
    with pytest.raises(GeomerError, match="readout"):
        create("mmt", 3, face_graph, readout="sum")
    # a checkpoint of geomer before 0.2.8 recorded no readout: it is rebuilt with the fused one
    from geomer.models import get_spec

    assert get_spec("mmt").settings_of_version("0.2.7") == {"readout": "fused", "flow_region_channels": 0}
    assert get_spec("mmt").settings_of_version("0.2.8") == {"flow_region_channels": 0}
    assert get_spec("mmt").settings_of_version("0.2.12") == {}


def test_patch_importance_is_per_node_and_scale_and_a_distribution(batch, face_graph):
    model = create("mmt", 3, face_graph, dim=16, depth=2, heads=2)
    _, attention, components, importance, _, _ = model.motion(*_dense(batch, "flow_patches"))
    assert importance.shape == (4, 68, 3) and components.shape == (1 + 68,)
    torch.testing.assert_close(importance.sum(dim=(1, 2)), torch.ones(4))
    assert len(attention) == 2 and attention[0].shape == (4, 2, 69, 69)
    # the scales of one node are weighted differently (not a node weight spread evenly)
    within_node = importance / importance.sum(-1, keepdim=True)
    assert (within_node - 1 / 3).abs().max() > 1e-3


def test_scale_attention_weights_each_head_over_the_scales_of_its_node():
    torch.manual_seed(0)
    pooling = ScaleAttention(dim=8, heads=2)
    tokens = torch.randn(2, 5, 3, 8)
    pooled, weights = pooling(tokens)
    assert pooled.shape == (2, 5, 8) and weights.shape == (2, 5, 2, 3)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 5, 2))
    # head h's slice of a node token is its weighted sum of the scale tokens' slices
    expected = (weights[:, :, 0, :, None] * tokens[..., :4]).sum(2)
    torch.testing.assert_close(pooled[..., :4], expected)
    # a scale token changed at one node changes that node's weights only
    changed = tokens.clone()
    changed[:, 2, 1] = 3.0 * torch.randn(2, 8)
    other = pooling(changed)[1]
    assert not torch.allclose(other[:, 2], weights[:, 2])
    torch.testing.assert_close(other[:, [0, 1, 3, 4]], weights[:, [0, 1, 3, 4]])


def test_the_scale_attention_learns_which_scale_carries_the_class():
    # the class is the sign of a pattern at scale 0; scales 1 and 2 are noise as loud: training
    # must move the scale weights from about uniform onto scale 0
    torch.manual_seed(0)
    pooling = ScaleAttention(dim=8, heads=2)
    head = torch.nn.Linear(8, 2)
    optimiser = torch.optim.AdamW([*pooling.parameters(), *head.parameters()], lr=3e-2)
    pattern = torch.randn(8)

    def clips():
        labels = torch.randint(0, 2, (32,))
        tokens = torch.randn(32, 4, 3, 8)
        sign = (2.0 * labels - 1.0)[:, None, None]
        tokens[:, :, 0] = sign * pattern + 0.3 * torch.randn(32, 4, 8)
        return tokens, labels

    with torch.no_grad():
        before = pooling(clips()[0])[1][..., 0].mean()
    for _ in range(60):
        tokens, labels = clips()
        loss = torch.nn.functional.cross_entropy(head(pooling(tokens)[0].mean(1)), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        tokens, labels = clips()
        pooled, weights = pooling(tokens)
    assert (head(pooled.mean(1)).argmax(-1) == labels).float().mean() > 0.9
    assert before < 0.45 and weights[..., 0].mean() > 0.55


def test_movement_prior_is_off_by_default_and_draws_the_summary_to_moving_nodes(batch, face_graph):
    torch.manual_seed(0)
    patches, mask = _dense(batch, "flow_patches")
    still = torch.zeros_like(patches)
    still[:, 48:68, :, :2] = 1.0  # only the mouth moves
    with_prior = create("mmt", 3, face_graph, dim=16, depth=1, heads=2, movement_prior=True).eval()
    energy = still[:, :, :, :2].norm(dim=3).flatten(2).mean(-1)
    importance = with_prior.motion(still, mask, movement_key_bias(energy, mask))[3]
    assert importance[:, 48:68].sum(dim=(1, 2)).min() > 0.9
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


def test_clips_without_a_trajectory_read_each_component_region_as_one_more_motion_token(
        flow_batch, batch, face_graph):
    """Every node of a clip without a landmark trajectory gets one more motion token: its
    component's region read-out of the flow image, projected. A change of one pixel of component
    2's region changes the tokens of component 2's nodes of that clip only, and so its output;
    clips with a trajectory do not read it; its initial weights come from a random stream of their
    own, so the other parts' random start and the random stream after it are as without it."""
    torch.manual_seed(0)
    model = create("mmt", 3, face_graph, dim=16, depth=1, heads=2, flow_image_patch=0,
                   flow_region_channels=4).eval()
    component = torch.as_tensor(face_graph.component)
    regions = flow_batch.flow_image_component
    with torch.no_grad():
        tokens = model._flow_region_tokens(flow_batch)  # [B, N, 1, D]
        per_component = model.flow_region_projection(model.flow_region(flow_batch.flow_image, regions))
        torch.testing.assert_close(tokens[:, :, 0], per_component[:, component])
        y, x = torch.nonzero(regions[0] == 2)[0].tolist()
        changed = flow_batch.clone()
        changed.flow_image = flow_batch.flow_image.clone()
        changed.flow_image[0, :, y, x] += 3.0
        moved = (model._flow_region_tokens(changed) - tokens).abs().sum(dim=(2, 3))  # [B, N]
        assert (moved[0, component == 2] > 0).all()
        assert moved[0, component != 2].sum() == 0 and moved[1:].sum() == 0
        before, after = model(flow_batch).logits, model(changed).logits
        assert not torch.allclose(before[0], after[0])
        torch.testing.assert_close(before[1:], after[1:])

        assert model._flow_region_tokens(batch) is None  # a landmark trajectory: not read
        torch.manual_seed(3)
        full = create("mmt", 3, face_graph, dim=16, depth=1, heads=2)
        stream_after_full = torch.rand(8)  # the next draws, the dropout masks' in training
        torch.manual_seed(3)
        without = create("mmt", 3, face_graph, dim=16, depth=1, heads=2, flow_region_channels=0)
        assert torch.equal(torch.rand(8), stream_after_full)
        for key, value in without.state_dict().items():
            torch.testing.assert_close(full.state_dict()[key], value)
        torch.testing.assert_close(full.eval()(batch).logits, without.eval()(batch).logits)


def test_a_clip_keeps_its_trajectory_through_the_engines_slimming_and_so_does_not_read_its_regions(
        make_clip, face_graph):
    """The engine keeps only a model's declared inputs: ``geometry`` is one of mmt's, so a clip
    with a landmark trajectory still shows it to the rule of which clips read the regions."""
    from torch_geometric.data import Batch

    from geomer.models import get_spec
    from geomer.train.fit import slim_graphs

    clips = slim_graphs(get_spec("mmt").inputs, [make_clip(i % 3, i) for i in range(4)])
    assert {"geometry", "flow_image", "flow_image_component"} <= set(clips[0].keys())
    model = create("mmt", 3, face_graph, dim=16, depth=1, heads=2)
    assert model._flow_region_tokens(Batch.from_data_list(clips)) is None
    without_trajectory = [clip.clone() for clip in clips]
    for clip in without_trajectory:
        del clip.geometry
    assert model._flow_region_tokens(Batch.from_data_list(without_trajectory)) is not None


def test_aux_loss_trains_both_projections_and_both_encoders(batch, face_graph):
    """The contrastive aux loss is not detached: its gradient reaches the motion and texture
    projections and the encoders' node embeddings."""
    torch.manual_seed(0)
    model = create("mmt", 3, face_graph, dim=16, depth=1, heads=2).eval()
    model(batch).aux_loss.backward()
    for module in (model.motion_projection, model.texture_projection, model.motion.nodes,
                   model.texture.nodes):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0


def test_relations_are_the_mean_of_both_encoders_attention_relations(batch, face_graph):
    """relations = mean of attention_relations of the motion and the texture encoder."""
    from geomer.models.attention import attention_relations

    torch.manual_seed(0)
    model = create("mmt", 3, face_graph, dim=16, depth=2, heads=2).eval()
    with torch.no_grad():
        output = model(batch)
        patches, mask = _dense(batch, "flow_patches")
        extra = [t for t in (model._flow_image_tokens(batch, patches.shape[1]),
                             model._flow_region_tokens(batch)) if t is not None]
        motion = model.motion(patches, mask, None, torch.cat(extra, dim=2) if extra else None)
        texture = model.texture(*_dense(batch, "texture_apex"))
        first = attention_relations(motion[1], motion[2], 7)
        second = attention_relations(texture[1], texture[2], 7)
    assert not torch.allclose(first, second)
    torch.testing.assert_close(output.relations, (first + second) / 2)
    # a change of the texture alone changes the relations
    changed = batch.clone()
    changed.texture_apex = torch.rand_like(batch.texture_apex)
    with torch.no_grad():
        assert not torch.allclose(model(changed).relations, output.relations)


def test_padded_nodes_get_no_importance_and_the_embedding_reads_patch_norm(batch, face_graph):
    """Padded nodes (node_mask False) get zero patch importance; the node embedding and the
    patch_norm term both reach the modality embedding (non-zero gradients)."""
    torch.manual_seed(0)
    model = create("mmt", 3, face_graph, dim=16, depth=2, heads=2).eval()
    patches, mask = _dense(batch, "flow_patches")
    mask = mask.clone()
    mask[0, 40:] = False
    mask[2, 10:30] = False
    embedding, _, _, importance, _, _ = model.motion(patches, mask)
    assert torch.all(importance[~mask] == 0)
    torch.testing.assert_close(importance.sum(dim=(1, 2)), torch.ones(4))
    embedding.sum().backward()
    for module in (model.motion.nodes, model.motion.patch_norm):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None and float(g.abs().sum()) > 0 for g in grads)
