"""DeRe-GRL: its modules (learnable adjacency, ADM, RRM), the relations rule, settings and the
inputs it runs on (landmark geometry, or flow only on megc2019-flow)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.nn import DenseGCNConv

from geomer.errors import GeomerError
from geomer.features import FeatureSettings
from geomer.graph import FaceGraph
from geomer.models import check_inputs, create
from geomer.models.dere_grl import FLOW_IMAGE_PATCH, _PatchStem
from geomer.models.dere_grl_modules import (
    ActionDecomposition,
    LearnableAdjacency,
    RelationReconstruction,
    SharedGraphConv,
    component_relations,
    gcn_normalise,
)
from geomer.models.registry import parse_settings

SMALL = {"hidden": 16, "actions": 2, "layers": 2, "embedding": 32}


def build(graph, seed=0, num_classes=3, **cfg):
    torch.manual_seed(seed)
    return create("dere-grl", num_classes, graph, **{**SMALL, **cfg})


# -- modules ------------------------------------------------------------------------------


def test_adm_maps_each_component_to_m_actions_from_its_own_nodes_only(face_graph):
    torch.manual_seed(0)
    m, width = 3, 5
    adm = ActionDecomposition(torch.as_tensor(face_graph.component), face_graph.num_components, m)
    nodes = torch.randn(2, face_graph.num_nodes, width)
    actions = adm(nodes)
    assert actions.shape == (2, face_graph.num_components * m, width)
    sizes = torch.bincount(torch.as_tensor(face_graph.component))
    assert [tuple(M.shape) for M in adm.map_matrices()] == [(m, int(n)) for n in sizes]
    # moving the mouth's nodes changes the mouth's actions and nothing else
    mouth = face_graph.component_names.index("mouth")
    moved = nodes.clone()
    moved[:, torch.as_tensor(face_graph.component) == mouth] += 1.0
    changed = (adm(moved) - actions).abs().sum(dim=(0, 2)) > 0
    expected = torch.zeros(face_graph.num_components * m, dtype=torch.bool)
    expected[mouth * m : (mouth + 1) * m] = True
    assert torch.equal(changed, expected)


def test_adm_equals_the_per_component_map_matrices(face_graph):
    torch.manual_seed(1)
    adm = ActionDecomposition(torch.as_tensor(face_graph.component), face_graph.num_components, 2)
    nodes = torch.randn(1, face_graph.num_nodes, 4)
    component = torch.as_tensor(face_graph.component)
    by_hand = torch.cat([M @ nodes[0, component == k] for k, M in enumerate(adm.map_matrices())])
    torch.testing.assert_close(adm(nodes)[0], by_hand)


def test_adm_keeps_each_component_to_its_own_nodes_after_its_weights_move(face_graph):
    """The mask, not the zero start, keeps the map block-diagonal: after the weights move
    everywhere (as training moves them), moving one component's nodes still changes only that
    component's actions."""
    torch.manual_seed(2)
    m = 2
    component = torch.as_tensor(face_graph.component)
    adm = ActionDecomposition(component, face_graph.num_components, m)
    with torch.no_grad():
        adm.weight += 1.0  # nonzero outside every component's block too
    nodes = torch.randn(2, face_graph.num_nodes, 4)
    actions = adm(nodes)
    for name in ("right_brow", "mouth"):
        k = face_graph.component_names.index(name)
        moved = nodes.clone()
        moved[:, component == k] += 1.0
        changed = (adm(moved) - actions).abs().sum(dim=(0, 2)) > 1e-6
        expected = torch.zeros(face_graph.num_components * m, dtype=torch.bool)
        expected[k * m : (k + 1) * m] = True
        assert torch.equal(changed, expected), name
    # the map matrix stays zero outside each action's own component
    outside = adm.map_matrix()[adm.mask == 0]
    assert torch.equal(outside, torch.zeros_like(outside))


