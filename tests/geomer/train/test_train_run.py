"""The engine end to end on hand-made graphs: run directory, determinism, resume, leak check."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil

import numpy as np
import pytest
from train_tiny_model import TinyComponentModel, make_graphs

from geomer.data.protocols import LeakError
from geomer.errors import GeomerError
from geomer.features import FeatureSettings
from geomer.graph import FaceGraph
from geomer.train import Fold, TrainConfig, load_checkpoint, pool_run, run_loso

CLASSES = ("a", "b", "c")


@pytest.fixture(scope="module")
def face_graph():
    return FaceGraph()


@pytest.fixture(scope="module")
def graphs(face_graph):
    return make_graphs(face_graph)


def _config(**changes):
    settings = dict(model="train-tiny", epochs=4, batch_size=8, seeds=(0,), progress=False,
                    augment="none")  # hand-made graphs are not in geomer's feature layout, which the mirror needs
    settings.update(changes)
    return TrainConfig(**settings)


def test_run_directory_follows_the_contract(tmp_path, graphs, face_graph):
    result = run_loso(graphs, CLASSES, _config(seeds=(0, 1)), tmp_path / "run", face_graph=face_graph, dataset="hand")
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "train-tiny" and config["classes"] == list(CLASSES)
    assert config["component_names"] == list(face_graph.component_names)
    assert config["seeds"] == [0, 1] and config["epochs"] == 4
    assert len(config["folds"]) == 6
    # the digest of the tested clips that pooling checks each seed's predictions against
    from geomer.rundir import samples_fingerprint

    tested = sorted((row["sample"], row["subject"], row["dataset"], row["true"]) for fold in config["folds"]
                    for row in csv.DictReader((run / "seed-1" / fold / "predictions.csv").read_text().splitlines()))
    assert config["tested_samples"] == samples_fingerprint(tested)
    for seed in (0, 1):
        for fold in config["folds"]:
            fold_dir = run / f"seed-{seed}" / fold
            with open(fold_dir / "predictions.csv") as stream:
                rows = list(csv.DictReader(stream))
            assert list(rows[0]) == ["sample", "subject", "dataset", "true", "predicted", "prob_a", "prob_b", "prob_c"]
            assert len(rows) == 6 and {r["subject"] for r in rows} == {fold.replace("_", "/")}
            for row in rows:
                probabilities = [float(row[f"prob_{c}"]) for c in CLASSES]
                assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
                assert row["predicted"] == CLASSES[int(np.argmax(probabilities))]
            relations = np.load(fold_dir / "relations.npy")
            assert relations.shape == (6, 7, 7)
            np.testing.assert_allclose(relations.sum(-1), 1.0, atol=1e-5)
            with open(fold_dir / "history.csv") as stream:
                history = list(csv.DictReader(stream))
            assert [int(h["epoch"]) for h in history] == [1, 2, 3, 4]
            assert (fold_dir / "checkpoint.pt").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == result.metrics
    assert metrics["leaky"] is False
    assert set(metrics["per_seed"]) == {"0", "1"}
    assert metrics["uf1"] == pytest.approx(np.mean([metrics["per_seed"][s]["uf1"] for s in ("0", "1")]))
    assert metrics["uf1_std"] == pytest.approx(np.std([metrics["per_seed"][s]["uf1"] for s in ("0", "1")]))
    assert set(metrics["per_dataset"]) == {"alpha", "beta"}
    assert set(metrics["per_class"]) == set(CLASSES)
    assert np.sum(metrics["confusion"]) == 2 * len(graphs)
    assert metrics["settings"]["epochs"] == 4 and metrics["geomer_version"]
    assert np.load(run / "relations.npy").shape == (3, 7, 7)
    # The separable task is learnt: far above chance (1/3).
    assert metrics["acc"] > 0.6


def test_same_seed_twice_gives_identical_metrics(tmp_path, graphs, face_graph):
    for name in ("one", "two"):
        run_loso(graphs, CLASSES, _config(), tmp_path / name, face_graph=face_graph)
    assert (tmp_path / "one" / "metrics.json").read_bytes() == (tmp_path / "two" / "metrics.json").read_bytes()
    fold = json.loads((tmp_path / "one" / "config.json").read_text())["folds"][0]
    for name in ("predictions.csv", "history.csv"):
        assert (tmp_path / "one" / "seed-0" / fold / name).read_bytes() == (tmp_path / "two" / "seed-0" / fold / name).read_bytes()


def test_resume_skips_finished_folds(tmp_path, graphs, face_graph):
    run = tmp_path / "run"
    first = run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph)
    folds = json.loads((run / "config.json").read_text())["folds"]
    (run / "seed-0" / folds[2] / "predictions.csv").unlink()
    untouched = run / "seed-0" / folds[0] / "checkpoint.pt"
    stamp = untouched.stat().st_mtime_ns
    second = run_loso(graphs, CLASSES, _config(jobs=1), run, face_graph=face_graph)
    assert second.skipped == 5 and [t.fold for t in second.trained] == [folds[2]]
    assert untouched.stat().st_mtime_ns == stamp
    assert second.metrics == first.metrics
    third = run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph)
    assert third.skipped == 6 and third.trained == []


def test_resume_refuses_a_different_run(tmp_path, graphs, face_graph):
    run_loso(graphs, CLASSES, _config(), tmp_path / "run", face_graph=face_graph)
    with pytest.raises(GeomerError, match="epochs"):
        run_loso(graphs, CLASSES, _config(epochs=5), tmp_path / "run", face_graph=face_graph)
    # a training setting and a model setting are part of what the run is
    with pytest.raises(GeomerError, match="settings"):
        run_loso(graphs, CLASSES, _config(lr=0.5), tmp_path / "run", face_graph=face_graph)
    with pytest.raises(GeomerError, match="cfg"):
        run_loso(graphs, CLASSES, _config(cfg={"hidden": 4}), tmp_path / "run", face_graph=face_graph)
    # how the folds are executed is not: the run resumes with every fold reused
    resumed = run_loso(graphs, CLASSES, _config(jobs=2), tmp_path / "run", face_graph=face_graph)
    assert resumed.trained == [] and resumed.skipped == 6


def test_a_run_directory_is_not_reopened_with_a_config_lacking_one_of_its_keys(tmp_path):
    """Opening compares every key of either config: one the stored run has and the new one lacks differs too."""
    from geomer.rundir import RunDir

    RunDir(tmp_path / "run").open({"model": "m", "epochs": 4, "settings": {"lr": 0.1}})
    with pytest.raises(GeomerError, match=r"config.json: the run directory holds a different run "
                                          r"\(differs in settings\)"):
        RunDir(tmp_path / "run").open({"model": "m", "epochs": 4})
    RunDir(tmp_path / "run").open({"model": "m", "epochs": 4, "settings": {"lr": 0.1}, "execution": {"jobs": 2}})


def test_a_step_budget_trains_whole_epochs_of_each_folds_training_set(tmp_path, graphs, face_graph):
    # every fold trains on 30 clips: 4 batches of 8, so 10 steps are 3 epochs
    result = run_loso(graphs, CLASSES, _config(epochs=None, steps=10), tmp_path / "run", face_graph=face_graph)
    assert {t.epochs_run for t in result.trained} == {3}
    fold = json.loads((tmp_path / "run" / "config.json").read_text())["folds"][0]
    with open(tmp_path / "run" / "seed-0" / fold / "history.csv") as stream:
        assert [int(row["epoch"]) for row in csv.DictReader(stream)] == [1, 2, 3]
    assert result.metrics["settings"]["steps"] == 10
    with pytest.raises(GeomerError, match="different run"):  # the same epochs as an epoch budget: another run
        run_loso(graphs, CLASSES, _config(epochs=3), tmp_path / "run", face_graph=face_graph)
    with pytest.raises(GeomerError, match="not both"):
        _config(epochs=3, steps=10)
    with pytest.raises(GeomerError, match="steps must be at least 1"):
        _config(epochs=None, steps=0)


def test_fold_leak_check_raises_on_overlap(tmp_path, graphs, face_graph):
    subjects = [str(g.subject) for g in graphs]
    leaky = Fold(
        name="leaky",
        train=tuple(range(1, len(graphs))),
        test=tuple(i for i, s in enumerate(subjects) if s == subjects[0]),
        test_subjects=(subjects[0],),
    )
    with pytest.raises(LeakError, match=subjects[0]):
        run_loso(graphs, CLASSES, _config(), tmp_path / "run", face_graph=face_graph, folds=[leaky])
    assert not (tmp_path / "run").exists()


def test_folds_must_test_every_sample_once(tmp_path, graphs, face_graph):
    subjects = [str(g.subject) for g in graphs]
    only = [i for i, s in enumerate(subjects) if s == subjects[0]]
    partial = Fold("s0", tuple(i for i in range(len(graphs)) if i not in only), tuple(only), (subjects[0],))
    with pytest.raises(GeomerError, match="never tested"):
        run_loso(graphs, CLASSES, _config(), tmp_path / "run", face_graph=face_graph, folds=[partial])


def test_missing_model_input_fails_before_training(tmp_path, graphs, face_graph):
    stripped = [g.clone() for g in graphs]
    for g in stripped:
        del g.x
    with pytest.raises(GeomerError, match="'x'"):
        run_loso(stripped, CLASSES, _config(), tmp_path / "run", face_graph=face_graph)
    assert not (tmp_path / "run").exists()


def test_a_fold_whose_training_diverged_is_a_one_line_error_not_a_damaged_file(tmp_path, graphs, face_graph):
    import torch

    broken = [g.clone() for g in graphs]
    for g in broken:
        g.x = torch.full_like(g.x, float("nan"))  # what a diverged model outputs, from its input
    with pytest.raises(GeomerError, match="training diverged"):
        run_loso(broken, CLASSES, _config(), tmp_path / "run", face_graph=face_graph)
    assert not list((tmp_path / "run").rglob("predictions.csv"))


def test_unknown_model_lists_the_known_ones(tmp_path, graphs, face_graph):
    with pytest.raises(GeomerError, match="train-tiny"):
        run_loso(graphs, CLASSES, _config(model="no-such-model"), tmp_path / "run", face_graph=face_graph)


def test_validation_subjects_come_from_training_subjects(tmp_path, graphs, face_graph):
    run = tmp_path / "run"
    run_loso(graphs, CLASSES, _config(val_fraction=0.3), run, face_graph=face_graph)
    for fold in json.loads((run / "config.json").read_text())["folds"]:
        extra = load_checkpoint(run / "seed-0" / fold / "checkpoint.pt").extra
        assert len(extra["validation_subjects"]) == 2  # round(0.3 * 5 training subjects)
        assert not set(extra["validation_subjects"]) & set(extra["test_subjects"])
        with open(run / "seed-0" / fold / "history.csv") as stream:
            assert "val_uf1" in next(csv.DictReader(stream))
    assert json.loads((run / "metrics.json").read_text())["leaky"] is False


def test_validation_subjects_are_not_trained_on_and_the_best_validation_epoch_is_kept(
        tmp_path, graphs, face_graph, monkeypatch):
    """Spies on the engine: which clips each training batch holds, and which weights each
    evaluation (validation every epoch, then the test) sees."""
    import torch

    import geomer.train.fit as fit

    events = []  # ("validation", subjects) when a fold starts, ("train", subjects) per training batch
    draw = fit.validation_subjects
    monkeypatch.setattr(fit, "validation_subjects", lambda *args: events.append(("validation", draw(*args)))
                        or events[-1][1])
    forward = TinyComponentModel.forward

    def spied_forward(self, batch):
        if self.training:
            events.append(("train", set(batch.subject)))
        return forward(self, batch)

    monkeypatch.setattr(TinyComponentModel, "forward", spied_forward)
    states = []  # (clips evaluated, the evaluated model's weights) per _predict call
    predict = fit._predict
    monkeypatch.setattr(fit, "_predict", lambda model, clips, *args: states.append(
        ({str(g.subject) for g in clips}, {k: v.clone() for k, v in model.state_dict().items()}))
        or predict(model, clips, *args))

    run = tmp_path / "run"
    run_loso(graphs, CLASSES, _config(val_fraction=0.3, epochs=8, lr=0.05), run, face_graph=face_graph)
    held_out = None
    for kind, subjects in events:
        if kind == "validation":
            held_out = subjects
            assert len(held_out) == 2
        else:
            assert not subjects & held_out, "a validation subject's clip was in a training batch"

    folds = json.loads((run / "config.json").read_text())["folds"]
    # the evaluations of each fold: its validation passes, then the pass over its test subject
    tests = [i for i, (clips, _) in enumerate(states) if clips in [{f.replace("_", "/")} for f in folds]]
    assert len(tests) == len(folds)
    earlier = 0
    for fold, end, start in zip(folds, tests, [-1, *tests[:-1]]):
        with open(run / "seed-0" / fold / "history.csv") as stream:
            scores = [float(row["val_uf1"]) for row in csv.DictReader(stream)]
        best = int(np.argmax(scores))  # the first best epoch
        assert load_checkpoint(run / "seed-0" / fold / "checkpoint.pt").extra["epoch"] == best + 1
        validation = states[start + 1: end]
        assert len(validation) == len(scores) and states[end][0] == {fold.replace("_", "/")}
        for name, value in states[end][1].items():
            assert torch.equal(value, validation[best][1][name]), f"fold {fold}: tested weights are not epoch {best + 1}'s"
        earlier += best < len(scores) - 1
    assert earlier, "no fold's best validation epoch came before its last: the test would not tell"


def test_the_loss_is_class_weighted_and_label_smoothed(tmp_path, graphs, face_graph, monkeypatch):
    import torch

    from geomer.train.fit import class_weights

    np.testing.assert_allclose(class_weights(np.array([0, 0, 0, 1]), 3), [4 / 9, 4 / 3, 0.0], rtol=1e-6)
    used = []  # (class weights, label smoothing) of every training loss computed

    class SpiedLoss(torch.nn.CrossEntropyLoss):
        def forward(self, logits, target):
            used.append((None if self.weight is None else tuple(self.weight.tolist()), self.label_smoothing))
            return super().forward(logits, target)

    monkeypatch.setattr(torch.nn, "CrossEntropyLoss", SpiedLoss)
    # class c: one subject keeps half its clips, so the training folds' class mixes differ
    first_subject = str(graphs[0].subject)
    unbalanced = [g for g in graphs if not (int(g.y) == 2 and g.clip.endswith("_1") and str(g.subject) == first_subject)]
    run_loso(unbalanced, CLASSES, _config(augment="smooth=0.2", epochs=1), tmp_path / "run", face_graph=face_graph)
    assert used and all(smoothing == pytest.approx(0.2) for _, smoothing in used)
    # each fold's weights come from its own training clips: 10 of a, b and c, or 10, 10, 9
    expected = {
        tuple(class_weights(np.array([int(g.y) for g in unbalanced if str(g.subject) != subject]), 3).tolist())
        for subject in {str(g.subject) for g in unbalanced}
    }
    assert len(expected) == 2
    seen = {weights for weights, _ in used}
    assert len(seen) == 2 and all(
        any(np.allclose(w, e, rtol=1e-6) for e in expected) for w in seen)
    used.clear()
    run_loso(unbalanced, CLASSES, _config(epochs=1, class_weighted=False), tmp_path / "plain", face_graph=face_graph)
    assert used and all(weights is None and smoothing == 0.0 for weights, smoothing in used)


def _fold_record(run, fold) -> tuple[list[str], dict]:
    """A fold's history.csv columns and its checkpoint's ``extra``."""
    with open(run / "seed-0" / fold / "history.csv") as stream:
        rows = list(csv.DictReader(stream))
    return rows, load_checkpoint(run / "seed-0" / fold / "checkpoint.pt").extra


def test_best_test_epoch_is_marked_leaky_and_is_the_one_tested(tmp_path, graphs, face_graph):
    run = tmp_path / "run"
    result = run_loso(graphs, CLASSES, _config(leaky_best_epoch=True, epochs=8, lr=0.05), run, face_graph=face_graph)
    assert result.metrics["leaky"] is True
    earlier = 0
    for fold in json.loads((run / "config.json").read_text())["folds"]:
        rows, extra = _fold_record(run, fold)
        scores = [float(row["test_uf1"]) for row in rows]
        assert extra["epoch"] == int(np.argmax(scores)) + 1
        earlier += extra["epoch"] < len(scores)
    assert earlier, "no fold's best test epoch came before its last: the test would not tell"


def test_a_default_run_never_evaluates_the_test_fold_before_its_last_epoch(tmp_path, graphs, face_graph, monkeypatch):
    import geomer.train.fit as fit

    evaluated = []
    predict = fit._predict
    monkeypatch.setattr(fit, "_predict", lambda model, clips, *args: evaluated.append(
        {str(g.subject) for g in clips}) or predict(model, clips, *args))
    run = tmp_path / "run"
    result = run_loso(graphs, CLASSES, _config(epochs=6), run, face_graph=face_graph)
    assert result.metrics["leaky"] is False
    folds = json.loads((run / "config.json").read_text())["folds"]
    assert evaluated == [{fold.replace("_", "/")} for fold in folds]  # each test subject once, nothing else
    for fold in folds:
        rows, extra = _fold_record(run, fold)
        assert not {"test_uf1", "val_uf1"} & set(rows[0]) and extra["epoch"] == len(rows) == 6


def test_run_from_an_incompatible_version_is_refused(tmp_path, graphs, face_graph):
    run = tmp_path / "run"
    run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph)
    config = json.loads((run / "config.json").read_text())
    config["geomer_version"] = "7.0.0"
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(GeomerError, match="incompatible"):
        pool_run(run)


def test_a_fold_trains_without_filling_new_tensors_and_restores_torchs_settings(tmp_path, graphs, face_graph,
                                                                                 monkeypatch):
    """Deterministic mode would fill every new tensor with NaN before it is written (a cost in
    every step); a fold turns that off and restores torch's settings after, also on an error."""
    import torch

    import geomer.train.fit as fit

    seen = []
    weights = fit.class_weights
    monkeypatch.setattr(fit, "class_weights", lambda *args: seen.append(
        (torch.utils.deterministic.fill_uninitialized_memory, torch.are_deterministic_algorithms_enabled()))
        or weights(*args))
    monkeypatch.setattr(torch.utils.deterministic, "fill_uninitialized_memory", True)
    threads = torch.get_num_threads()
    broken = [g.clone() for g in graphs]
    for g in broken:
        g.x = torch.full_like(g.x, float("nan"))
    with pytest.raises(GeomerError, match="training diverged"):
        run_loso(broken, CLASSES, _config(), tmp_path / "run", face_graph=face_graph)
    assert seen and seen[0] == (False, True)
    assert torch.utils.deterministic.fill_uninitialized_memory is True
    assert not torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == threads


