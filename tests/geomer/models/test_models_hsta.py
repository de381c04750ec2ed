"""hsta: missing modality, the crossmodal step, branch widths, modality-clean frames, the official configuration."""

from __future__ import annotations

import inspect

import pytest
import torch

from geomer.errors import GeomerError
from geomer.models import check_inputs, create, get_spec
from geomer.models.hsta import CrossmodalSpaceTimeAttention


def test_megc2019_flow_lacks_the_frame_sequence(flow_batch, face_graph):
    model = create("hsta", 3, face_graph, special_dim=16, frame_dim=16, heads=2, stages=1)
    with pytest.raises(GeomerError, match="'sequence'"):
        check_inputs(model, flow_batch)
    with pytest.raises(GeomerError, match="'sequence'"):
        model(flow_batch)


def test_crossmodal_step_updates_only_the_summary_tokens():
    torch.manual_seed(0)
    csta = CrossmodalSpaceTimeAttention(8, 12, 2, 0.0)  # the branches have their own widths
    special, frames = torch.randn(2, 5, 8), torch.randn(2, 9, 12)
    new_special, new_frames = csta(special, frames)
    torch.testing.assert_close(new_special[:, 1:], special[:, 1:])
    torch.testing.assert_close(new_frames[:, 1:], frames[:, 1:])
    assert not torch.allclose(new_special[:, 0], special[:, 0])
    # the special summary reads the frame tokens: changing them changes it
    changed, _ = csta(special, frames + torch.randn_like(frames))
    assert not torch.allclose(changed[:, 0], new_special[:, 0])


def test_each_summary_reads_the_other_branchs_tokens_not_its_summary():
    """The special summary's update attends over the frame tokens after the frame summary, and
    the frame summary's over the special tokens after the special summary: changing only the
    other branch's summary token leaves a summary's update as it was."""
    torch.manual_seed(1)
    csta = CrossmodalSpaceTimeAttention(8, 12, 2, 0.0).eval()
    special, frames = torch.randn(2, 5, 8), torch.randn(2, 9, 12)
    with torch.no_grad():
        new_special, new_frames = csta(special, frames)
        other_frames = frames.clone()
        other_frames[:, 0] += 5.0 * torch.randn(2, 12)
        special_after, frames_after = csta(special, other_frames)
        torch.testing.assert_close(special_after, new_special)
        assert not torch.allclose(frames_after[:, 0], new_frames[:, 0])  # its own summary did change
        other_special = special.clone()
        other_special[:, 0] += 5.0 * torch.randn(2, 8)
        _, frames_after = csta(other_special, frames)
        torch.testing.assert_close(frames_after, new_frames)


def test_each_summary_ignores_the_other_branchs_padded_tokens():
    """A padded token of one branch changes nothing the other branch's summary reads."""
    torch.manual_seed(2)
    csta = CrossmodalSpaceTimeAttention(8, 12, 2, 0.0).eval()
    special, frames = torch.randn(2, 5, 8), torch.randn(2, 9, 12)
    special_padding = torch.zeros(2, 5, dtype=torch.bool)
    frame_padding = torch.zeros(2, 9, dtype=torch.bool)
    special_padding[1, 3:], frame_padding[0, 6:] = True, True
    with torch.no_grad():
        new_special, new_frames = csta(special, frames, special_padding, frame_padding)
        other_special, other_frames = special.clone(), frames.clone()
        other_special[1, 3:] += 5.0 * torch.randn(2, 8)
        other_frames[0, 6:] += 5.0 * torch.randn(3, 12)
        special_after, frames_after = csta(other_special, other_frames, special_padding, frame_padding)
        torch.testing.assert_close(special_after[:, 0], new_special[:, 0])
        torch.testing.assert_close(frames_after[:, 0], new_frames[:, 0])
        unmasked, _ = csta(special, other_frames)
        assert not torch.allclose(unmasked[0, 0], new_special[0, 0])  # without the masks they count


def test_official_configuration_is_registered(face_graph):
    defaults = inspect.signature(get_spec("hsta-base").factory).parameters
    official = dict(special_dim=384, frame_dim=768, heads=12, mlp_ratio=4.0, tubelet=2)
    assert {name: defaults[name].default for name in official} == official
    model = create("hsta-base", 3, face_graph, special_dim=24, frame_dim=48, heads=4)  # small widths
    assert len(model.special_stages) == 4 and len(model.crossmodal) == 4
    assert [len(s) for s in model.special_stages] == [1, 1, 1, 1]
    assert [len(s) for s in model.frame_stages] == [2, 2, 2, 2]
    assert model.tubelet == 2