def test_rrm_vector_weights_sum_to_one_and_relate_by_co_activation():
    torch.manual_seed(0)
    rrm = RelationReconstruction(num_actions=6, width=4, form="vector")
    actions = torch.randn(3, 6, 4)
    reconstructed, pairs = rrm(actions)
    weights = rrm.action_weights(actions)
    assert reconstructed.shape == (3, 6, 4) and pairs.shape == (3, 6, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    torch.testing.assert_close(pairs, weights[:, :, None] * weights[:, None, :])
    torch.testing.assert_close(reconstructed, actions * 6 * weights[..., None])


def test_rrm_prior_moves_the_weight_to_moving_actions():
    torch.manual_seed(0)
    rrm = RelationReconstruction(num_actions=4, width=3, form="vector")
    actions = torch.randn(2, 4, 3)
    prior = torch.log(torch.tensor([[50.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 50.0]]))
    with torch.no_grad():
        weights = rrm.action_weights(actions, prior)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))
    assert weights[0].argmax() == 0 and weights[1].argmax() == 3
    # the learned part is bounded: it re-weights by at most e^±2 either way
    assert float(weights[0, 0] / weights[0, 1:].max()) > 50 * math.exp(-4.0)
    matrix = RelationReconstruction(num_actions=4, width=3, form="matrix")
    _, pairs = matrix(actions, prior)
    assert (pairs[0].argmax(dim=-1) == 0).all()


def test_rrm_matrix_is_a_row_stochastic_relation_matrix_over_all_actions():
    torch.manual_seed(0)
    rrm = RelationReconstruction(num_actions=6, width=4, form="matrix")
    actions = torch.randn(3, 6, 4)
    reconstructed, pairs = rrm(actions)
    assert reconstructed.shape == (3, 6, 4) and pairs.shape == (3, 6, 6)
    assert (pairs >= 0).all()
    torch.testing.assert_close(pairs.sum(-1), torch.ones(3, 6))
    # input-conditioned: other inputs, other relations
    assert not torch.allclose(pairs[0], pairs[1])
    with pytest.raises(ValueError, match="unknown RRM form"):
        RelationReconstruction(6, 4, form="cube")


def test_component_relations_average_action_blocks_then_normalise_rows():
    # K = 2 components, m = 2 actions each
    pairs = torch.tensor(
        [[[0.4, 0.2, 0.1, 0.1], [0.2, 0.2, 0.3, 0.1], [0.1, 0.3, 0.0, 0.0], [0.1, 0.1, 0.0, 0.0]]]
    )
    blocks = torch.tensor([[0.25, 0.15], [0.15, 0.0]])
    expected = blocks / blocks.sum(dim=1, keepdim=True)
    torch.testing.assert_close(component_relations(pairs, 2)[0], expected)
    # self_weight is added to the diagonal before normalising: an unweighted component keeps
    # (almost) only its self-relation
    with_self = component_relations(pairs, 2, self_weight=0.1)[0]
    torch.testing.assert_close(with_self, (blocks + 0.1 * torch.eye(2)) / (blocks.sum(1) + 0.1)[:, None])
    weights = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    relations = component_relations(weights[:, :, None] * weights[:, None, :], 2, 1 / 16)
    torch.testing.assert_close(relations[0, 1], torch.tensor([0.0, 1.0]))
    # an all-zero row becomes uniform rather than NaN
    relations = component_relations(torch.zeros(1, 4, 4), 2)
    torch.testing.assert_close(relations, torch.full((1, 2, 2), 0.5))


def test_learnable_adjacency_is_the_prior_plus_a_symmetric_non_negative_weight(face_graph):
    layer = LearnableAdjacency(face_graph.edge_index, face_graph.num_nodes)
    prior = torch.zeros(face_graph.num_nodes, face_graph.num_nodes, dtype=torch.bool)
    edges = torch.as_tensor(face_graph.edges)
    prior[edges[:, 0], edges[:, 1]] = prior[edges[:, 1], edges[:, 0]] = True
    assert torch.equal(layer.prior.bool(), prior)
    with torch.no_grad():
        layer.logits.normal_()
    adjacency = layer()
    torch.testing.assert_close(adjacency, adjacency.T)
    assert (layer.learned() >= 0).all() and (adjacency >= layer.prior).all()
    adjacency.sum().backward()
    assert layer.logits.grad is not None and layer.logits.grad.abs().sum() > 0
    fixed = LearnableAdjacency(face_graph.edge_index, face_graph.num_nodes, learn=False)
    assert torch.equal(fixed(), fixed.prior) and not list(fixed.parameters())