def test_graphs_are_slimmed_to_the_declared_model_inputs(graphs):
    import torch

    from geomer.models import get_spec
    from geomer.train.fit import slim_graphs

    extended = [g.clone() for g in graphs[:3]]
    for g in extended:
        g.texture = torch.zeros(g.num_nodes, 3, 2, 8, 8)
    slim = slim_graphs(get_spec("train-tiny").inputs, extended)
    assert "texture" not in slim[0] and "texture" in extended[0]
    assert set(slim[0].keys()) - {"num_nodes"} == {"x", "component", "y", "edge_index", "clip", "subject", "dataset"}
    assert slim[0].subject == extended[0].subject and torch.equal(slim[0].x, extended[0].x)
    assert slim[0].num_nodes == extended[0].num_nodes
    # a model reading apex texture keeps the onset texture too: occlusion neutralises to it
    assert "texture" in slim_graphs(("texture_apex",), extended)[0]


def test_a_truncated_checkpoint_is_trained_again_on_resume(tmp_path, graphs, face_graph, capfd):
    run = tmp_path / "run"
    first = run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph)
    folds = json.loads((run / "config.json").read_text())["folds"]
    broken = run / "seed-0" / folds[1] / "checkpoint.pt"
    broken.write_bytes(broken.read_bytes()[:100])
    second = run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph)
    assert [t.fold for t in second.trained] == [folds[1]] and second.skipped == 5
    assert "checkpoint.pt" in capfd.readouterr().err
    assert load_checkpoint(broken).model == "train-tiny"
    assert second.metrics == first.metrics