def test_each_branch_has_its_own_width(batch, face_graph):
    model = create("hsta", 3, face_graph, special_dim=16, frame_dim=24, heads=2, stages=2)
    output = model(batch)
    assert output.embedding.shape == (4, (1 + 7) * (16 + 24))  # summaries, then component means
    assert model.special_stages[0][0].norm1.normalized_shape == (16,)
    assert model.frame_stages[1][0].norm1.normalized_shape == (24,)
    output.logits.sum().backward()
    assert model.crossmodal[1].special_from_frames.q.weight.grad is not None


@pytest.mark.parametrize("tubelet", [1, 3])
def test_forward_tiles_the_sequence_into_tubelets(batch, face_graph, tubelet):
    model = create("hsta", 3, face_graph, special_dim=16, frame_dim=16, heads=2, stages=1, tubelet=tubelet)
    output = model(batch)
    assert output.logits.shape == (4, 3) and output.embedding.shape == (4, 8 * 32)
    torch.testing.assert_close(output.relations.sum(-1), torch.ones(4, 7))


def test_movement_prior_is_off_by_default_and_changes_the_attention_and_nothing_else(batch, face_graph):
    torch.manual_seed(0)
    with_prior = create("hsta", 3, face_graph, special_dim=16, frame_dim=16, heads=2, stages=1, movement_prior=True).eval()
    torch.manual_seed(0)
    default = create("hsta", 3, face_graph, special_dim=16, frame_dim=16, heads=2, stages=1).eval()
    assert default.movement_prior is False
    assert sum(p.numel() for p in with_prior.parameters()) == sum(p.numel() for p in default.parameters())
    assert not torch.allclose(with_prior(batch).relations, default(batch).relations)


def test_the_frame_branch_attention_sees_frames_only(batch, face_graph):
    # modality-clean: with the prior on, changing only the special data (flow and onset/apex
    # texture) leaves the frame branch's tokens and its self-attention before the first
    # crossmodal step untouched; afterwards the special data reaches the frame branch only
    # through its summary token (CSTA), never its frame tokens
    torch.manual_seed(0)
    model = create("hsta", 3, face_graph, special_dim=16, frame_dim=24, heads=2, stages=2,
                   movement_prior=True).eval()
    attention, tokens = [], []
    model.frame_stages[0][0].register_forward_hook(lambda module, args, out: attention.append(out[1]))
    model.frame_stages[1][0].register_forward_hook(lambda module, args, out: tokens.append(args[0]))
    changed = batch.clone()
    changed.flow_patches = changed.flow_patches * 3.0 + torch.randn_like(changed.flow_patches)
    changed.texture = torch.rand_like(changed.texture)
    with torch.no_grad():
        first, second = model(batch), model(changed)
    torch.testing.assert_close(attention[0], attention[1], rtol=0, atol=0)
    torch.testing.assert_close(tokens[0][:, 1:], tokens[1][:, 1:], rtol=0, atol=0)
    assert not torch.allclose(tokens[0][:, 0], tokens[1][:, 0])  # the fused summary token
    assert not torch.allclose(first.logits, second.logits)


def test_frame_tokens_carry_the_change_from_the_first_frame(batch, face_graph):
    # a frame sequence that changes by a few % of its contrast must change the frame tokens by
    # far more than the standardised frames alone would
    torch.manual_seed(0)
    model = create("hsta", 3, face_graph, special_dim=16, frame_dim=16, heads=2, stages=1, tubelet=1)
    sequence = torch.rand(4, 68, 1, 8, 8).expand(-1, -1, 8, -1, -1)  # one texture, 8 frames
    for _ in range(150):  # training statistics of typical, still-ish clips (running estimates)
        model._frame_tokens(sequence + 0.01 * torch.randn_like(sequence))
    model.eval()
    moved = sequence.clone()
    moved[:, :, 4:] += 0.03 * torch.randn(4, 68, 1, 8, 8)
    with torch.no_grad():
        still_tokens = model._frame_tokens(sequence)
        moved_tokens = model._frame_tokens(moved)
        delta_all = (moved_tokens - still_tokens).norm(dim=-1).mean()
        model.frame_changes.linear.weight.zero_()
        delta_frames = (model._frame_tokens(moved) - model._frame_tokens(sequence)).norm(dim=-1).mean()
    assert delta_all > 3 * delta_frames