def test_shared_graph_conv_equals_pyg_dense_gcn_conv(face_graph):
    torch.manual_seed(0)
    layer = SharedGraphConv(5, 3)
    adjacency = LearnableAdjacency(face_graph.edge_index, face_graph.num_nodes)()
    x = torch.randn(4, face_graph.num_nodes, 5)  # [B, N, F]
    expected = layer.conv(x, adjacency)  # DenseGCNConv.forward
    node_first = layer(x.transpose(0, 1), gcn_normalise(adjacency)).transpose(0, 1)
    torch.testing.assert_close(node_first, expected)
    assert isinstance(layer.conv, DenseGCNConv)


# -- the model ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        {"rrm": "vector"},
        {"rrm": "matrix"},
        {"streams": ("node",)},
        {"streams": ("edge",), "rrm": "matrix"},
        {"use_flow": False, "layers": 3, "actions": 4},
        {"learn_adjacency": False, "center": False, "layers": 1},
    ],
    ids=lambda cfg: ",".join(f"{k}={v}" for k, v in cfg.items()),
)
def test_settings_variants_keep_the_contract(cfg, face_graph, batch):
    model = build(face_graph, **cfg)
    out = model(batch)
    k = face_graph.num_components
    assert out.logits.shape == (4, 3) and out.relations.shape == (4, k, k)
    assert out.embedding.shape == (4, SMALL["embedding"])
    torch.testing.assert_close(out.relations.sum(-1), torch.ones(4, k))
    out.logits.sum().backward()
    assert all(p.grad is not None for p in model.adm.parameters())


@pytest.mark.parametrize("partition", ["k5", "k9"])
def test_the_partition_fixes_nodes_and_components(partition, make_batch):
    graph = FaceGraph(partition)
    batch = make_batch(3, seed=5, graph=graph)
    model = build(graph, actions=3)
    out = model(batch)
    k = graph.num_components
    assert out.relations.shape == (3, k, k)
    assert model.adm.num_actions == 3 * k
    torch.testing.assert_close(out.relations.sum(-1), torch.ones(3, k))


def test_without_geometry_the_movement_is_the_flow_at_the_apex_landmarks(face_graph, flow_batch):
    assert "geometry" not in flow_batch
    model = build(face_graph, use_flow=False)  # flow is used anyway: it is the only movement
    check_inputs(model, flow_batch)
    model.eval()
    with torch.no_grad():
        out = model(flow_batch)
        changed = flow_batch.clone()
        changed.flow_stats = changed.flow_stats + torch.randn_like(changed.flow_stats)
        assert not torch.allclose(model(changed).logits, out.logits)
    torch.testing.assert_close(out.relations.sum(-1), torch.ones(4, face_graph.num_components))


def test_movement_evidence_is_the_flow_magnitude_or_else_the_landmark_rms(face_graph, batch, flow_batch):
    n = face_graph.num_nodes
    model = build(face_graph)  # use_flow=True: the flow at the nodes is the evidence
    expected = batch.flow_stats[..., 2].abs().mean(-1).reshape(4, n)
    torch.testing.assert_close(model.raw_node_activity(batch), expected)
    torch.testing.assert_close(
        model.raw_node_activity(flow_batch), flow_batch.flow_stats[..., 2].abs().mean(-1).reshape(4, n)
    )
    landmarks_only = build(face_graph, use_flow=False)
    geometry = batch.geometry.reshape(4, n, -1, 2)
    rms = landmarks_only._rigid_residual(geometry).pow(2).sum(-1).mean(-1).sqrt()
    torch.testing.assert_close(landmarks_only.raw_node_activity(batch), rms)
    # linear in the amplitude (the ground truth is), not quadratic like an energy
    doubled = batch.clone()
    doubled.geometry = 2 * batch.geometry
    torch.testing.assert_close(landmarks_only.raw_node_activity(doubled), 2 * rms)
    prior = model.action_prior(batch)
    assert prior.shape == (4, model.adm.num_actions) and torch.isfinite(prior).all()


