"""The attention blocks and the one attention → relations rule, on hand-made attention."""

from __future__ import annotations

import torch

from geomer.models.attention import (
    MultiHeadAttention,
    TransformerEncoder,
    attention_relations,
    attention_rollout,
    component_pooling,
)


def test_rollout_of_one_layer_is_half_attention_plus_half_identity():
    attn = torch.tensor([[[0.5, 0.5, 0.0], [0.2, 0.2, 0.6], [0.0, 1.0, 0.0]]])
    rollout = attention_rollout([attn])
    expected = torch.tensor([[[0.75, 0.25, 0.0], [0.1, 0.6, 0.3], [0.0, 0.5, 0.5]]])
    torch.testing.assert_close(rollout, expected)


def test_rollout_averages_heads_and_multiplies_layers_in_order():
    first = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])[None]  # 2 heads
    second = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])  # already head-averaged
    # first averaged = all 0.5; (A + I)/2 = [[.75,.25],[.25,.75]]; second: [[.5,.5],[0,1]]
    expected = torch.tensor([[0.5, 0.5], [0.0, 1.0]]) @ torch.tensor([[0.75, 0.25], [0.25, 0.75]])
    torch.testing.assert_close(attention_rollout([first, second])[0], expected)


def test_relations_pool_component_pairs_and_normalise_rows():
    # tokens: summary (-1), two tokens of component 0, one of component 1; K = 3 (2 is empty)
    attn = torch.tensor(
        [[[0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]]
    )
    components = torch.tensor([-1, 0, 0, 1])
    relations = attention_relations([attn], components, 3)
    step = (attn[0] + torch.eye(4)) / 2  # rows already sum to 1
    # component 0 → 0: mean over its 2×2 token block; 0 → 1: mean over 2×1 tokens
    c00 = step[1:3, 1:3].mean()
    c01 = step[1:3, 3].mean()
    c10 = step[3, 1:3].mean()
    c11 = step[3, 3]
    expected = torch.tensor(
        [
            [c00 / (c00 + c01), c01 / (c00 + c01), 0.0],
            [c10 / (c10 + c11), c11 / (c10 + c11), 0.0],
            [1 / 3, 1 / 3, 1 / 3],
        ]
    )
    torch.testing.assert_close(relations[0], expected)


def test_component_pooling_equals_the_graphs_pooling_matrix(face_graph):
    pooling = component_pooling(torch.as_tensor(face_graph.component), face_graph.num_components)
    torch.testing.assert_close(pooling[0], torch.as_tensor(face_graph.pooling_matrix(), dtype=torch.float32))


def test_kept_weights_path_equals_fused_path_and_masks_padding():
    torch.manual_seed(0)
    attention = MultiHeadAttention(8, 2).eval()
    tokens = torch.randn(2, 5, 8)
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    fused, none = attention(tokens, key_padding_mask=padding)
    kept, weights = attention(tokens, key_padding_mask=padding, need_weights=True)
    assert none is None
    torch.testing.assert_close(fused, kept)
    assert weights.shape == (2, 2, 5, 5)
    assert torch.all(weights[1, :, :, 3:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 5))


def test_encoder_returns_one_attention_per_layer_only_when_asked():
    encoder = TransformerEncoder(8, depth=3, heads=2)
    tokens = torch.randn(1, 4, 8)
    out, kept = encoder(tokens, need_weights=True)
    assert out.shape == (1, 4, 8) and len(kept) == 3
    assert encoder(tokens)[1] == []