def _with_cell(text: str, column: int, value: str) -> str:
    """``text`` (a CSV) with the cell of its first data row in ``column`` replaced by ``value``."""
    lines = text.splitlines(keepends=True)
    cells = lines[1].split(",")
    cells[column] = value
    lines[1] = ",".join(cells)
    return "".join(lines)


def _first_row(text: str) -> list[str]:
    return text.splitlines()[1].split(",")


def _other_class(name: str) -> str:
    return next(c for c in CLASSES if c != name)


@pytest.mark.parametrize("origin", ["another fold", "another seed", "other settings", "other features",
                                    "a missing weight"])
def test_a_checkpoint_that_is_not_the_folds_own_is_trained_again_on_resume(tmp_path, graphs, face_graph, capfd,
                                                                           origin):
    import torch

    run = tmp_path / "run"
    first = run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph)
    folds = json.loads((run / "config.json").read_text())["folds"]
    target = run / "seed-0" / folds[1] / "checkpoint.pt"
    other = {"another seed": dict(config=_config(seeds=(1,))), "other settings": dict(config=_config(cfg={"hidden": 5})),
             "other features": dict(config=_config(), feature_settings={"face_size": 128})}.get(origin)
    if origin == "another fold":
        shutil.copy(run / "seed-0" / folds[2] / "checkpoint.pt", target)
    elif other is not None:  # the same fold of a run that differs in one thing
        config = other.pop("config")
        run_loso(graphs, CLASSES, config, tmp_path / "other", face_graph=face_graph, **other)
        shutil.copy(next((tmp_path / "other").glob(f"seed-*/{folds[1]}/checkpoint.pt")), target)
    else:  # the fold's own file with a weight removed: it reads, but no model can load it
        payload = torch.load(target, weights_only=True)
        payload["state_dict"].pop(next(iter(payload["state_dict"])))
        torch.save(payload, target)
    second = run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph)
    assert [t.fold for t in second.trained] == [folds[1]] and second.skipped == 5
    assert f"{folds[1]}/checkpoint.pt: " in capfd.readouterr().err
    assert load_checkpoint(target).extra["fold"] == folds[1]
    assert second.metrics == first.metrics