def test_residual_head_motion_is_not_movement(face_graph):
    # a translation, a small rotation and a scaling of the template at every step are removed;
    # a local movement of the mouth survives
    model = build(face_graph, use_flow=False)
    template = torch.as_tensor(face_graph.template, dtype=torch.float32)
    centred = template - template.mean(dim=0)
    steps = torch.linspace(0, 1, 16)[:, None, None]
    rotation = torch.stack([-centred[:, 1], centred[:, 0]], dim=1)
    rigid = steps * (torch.tensor([0.03, -0.02]) + 0.01 * rotation + 0.02 * centred)  # [T, N, 2]
    geometry = rigid.transpose(0, 1)[None]  # [1, N, T, 2]
    assert model._rigid_residual(geometry).abs().max() < 1e-6
    # the lip corners (iBUG 48, 54) pulled up and outwards, as by AU12
    ids = list(face_graph.node_ids)
    corners = [ids.index(48), ids.index(54)]
    local = torch.zeros_like(geometry)
    local[0, corners[0], :, 0], local[0, corners[1], :, 0] = -steps[:, 0, 0], steps[:, 0, 0]
    local[0, corners, :, 1] = -steps[:, 0, 0].expand(2, -1)
    residual = model._rigid_residual(geometry + local)
    moved = residual.pow(2).sum(-1).mean(-1).sqrt()[0]
    rest = torch.ones(face_graph.num_nodes, dtype=torch.bool)
    rest[corners] = False
    assert moved[corners].min() > 10 * moved[rest].max()


def test_noise_floor_is_a_running_median_of_training_batches(face_graph, batch, make_batch):
    model = build(face_graph, movement_prior=True)
    assert torch.equal(model.noise_floor, torch.zeros(face_graph.num_nodes))
    model.train()
    model(batch)
    first = batch.flow_stats[..., 2].abs().mean(-1).reshape(4, -1).median(dim=0).values
    torch.testing.assert_close(model.noise_floor, first)
    other = make_batch(4, seed=7)
    model(other)
    second = other.flow_stats[..., 2].abs().mean(-1).reshape(4, -1).median(dim=0).values
    torch.testing.assert_close(model.noise_floor, 0.9 * first + 0.1 * second)
    floor = model.noise_floor.clone()
    model.eval()
    with torch.no_grad():
        activity = model.node_activity(make_batch(4, seed=9))
        model(make_batch(4, seed=9))
    assert torch.equal(model.noise_floor, floor)  # evaluation never moves it
    assert (activity >= 0).all() and (activity == 0).any()  # below the floor counts as still
    assert "noise_floor" in model.state_dict()  # travels with the checkpoint


def test_relations_follow_the_moving_components(face_graph, make_batch):
    # with the prior on and the learned re-weighting off, a clip whose brows and mouth alone move
    # above the floor relates them to each other and (with a self term) every other component to
    # itself
    model = build(face_graph, movement_prior=True, learned_bound=0.0, self_relation=1.0)
    model.eval()
    still = make_batch(4, seed=3)
    model.noise_floor.copy_(still.flow_stats[..., 2].abs().mean(-1).reshape(4, -1).max(dim=0).values)
    moving = still.clone()
    mouth = torch.as_tensor(face_graph.component == 6).repeat(4)
    moving.flow_stats = still.flow_stats.clone()
    moving.flow_stats[mouth, :, 2] += 5.0
    brows = torch.as_tensor((face_graph.component == 1) | (face_graph.component == 2)).repeat(4)
    moving.flow_stats[brows, :, 2] += 5.0
    with torch.no_grad():
        relations = model(moving).relations
    torch.testing.assert_close(relations.sum(-1), torch.ones(4, face_graph.num_components))
    assert (relations >= 0).all()
    active = [1, 2, 6]
    for row in range(face_graph.num_components):
        others = [k for k in range(face_graph.num_components) if k != row]
        if row in active:
            partners = [k for k in active if k != row]
            assert relations[:, row, partners].min() > 10 * relations[:, row, [k for k in others if k not in active]].max()
        else:
            assert relations[:, row, row].min() > 0.99


def test_use_flow_false_ignores_flow_when_geometry_is_there(face_graph, batch):
    model = build(face_graph, use_flow=False)
    model.eval()
    changed = batch.clone()
    changed.flow_stats = torch.randn_like(changed.flow_stats)
    with torch.no_grad():
        torch.testing.assert_close(model(changed).logits, model(batch).logits)
    with_flow = build(face_graph, use_flow=True)
    with_flow.eval()
    with torch.no_grad():
        assert not torch.allclose(with_flow(changed).logits, with_flow(batch).logits)


