"""The output contract, checked for EVERY registered model (timm style), plus the registry.

Each model is built with its ``small_config`` (the spec's small settings) so the whole file stays
within seconds per model.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

from geomer.errors import GeomerError
from geomer.models import ModelOutput, check_inputs, create, get_spec, list_models, register_model
from geomer.models import registry

# geomer's own models only: test modules register fixture models of their own (e.g. the
# relations tests' linear model), which are not bound by this contract.
MODELS = [name for name in list_models() if get_spec(name).origin[0].startswith("geomer.models")]
NUM_CLASSES = 3
# A name registered with a factory (e.g. ``sized_variant`` for the paper sizes such as
# ``mmt-base``) builds a class that is registered under its own name too: the training-based
# checks run once per class, at its small size; the paper sizes get the structural checks.
CLASS_MODELS = [name for name in MODELS if inspect.isclass(get_spec(name).factory)]
ALL_MODELS = [
    name if name in CLASS_MODELS else pytest.param(name, marks=pytest.mark.slow) for name in MODELS
]


def build(name: str, graph, seed: int = 0, **cfg) -> nn.Module:
    torch.manual_seed(seed)
    return create(name, NUM_CLASSES, graph, **{**get_spec(name).small_config, **cfg})


def test_the_registry_lists_dere_grl_sorted():
    assert "dere-grl" in MODELS
    assert MODELS == sorted(MODELS)


def test_unknown_model_name_lists_the_known_ones(face_graph):
    with pytest.raises(GeomerError) as error:
        create("no-such-model", NUM_CLASSES, face_graph)
    message = str(error.value)
    assert "no-such-model" in message and "\n" not in message
    for name in MODELS:
        assert name in message


def test_unknown_setting_names_the_settings(face_graph):
    with pytest.raises(GeomerError, match="no setting 'widht'.*hidden"):
        create("dere-grl", NUM_CLASSES, face_graph, widht=3)


def test_settings_that_do_not_fit_together_are_one_line(face_graph):
    # each of the right type, together not buildable: every caller (train, predict, a diagnosis)
    # gets the same GeomerError rather than the constructor's ValueError
    with pytest.raises(GeomerError, match=r"model 'mmt' cannot be built with settings .*dim 30 is not divisible"):
        create("mmt", NUM_CLASSES, face_graph, dim=30, heads=4)


def test_fewer_than_two_classes_is_refused(face_graph):
    with pytest.raises(GeomerError, match="at least 2 classes"):
        create("dere-grl", 1, face_graph)


def test_register_model_refuses_a_second_model_under_a_taken_name():
    class Other(nn.Module):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_model("dere-grl")(Other)


def test_register_model_records_a_spec_and_create_builds_it(face_graph, monkeypatch):
    monkeypatch.setattr(registry.MODELS, "_entries", dict(registry.MODELS.items()))

    @register_model("tiny-test-model")
    class Tiny(nn.Module):
        """A linear model over the pooled flow statistics."""

        paper = "nobody, 2024"
        requires = ("flow_stats",)

        def __init__(self, num_classes, graph, *, width: int = 4):
            super().__init__()
            self.width = width

    spec = get_spec("tiny-test-model")
    assert spec.factory is Tiny and spec.paper == "nobody, 2024"
    assert spec.requires == ("flow_stats",) and spec.summary.startswith("A linear model")
    model = create("tiny-test-model", 4, face_graph, width=7)
    assert model.width == 7 and model.model_name == "tiny-test-model"
    assert model.model_cfg == {"width": 7}
    assert "tiny-test-model" in list_models()


def test_model_output_checks_its_shapes():
    logits, relations, embedding = torch.zeros(2, 3), torch.full((2, 4, 4), 0.25), torch.zeros(2, 5)
    out = ModelOutput(logits, relations, embedding)
    assert out.num_components == 4 and out.aux_loss is None
    with pytest.raises(ValueError, match="relations"):
        ModelOutput(logits, torch.zeros(2, 4, 3), embedding)
    with pytest.raises(ValueError, match="batch size"):
        ModelOutput(logits, relations, torch.zeros(3, 5))
    with pytest.raises(ValueError, match="scalar"):
        ModelOutput(logits, relations, embedding, aux_loss=torch.zeros(2))
    with pytest.raises(AttributeError):
        out.logits = logits  # frozen


@pytest.mark.parametrize("name", MODELS)
def test_every_model_declares_a_paper_and_valid_requirements(name, batch):
    spec = get_spec(name)
    assert spec.paper, f"{name} has no paper citation"
    for attribute in spec.requires + tuple(a for group in spec.requires_any for a in group):
        assert attribute in batch, f"{name} requires {attribute!r}, not a to_pyg attribute"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_output_contract(name, face_graph, batch, contract):
    model = build(name, face_graph)
    check_inputs(model, batch)
    out = model(batch)
    assert isinstance(out, ModelOutput)
    size = batch.num_graphs
    assert out.logits.shape == (size, NUM_CLASSES)
    assert out.relations.shape == (size, contract.K, contract.K)
    assert out.embedding.shape[0] == size and out.embedding.dim() == 2
    for tensor in (out.logits, out.relations, out.embedding):
        assert torch.isfinite(tensor).all()
    assert (out.relations >= 0).all()
    torch.testing.assert_close(out.relations.sum(-1), torch.ones(size, contract.K))
    if out.aux_loss is not None:
        assert out.aux_loss.dim() == 0 and torch.isfinite(out.aux_loss)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_backward_reaches_the_parameters(name, face_graph, batch):
    model = build(name, face_graph)
    out = model(batch)
    loss = torch.nn.functional.cross_entropy(out.logits, batch.y)
    if out.aux_loss is not None:
        loss = loss + out.aux_loss
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads, f"{name} has no trainable parameters"
    reached = [g for g in grads if g is not None]
    assert all(torch.isfinite(g).all() for g in reached)
    assert sum(bool(g.abs().sum() > 0) for g in reached) >= 0.5 * len(grads)


@pytest.mark.parametrize("name", CLASS_MODELS)
def test_same_seed_same_model_same_output(name, face_graph, batch):
    first, second = build(name, face_graph, seed=3), build(name, face_graph, seed=3)
    other = build(name, face_graph, seed=4)
    for model in (first, second, other):
        model.eval()
    with torch.no_grad():
        a, b, c = first(batch), second(batch), other(batch)
    torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)
    torch.testing.assert_close(a.relations, b.relations, rtol=0, atol=0)
    assert not torch.equal(a.logits, c.logits)


@pytest.mark.parametrize("name", CLASS_MODELS)
def test_eval_mode_scores_one_clip_as_in_a_batch(name, face_graph, batch):
    # eval mode must not use batch statistics: a clip scores the same alone or among others
    model = build(name, face_graph)
    model.eval()
    with torch.no_grad():
        together = model(batch).logits
        alone = model(Batch.from_data_list([batch.get_example(0)])).logits
    torch.testing.assert_close(alone[0], together[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", CLASS_MODELS)
def test_a_missing_required_input_is_one_line_naming_it(name, face_graph, batch):
    spec = get_spec(name)
    missing = spec.requires[0] if spec.requires else (spec.requires_any or [[None]])[0]
    model = build(name, face_graph)
    if missing is None:
        pytest.skip(f"{name} needs no particular input")
    stripped = batch.clone()
    for attribute in [missing] if isinstance(missing, str) else missing:
        del stripped[attribute]
    with pytest.raises(GeomerError) as error:
        check_inputs(model, stripped)
    message = str(error.value)
    assert "\n" not in message
    assert (missing if isinstance(missing, str) else missing[0]) in message
    with pytest.raises(GeomerError):
        check_inputs(name, stripped)


@pytest.mark.parametrize("name", CLASS_MODELS)
def test_learns_a_separable_task(name, face_graph, separable_batches, fit, evaluate_accuracy):
    train, test = separable_batches
    model = build(name, face_graph)
    before = evaluate_accuracy(model, test)
    fit(model, train, steps=40)
    after = evaluate_accuracy(model, test)
    assert after >= 0.9, f"{name}: held-out accuracy {after:.2f} (before training {before:.2f})"
