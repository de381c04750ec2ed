"""A hand-made run directory in the format ``geomer train`` writes (the contract of ``geomer.rundir``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geomer.version import __version__

COMPONENTS = ("contour", "right_brow", "left_brow", "nose", "right_eye", "left_eye", "mouth")
CLASSES = ("negative", "positive", "surprise")


def class_patterns(seed: int = 0) -> np.ndarray:
    """[C, K, K] distinct row-normalised patterns, one per class."""
    rng = np.random.default_rng(seed)
    patterns = rng.random((len(CLASSES), len(COMPONENTS), len(COMPONENTS))) ** 2
    return (patterns / patterns.sum(axis=2, keepdims=True)).astype(np.float32)


def write_run(
    root: Path,
    model: str = "dere-grl",
    *,
    noise: float = 0.01,
    seed: int = 0,
    seeds: tuple[int, ...] = (0,),
    labels_as_indices: bool = False,
    top_level_relations: bool = True,
) -> Path:
    """Two LOSO folds (subjects s1, s2) × 6 clips, relations = class pattern + noise."""
    rng = np.random.default_rng(100 + seed)
    patterns = class_patterns()
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({
        "model": model, "cfg": {}, "dataset": "synth", "classes": list(CLASSES),
        "component_names": list(COMPONENTS), "graph": {"partition": "k7", "nodes": None, "name": "k7-68"},
        "feature_settings": {"partition": "k7", "nodes": None},
        "seeds": list(seeds), "epochs": 3, "version": __version__,
    }))
    all_relations, all_true = [], []
    for s in seeds:
        for fold, subject in (("fold-s1", "synth/s1"), ("fold-s2", "synth/s2")):
            folder = root / f"seed-{s}" / fold
            folder.mkdir(parents=True)
            true = np.array([0, 0, 1, 1, 2, 2])
            predicted = np.array([0, 1, 1, 1, 2, 0])
            relations = patterns[true] + noise * rng.random((6, 7, 7)).astype(np.float32)
            relations /= relations.sum(axis=2, keepdims=True)
            probabilities = np.eye(3)[predicted] * 0.8 + 0.2 / 3
            frame = pd.DataFrame({
                "sample": [f"{subject}/clip{i}" for i in range(6)],
                "subject": subject,
                "dataset": "synth",
                "true": true if labels_as_indices else [CLASSES[i] for i in true],
                "predicted": predicted if labels_as_indices else [CLASSES[i] for i in predicted],
                **{f"prob_{c}": probabilities[:, i] for i, c in enumerate(CLASSES)},
            })
            frame.to_csv(folder / "predictions.csv", index=False)
            np.save(folder / "relations.npy", relations.astype(np.float32))
            pd.DataFrame({"epoch": [1, 2, 3], "loss": [1.1, 0.7, 0.4], "acc": [0.4, 0.6, 0.8]}).to_csv(
                folder / "history.csv", index=False)
            all_relations.append(relations)
            all_true.append(true)
    relations, true = np.concatenate(all_relations), np.concatenate(all_true)
    if top_level_relations:
        np.save(root / "relations.npy", np.stack([relations[true == c].mean(0) for c in range(3)]).astype(np.float32))
    (root / "metrics.json").write_text(json.dumps({"uf1": 0.7, "uar": 0.7, "acc": 0.67, "leaky": False}))
    return root


def write_ground_truth(path: Path) -> Path:
    patterns = class_patterns()
    symmetric = (patterns + patterns.transpose(0, 2, 1)) / 2  # co-activation is symmetric
    path.write_text(json.dumps({
        "classes": list(CLASSES), "components": list(COMPONENTS), "clips": {},
        "relations": {c: symmetric[i].tolist() for i, c in enumerate(CLASSES)},
    }))
    return path


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return write_run(tmp_path / "run-dere")


@pytest.fixture
def ground_truth_file(tmp_path) -> Path:
    return write_ground_truth(tmp_path / "ground_truth.json")


@pytest.fixture
def make_run():
    """The run-directory writer, for tests that need several runs or variants."""
    return write_run


@pytest.fixture
def patterns() -> np.ndarray:
    return class_patterns()