def test_neither_geometry_nor_flow_is_a_one_line_error(face_graph, batch):
    stripped = batch.clone()
    del stripped["geometry"], stripped["flow_stats"]
    model = build(face_graph)
    with pytest.raises(GeomerError, match="'geometry'.*'flow_stats'") as error:
        check_inputs(model, stripped)
    assert "\n" not in str(error.value)
    with pytest.raises(GeomerError, match="neither 'geometry' nor 'flow_stats'"):
        model(stripped)


def test_geometry_of_another_length_is_resampled(face_graph, batch):
    model = build(face_graph)
    model.eval()
    shorter = batch.clone()
    shorter.geometry = batch.geometry[:, ::2]  # T = 8 instead of 16
    with torch.no_grad():
        out = model(shorter)
    assert out.logits.shape == (4, 3) and torch.isfinite(out.logits).all()


def test_bad_shapes_and_settings_are_one_line_errors(face_graph, batch, make_batch):
    with pytest.raises(GeomerError, match=r"flow_stats must be \[B·N, 2, 12\].*2 feature scales"):
        build(face_graph, features=FeatureSettings(scales=(8, 16)))(batch)
    with pytest.raises(GeomerError, match="built for graphs of 51 nodes"):
        build(FaceGraph("k5"))(batch)
    with pytest.raises(GeomerError, match="unknown rrm 'cube'"):
        build(face_graph, rrm="cube")
    with pytest.raises(GeomerError, match="streams"):
        build(face_graph, streams=())
    with pytest.raises(GeomerError, match=r"got \('node', 'face'\)"):
        build(face_graph, **parse_settings("dere-grl", {"streams": "node,face"}))
    with pytest.raises(GeomerError, match="streams='node': expected tuple"):
        build(face_graph, streams="node")  # text reaches a model only through parse_settings
    with pytest.raises(GeomerError, match="dropout"):
        build(face_graph, dropout=1.5)
    with pytest.raises(GeomerError, match="learned_bound must be ≥ 0"):
        build(face_graph, learned_bound=-1.0)
    with pytest.raises(GeomerError, match="flow_region_channels must be ≥ 0"):
        build(face_graph, flow_region_channels=-1)


def test_normalisation_statistics_come_from_training_batches_only(face_graph, batch, make_batch):
    model = build(face_graph)
    norm = model.node_encoders["geometry"].norm
    model.train()
    model(batch)
    learned = norm.running_mean.clone()
    assert not torch.equal(learned, torch.zeros_like(learned))
    model.eval()
    with torch.no_grad():
        model(make_batch(4, seed=9))
    assert torch.equal(norm.running_mean, learned)


def test_streams_from_set_text(face_graph):
    """`geomer train --set streams=node` arrives as text: stream names, not letters."""
    assert build(face_graph, **parse_settings("dere-grl", {"streams": "node"})).streams == ("node",)
    for text in ("node, edge", '["node", "edge"]'):
        assert parse_settings("dere-grl", {"streams": text}) == {"streams": ("node", "edge")}
    assert parse_settings("dere-grl", {"streams": '"node"'}) == {"streams": ("node",)}  # a JSON string
    assert build(face_graph, streams=["edge"]).streams == ("edge",)  # as config.json stores it
    for text in ("matrix", '"matrix"'):  # a text setting: plain or a JSON string
        assert parse_settings("dere-grl", {"rrm": text}) == {"rrm": "matrix"}


def test_learns_from_flow_only(face_graph, make_clip, fit, evaluate_accuracy):
    train = [make_clip(i % 3, 70_000 + i, kind="flow_image") for i in range(90)]
    test = Batch.from_data_list(
        [make_clip(i % 3, 80_000 + i, kind="flow_image") for i in range(45)]
    )
    batches = [Batch.from_data_list(train[i : i + 30]) for i in range(0, 90, 30)]
    model = build(face_graph)
    fit(model, batches, steps=40)
    assert evaluate_accuracy(model, test) >= 0.9


