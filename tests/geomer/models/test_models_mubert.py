"""mubert: DMA by hand, blockwise swapping ratio, PoI crops, the variance–covariance terms, pretraining losses, missing input."""

from __future__ import annotations

import math

import pytest
import torch

from geomer.errors import GeomerError
from geomer.models import create
from geomer.models.mubert import (
    DiagonalMicroAttention,
    blockwise_swap,
    crop_indices,
    diagonal_micro_attention,
    variance_covariance,
)


def test_dma_equals_hand_computed_diagonal():
    query = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    key = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])
    value = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    out, diagonal = diagonal_micro_attention(query, key, value)
    # scores / √2: row 0 = [2/√2, 0], row 1 = [0, 0]
    a00 = math.exp(math.sqrt(2)) / (math.exp(math.sqrt(2)) + 1)
    a11 = 0.5
    torch.testing.assert_close(diagonal, torch.tensor([[a00, a11]]))
    torch.testing.assert_close(out, torch.tensor([[[a00 * 1, a00 * 2], [a11 * 3, a11 * 4]]]))


def test_dma_values_read_the_onset_to_apex_change():
    """DMA's values are ``V(apex − onset)``: with the query and key fixed, shifting onset and apex
    by the same amount leaves the output as it was, and an unchanged frame gives the value bias
    times the diagonal attention."""
    torch.manual_seed(0)
    dma = DiagonalMicroAttention(6)
    onset, apex = torch.randn(2, 5, 6), torch.randn(2, 5, 6)
    with torch.no_grad():
        still, diagonal = dma(onset, onset)
        torch.testing.assert_close(still, diagonal[..., None] * dma.value.bias)
        out, diagonal = dma(onset, apex)
        torch.testing.assert_close(out, diagonal[..., None] * dma.value(apex - onset))
        # the attention reads query(onset), key(apex) only: make both ignore a common offset
        offset = torch.randn(6)
        dma.query.weight.zero_()
        dma.key.weight.zero_()
        fixed, _ = dma(onset, apex)
        shifted, _ = dma(onset + offset, apex + offset)
    torch.testing.assert_close(shifted, fixed)


def test_patch_of_interest_weights_the_pooled_dma_features(batch, face_graph):
    """The pooled features are the DMA features weighted by ``s_i = σ(α cos(h_i, c) + β)`` of each
    apex token with the apex context (zero at padding), so α and β change what the head reads."""
    from geomer.models.tokens import dense_nodes

    torch.manual_seed(0)
    model = create("mubert", 3, face_graph, dim=16, depth=1, heads=2).eval()
    texture, mask = dense_nodes(batch, "texture")
    onset, apex = texture[:, :, :, 0], texture[:, :, :, 1]
    with torch.no_grad():
        (_, onset_tokens), (apex_context, apex_tokens), _ = model._pair(onset, apex, mask)
        padded = mask.clone()
        padded[:, :5] = False
        weighted, interest = model._dma_features(onset_tokens, apex_tokens, apex_context, padded)
        cosine = torch.nn.functional.cosine_similarity(apex_tokens, apex_context[:, None], dim=-1)
        expected = torch.sigmoid(model.poi.scale * cosine + model.poi.bias) * padded
        torch.testing.assert_close(interest, expected)
        changed, _ = model.dma(onset_tokens, apex_tokens)
        torch.testing.assert_close(weighted, expected[..., None] * changed)
        before = model(batch).embedding
        model.poi.scale.fill_(20.0)
        model.poi.bias.fill_(-10.0)
        after = model(batch).embedding
    assert (after - before).abs().max() > 1e-4


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.3, 0.5, 1.0])
def test_blockwise_swapping_honours_its_ratio(ratio, face_graph):
    positions = torch.as_tensor(face_graph.template)
    target = torch.zeros(3, 68, 2, 4, 4)
    source = torch.ones(3, 68, 2, 4, 4)
    swapped, mask = blockwise_swap(
        target, source, ratio, positions, block_size=4, generator=torch.Generator().manual_seed(0)
    )
    assert mask.sum(dim=1).tolist() == [round(ratio * 68)] * 3
    assert torch.equal(swapped[mask], source[mask]) and torch.equal(swapped[~mask], target[~mask])


def test_swapped_blocks_are_spatially_contiguous(face_graph):
    positions = torch.as_tensor(face_graph.template)
    _, mask = blockwise_swap(
        torch.zeros(1, 68, 1), torch.ones(1, 68, 1), 4 / 68, positions, block_size=4,
        generator=torch.Generator().manual_seed(3),
    )
    chosen = mask[0].nonzero().flatten()
    distances = torch.cdist(positions[chosen], positions[chosen]).max()
    typical = torch.cdist(positions, positions).max()
    assert distances < 0.3 * typical  # one block of 4 neighbours, not scattered nodes


