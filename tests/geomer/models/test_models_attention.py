"""The attention blocks and the one attention → relations rule, on hand-made attention."""

from __future__ import annotations

import pytest
import torch

from geomer.models.attention import (
    MultiHeadAttention,
    TransformerEncoder,
    attention_relations,
    attention_rollout,
    movement_key_bias,
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


def test_relations_sum_importance_weighted_flow_per_pair_and_add_nothing():
    # tokens: summary (-1), two tokens of component 0, one of component 1; K = 3 (2 is empty)
    attn = torch.tensor(
        [[[0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]]
    )
    components = torch.tensor([-1, 0, 0, 1])
    relations = attention_relations([attn], components, 3)
    step = (attn[0] + torch.eye(4)) / 2  # rows already sum to 1
    importance = step[0, 1:] / step[0, 1:].sum()  # the summary token's row over component tokens
    flow = importance[:, None] * step[1:, 1:]
    pooled = torch.stack(
        [
            torch.stack([flow[:2, :2].sum(), flow[:2, 2].sum(), torch.tensor(0.0)]),
            torch.stack([flow[2, :2].sum(), flow[2, 2], torch.tensor(0.0)]),
            torch.zeros(3),
        ]
    )
    expected = pooled / pooled.sum(-1, keepdim=True).clamp_min(1e-12)
    expected[2] = 1 / 3  # no tokens: no evidence, a uniform row
    torch.testing.assert_close(relations[0], expected)
    # by hand: the summary's rollout row gives tokens 1, 2, 3 equal importance; component 0's
    # tokens send (½ + ½ + ½)/3 to component 0 and ½/3 to component 1: row 0 = (¾, ¼, 0), with
    # no constant added on the diagonal
    torch.testing.assert_close(relations[0, 0], torch.tensor([0.75, 0.25, 0.0]))


def test_a_planted_pair_is_the_largest_off_diagonal_relation():
    # tokens of components 0 and 2 attend to each other, the rest to themselves
    components = torch.tensor([-1, 0, 1, 2, 3])
    attn = torch.eye(5)[None].clone()
    attn[0, 0] = torch.tensor([0.0, 0.25, 0.25, 0.25, 0.25])
    attn[0, 1] = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0])
    attn[0, 3] = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])
    relations = attention_relations([attn, attn], components, 4)[0]
    off = relations * (1 - torch.eye(4))
    assert off.argmax() in (0 * 4 + 2, 2 * 4 + 0)
    assert relations[1, 1] == 1.0 and relations[3, 3] == 1.0  # self-contained components


def test_a_component_the_summary_ignores_takes_no_part_in_the_others_rows():
    # summary attends only to components 0 and 1; component 2's token gets less importance
    attn = torch.tensor(
        [
            [
                [0.0, 0.5, 0.5, 0.0],
                [0.0, 0.4, 0.4, 0.2],
                [0.0, 0.4, 0.4, 0.2],
                [0.0, 0.4, 0.4, 0.2],
            ]
        ]
    )
    relations = attention_relations([attn], torch.tensor([-1, 0, 1, 2]), 3)[0]
    assert relations[0, 1] > relations[0, 2] and relations[1, 0] > relations[1, 2]
    torch.testing.assert_close(relations.sum(-1), torch.ones(3))


def test_movement_key_bias_favours_nodes_moving_more_than_the_median():
    energy = torch.tensor([[0.0, 1.0, 1.0, 1.0, 5.0, 3.0]])
    mask = torch.tensor([[True] * 5 + [False]])
    bias = movement_key_bias(energy, mask)
    # median 1 → excess (0, 0, 0, 0, 4), mean over the 5 nodes 0.8 → log(excess/0.8 + 0.01)
    expected = torch.log(torch.tensor([0.0, 0.0, 0.0, 0.0, 5.0]) + 0.01)
    torch.testing.assert_close(bias[0, :5], expected)
    assert bias[0, 5] == 0.0  # padding
    still = movement_key_bias(torch.full((1, 4), 2.0))
    assert torch.all(still == still[0, 0])  # nothing stands out: no preference


def test_key_bias_shifts_attention_in_both_paths():
    torch.manual_seed(0)
    attention = MultiHeadAttention(8, 2).eval()
    tokens = torch.randn(2, 5, 8)
    bias = torch.tensor([[0.0, 0.0, 0.0, 0.0, -30.0], [0.0, 3.0, 0.0, 0.0, 0.0]])
    fused, _ = attention(tokens, key_bias=bias)
    kept, weights = attention(tokens, need_weights=True, key_bias=bias)
    torch.testing.assert_close(fused, kept)
    assert torch.all(weights[0, :, :, 4] < 1e-9)
    _, plain = attention(tokens, need_weights=True)
    assert torch.all(weights[1, :, :, 1] > plain[1, :, :, 1])


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


def test_relations_are_a_read_out_without_gradient():
    attention = torch.rand(2, 2, 5, 5, requires_grad=True).softmax(-1)
    relations = attention_relations([attention], torch.tensor([-1, 0, 0, 1, 1]), 2)
    assert not relations.requires_grad


@pytest.mark.parametrize("summary_token", [0, None])
def test_relations_equal_the_explicit_rollout_formula_over_several_layers(summary_token):
    # the relations never form the L×L rollout R; they must equal Sᵀ diag(w) R S built from it
    torch.manual_seed(0)
    layers = [torch.randn(2, 3, 9, 9).softmax(-1) for _ in range(3)]
    components = torch.tensor([-1, 0, 0, 1, 1, 1, 2, 3, 3])
    rollout = attention_rollout(layers)
    member = components >= 0
    weights = rollout[:, summary_token] * member if summary_token is not None else member.float().expand(2, -1)
    weights = weights / weights.sum(-1, keepdim=True)
    membership = torch.nn.functional.one_hot(components.clamp_min(0), 4).float() * member[:, None]
    pooled = membership.T @ (weights[..., None] * rollout) @ membership
    expected = pooled / pooled.sum(-1, keepdim=True)
    torch.testing.assert_close(attention_relations(layers, components, 4, summary_token), expected)