def test_relations_depend_on_the_clip_after_training(face_graph, separable_batches, fit):
    # RRM weights are input-conditioned: after training, the class-averaged relation matrices of
    # different classes differ, and each is far from the uninformative uniform matrix.
    train, test = separable_batches
    model = build(face_graph)
    fit(model, train, steps=60)
    model.eval()
    with torch.no_grad():
        relations = model(test).relations
    k = face_graph.num_components
    means = torch.stack([relations[test.y == label].mean(dim=0) for label in range(3)])
    uniform = torch.full((k, k), 1.0 / k)
    for label in range(3):
        assert (means[label] - uniform).abs().max() > 0.1
        for other in range(label):
            assert (means[label] - means[other]).abs().max() > 0.05, (label, other)


def test_the_prior_is_off_by_default_and_the_relations_are_the_rrm_weights(face_graph, batch):
    model = build(face_graph).eval()
    assert model.movement_prior is False
    with torch.no_grad():
        relations = model(batch).relations
        nodes = model.backbone(batch)
        actions = model.adm(nodes, node_first=True).transpose(0, 1)
        weights = model.rrm.action_weights(actions)  # no prior
    # vector form, no self term: every row is the RRM weight of each component
    per_component = weights.reshape(weights.shape[0], face_graph.num_components, -1).sum(-1)
    for row in range(face_graph.num_components):
        torch.testing.assert_close(relations[:, row], per_component)
    # changing the flow magnitude alone, which the prior would read, leaves the weights to the model
    louder = batch.clone()
    louder.flow_stats = batch.flow_stats.clone()
    louder.flow_stats[:, :, 2] += 5.0
    floor_before = model.noise_floor.clone()
    model.train()
    model(louder)
    assert torch.equal(model.noise_floor, floor_before)  # the prior's statistics are not even read


def test_the_flow_image_is_read_at_each_node(face_graph, flow_batch):
    """Each node reads the 5×5 flow pixels around its position in the flow image: a change of
    the image next to one node changes that clip's output, a change far from every node does
    not; without the stem the image is not read (the region read-out, which reads every face
    pixel, is off here)."""
    model = build(face_graph, flow_region_channels=0).eval()
    points = flow_batch.flow_image_points.reshape(4, face_graph.num_nodes, 2)
    with torch.no_grad():
        whole = flow_batch.clone()
        whole.flow_image_points = points.round().reshape(-1, 2)  # on pixel centres: no interpolation
        x, y = whole.flow_image_points.long().reshape(4, -1, 2)[0, 30].tolist()  # a node of clip 0
        patch = whole.flow_image[0, :, y - 2 : y + 3, x - 2 : x + 3]
        expected = model.flow_image_stem(patch[None]).flatten()
        torch.testing.assert_close(model._flow_image_signal(whole)[30], expected)

        def changed(rows, columns):
            out = flow_batch.clone()
            out.flow_image = out.flow_image.clone()
            out.flow_image[0, :, rows, columns] += 1.0
            return out

        cx, cy = points[0, 30].round().long().tolist()
        near = changed(slice(cy - 1, cy + 2), slice(cx - 1, cx + 2))
        pixels = torch.stack(torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="xy"), -1).reshape(-1, 2)
        distance = torch.cdist(pixels, points[0], p=float("inf")).min(dim=1).values.reshape(28, 28)
        far_y, far_x = torch.nonzero(distance >= 3.5)[0].tolist()  # no node's 5×5 patch reaches it
        far = changed(far_y, far_x)
        out = model(flow_batch)
        assert not torch.allclose(out.logits[0], model(near).logits[0])
        torch.testing.assert_close(out.logits[1:], model(near).logits[1:])  # the other clips are untouched
        torch.testing.assert_close(out.logits, model(far).logits)

        blind = build(face_graph, flow_image_channels=0, flow_region_channels=0).eval()
        assert blind.flow_image_stem is None
        torch.testing.assert_close(blind(flow_batch).logits, blind(near).logits)


