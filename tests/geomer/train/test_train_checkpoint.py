"""Checkpoints: a round trip rebuilds the same model; mismatches are one-line GeomerErrors."""

from __future__ import annotations

import re

import torch
from train_tiny_model import damage_archive, make_graphs
import pytest
from torch_geometric.data import Batch

from geomer.errors import GeomerError
from geomer.features import FeatureSettings
from geomer.graph import FaceGraph
from geomer.models import create
from geomer.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from geomer.version import compatible_version

CLASSES = ("a", "b", "c")


@pytest.fixture()
def saved(tmp_path):
    graph = FaceGraph()
    torch.manual_seed(3)
    model = create("train-tiny", 3, graph, hidden=5).eval()
    checkpoint = Checkpoint(
        model="train-tiny",
        cfg={"hidden": 5},
        classes=CLASSES,
        component_names=graph.component_names,
        graph=graph.to_record(),
        state_dict=model.state_dict(),
        feature_settings={"face_size": 256, "scales": [8, 16, 32]},
        extra={"fold": "x"},
    )
    path = save_checkpoint(tmp_path / "model.pt", checkpoint)
    return path, model, graph


def test_round_trip_rebuilds_the_same_model(saved):
    path, model, graph = saved
    loaded = load_checkpoint(path, model="train-tiny", classes=list(CLASSES))
    assert loaded.classes == CLASSES and loaded.cfg == {"hidden": 5}
    assert loaded.component_names == tuple(graph.component_names)
    assert loaded.feature_settings["scales"] == [8, 16, 32] and loaded.extra == {"fold": "x"}
    assert loaded.face_graph().name == graph.name
    rebuilt = loaded.build_model()
    assert not rebuilt.training  # in eval mode: dropout off, batch-norm running statistics used
    batch = Batch.from_data_list(make_graphs(graph, subjects=1, per_class=1))
    torch.testing.assert_close(rebuilt(batch).logits, model(batch).logits)
    assert not list(path.parent.glob(".model.pt.*")), "temporary file left behind"


def test_another_model_or_class_set_is_refused(saved):
    path, _, _ = saved
    with pytest.raises(GeomerError, match="not 'dere-grl'"):
        load_checkpoint(path, model="dere-grl")
    with pytest.raises(GeomerError, match="classes"):
        load_checkpoint(path, classes=["negative", "positive", "surprise"])


def test_weights_that_do_not_fit_are_refused(saved):
    path, _, _ = saved
    checkpoint = load_checkpoint(path)
    wrong = Checkpoint(**{**checkpoint.__dict__, "cfg": {"hidden": 6}})
    with pytest.raises(GeomerError, match="do not fit"):
        wrong.build_model()


def test_weights_that_do_not_fit_name_the_keys(saved):
    path, _, _ = saved
    checkpoint = load_checkpoint(path)
    state = dict(checkpoint.state_dict)
    state.pop("encode.bias")
    with pytest.raises(GeomerError, match=r'do not fit model .*: Missing key\(s\) in state_dict: "encode.bias"'):
        Checkpoint(**{**checkpoint.__dict__, "state_dict": state}).build_model()


@pytest.mark.parametrize("field, value", [
    ("model", None), ("cfg", [1, 2]), ("classes", 5), ("classes", [1, 2, 3]), ("component_names", "abc"),
    ("classes", ["a", "a", "b"]), ("classes", []), ("classes", [["a"]]), ("component_names", ["brow", ""]),
    ("feature_settings", [1]), ("state_dict", "abc"), ("extra", 3), ("graph", {"nodes": [[1, 2], [3]]}),
    ("graph", {"partition": "k7", "nodes": [[1, 2], [3]]}),
])
def test_a_checkpoint_with_a_missing_or_malformed_field_is_one_line_naming_it(saved, tmp_path, field, value):
    path, _, _ = saved
    payload = torch.load(path, weights_only=True)
    if value is None:
        del payload[field]
    else:
        payload[field] = value
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(GeomerError, match=rf"edited.pt: not a geomer checkpoint \((missing or )?malformed '{field}'"):
        load_checkpoint(tmp_path / "edited.pt")