@pytest.mark.parametrize("file, damage", [
    ("predictions.csv", lambda text: _with_cell(text, 5, "abc")),  # prob_a
    ("predictions.csv", lambda text: _with_cell(text, 5, "7.5")),
    # well-formed edits: a prediction that is not the row's argmax, a changed true class, a sample
    # of another fold
    ("predictions.csv", lambda text: _with_cell(text, 4, _other_class(_first_row(text)[4]))),
    ("predictions.csv", lambda text: _with_cell(text, 3, _other_class(_first_row(text)[3]))),
    ("predictions.csv", lambda text: _with_cell(text, 0, "s-elsewhere/clip")),
    ("predictions.csv", lambda text: re.sub(",(alpha|beta),", ",elsewhere,", text)),  # every row's dataset
    ("predictions.csv", lambda text: _with_cell(text, 1, "hand/s-elsewhere")),  # the subject
    ("predictions.csv", lambda text: text[: text.index("\n") + 1]),  # the header alone
    ("history.csv", lambda text: ""),
    ("history.csv", lambda text: _with_cell(text, 1, "x")),  # loss
    ("history.csv", lambda text: text[: text.index("\n") + 3]),  # cut inside the first epoch's row
    ("history.csv", lambda text: "".join(text.splitlines(keepends=True)[:3])),  # the last two epochs cut
    ("history.csv", lambda text: text.replace("\n2,", "\n3,", 1)),  # an epoch out of order
])
def test_a_finished_fold_with_a_damaged_file_is_trained_again_on_resume(tmp_path, graphs, face_graph, capfd,
                                                                         file, damage):
    run = tmp_path / "run"
    first = run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph)
    folds = json.loads((run / "config.json").read_text())["folds"]
    broken = run / "seed-0" / folds[1] / file
    intact = broken.read_text()
    broken.write_text(damage(intact))
    second = run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph)
    assert [t.fold for t in second.trained] == [folds[1]] and second.skipped == 5
    assert f"{folds[1]}/{file}: " in capfd.readouterr().err
    assert broken.read_text() == intact  # trained again, deterministically
    assert second.metrics == first.metrics