def test_the_patch_stem_is_its_two_convolutions():
    """The stem computes its second convolution, which sees its whole 3×3 input, as a linear
    map: the same outputs, gradients and BatchNorm statistics as running the layers in turn."""
    torch.manual_seed(0)
    stem = _PatchStem(8)
    reference = copy.deepcopy(stem)
    patches = torch.randn(40, 3, FLOW_IMAGE_PATCH, FLOW_IMAGE_PATCH)
    out = stem(patches)
    expected = nn.Sequential.forward(reference, patches).flatten(1)
    torch.testing.assert_close(out, expected)
    out.square().sum().backward()
    expected.square().sum().backward()
    # the two paths add in other orders: compare on the scale of the stem's gradients (the biases
    # before a BatchNorm have a true gradient of 0, so theirs are rounding noise of that scale)
    scale = max(float(p.grad.abs().max()) for p in reference.parameters())
    for (name, mine), theirs in zip(stem.named_parameters(), reference.parameters()):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-5, atol=1e-6 * scale, msg=name)
    torch.testing.assert_close(stem.state_dict(), reference.state_dict())
    stem.eval()
    reference.eval()
    torch.testing.assert_close(stem(patches), nn.Sequential.forward(reference, patches).flatten(1))


def test_each_component_reads_its_region_of_the_flow_image(face_graph, flow_batch, batch):
    """The region read-out is, per component, the sum over the pixels of its region
    (``flow_image_component``) of each standardised pixel times its own weights: a change of a
    pixel of one component's region changes that component's signal only, an off-face pixel
    changes nothing, and every node of a component gets its component's signal; clips with a
    landmark trajectory do not read it."""
    model = build(face_graph, flow_region_channels=4, flow_image_channels=0).eval()
    readout = model.flow_region
    with torch.no_grad():
        readout.norm.running_mean.normal_()
        readout.norm.running_var.uniform_(0.5, 2.0)
        image, regions = flow_batch.flow_image, flow_batch.flow_image_component
        signal = readout(image, regions)  # [B, K, c]
        standardised = (image.reshape(4, -1) - readout.norm.running_mean) / (readout.norm.running_var + readout.norm.eps).sqrt()
        per_pixel = (standardised.reshape(4, 3, -1, 1) * readout.weight[None]).sum(1)  # [B, F², c]
        for k in range(face_graph.num_components):
            inside = (regions.reshape(4, -1) == k).float()
            torch.testing.assert_close(signal[:, k], (inside[..., None] * per_pixel).sum(1))

        def changed(y, x):
            out = flow_batch.clone()
            out.flow_image = image.clone()
            out.flow_image[0, :, y, x] += 1.0
            return out

        y, x = torch.nonzero(regions[0] == 2)[0].tolist()
        moved = readout(changed(y, x).flow_image, regions) - signal
        assert moved[0, 2].abs().sum() > 0
        assert moved[0, [k for k in range(face_graph.num_components) if k != 2]].abs().sum() == 0
        assert moved[1:].abs().sum() == 0
        off_y, off_x = torch.nonzero(regions[0] == -1)[0].tolist()
        torch.testing.assert_close(model(changed(off_y, off_x)).logits, model(flow_batch).logits)
        nodes = model._node_signals(flow_batch)["flow_region"].reshape(4, face_graph.num_nodes, -1)
        component = torch.as_tensor(face_graph.component)
        torch.testing.assert_close(nodes, signal[:, component])

        # clips with a landmark trajectory do not read their regions, and the read-out's parts,
        # made last, leave the other parts' random start as it was without them
        with_geometry = batch.clone()
        with_geometry.flow_image = batch.flow_image + 1.0
        torch.testing.assert_close(model(with_geometry).logits, model(batch).logits)
        full, without = build(face_graph, seed=3), build(face_graph, seed=3, flow_region_channels=0)
        for key, value in without.state_dict().items():
            torch.testing.assert_close(full.state_dict()[key], value)
        torch.testing.assert_close(full.eval()(batch).logits, without.eval()(batch).logits)

    model.train()
    one = Batch.from_data_list(flow_batch.to_data_list()[:1])
    statistics = readout.norm.running_mean.clone()
    assert model(one).logits.shape == (1, 3)  # one clip: the running statistics, no error
    assert torch.equal(readout.norm.running_mean, statistics)  # and they do not learn from it


# -- mutation-audit checks -------------------------------------------------------------------