def test_crop_keeps_the_requested_fraction_of_neighbouring_nodes(face_graph):
    positions = torch.as_tensor(face_graph.template)
    nodes = crop_indices(positions, 5, 0.5, torch.Generator().manual_seed(0))
    assert nodes.shape == (5, 34) and all(len(set(row.tolist())) == 34 for row in nodes)
    spread = torch.cdist(positions[nodes[0]], positions[nodes[0]]).max()
    assert spread < torch.cdist(positions, positions).max()  # a local crop, not the whole face


def test_variance_term_penalises_a_collapsed_batch_and_covariance_copied_dimensions():
    torch.manual_seed(0)
    collapsed = torch.randn(1, 8).expand(16, 8)
    variance, covariance = variance_covariance(collapsed)
    assert variance > 0.98 and covariance < 1e-6  # every clip the same vector: the full penalty
    spread, _ = variance_covariance(3.0 * torch.randn(256, 8))
    assert spread == 0  # std above 1 in every dimension: nothing to pay
    copied = torch.randn(256, 1).expand(256, 8) * 3.0
    _, copies = variance_covariance(copied)
    _, independent = variance_covariance(3.0 * torch.randn(256, 8))
    assert copies > 50 * independent
    single, _ = variance_covariance(torch.randn(1, 8))
    assert single == 0


def test_pretraining_losses_are_finite_and_train_every_pretrained_part(batch, face_graph):
    torch.manual_seed(0)
    model = create("mubert", 3, face_graph, dim=16, depth=1, heads=2, decoder_dim=16)
    from geomer.models.tokens import dense_nodes

    objective = model.pretraining_objective()
    texture, mask = dense_nodes(batch, "texture")
    losses = objective(texture[:, :, :, 0], texture[:, :, :, 1], mask)
    assert {"reconstruction", "context", "invariance", "variance", "covariance"} <= set(losses)
    total = losses["reconstruction"] + losses["context"]
    assert torch.isfinite(total) and losses["variance"] > 0
    total.backward()
    assert model.patches.linear.weight.grad.abs().sum() > 0
    assert model.context.grad.abs().sum() > 0
    assert objective.decoder_predict.weight.grad.abs().sum() > 0
    assert not any(name.startswith("decoder") for name, _ in model.named_parameters())
    assert model.dma.query.weight.grad.abs().sum() > 0
    assert model.head[-1].weight.grad is None  # the classifier takes no part


def test_decoder_settings_are_validated(face_graph):
    with pytest.raises(GeomerError, match="cannot be built .*decoder_dim"):
        create("mubert", 3, face_graph, dim=16, depth=1, heads=2, decoder_dim=15)


def test_missing_onset_texture_fails_naming_the_input(flow_batch, face_graph):
    model = create("mubert", 3, face_graph, dim=16, depth=1, heads=2)
    with pytest.raises(GeomerError, match="texture"):
        model(flow_batch)


def test_movement_prior_is_off_by_default_and_follows_the_onset_to_apex_change(face_graph):
    assert create("mubert", 3, face_graph, dim=16, depth=1, heads=2).movement_prior is False
    model = create("mubert", 3, face_graph, dim=16, depth=1, heads=2, movement_prior=True).eval()
    onset = torch.zeros(2, 68, 3, 8, 8)
    apex = onset.clone()
    apex[:, 36:48] = 1.0  # only the eyes change
    bias = model.movement_bias(onset, apex, torch.ones(2, 68, dtype=torch.bool))
    assert torch.all(bias[:, 36:48] > 0) and torch.all(bias[:, :36] < -4)
    model.movement_prior = False
    assert model.movement_bias(onset, apex, torch.ones(2, 68, dtype=torch.bool)) is None