def test_a_finished_fold_whose_predictions_lost_their_last_row_is_trained_again_on_resume(tmp_path, graphs,
                                                                                         face_graph, capfd):
    """The last clip's row cut from predictions.csv (and its matrices from the relation files): trained again."""
    run = tmp_path / "run"
    first = run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph)
    folds = json.loads((run / "config.json").read_text())["folds"]
    fold = run / "seed-0" / folds[1]
    intact = (fold / "predictions.csv").read_text()
    lines = intact.splitlines(keepends=True)
    (fold / "predictions.csv").write_text("".join(lines[:-1]))
    for name in ("relations.npy", "occlusion_relations.npy"):  # consistent with the rows left
        np.save(fold / name, np.load(fold / name)[:-1])
    second = run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph)
    assert [t.fold for t in second.trained] == [folds[1]] and second.skipped == 5
    assert (f"{folds[1]}/predictions.csv: {len(lines) - 2} rows, the fold tests {len(lines) - 1} samples"
            in capfd.readouterr().err)
    assert (fold / "predictions.csv").read_text() == intact
    assert second.metrics == first.metrics


@pytest.mark.parametrize("file", ["history.csv", "occlusion_relations.npy"])
def test_a_finished_fold_missing_a_file_the_engine_writes_is_trained_again(tmp_path, graphs, face_graph, capfd,
                                                                          file):
    run = tmp_path / "run"
    first = run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph)
    folds = json.loads((run / "config.json").read_text())["folds"]
    missing = run / "seed-0" / folds[1] / file
    intact = missing.read_bytes()
    missing.unlink()
    second = run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph)
    assert [t.fold for t in second.trained] == [folds[1]] and second.skipped == 5
    assert f"{folds[1]}/{file}: missing" in capfd.readouterr().err
    assert missing.read_bytes() == intact
    assert second.metrics == first.metrics