def test_adm_node_first_path_uses_the_masked_map(face_graph):
    """The node-first ADM path ([N, B, F] → [K·m, B, F]) uses the masked map too: after the
    weights move everywhere, moving one component's nodes changes only its actions, and it
    equals the batch-first path."""
    torch.manual_seed(2)
    m = 2
    component = torch.as_tensor(face_graph.component)
    adm = ActionDecomposition(component, face_graph.num_components, m)
    with torch.no_grad():
        adm.weight += 1.0
    nodes = torch.randn(face_graph.num_nodes, 3, 4)  # node-first
    actions = adm(nodes, node_first=True)
    torch.testing.assert_close(actions, adm(nodes.transpose(0, 1)).transpose(0, 1))
    k = face_graph.component_names.index("mouth")
    moved = nodes.clone()
    moved[component == k] += 1.0
    changed = (adm(moved, node_first=True) - actions).abs().sum(dim=(1, 2)) > 1e-6
    expected = torch.zeros(face_graph.num_components * m, dtype=torch.bool)
    expected[k * m : (k + 1) * m] = True
    assert torch.equal(changed, expected)


def test_component_relations_of_an_asymmetric_action_matrix():
    """Block (k, l) is the mean of P over component k's action rows and l's action columns
    (checked on an asymmetric P, so the transposed blocks would differ)."""
    pairs = torch.tensor(
        [[[0.4, 0.2, 0.6, 0.8], [0.2, 0.2, 0.2, 0.4], [0.0, 0.1, 0.0, 0.0], [0.1, 0.0, 0.0, 0.0]]]
    )
    blocks = torch.tensor([[0.25, 0.5], [0.05, 0.0]])
    expected = blocks / blocks.sum(dim=1, keepdim=True)
    torch.testing.assert_close(component_relations(pairs, 2)[0], expected)


def test_neighbour_difference_is_the_mean_over_prior_neighbours_of_xj_minus_xi(face_graph):
    """_neighbour_difference(x)_i = mean over i's prior neighbours j of (x_j − x_i)."""
    model = build(face_graph)
    torch.manual_seed(0)
    signal = torch.randn(face_graph.num_nodes, 2, 3)  # [N, B, F]
    neighbours = [set() for _ in range(face_graph.num_nodes)]
    for i, j in torch.as_tensor(face_graph.edges).tolist():
        if i != j:
            neighbours[i].add(j)
            neighbours[j].add(i)
    expected = torch.stack([
        torch.stack([signal[j] - signal[i] for j in sorted(neighbours[i])]).mean(0)
        if neighbours[i] else torch.zeros(2, 3)
        for i in range(face_graph.num_nodes)
    ])
    torch.testing.assert_close(model._neighbour_difference(signal), expected)


def test_center_removes_a_common_translation_of_every_node(face_graph, batch):
    """With center=True (the default), adding the same displacement to every node of a clip at
    each step leaves the output unchanged."""
    model = build(face_graph, use_flow=False).eval()
    n, t = face_graph.num_nodes, batch.geometry.shape[1]
    shift = torch.randn(4, 1, t, 2).expand(4, n, t, 2).reshape(4 * n, t, 2)
    moved = batch.clone()
    moved.geometry = batch.geometry + 0.05 * shift
    with torch.no_grad():
        before, after = model(batch), model(moved)
    torch.testing.assert_close(after.logits, before.logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(after.embedding, before.embedding, rtol=1e-4, atol=1e-5)


def test_edge_attr_and_the_learned_adjacency_reach_the_output(face_graph, batch):
    """The edge stream reads edge_attr (changing it changes the output; its encoder gets a
    gradient) and propagation uses the learned adjacency (its logits get a gradient)."""
    model = build(face_graph).eval()
    output = model(batch)
    torch.nn.functional.cross_entropy(output.logits, batch.y).backward()
    for parameter in [model.adjacency.logits, *model.edge_encoders["edge_attr"].parameters()]:
        assert parameter.grad is not None and float(parameter.grad.abs().sum()) > 0
    changed = batch.clone()
    changed.edge_attr = batch.edge_attr + torch.randn_like(batch.edge_attr)
    with torch.no_grad():
        assert not torch.allclose(model(changed).logits, output.logits)


def test_stream_layers_are_residual():
    """A stream whose convolutions are zero returns its input (x + relu(norm(0)) = x)."""
    from geomer.models.dere_grl import _Stream

    torch.manual_seed(0)
    stream = _Stream(8, 2)
    with torch.no_grad():
        for conv in stream.convs:
            for parameter in conv.parameters():
                parameter.zero_()
    x = torch.randn(5, 3, 8)
    adjacency = torch.rand(5, 5)
    torch.testing.assert_close(stream(x, adjacency), x)
