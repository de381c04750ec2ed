"""The small-data recipe: the mirror's correctness, geometry/flow augmentation, the training hook."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from geomer.data.pyg import CollatedGraphs, stack_batches, to_pyg
from geomer.errors import GeomerError
from geomer.graph import FaceGraph
from geomer.train import TrainConfig
from geomer.train.fit import slim_graphs
from geomer.train.augment import (
    MIRROR,
    Augmenter,
    MirrorAveraged,
    averaged_model,
    flip_batch,
    mirror_components,
    mirror_nodes,
    parse_recipe,
    refresh_batch_norm,
)
from tests.geomer.models.conftest import make_features

GRAPH = FaceGraph("k7")
NODE_ATTRIBUTES = ("x", "pos", "geometry", "flow_stats", "flow_patches", "texture", "texture_apex", "sequence")


def clips(kind: str, count: int = 3, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    return Batch.from_data_list([
        to_pyg(make_features(GRAPH, i % 3, rng, kind=kind, clip=f"c{i}"), GRAPH, i % 3, subject=f"s{i}")
        for i in range(count)
    ])


def test_the_mirror_is_an_involution_with_left_right_components():
    assert np.array_equal(MIRROR[MIRROR], np.arange(68)) and (MIRROR != np.arange(68)).sum() == 2 * 29
    names = GRAPH.component_names
    swapped = [names[k] for k in mirror_components(GRAPH)]
    assert swapped == ["contour", "left_brow", "right_brow", "nose", "left_eye", "right_eye", "mouth"]
    inner = FaceGraph("k5")  # 51 inner points: the mirror stays inside the subset
    nodes = mirror_nodes(inner)
    assert np.array_equal(nodes[nodes], np.arange(inner.num_nodes))


@pytest.mark.parametrize("kind", ["frames", "flow_image"])
def test_flip_twice_is_the_identity(kind):
    batch = clips(kind)
    twice = flip_batch(flip_batch(batch, GRAPH, [True, False, True]), GRAPH, [True, False, True])
    for name in (*NODE_ATTRIBUTES, "edge_attr", "flow_image", "flow_image_points", "flow_image_component"):
        if getattr(batch, name, None) is not None:
            torch.testing.assert_close(twice[name], batch[name], msg=name)
    once = flip_batch(batch, GRAPH, [True, False, True])
    assert not torch.equal(once.x, batch.x)


@pytest.mark.parametrize("kind", ["frames", "flow_image"])
def test_flip_mirrors_every_input(kind):
    batch = clips(kind, count=2)
    out = flip_batch(batch, GRAPH, [True, False])
    n = GRAPH.num_nodes
    mirror = torch.from_numpy(mirror_nodes(GRAPH))
    flipped, kept = slice(0, n), slice(n, 2 * n)
    for name in NODE_ATTRIBUTES:
        if getattr(batch, name, None) is not None:
            torch.testing.assert_close(out[name][kept], batch[name][kept])  # the unflipped clip is untouched
    # node k of the mirrored face holds what node mirror(k) held, its horizontal parts negated
    stats, new = batch.flow_stats[flipped][mirror], out.flow_stats[flipped]
    torch.testing.assert_close(new[..., 0], -stats[..., 0])
    torch.testing.assert_close(new[..., 1:3], stats[..., 1:3])
    torch.testing.assert_close(out.pos[flipped], batch.pos[flipped][mirror] * torch.tensor([-1.0, 1.0]))
    torch.testing.assert_close(out.flow_patches[flipped][:, :, 0], -batch.flow_patches[flipped][mirror][:, :, 0].flip(-1))
    torch.testing.assert_close(out.texture_apex[flipped], batch.texture_apex[flipped][mirror].flip(-1))
    # the onset texture and the sequence frames too: moved to the mirrored node and mirrored
    for name in ("texture", "sequence"):
        if getattr(batch, name, None) is not None:
            torch.testing.assert_close(out[name][flipped], batch[name][flipped][mirror].flip(-1), msg=name)
            assert not torch.equal(out[name][flipped], batch[name][flipped]), name
    # the right brow's features now sit on the left brow's nodes (components keep their ids)
    right, left = GRAPH.component_names.index("right_brow"), GRAPH.component_names.index("left_brow")
    component = torch.as_tensor(GRAPH.component)
    torch.testing.assert_close(out.flow_stats[flipped][component == left][:, :, 0].mean(),
                               -batch.flow_stats[flipped][component == right][:, :, 0].mean())
    # the orientation histogram follows the mirrored flow vector
    u, v = new[..., 0], new[..., 1]
    moving = new[..., 3:11].sum(-1) > 0
    expected_bin = torch.floor(torch.remainder(torch.atan2(v, u), 2 * np.pi) / (np.pi / 4)).long() % 8
    assert torch.equal(new[..., 3:11].argmax(-1)[moving], expected_bin[moving])
    if kind == "frames":
        torch.testing.assert_close(out.geometry[flipped][..., 0], -batch.geometry[flipped][mirror][..., 0])
        torch.testing.assert_close(out.x[flipped][:, 0], -batch.x[flipped][mirror][:, 0])
    # the flow image is mirrored with u negated; its regions follow with left/right swapped
    image, regions = out.flow_image[0], out.flow_image_component[0]
    torch.testing.assert_close(image[0], -batch.flow_image[0, 0].flip(-1))
    torch.testing.assert_close(image[1:], batch.flow_image[0, 1:].flip(-1))
    # node k's position in the mirrored image is node mirror(k)'s, mirrored: x → F − 1 − x
    side = batch.flow_image.shape[-1]
    torch.testing.assert_close(out.flow_image_points[flipped],
                               batch.flow_image_points[flipped][mirror] * torch.tensor([-1.0, 1.0])
                               + torch.tensor([side - 1.0, 0.0]))
    torch.testing.assert_close(out.flow_image_points[kept], batch.flow_image_points[kept])
    swap = torch.from_numpy(mirror_components(GRAPH))
    original = batch.flow_image_component[0].flip(-1)
    assert torch.equal(regions[original >= 0], swap[original[original >= 0]])
    assert torch.equal(regions == -1, original == -1)
    # the edges' relative motion is rebuilt from the mirrored node motion
    motion = out.x[:, :2] if kind == "frames" else out.flow_stats[:, 0, :2]
    source, target = out.edge_index
    torch.testing.assert_close(out.edge_attr, motion[target] - motion[source])


@pytest.mark.parametrize("name", ["dere-grl", "mmt"])
def test_mirror_averaging_makes_a_model_mirror_symmetric(name):
    from geomer.models import create

    torch.manual_seed(0)
    model = create(name, 3, GRAPH).eval()
    batch = clips("frames")
    mirrored = flip_batch(batch, GRAPH, torch.ones(3, dtype=torch.bool))
    swap = torch.from_numpy(mirror_components(GRAPH))
    with torch.no_grad():
        plain, plain_mirror = model(batch), model(mirrored)
        both, both_mirror = MirrorAveraged(model, GRAPH)(batch), MirrorAveraged(model, GRAPH)(mirrored)
    # an untrained model reads the two sides differently; averaged over the mirror it cannot
    assert not torch.allclose(plain.logits, plain_mirror.logits, atol=1e-4)
    assert torch.allclose(both.logits, both_mirror.logits, atol=1e-5)
    assert torch.allclose(both.logits.exp().sum(1), torch.ones(3), atol=1e-5)  # log-probabilities
    # the mirror's relations are mapped back: relation (i, j) of a clip is (m(i), m(j)) of its mirror
    assert torch.allclose(both.relations, both_mirror.relations[:, swap][:, :, swap], atol=1e-5)
    # moving or switching the mode keeps the wrapper; copies do not recurse
    import copy

    wrapped = MirrorAveraged(model, GRAPH)
    assert wrapped.to("cpu").eval() is wrapped and wrapped.train(False) is wrapped
    assert isinstance(copy.copy(wrapped), MirrorAveraged)


def assert_same_batch(got, expected):
    assert got.num_graphs == expected.num_graphs and got.num_nodes == expected.num_nodes
    assert sorted(got.keys()) == sorted(expected.keys())
    for key in expected.keys():
        if torch.is_tensor(expected[key]):
            assert torch.equal(got[key], expected[key]), key  # edge_index, batch, ptr offset
        else:
            assert got[key] == expected[key], key


@pytest.mark.parametrize("kind", ["frames", "flow_image"])
def test_stacked_batches_are_the_batch_of_all_their_clips(kind):
    first, second = clips(kind, count=2, seed=0), clips(kind, count=3, seed=1)
    stacked = stack_batches([first, second])
    assert stacked.num_graphs == 5
    assert_same_batch(stacked, Batch.from_data_list(first.to_data_list() + second.to_data_list()))
    with pytest.raises(GeomerError, match="different attributes"):
        stack_batches([clips("frames"), clips("flow_image")])


@pytest.mark.parametrize("kind", ["frames", "flow_image"])
def test_a_gathered_batch_is_the_batch_of_its_clips(kind):
    graphs = clips(kind, count=5).to_data_list()
    table = CollatedGraphs(graphs)
    assert_same_batch(table.batch([4, 1, 3]), Batch.from_data_list([graphs[4], graphs[1], graphs[3]]))
    # the mirrored table: clip n + i is clip i's mirror image, made once and kept
    mirror = lambda full: flip_batch(full, GRAPH, torch.ones(5, dtype=torch.bool))  # noqa: E731
    mirrored = table.extended("mirror", mirror)
    assert table.extended("mirror", mirror) is mirrored and len(mirrored) == 10
    plain = Batch.from_data_list([graphs[2], graphs[0]])
    assert_same_batch(mirrored.batch([7, 0]), flip_batch(plain, GRAPH, [True, False]))
    # one clip, drawn twice, and the engine's slimmed graphs (they carry a num_nodes key)
    single = slim_graphs(["x", "flow_image"], graphs[:1])
    assert_same_batch(CollatedGraphs(single).batch([0, 0]), Batch.from_data_list(single * 2))
    inner = FaceGraph("k5")  # another face graph: 51 nodes a clip
    other = to_pyg(make_features(inner, 0, np.random.default_rng(1), kind=kind, clip="c9"), inner, 0, subject="s9")
    with pytest.raises(GeomerError, match="different node counts"):
        CollatedGraphs(graphs[:2] + [other])
    with pytest.raises(GeomerError, match="differs in size"):  # 16 · 68 + 51 nodes = 17 · 67
        CollatedGraphs(clips(kind, count=16).to_data_list() + [other])


def test_a_table_flips_the_clips_that_flipping_each_batch_flipped():
    """The augmenter gathers flipped clips from the mirrored table: the same draws and the same
    batch as mirroring each batch (flip_batch) with those draws."""
    graphs = clips("flow_image", count=6).to_data_list()
    augmenter = Augmenter(parse_recipe("flip"), GRAPH, torch.Generator().manual_seed(3))
    draws = torch.Generator().manual_seed(3)
    table = CollatedGraphs(graphs)
    for indices in ([5, 0, 2], [1, 3, 4], [2, 2, 0], [4, 1, 5]):
        expected = flip_batch(Batch.from_data_list([graphs[i] for i in indices]), GRAPH,
                              torch.rand(3, generator=draws) < 0.5)
        assert_same_batch(augmenter.batch(table, indices), expected)


@pytest.mark.parametrize("name", ["hsta", "mubert", "mmt", "dere-grl"])
def test_mirror_averaging_evaluates_a_clip_and_its_mirror_in_one_pass(name):
    from geomer.models import create, get_spec

    torch.manual_seed(0)
    model = create(name, 3, GRAPH, **get_spec(name).small_config).eval()
    batch = clips("frames")
    calls = []
    model.register_forward_hook(lambda module, inputs, output: calls.append(int(inputs[0].num_graphs)))
    with torch.no_grad():
        averaged = MirrorAveraged(model, GRAPH)(batch)
        assert calls == [6]  # the 3 clips and their 3 mirrors in one batch
        plain, mirrored = model(batch), model(flip_batch(batch, GRAPH, torch.ones(3, dtype=torch.bool)))
    swap = torch.from_numpy(mirror_components(GRAPH))
    expected = torch.logsumexp(torch.stack([plain.logits.log_softmax(1), mirrored.logits.log_softmax(1)]), 0)
    torch.testing.assert_close(averaged.logits, expected - np.log(2.0))
    torch.testing.assert_close(averaged.relations, (plain.relations + mirrored.relations[:, swap][:, :, swap]) / 2)
    torch.testing.assert_close(averaged.embedding, (plain.embedding + mirrored.embedding) / 2)
    calls.clear()
    MirrorAveraged(model, GRAPH).train()(batch)
    assert calls == [3, 3]  # in training, two passes: batch statistics and dropout stay per pass


def test_rotation_scale_and_jitter():
    batch = clips("frames", count=2)
    recipe = parse_recipe("rotate=10,scale=0.1")
    table = CollatedGraphs(batch.to_data_list())
    out = Augmenter(recipe, GRAPH, torch.Generator().manual_seed(0)).batch(table, [0, 1])
    ratio = out.geometry.norm(dim=-1).flatten(1).mean(1) / batch.geometry.norm(dim=-1).flatten(1).mean(1)
    assert torch.all((ratio > 0.89) & (ratio < 1.11)) and not torch.allclose(ratio, torch.ones_like(ratio))
    torch.testing.assert_close(out.flow_stats, batch.flow_stats)  # geometry only
    jittered = Augmenter(parse_recipe("jitter=0.3"), GRAPH, torch.Generator().manual_seed(0)).batch(table, [0, 1])
    factor = jittered.flow_stats[:, :, 2] / batch.flow_stats[:, :, 2]
    assert torch.all((factor > 0.69) & (factor < 1.31))
    torch.testing.assert_close(jittered.flow_stats[:, :, 3:11], batch.flow_stats[:, :, 3:11])
    torch.testing.assert_close(jittered.x[:, 2:].reshape(-1, 3, 12), jittered.flow_stats)
    torch.testing.assert_close(jittered.flow_image[0], batch.flow_image[0] * factor[0, 0])
    # each clip turns by its own matrix: a quarter turn (x, y) → (−y, x) for the first, twice the
    # size for the second
    augmenter = Augmenter(recipe, GRAPH, torch.Generator())
    turned = augmenter._rotate_scale(batch, torch.tensor([np.pi / 2, 0.0]), torch.tensor([1.0, 2.0]))
    nodes = GRAPH.num_nodes
    first, second = batch.geometry[:nodes], batch.geometry[nodes:]
    torch.testing.assert_close(turned.geometry[:nodes], torch.stack([-first[..., 1], first[..., 0]], -1))
    torch.testing.assert_close(turned.geometry[nodes:], 2 * second)
    torch.testing.assert_close(turned.x[nodes:, :2], 2 * batch.x[nodes:, :2])


@pytest.mark.parametrize("kind", ["frames", "flow_image"])
def test_jitter_scales_every_flow_quantity_by_its_clips_factor(kind):
    """Jitter multiplies u, v, the magnitude and the strain of the node flow statistics (in
    ``flow_stats`` and in ``x``), the flow patches and the flow image by the clip's factor; the
    orientation histogram and the displacement are kept."""
    batch = clips(kind, count=2)
    augmenter = Augmenter(parse_recipe("jitter=0.3"), GRAPH, torch.Generator())
    factor = torch.tensor([1.3, 0.8])
    out = augmenter._jitter(batch, factor)
    per_node = factor[batch.batch][:, None]
    for channel in (0, 1, 2, 11):  # u, v, magnitude, strain
        torch.testing.assert_close(out.flow_stats[..., channel], batch.flow_stats[..., channel] * per_node,
                                   msg=f"channel {channel}")
    assert batch.flow_stats[..., 11].abs().sum() > 0  # the clips have strain to scale
    torch.testing.assert_close(out.flow_stats[..., 3:11], batch.flow_stats[..., 3:11])
    width = 2 if kind == "frames" else 0
    torch.testing.assert_close(out.x[:, width:].reshape(-1, 3, 12), out.flow_stats)
    torch.testing.assert_close(out.x[:, :width], batch.x[:, :width])
    torch.testing.assert_close(out.flow_patches, batch.flow_patches * factor[batch.batch].view(-1, 1, 1, 1, 1))
    torch.testing.assert_close(out.flow_image, batch.flow_image * factor.view(-1, 1, 1, 1))


@pytest.mark.parametrize("kind", ["frames", "flow_image"])
def test_rotation_and_scale_rebuild_the_edge_motion_from_the_turned_displacement(kind):
    """After rotation and scale, edge (i, j) carries displacement[j] − displacement[i] of the
    turned nodes; clips without a displacement keep their edges' flow motion (not turned)."""
    batch = clips(kind, count=2)
    augmenter = Augmenter(parse_recipe("rotate=10,scale=0.1"), GRAPH, torch.Generator())
    out = augmenter._rotate_scale(batch, torch.tensor([0.3, -0.2]), torch.tensor([1.1, 0.9]))
    source, target = out.edge_index
    if kind == "frames":
        motion = out.x[:, :2]
        assert not torch.allclose(motion, batch.x[:, :2])
        torch.testing.assert_close(out.edge_attr, motion[target] - motion[source])
    else:
        torch.testing.assert_close(out.edge_attr, batch.edge_attr)