def test_attention_weights_are_not_dropped_as_in_the_official_code(batch, face_graph):
    """The official VisionTransformer leaves attn_drop_rate at 0: in training, dropout acts on
    the MLPs and the head, not on the attention weights;
    checkpoints of earlier versions are rebuilt with the attention dropout they had."""
    from geomer.models.attention import MultiHeadAttention

    model = create("hsta", 3, face_graph, special_dim=16, frame_dim=16, heads=2, stages=1)
    attentions = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    assert attentions and all(m.dropout == 0.0 for m in attentions)
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.1 for m in model.modules())
    old = create("hsta", 3, face_graph, special_dim=16, frame_dim=16, heads=2, stages=1,
                 **get_spec("hsta").settings_of_version("0.2.2"))
    assert all(m.dropout == 0.1 for m in old.modules() if isinstance(m, MultiHeadAttention))
    assert get_spec("hsta").settings_of_version("0.2.3") == {"readout": "summary"}


def test_the_classifier_reads_each_components_mean_token_beside_the_summaries(batch, face_graph):
    """The default readout: both summary tokens (normalised), then per branch the mean of each
    facial component's tokens after the last stage (every tubelet of its nodes' frame tokens);
    ``readout="summary"`` is the paper's head over the summaries (checkpoints before 0.2.9)."""
    torch.manual_seed(0)
    model = create("hsta", 3, face_graph, special_dim=16, frame_dim=24, heads=2, stages=2).eval()
    final = []
    model.crossmodal[-1].register_forward_hook(lambda module, args, out: final.append(out))
    embedding = model(batch).embedding
    special, frames = final[0]
    component = torch.as_tensor(face_graph.component)
    frame_component = component.repeat_interleave(model.time_tokens)
    summaries, special_parts, frame_parts = embedding.split([16 + 24, 7 * 16, 7 * 24], dim=1)
    torch.testing.assert_close(summaries[:, :16], model.special_norm(special[:, 0]))
    torch.testing.assert_close(summaries[:, 16:], model.frame_norm(frames[:, 0]))
    for k in range(7):
        torch.testing.assert_close(special_parts.view(4, 7, 16)[:, k], special[:, 1:][:, component == k].mean(1))
        torch.testing.assert_close(frame_parts.view(4, 7, 24)[:, k], frames[:, 1:][:, frame_component == k].mean(1))
    # padded nodes count for nothing; a component without real nodes gives a zero part
    keep = torch.ones(4, 1 + 68, dtype=torch.bool)
    keep[:, 1:][:, component == 3] = False
    keep[0, 1:][component == 6] = False
    keep[1, 1 + 5] = False
    masked = model.mean_tokens_per_component(special, model.special_component, keep).view(4, 7, 16)
    assert torch.all(masked[:, 3] == 0) and torch.all(masked[0, 6] == 0)
    torch.testing.assert_close(masked[1, 6], special[1, 1:][component == 6].mean(0))
    node_5 = int(component[5])
    others = (component == node_5) & (torch.arange(68) != 5)
    torch.testing.assert_close(masked[1, node_5], special[1, 1:][others].mean(0))
    summary = create("hsta", 3, face_graph, special_dim=16, frame_dim=24, heads=2, stages=2, readout="summary")
    assert summary(batch).embedding.shape == (4, 16 + 24)
    with pytest.raises(GeomerError, match="readout"):
        create("hsta", 3, face_graph, readout="mean")
    assert get_spec("hsta").settings_of_version("0.2.8") == {"readout": "summary"}
    assert get_spec("hsta").settings_of_version("0.2.9") == {}


def test_relations_are_the_mean_of_the_special_and_frame_branches_relations(batch, face_graph):
    """relations = mean of attention_relations over the special branch's and the frame branch's
    attention; with one stage only the frame branch reads the sequence, so changing the sequence
    alone changes the relations."""
    from geomer.models.attention import attention_relations

    torch.manual_seed(0)
    model = create("hsta", 3, face_graph, special_dim=16, frame_dim=16, heads=2, stages=1).eval()
    special, frames = [], []
    for block in model.special_stages[0]:
        block.register_forward_hook(lambda module, args, out: special.append(out[1]))
    for block in model.frame_stages[0]:
        block.register_forward_hook(lambda module, args, out: frames.append(out[1]))
    with torch.no_grad():
        output = model(batch)
    expected = (attention_relations(special, model.special_component, 7)
                + attention_relations(frames, model.frame_component, 7)) / 2
    torch.testing.assert_close(output.relations, expected)
    changed = batch.clone()
    changed.sequence = torch.rand_like(batch.sequence)
    with torch.no_grad():
        assert not torch.allclose(model(changed).relations, output.relations)
