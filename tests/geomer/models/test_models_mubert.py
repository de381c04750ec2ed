"""mubert: DMA by hand, blockwise swapping ratio, PoI crops, pretraining losses, missing input."""

from __future__ import annotations

import math

import pytest
import torch

from geomer.errors import GeomerError
from geomer.models import create
from geomer.models.mubert import blockwise_swap, crop_mask, diagonal_micro_attention


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


def test_crop_keeps_the_requested_fraction(face_graph):
    mask = crop_mask(torch.as_tensor(face_graph.template), 5, 0.5, torch.Generator().manual_seed(0))
    assert mask.sum(dim=1).tolist() == [34] * 5


def test_pretraining_losses_are_finite_and_train_the_encoder(batch, face_graph):
    torch.manual_seed(0)
    model = create("mubert", 3, face_graph, dim=16, depth=1, heads=2)
    from geomer.models.tokens import dense_nodes

    texture, mask = dense_nodes(batch, "texture")
    losses = model.pretraining_losses(texture[:, :, :, 0], texture[:, :, :, 1], mask)
    assert set(losses) == {"reconstruction", "context"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.patches.linear.weight.grad.abs().sum() > 0
    assert model.decoder[1].weight.grad.abs().sum() > 0


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