def _sign_pair_batch(face_graph, size: int, seed: int):
    """Clips whose class is whether the brows and the mouth move the SAME way (both up or both
    down: class 0) or OPPOSITE ways (class 1), as the synthetic repression / others pair: no
    single component's change tells the class, only the pair does. Each moves 1–3 px; the
    contour, nose and eyes each move up to ±4 px in 60 % of the clips (distractors). Texture:
    one smooth grey pattern at every node and scale plus noise, so a change looks the same
    wherever it happens; the apex is the onset shifted vertically (first-order warp).
    → PyG Batch with ``texture`` ``[68·size, 3, 2, 8, 8]``."""
    from torch_geometric.data import Batch, Data

    rng = torch.Generator().manual_seed(seed)
    component = torch.as_tensor(face_graph.component)
    masks = {name: (component == k).float() for k, name in enumerate(face_graph.component_names)}
    coarse = torch.rand(1, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    pattern = torch.nn.functional.interpolate(coarse, size=(8, 8), mode="bilinear", align_corners=True)
    onset = pattern.view(1, 1, 1, 8, 8) + 0.02 * torch.randn(size, 68, 3, 8, 8, generator=rng)
    signs = torch.randint(0, 2, (size, 2), generator=rng) * 2.0 - 1.0  # brows, mouth
    amplitude = signs * (1.0 + 2.0 * torch.rand(size, 2, generator=rng))
    shift = amplitude[:, :1] * (masks["right_brow"] + masks["left_brow"]) + amplitude[:, 1:] * masks["mouth"]
    for name in ("contour", "nose", "right_eye", "left_eye"):
        drawn = torch.rand(size, 1, generator=rng) < 0.6
        shift = shift + drawn * (8.0 * torch.rand(size, 1, generator=rng) - 4.0) * masks[name]
    apex = onset - shift[..., None, None, None] * torch.gradient(onset, dim=-2)[0]
    labels = (signs[:, 0] != signs[:, 1]).long()
    texture = torch.stack([onset, apex], dim=3)  # [B, N, S, 2, P, P]
    return Batch.from_data_list(
        [Data(texture=texture[i], y=labels[i : i + 1], num_nodes=68) for i in range(size)]
    )


def test_the_component_readout_tells_classes_that_differ_only_in_how_two_components_act_together(
    face_graph, fit, evaluate_accuracy
):
    """The DMA features are projections of a token difference, in which each node's own
    embedding cancels: a whole-face mean of them loses where a change happened (here
    ``readout="mean"`` reached 0.63–0.77 over four initialisations), and a linear head cannot
    compute "same way or opposite". The default readout keeps each component's pooled change
    apart and combines them in a hidden layer."""
    torch.manual_seed(0)
    train = [_sign_pair_batch(face_graph, 32, seed) for seed in range(4)]
    test = _sign_pair_batch(face_graph, 64, seed=99)
    model = create("mubert", 2, face_graph, dim=16, depth=1, heads=2)
    assert model.readout == "component"
    fit(model, train, steps=60)
    assert evaluate_accuracy(model, test) >= 0.9


def test_the_change_embedding_gives_apex_tokens_the_fold_standardised_difference(face_graph):
    """Only the apex tokens get the onset→apex difference, on the scale the training batches
    set: a 0.01 grey-level change becomes an O(1) input."""
    torch.manual_seed(0)
    model = create("mubert", 2, face_graph, dim=16, depth=1, heads=2)
    onset = torch.rand(8, 68, 3, 8, 8)
    apex = onset + 0.01 * torch.randn(8, 68, 3, 8, 8)
    mask = torch.ones(8, 68, dtype=torch.bool)
    model.train()
    model._pair(onset, apex, mask)  # a training pass updates the running statistics...
    for _ in range(120):  # ...which forget their initial 1 after about 100 batches (momentum 0.1)
        model.change(apex - onset)
    model.eval()
    prepared = model.change.prepare(apex - onset)
    assert 0.5 < float(prepared.std()) < 2.0
    with torch.no_grad():
        (_, onset_before), (_, apex_before), _ = model._pair(onset, apex, mask)
        model.change.linear.weight.mul_(2.0)
        (_, onset_after), (_, apex_after), _ = model._pair(onset, apex, mask)
    torch.testing.assert_close(onset_after, onset_before)
    assert (apex_after - apex_before).abs().max() > 1e-3
    assert create("mubert", 2, face_graph, dim=16, depth=1, heads=2, change_embedding=False).change is None


def test_dma_softmax_runs_over_the_key_positions_of_an_asymmetric_score_matrix():
    """``a = softmax(q kᵀ / √d)`` over the keys (each row sums to 1), checked where q kᵀ is not
    symmetric, so a softmax over the queries would differ."""
    query = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    key = torch.tensor([[[2.0, 1.0], [0.0, 0.0]]])
    value = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    out, diagonal = diagonal_micro_attention(query, key, value)
    # q kᵀ = [[2, 0], [1, 0]], / √2
    r = math.sqrt(2)
    a00 = math.exp(2 / r) / (math.exp(2 / r) + 1)
    a11 = 1 / (math.exp(1 / r) + 1)
    torch.testing.assert_close(diagonal, torch.tensor([[a00, a11]]))
    torch.testing.assert_close(out, torch.tensor([[[a00 * 1, a00 * 2], [a11 * 3, a11 * 4]]]))


def test_dma_module_queries_with_the_onset_and_keys_with_the_apex():
    """DiagonalMicroAttention = DMA(Q(onset), K(apex), V(apex − onset)): changing the onset alone
    changes the attention diagonal through the query."""
    torch.manual_seed(0)
    dma = DiagonalMicroAttention(6)
    onset, apex = torch.randn(2, 5, 6), torch.randn(2, 5, 6)
    with torch.no_grad():
        out, diagonal = dma(onset, apex)
        expected = diagonal_micro_attention(dma.query(onset), dma.key(apex), dma.value(apex - onset))
    torch.testing.assert_close(out, expected[0])
    torch.testing.assert_close(diagonal, expected[1])


def test_relations_are_read_from_the_apex_pass(batch, face_graph):
    """The relations are attention_relations of the apex frame's encoder pass (with its change
    embedding): changing the apex alone changes them."""
    from geomer.models.attention import attention_relations
    from geomer.models.tokens import dense_nodes

    torch.manual_seed(0)
    model = create("mubert", 3, face_graph, dim=16, depth=2, heads=2).eval()
    texture, mask = dense_nodes(batch, "texture")
    onset, apex = texture[:, :, :, 0], texture[:, :, :, 1]
    with torch.no_grad():
        output = model(batch)
        added = model.change(apex.float() - onset.float())
        _, _, attention = model.encode(apex, mask, need_weights=True, added=added)
        expected = attention_relations(attention, model.token_component, 7)
        torch.testing.assert_close(output.relations, expected)
        changed = batch.clone()
        changed.texture = batch.texture.clone()
        changed.texture[:, :, 1] = torch.rand_like(batch.texture[:, :, 1])
        assert not torch.allclose(model(changed).relations, output.relations)


def test_pretraining_losses_equal_their_documented_definitions(batch, face_graph):
    """With padded nodes: reconstruction = mean over real nodes of the MSE between the decoder's
    output and the standardised ORIGINAL apex patches; context = invariance + variance +
    0.04 · covariance, invariance the mean MSE between each crop's contextual token and its
    frame's whole-face one (> 0)."""
    from geomer.models.mubert import blockwise_swap, crop_indices
    from geomer.models.tokens import dense_nodes

    torch.manual_seed(0)
    model = create("mubert", 3, face_graph, dim=16, depth=1, heads=2, decoder_dim=16).eval()
    objective = model.pretraining_objective().eval()
    texture, mask = dense_nodes(batch, "texture")
    onset, apex = texture[:, :, :, 0].clone(), texture[:, :, :, 1].clone()
    mask = mask.clone()
    mask[0, 50:] = False
    mask[3, :12] = False
    with torch.no_grad():
        losses = objective(onset, apex, mask, generator=torch.Generator().manual_seed(5))
        generator = torch.Generator().manual_seed(5)
        template = model.nodes.template
        swapped, _ = blockwise_swap(apex, onset, model.swap_ratio, template, model.swap_block, generator)
        (onset_context, onset_tokens), (swapped_context, swapped_tokens), _ = model._pair(
            onset, swapped, mask)
        changed, _ = model._dma_features(onset_tokens, swapped_tokens, swapped_context, mask)
        predicted = objective.decode(changed, swapped_tokens, mask)
        per_node = ((predicted - model.patches.prepare(apex)) ** 2).mean(-1)
        torch.testing.assert_close(losses["reconstruction"], per_node[mask].mean())
        views, invariance = [onset_context, swapped_context], []
        for crop, (frame, whole) in enumerate([(apex, swapped_context), (onset, onset_context)]):
            nodes = crop_indices(template, 4, model.crop_keep, generator)
            context = model.encode(frame, mask, nodes=nodes)[0]
            invariance.append(((context - whole) ** 2).mean())
            views.append(context)
        invariance = torch.stack(invariance).mean()
        regularisers = [variance_covariance(view) for view in views]
        variance = torch.stack([v for v, _ in regularisers]).mean()
        covariance = torch.stack([c for _, c in regularisers]).mean()
    assert invariance > 1e-4
    torch.testing.assert_close(losses["invariance"], invariance)
    torch.testing.assert_close(losses["context"], invariance + variance + 0.04 * covariance)
    # padded patches are no part of the reconstruction loss
    other = apex.clone()
    other[~mask] = torch.rand_like(other[~mask])
    with torch.no_grad():
        again = objective(onset, other, mask, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(again["reconstruction"], losses["reconstruction"])