@pytest.mark.parametrize("kind", ["frames", "flow_image"])
def test_rotation_scale_and_jitter_leave_the_batch_they_are_given_unchanged(kind):
    # they copy the batch object shallowly and give each changed attribute a new tensor
    batch = clips(kind, count=2)
    before = {key: value.clone() for key, value in batch.to_dict().items() if torch.is_tensor(value)}
    augmenter = Augmenter(parse_recipe("rotate=10,scale=0.1,jitter=0.3"), GRAPH, torch.Generator().manual_seed(0))
    size = batch.num_graphs
    out = augmenter._jitter(augmenter._rotate_scale(batch, torch.full((size,), 0.2), torch.full((size,), 1.1)),
                            torch.full((size,), 1.3))
    assert not torch.equal(out.flow_stats, batch.flow_stats)
    for key, value in before.items():
        torch.testing.assert_close(getattr(batch, key), value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("kind", ["frames", "flow_image"])
def test_mixup_mixes_every_float_input_of_a_clip_with_its_partners(kind):
    batch = clips(kind, count=4)
    before = {key: value.clone() for key, value in batch.to_dict().items() if torch.is_tensor(value)}
    augmenter = Augmenter(parse_recipe("mixup=0.4"), GRAPH, torch.Generator().manual_seed(0))
    mixed, partner, weight = augmenter.mix(batch)
    assert sorted(partner.tolist()) == [0, 1, 2, 3] and 0.5 <= weight < 1.0
    size, mixed_names = batch.num_graphs, set()
    for key, value in before.items():
        torch.testing.assert_close(getattr(batch, key), value, rtol=0, atol=0, msg=key)  # not changed
        if torch.is_floating_point(value):
            rows = value.reshape(size, -1, *value.shape[1:])
            expected = (weight * rows + (1 - weight) * rows[partner]).reshape(value.shape)
            torch.testing.assert_close(mixed[key], expected, msg=key)
            mixed_names.add(key)
        else:  # node components, regions, the graph's edges and membership, labels
            assert torch.equal(mixed[key], value), key
    image = {"flow_image", "flow_image_points"} if kind == "flow_image" else set()
    assert {"x", "pos", "flow_stats", "edge_attr"} | image <= mixed_names
    # a draw per batch from the augmenter's stream: the same seed gives the same mix
    again = Augmenter(parse_recipe("mixup=0.4"), GRAPH, torch.Generator().manual_seed(0)).mix(batch)
    assert torch.equal(again[1], partner) and again[2] == weight
    unmixed = Augmenter(parse_recipe("flip"), GRAPH, torch.Generator()).mix(batch)
    assert unmixed[0] is batch and unmixed[1:] == (None, 1.0)


def test_rotation_and_scale_turn_the_flow_image_its_vectors_and_the_nodes_in_it():
    batch = clips("flow_image", count=2)
    size = batch.flow_image.shape[-1]
    image = torch.zeros_like(batch.flow_image)
    image[:, 0, 10, 20] = 1.0  # one moving pixel: u = 1 at x = 20, y = 10
    image[:, 2, 10, 20] = 0.5
    batch.flow_image = image
    points = batch.flow_image_points.clone()
    points[0] = torch.tensor([20.0, 10.0])  # node 0 of clip 0 sits on that pixel
    batch.flow_image_points = points
    regions = batch.flow_image_component.clone()
    augmenter = Augmenter(parse_recipe("rotate=10"), GRAPH, torch.Generator().manual_seed(0))
    # a quarter turn for clip 0, the identity for clip 1
    out = augmenter._rotate_scale(batch, torch.tensor([np.pi / 2, 0.0]), torch.tensor([1.0, 1.0]))
    c = (size - 1) / 2
    x, y = c - (10 - c), c + (20 - c)  # M (p − c) + c with M = [[0, −1], [1, 0]]: whole pixels
    torch.testing.assert_close(out.flow_image_points[0], torch.tensor([x, y]))
    # the flow at the node's new position is the turned vector; the strain is kept
    turned = out.flow_image[0, :, int(y), int(x)]
    torch.testing.assert_close(turned, torch.tensor([0.0, 1.0, 0.5]), atol=1e-5, rtol=0)
    assert out.flow_image[0].abs().sum() == pytest.approx(1.5, abs=1e-4)  # nothing else moves
    torch.testing.assert_close(out.flow_image[1], image[1], atol=1e-6, rtol=0)
    torch.testing.assert_close(out.flow_image_points[68:], points[68:])
    torch.testing.assert_close(out.flow_image_component[1], regions[1])
    moved = out.flow_image_component[0]
    assert not torch.equal(moved, regions[0]) and set(moved.unique().tolist()) <= set(regions[0].unique().tolist())
    assert torch.equal(batch.flow_image, image)  # the input batch is not changed
    # at scale 2 a face moves twice as far: a uniform flow doubles (away from the borders)
    batch.flow_image = torch.ones_like(image)
    out = augmenter._rotate_scale(batch, torch.zeros(2), torch.tensor([2.0, 2.0]))
    torch.testing.assert_close(out.flow_image[:, :, 10:18, 10:18],
                               torch.tensor([2.0, 2.0, 1.0])[None, :, None, None].expand(2, 3, 8, 8))


def test_recipe_spec_is_validated_and_canonical():
    assert parse_recipe("").spec() == "" and not parse_recipe("").augments
    recipe = parse_recipe(" flip , jitter=0.2,ema")
    assert (recipe.flip, recipe.jitter, recipe.ema) == (0.5, 0.2, 0.99) and recipe.augments
    assert recipe.spec() == "flip=0.5,jitter=0.2,ema=0.99"
    assert TrainConfig(augment="ema,flip").augment == "flip=0.5,ema=0.99"
    assert parse_recipe("none").spec() == "" and parse_recipe("mirror").mirror == 1.0
    for spec, message in (("tilt", "unknown part 'tilt'"), ("flip=2", "flip must lie"),
                          ("mirror=0.5", "mirror is on"),
                          ("rotate=abc", "not a number"), ("smooth=nan", "smooth must lie")):
        with pytest.raises(GeomerError, match=message):
            TrainConfig(augment=spec)
    assert "augment" not in TrainConfig(augment="none").result_settings()
    assert TrainConfig().augment == "flip=0.5,mirror=1"


def test_a_model_may_name_its_own_recipe_and_the_user_overrides_it():
    # dere-grl's recipe (its train_defaults) adds label smoothing and mixup; hsta keeps the engine's; an
    # explicit --augment wins over either
    assert TrainConfig.for_model("dere-grl").augment == "flip=0.5,smooth=0.1,mixup=0.4,mirror=1"
    assert TrainConfig.for_model("hsta").augment == "flip=0.5,mirror=1"
    for model in ("mmt", "mmt-large"):  # mmt's recipe adds label smoothing (0.2.14)
        assert TrainConfig.for_model(model).augment == "flip=0.5,smooth=0.1,mirror=1"
    assert TrainConfig.for_model("dere-grl", augment="none").augment == ""
    assert TrainConfig.for_model("dere-grl", augment=None).augment == "flip=0.5,smooth=0.1,mixup=0.4,mirror=1"
    # the paper models name their own budget in steps; --epochs or --steps wins
    for model in ("dere-grl", "hsta", "mmt", "mubert", "hsta-base"):  # a sized variant shares its class's recipe
        assert (TrainConfig.for_model(model).steps, TrainConfig.for_model(model).epochs) == (200, None)
        assert TrainConfig.for_model(model).epochs_for(5) == 40  # the synthetic standard's 150 clips
    assert (TrainConfig.for_model("hsta", epochs=5).steps, TrainConfig.for_model("hsta", epochs=5).epochs) == (None, 5)
    assert TrainConfig.for_model("dere-grl", steps=50).epochs is None
    assert TrainConfig.for_model("mmt").replace(epochs=10).budget() == "10 epochs"  # a new budget replaces the old
    assert TrainConfig().replace(steps=100).budget() == "100 steps"
    assert TrainConfig.for_model("hsta").lr == TrainConfig().lr and TrainConfig.for_model("ststnet").epochs == 100


SMALL = {"hidden": 8, "actions": 2, "layers": 2, "embedding": 16}  # a small dere-grl


def _three_subjects(seed: int) -> list:
    """18 clips of 3 classes, 6 of each of the subjects s0, s1, s2."""
    rng = np.random.default_rng(seed)
    return [to_pyg(make_features(GRAPH, i % 3, rng, clip=f"c{i}"), GRAPH, i % 3, subject=f"s{i % 3}", dataset="d")
            for i in range(18)]


@pytest.mark.slow
def test_training_with_the_recipe_is_recorded_and_changes_the_model(tmp_path):
    from geomer.train import run_loso

    graphs = _three_subjects(3)
    plain = TrainConfig(model="dere-grl", cfg=SMALL, epochs=2, batch_size=6, seeds=(0,), progress=False,
                        augment="none")
    recipe = plain.replace(augment="flip,rotate,jitter,smooth,mixup,ema=0.9")
    results = [run_loso(graphs, ("a", "b", "c"), config, tmp_path / name, face_graph=GRAPH)
               for name, config in (("plain", plain), ("recipe", recipe))]
    config = json.loads((tmp_path / "recipe" / "config.json").read_text())
    assert config["settings"]["augment"] == "flip=0.5,rotate=5,jitter=0.1,smooth=0.1,mixup=0.2,ema=0.9"
    probabilities = [np.loadtxt(r.out_dir / "seed-0" / "s0" / "predictions.csv", delimiter=",", skiprows=1,
                                usecols=(5, 6, 7)) for r in results]
    assert not np.allclose(probabilities[0], probabilities[1])
    # the fit loop trains on the mixed batches: without mixup the same recipe gives another model
    unmixed = run_loso(graphs, ("a", "b", "c"), recipe.replace(augment="flip,rotate,jitter,smooth,ema=0.9"),
                       tmp_path / "unmixed", face_graph=GRAPH)
    assert not np.allclose(np.loadtxt(unmixed.out_dir / "seed-0" / "s0" / "predictions.csv", delimiter=",",
                                      skiprows=1, usecols=(5, 6, 7)), probabilities[1])
    again = run_loso(graphs, ("a", "b", "c"), recipe, tmp_path / "again", face_graph=GRAPH)
    np.testing.assert_allclose(
        np.loadtxt(again.out_dir / "seed-0" / "s0" / "predictions.csv", delimiter=",", skiprows=1, usecols=(5, 6, 7)),
        probabilities[1])  # seeded: the same recipe and seed give the same run


def _small_run_fold_s0(tmp_path, graphs, augment: str):
    """Train the small ``dere-grl`` on ``graphs`` (LOSO, 2 epochs, seed 0) with ``augment``: the
    folder of fold s0, its checkpoint and its model rebuilt from it (in eval mode)."""
    from geomer.models import create
    from geomer.rundir import CHECKPOINT
    from geomer.train import run_loso
    from geomer.train.checkpoint import load_checkpoint

    config = TrainConfig(model="dere-grl", cfg=SMALL, epochs=2, batch_size=6, seeds=(0,), progress=False,
                         augment=augment)
    fold = run_loso(graphs, ("a", "b", "c"), config, tmp_path / "run", face_graph=GRAPH).out_dir / "seed-0" / "s0"
    checkpoint = load_checkpoint(fold / CHECKPOINT)
    model = create("dere-grl", 3, GRAPH, **SMALL).eval()
    model.load_state_dict(checkpoint.state_dict)
    return fold, checkpoint, model


@pytest.mark.slow
def test_a_run_with_the_mirror_tests_the_mirror_averaged_model(tmp_path):
    graphs = _three_subjects(5)
    fold, checkpoint, model = _small_run_fold_s0(tmp_path, graphs, "mirror")
    assert checkpoint.extra["mirror"] is True
    batch = Batch.from_data_list(slim_graphs(model.inputs, [g for g in graphs if g.subject == "s0"]))
    written = np.loadtxt(fold / "predictions.csv", delimiter=",", skiprows=1, usecols=(5, 6, 7))
    with torch.no_grad():
        averaged = MirrorAveraged(model, GRAPH).eval()(batch).logits.softmax(dim=1).numpy()
        plain = model(batch).logits.softmax(dim=1).numpy()
    np.testing.assert_allclose(written, averaged, atol=2e-6)
    assert not np.allclose(written, plain, atol=1e-4)  # the clip and its mirror, not the clip alone


def test_an_averaged_model_gets_the_batch_statistics_of_its_own_data():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(2, affine=False), torch.nn.Linear(2, 2),
                                torch.nn.Dropout(0.5)).train()
    averaged = averaged_model(model, 0.99)
    data = torch.randn(64, 2) * 0.01  # the scale of landmark displacements
    for _ in range(50):
        model(data)
        averaged.update_parameters(model)
    # the averaged running variance keeps a share of its start of 1: far above the data's
    assert averaged.module[0].running_var.min() > 10 * data.var(dim=0).max()
    random_state = torch.get_rng_state()
    refresh_batch_norm(averaged.module, [data])
    # only the statistics are recomputed: no dropout mask is drawn, the modes are kept
    assert torch.equal(torch.get_rng_state(), random_state) and averaged.module[2].training
    torch.testing.assert_close(averaged.module[0].running_var, data.var(dim=0))
    torch.testing.assert_close(averaged.module[0].running_mean, data.mean(dim=0))