FOLD_FILES = ["predictions.csv", "checkpoint.pt", "history.csv", "relations.npy", "occlusion_relations.npy"]


@pytest.mark.parametrize("where", [*FOLD_FILES, "fold", "seed", "run/metrics.json", "run/relations.npy",
                                   "run/occlusion_relations.npy", "run/baseline_relations.npy"])
def test_something_of_the_wrong_kind_where_a_run_writes_is_refused_before_training(tmp_path, graphs, face_graph,
                                                                                  where):
    run = tmp_path / "run"
    run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph)
    folds = json.loads((run / "config.json").read_text())["folds"]
    fold = run / "seed-0" / folds[1]

    def written():  # every file but the writer's lock
        return {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != ".geomer.lock"}

    before = written()
    if where in ("seed", "fold"):  # a file where a folder goes
        blocked = run / "seed-0" if where == "seed" else fold
        shutil.rmtree(blocked)
        blocked.write_text("mine")
        message = f"{blocked.name}: is not a folder, and the run writes its folds there"
    else:  # a folder where a file goes: the folds would train, then their results fail to be written
        blocked = run / where.removeprefix("run/") if where.startswith("run/") else fold / where
        blocked.unlink(missing_ok=True)
        blocked.mkdir()
        message = f"{blocked.parent.name}/{blocked.name}: is a folder, where the run writes"
    with pytest.raises(GeomerError, match=message):
        run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph)
    after = written()
    assert after == {p: t for p, t in before.items() if p.is_file()} | (
        {blocked: after[blocked]} if blocked.is_file() else {})  # nothing was trained or rewritten