@pytest.mark.parametrize("mirror", ["false", 0, None])
def test_a_mirror_flag_that_is_not_true_or_false_is_refused(saved, tmp_path, mirror):
    # a string "false" would count as true and wrap the model in mirror averaging
    path, _, _ = saved
    payload = torch.load(path, weights_only=True)
    payload["extra"]["mirror"] = mirror
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(GeomerError, match=r"edited.pt: not a geomer checkpoint \(extra 'mirror' must be true or false\)"):
        load_checkpoint(tmp_path / "edited.pt")
    payload["extra"]["mirror"] = False
    torch.save(payload, tmp_path / "edited.pt")
    from geomer.train.augment import MirrorAveraged

    assert not isinstance(load_checkpoint(tmp_path / "edited.pt").build_model(), MirrorAveraged)


def test_component_names_that_are_not_the_graphs_are_refused(saved, tmp_path):
    path, _, _ = saved
    payload = torch.load(path, weights_only=True)
    payload["component_names"] = payload["component_names"][::-1]
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(GeomerError, match=r"edited.pt: not a geomer checkpoint \(component names .* are not the "):
        load_checkpoint(tmp_path / "edited.pt")


def test_incompatible_version_and_foreign_files_are_refused(saved, tmp_path):
    path, _, _ = saved
    payload = torch.load(path, weights_only=True)
    payload["geomer_version"] = "9.0.0"
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(GeomerError, match="incompatible"):
        load_checkpoint(tmp_path / "future.pt")
    del payload["format"]  # a torch file of something else
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(GeomerError, match="not a geomer checkpoint \\(format .* expected\\)"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(GeomerError, match="not a geomer checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(GeomerError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_checkpoint_with_non_finite_weights_is_refused(saved, tmp_path, value):
    """An intact file whose weights went non-finite (no training writes one): resume would keep
    the fold, and only its predictions would show it."""
    path, _, _ = saved
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["encode.bias"][0] = value
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(GeomerError, match=r"edited.pt: non-finite weights in 'encode.bias' \(a damaged checkpoint\)"):
        load_checkpoint(tmp_path / "edited.pt")


def test_a_checkpoint_with_damaged_bytes_of_the_same_size_is_refused(saved, tmp_path):
    """torch.load alone would read damaged tensor bytes as other weights (NaN predictions)."""
    path, _, _ = saved
    damaged = damage_archive(path, tmp_path / "damaged.pt")
    assert damaged.stat().st_size == path.stat().st_size
    with pytest.raises(GeomerError, match=f"{re.escape(str(damaged))}: a damaged checkpoint .*CRC") as info:
        load_checkpoint(damaged)
    assert "its entry data" in str(info.value) and ".checkpoint" not in str(info.value)  # not the temporary name


def test_a_full_disk_while_saving_is_one_line_naming_the_checkpoint(saved, monkeypatch):
    """torch.save reports a full disk as a RuntimeError ("enforce fail at inline_container.cc");
    saving ends in a GeomerError naming the checkpoint, the earlier file is kept, no temp file."""
    path, _, _ = saved
    before = path.read_bytes()
    checkpoint = load_checkpoint(path)

    def torch_save_on_a_full_disk(payload, where):
        with open(where, "wb") as stream:
            stream.write(before[:100])
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 120128 vs 120000")

    monkeypatch.setattr(torch, "save", torch_save_on_a_full_disk)
    with pytest.raises(GeomerError, match=f"^{re.escape(str(path))}: cannot write it"):
        save_checkpoint(path, checkpoint)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]


def test_version_compatibility_rule():
    assert compatible_version("0.1.0", "0.1.5")
    assert not compatible_version("0.2.0", "0.1.0")
    assert compatible_version("1.0.0", "1.4.2")
    assert not compatible_version("2.0.0", "1.4.2")
    assert not compatible_version("garbage", "0.1.0")


class _RunsCode:
    """A pickle that runs code on loading (what a hostile checkpoint would carry)."""

    def __reduce__(self):
        import os

        return os.system, ("echo pwned > /dev/null",)


def test_checkpoints_with_code_in_their_pickle_are_refused(tmp_path):
    from geomer.models.pretrained import read_pretrained

    hostile = tmp_path / "hostile.pt"
    torch.save({"format": "geomer-pretrained", "format_version": 1, "payload": _RunsCode()}, hostile)
    with pytest.raises(GeomerError, match="hostile.pt: not a readable checkpoint"):
        read_pretrained(hostile)
    torch.save({"format": "geomer-checkpoint/1", "payload": _RunsCode()}, hostile)
    with pytest.raises(GeomerError, match="hostile.pt: not a geomer checkpoint"):
        load_checkpoint(hostile)


def test_a_model_sized_by_its_feature_settings_is_rebuilt_with_them(tmp_path):
    graph, features = FeatureSettings().graph(), FeatureSettings(scales=(8, 16), steps=8)
    model = create("dere-grl", 3, graph, features, hidden=8, actions=2)
    checkpoint = Checkpoint(
        model="dere-grl", cfg={"hidden": 8, "actions": 2}, classes=CLASSES,
        component_names=graph.component_names, graph=graph.to_record(), state_dict=model.state_dict(),
        feature_settings=features.to_dict(),
    )
    rebuilt = load_checkpoint(save_checkpoint(tmp_path / "model.pt", checkpoint)).build_model()
    assert (rebuilt.steps, rebuilt.scales) == (8, 2)


@pytest.mark.parametrize("name, setting, part, before, since", [
    ("dere-grl", {"flow_image_channels": 0}, "flow_image_stem", "0.2.1", "0.2.2"),
    ("dere-grl", {"flow_region_channels": 0}, "flow_region", "0.2.10", "0.2.11"),
    ("mmt", {"flow_image_patch": 0}, "flow_image_projection", "0.2.3", "0.2.4"),
    ("mubert", {"readout": "mean", "change_embedding": False}, "change", "0.2.7", "0.2.8"),
    ("mmt", {"readout": "fused"}, None, "0.2.7", "0.2.8"),
    ("hsta", {"readout": "summary"}, None, "0.2.8", "0.2.9"),
    ("mmt", {"flow_region_channels": 0}, "flow_region", "0.2.11", "0.2.12"),
])
def test_an_earlier_checkpoint_is_rebuilt_with_the_settings_of_its_version(name, setting, part, before, since):
    """dere-grl reads the flow image since 0.2.2 (its regions since 0.2.11), mmt since 0.2.4 (its
    regions since 0.2.12), mubert has a change embedding
    (and a per-component readout) since 0.2.8, mmt a per-component readout since 0.2.8 and hsta
    since 0.2.9; an earlier checkpoint recorded no setting for it and is rebuilt as it was trained
    (without the part it never had, its weights fit exactly), a current one with the new default;
    the untrained control of a diagnosis is built with the same settings."""
    from geomer.models import get_spec

    graph = FaceGraph()
    old = create(name, 3, graph, **get_spec(name).settings_of_version(before))  # as it was trained

    def checkpoint(model, version):
        return Checkpoint(model=name, cfg={}, classes=CLASSES, component_names=graph.component_names,
                          graph=graph.to_record(), state_dict=model.state_dict(), geomer_version=version)

    rebuilt = checkpoint(old, before).build_model()
    assert part is None or getattr(rebuilt, part) is None
    for key, value in old.state_dict().items():
        torch.testing.assert_close(rebuilt.state_dict()[key], value)
    untrained = checkpoint(old, before).build_model(trained=False)
    assert {k: v.shape for k, v in untrained.state_dict().items()} == {k: v.shape for k, v in old.state_dict().items()}
    assert not all(torch.equal(v, old.state_dict()[k]) for k, v in untrained.state_dict().items())
    with pytest.raises(GeomerError, match="do not fit"):
        checkpoint(old, since).build_model()
    spec = get_spec(name)
    current = create(name, 3, graph, **spec.settings_of_version(since))  # as `since` trained it
    assert part is None or getattr(checkpoint(current, since).build_model(), part) is not None
    checkpoint(current, since).build_model()  # its weights fit
    assert spec.settings_of_version(before).items() >= setting.items()
    assert not setting.keys() & spec.settings_of_version(since).keys()
    assert spec.settings_of_version("0.10.0") == {}


@pytest.mark.parametrize("field", ["model", "state_dict", "subjects", "sources", "frame_fingerprints"])
def test_a_pretraining_checkpoint_without_what_a_run_reads_is_one_line_naming_it(tmp_path, field):
    from geomer.models.pretrained import pretrained_subjects, save_pretrained

    path = save_pretrained(tmp_path / "pretrained.pt", torch.nn.Linear(2, 2), model_name="mubert",
                           subjects=["external/a"], sources=["a.mp4"], frame_fingerprints=["1:ab"])
    assert pretrained_subjects(path) == {"external/a"}
    payload = torch.load(path, weights_only=True)
    del payload[field]
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(GeomerError, match=rf"edited.pt: not a geomer pretraining checkpoint \(missing or malformed '{field}'\)"):
        pretrained_subjects(tmp_path / "edited.pt")