def test_the_weight_average_forgets_the_first_steps_of_a_short_run():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    averaged = averaged_model(model, 0.99)
    averaged.update_parameters(model)  # the average starts at the first weights, 0
    torch.nn.init.ones_(model.weight)
    for _ in range(20):
        averaged.update_parameters(model)
    # a fixed decay of 0.99 would still be at 1 − 0.99²⁰ ≈ 0.18
    assert averaged.module.weight.item() > 0.9


@pytest.mark.slow
def test_a_model_trained_with_ema_is_saved_with_the_statistics_of_its_training_clips(tmp_path):
    graphs = _three_subjects(4)
    _, _, model = _small_run_fold_s0(tmp_path, graphs, "flip,ema=0.9")
    # what the BatchNorm layers on the raw node signals see of the fold's 12 training clips (the
    # flow-image encoder's input passes BatchNorm layers of its own first)
    norms = {name: model.node_encoders[name].norm for name in ("geometry", "flow")}
    seen = {name: [] for name in norms}
    for name, norm in norms.items():
        norm.register_forward_pre_hook(lambda module, args, name=name: seen[name].append(args[0]))
    with torch.no_grad():
        model(Batch.from_data_list(slim_graphs(model.inputs, [g for g in graphs if g.subject != "s0"])))
    for name, norm in norms.items():
        rows = torch.cat(seen[name])
        # two batches of 6 clips: the mean of the batch means is the mean over the clips
        torch.testing.assert_close(norm.running_mean, rows.mean(dim=0), rtol=1e-4, atol=1e-6, msg=name)
        ratio = norm.running_var / rows.var(dim=0)
        assert bool(((ratio > 0.5) & (ratio < 2.0)).all()), name


def test_a_bad_recipe_is_one_line_before_anything_is_written(tmp_path, monkeypatch, capsys):
    from geomer.cli import main

    monkeypatch.setenv("GEOMER_CACHE", str(tmp_path / "cache"))
    status = main(["train", "--model", "dere-grl", "--augment", "flip,warp", "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and "unknown part 'warp'" in err
    assert list(tmp_path.iterdir()) == []


def test_a_graph_without_mirror_symmetry_is_refused_before_training_unless_the_recipe_is_off():
    from geomer.train.run import check_model_settings

    one_sided = FaceGraph("k7", nodes=tuple(i for i in range(68) if i not in (0, 36)))  # two points of one side dropped
    with pytest.raises(GeomerError, match="not mirror-symmetric.*--augment none"):
        check_model_settings(TrainConfig(model="dere-grl"), 3, one_sided)
    check_model_settings(TrainConfig(model="dere-grl", augment="none"), 3, one_sided)