def test_pooling_folds_without_occlusion_relations_drops_the_stale_run_level_file(tmp_path, graphs, face_graph):
    # a run whose folds lack them (trained before they existed) has no run-level occlusion
    # relations: a file left from other folds would be read as this run's
    run = tmp_path / "run"
    run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph)
    assert (run / "occlusion_relations.npy").is_file()
    folds = json.loads((run / "config.json").read_text())["folds"]
    (run / "seed-0" / folds[0] / "occlusion_relations.npy").unlink()
    pool_run(run)
    assert not (run / "occlusion_relations.npy").exists()
    assert (run / "relations.npy").is_file()


def test_a_file_where_the_figures_go_is_refused_before_a_resume_writes(tmp_path, graphs, face_graph):
    from geomer.rundir import RunDir

    run = tmp_path / "run"
    run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph)
    (run / "figures").mkdir(exist_ok=True)
    RunDir(run).check_writable()  # the run's own figures folder
    (run / "figures").rmdir()
    (run / "figures").write_text("mine")
    with pytest.raises(GeomerError, match="figures: is not a folder, and the run draws its figures there"):
        RunDir(run).check_writable()  # what geomer train and ensemble check first


def test_a_folder_of_other_files_or_inside_a_run_is_refused_as_out(tmp_path, graphs, face_graph):
    """A run writes metrics.json, figures/, seed-*/ into its folder: never over a user's files or
    into another run's folders."""
    user = tmp_path / "mine"
    (user / "figures").mkdir(parents=True)
    (user / "metrics.json").write_text('{"mine": 1}')
    with pytest.raises(GeomerError, match="not a run directory .* but holds figures, metrics.json, which a run"):
        run_loso(graphs, CLASSES, _config(), user, face_graph=face_graph)
    assert sorted(p.name for p in user.iterdir()) == ["figures", "metrics.json"]
    assert (user / "metrics.json").read_text() == '{"mine": 1}'
    # files a run does not write (a log the shell opened before the run started) are no obstacle
    logged = tmp_path / "logged"
    logged.mkdir()
    (logged / "train.log").write_text("started\n")
    run_loso(graphs, CLASSES, _config(), logged, face_graph=face_graph)
    assert (logged / "train.log").read_text() == "started\n" and (logged / "metrics.json").is_file()

    run = tmp_path / "run"
    run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph)
    fold = run / "seed-0" / json.loads((run / "config.json").read_text())["folds"][0]
    before = {p: p.read_bytes() for p in fold.iterdir()}
    for inside in (fold, run / "seed-0" / "new"):
        with pytest.raises(GeomerError, match=f"inside the run directory {run}"):
            run_loso(graphs, CLASSES, _config(), inside, face_graph=face_graph)
    assert {p: p.read_bytes() for p in fold.iterdir()} == before and not (run / "seed-0" / "new").exists()


