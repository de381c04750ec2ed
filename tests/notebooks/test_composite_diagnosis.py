"""notebooks/composite_diagnosis.py: its measures on data the tests make (never on real data)."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from geomer.features.types import FeatureSettings
from geomer.train.metrics import classification_metrics

SCRIPT = Path(__file__).resolve().parents[2] / "notebooks" / "composite_diagnosis.py"


@pytest.fixture(scope="module")
def diagnosis():
    spec = importlib.util.spec_from_file_location("composite_diagnosis", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EYES = (np.arange(36, 42), np.arange(42, 48))


def _shape():
    from landmarks.template import CANONICAL_TEMPLATE

    return np.asarray(CANONICAL_TEMPLATE, np.float64) * 6 + 14


def _similar(shape, angle, scale, shift):
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (shape - shape.mean(0)) @ rotation.T * scale + shape.mean(0) + shift


def test_procrustes_residual_is_zero_for_similar_shapes_and_flags_a_distorted_one(diagnosis):
    base = _shape()
    shapes = [_similar(base, a, s, t) for a, s, t in [(0, 1, 0), (0.2, 1.3, 2), (-0.1, 0.8, -3), (0.05, 1.1, 1)]]
    distorted = base.copy()
    distorted[48:68] += [0, 3.0]  # the mouth moved off the face
    iod, residual = diagnosis.procrustes_residuals(np.stack(shapes), EYES)
    assert np.allclose(iod[:2], [np.linalg.norm(base[EYES[0]].mean(0) - base[EYES[1]].mean(0)) * s for s in (1, 1.3)])
    assert residual.max() < 1e-5
    _, residual = diagnosis.procrustes_residuals(np.stack(shapes + [distorted]), EYES)
    assert residual[:4].max() < 0.3 * residual[4]
    assert residual[4] > 0.1


def test_footprint_covers_the_patches_around_the_nodes_and_scales_with_the_face(diagnosis):
    settings = FeatureSettings()
    small = _similar(_shape(), 0, 0.5, 0)
    large = _similar(_shape(), 0, 1.5, 0)
    small_mask = diagnosis.footprint(small, 28, EYES, settings)
    large_mask = diagnosis.footprint(large, 28, EYES, settings)
    assert small_mask.sum() < large_mask.sum()
    x, y = np.round(large[30]).astype(int)  # the nose tip's pixel is inside, a corner is not
    assert large_mask[y, x] and not small_mask[0, 0]


def test_forehead_points_sit_above_the_brows(diagnosis):
    graph = FeatureSettings().graph()
    points = _shape()[graph.node_ids]
    eyes = tuple(np.flatnonzero(np.isin(graph.node_ids, ids)) for ids in diagnosis.EYES)
    extra = diagnosis.forehead_points(points, graph, eyes)
    brows = points[np.isin(graph.node_ids, diagnosis.BROWS)]
    assert extra.shape == (2 * len(brows), 2)
    assert (extra[:, 1] < brows[:, 1].min()).all()


def test_chance_majority_uf1_is_what_always_predicting_the_majority_scores(diagnosis):
    labels = [0] * 7 + [1] * 2 + [2] * 1
    index = SimpleNamespace(classes=("a", "b", "c"),
                            samples=[SimpleNamespace(dataset="d", label_index=y) for y in labels])
    row = diagnosis.chance(index).iloc[0]
    constant = classification_metrics(np.array(labels), np.zeros(len(labels), int), 3)
    assert row["UF1 majority"] == pytest.approx(constant.uf1)
    assert row["UF1 prior guess"] == pytest.approx(1 / 3)
    assert (row["a"], row["b"], row["c"]) == (7, 2, 1)


def test_clip_accuracy_is_the_share_of_seeds_right(diagnosis, tmp_path):
    for seed, predicted in ((0, ["x", "y"]), (1, ["x", "x"])):
        fold = tmp_path / f"seed-{seed}" / "s1"
        fold.mkdir(parents=True)
        pd.DataFrame({"sample": ["s1/c1", "s1/c2"], "true": ["x", "y"], "predicted": predicted}).to_csv(
            fold / "predictions.csv", index=False)
    accuracy = diagnosis.clip_accuracy(tmp_path)
    assert accuracy["s1/c1"] == 1.0 and accuracy["s1/c2"] == 0.5


def test_linear_probe_separates_separable_classes(diagnosis):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 20)
    x = rng.normal(size=(60, 5)) + np.eye(3, 5)[labels] * 4
    predicted = diagnosis._fit_predict(x[::2], labels[::2], x[1::2], 3)
    assert (predicted == labels[1::2]).mean() > 0.9