def test_a_relabelled_dataset_is_not_resumed_into_the_old_folds(tmp_path, graphs, face_graph):
    run_loso(graphs, CLASSES, _config(), tmp_path / "run", face_graph=face_graph)
    relabelled = [g.clone() for g in graphs]
    relabelled[0].y = (relabelled[0].y + 1) % len(CLASSES)
    with pytest.raises(GeomerError, match="differs in samples"):
        run_loso(relabelled, CLASSES, _config(), tmp_path / "run", face_graph=face_graph)


def test_one_writer_per_run_directory_and_stale_locks_are_taken_over(tmp_path, graphs, face_graph):
    from geomer.rundir import LOCK, RunDir

    run = tmp_path / "run"
    with RunDir(run).lock():  # another writer holds it (flock on its own open file)
        with pytest.raises(GeomerError, match=rf"another geomer process \(pid {os.getpid()}\)"):
            run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph)
    assert not (run / "config.json").exists()
    # a folder holding another run's config only: refused, and left as it was (no lock file added)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"geomer_version": "0.2.0", "a": 1}')
    with pytest.raises(GeomerError, match="different run"):
        run_loso(graphs, CLASSES, _config(), other, face_graph=face_graph)
    assert sorted(p.name for p in other.iterdir()) == ["config.json"]
    (run / LOCK).write_text("999999999\n")  # left behind by a killed process: no flock held
    assert run_loso(graphs, CLASSES, _config(), run, face_graph=face_graph).skipped == 0


@pytest.mark.parametrize("changes, message", [
    (dict(lr=-1.0), "learning rate"), (dict(lr=float("nan")), "learning rate"),
    (dict(weight_decay=-1.0), "weight decay"), (dict(device="tpu"), "unknown device"),
    (dict(cfg={"hidden": "abc"}), "expected int"), (dict(cfg={"hidden": 16.7}), "expected int"),
    (dict(cfg={"hidden": -3}), "cannot be built"),
    (dict(seeds=(0, 2**64)), "seeds must lie in"), (dict(seeds=(-1,)), "seeds must lie in"),
])
def test_bad_options_are_refused_before_anything_is_written(tmp_path, graphs, face_graph, changes, message):
    with pytest.raises(GeomerError, match=message):
        run_loso(graphs, CLASSES, _config(**changes), tmp_path / "run", face_graph=face_graph)
    assert not (tmp_path / "run").exists()


def test_the_model_is_built_for_the_runs_feature_geometry(tmp_path, graphs, face_graph):
    settings = FeatureSettings(steps=5)
    run_loso(graphs, CLASSES, _config(model="train-tiny-geometry"), tmp_path / "run", face_graph=face_graph,
             feature_settings=settings.to_dict())
    checkpoint = load_checkpoint(next((tmp_path / "run").rglob("checkpoint.pt")))
    assert checkpoint.state_dict["steps_seen"].shape == (5,)
    assert checkpoint.build_model().steps_seen.shape == (5,)  # rebuilt from the recorded settings
