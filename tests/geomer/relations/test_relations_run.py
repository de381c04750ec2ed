"""A training run writes occlusion relations and the input-only baseline, and reports faithfulness."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from geomer.cli._common import relation_agreement_line
from geomer.graph import FaceGraph
from geomer.relations import agreement_ceiling, ground_truth_agreement, load_ground_truth
from geomer.rundir import RunDir, load_run
from geomer.train import TrainConfig, run_loso
from tests.geomer.relations.occlusion_data import planted_clips, planted_relevance

GRAPH = FaceGraph("k7")


def test_run_writes_occlusion_relations_and_the_baseline(tmp_path):
    graphs = planted_clips(GRAPH, 8, seed=7, subjects=6)  # enough subjects for a bootstrap interval
    config = TrainConfig(model="relations-test-linear", epochs=3, batch_size=8, seeds=(0,), progress=False)
    # the planted classes' relevance as the dataset's ground truth, as a synthetic root has it
    (tmp_path / "ground_truth.json").write_text(json.dumps({
        "classes": ["a", "b", "c"], "components": [str(c) for c in GRAPH.component_names], "clips": {},
        "relations": {c: m.tolist() for c, m in zip("abc", planted_relevance())},
    }))
    result = run_loso(graphs, ["a", "b", "c"], config, tmp_path / "run", face_graph=GRAPH, dataset="planted",
                      extra={"root": str(tmp_path)})
    run_dir = RunDir(result.run_dir.path)
    for fold in run_dir.folds():
        occlusion = fold.load_relations("occlusion_relations")
        assert occlusion.shape == fold.load_relations().shape and np.allclose(occlusion, occlusion.transpose(0, 2, 1))
    per_class = run_dir.load_relations("occlusion_relations")
    baseline = run_dir.load_relations("baseline_relations")
    assert per_class.shape == baseline.shape == (3, 7, 7)
    # the baseline is the data's, not the model's: each class's moving pair stands out
    for c, (i, j) in enumerate(((1, 6), (3, 6), (4, 5))):
        assert baseline[c, i, j] == baseline[c][~np.eye(7, dtype=bool)].max()
    line = relation_agreement_line(load_run(run_dir))
    assert "faithfulness (intrinsic vs occlusion relations" in line and all(f" {name} " in line for name in "abc")
    # beside the agreement with the ground truth, how high a tie-free read-out can go on it
    assert "relations vs the relevance ground truth" in line and "input-only baseline" in line
    # each kind kept per test clip comes with its subject-bootstrap interval, the baseline without
    assert re.search(r"occlusion -?[0-9.]+ \[-?[0-9.]+, -?[0-9.]+\] \(p = ", line)
    assert re.search(r"intrinsic -?[0-9.]+ \[-?[0-9.]+, -?[0-9.]+\] \(p = ", line)
    assert re.search(r"input-only baseline -?[0-9.]+ \(p = ", line)
    assert line.rstrip().endswith(f"reaches at most {agreement_ceiling(planted_relevance()):.3f}")
    # an interval belongs to its figure: with relations that are not these clips' class means, none
    run = load_run(run_dir)
    kinds = {"occlusion": run_dir.load_relations("occlusion_relations")[::-1].copy()}
    table = ground_truth_agreement(kinds, ["a", "b", "c"], load_ground_truth(tmp_path), run=run)
    assert table.loc[0, "relation"] == "occlusion" and np.isnan(table.loc[0, "low"])
    kinds = {"occlusion": run_dir.load_relations("occlusion_relations")}
    table = ground_truth_agreement(kinds, ["a", "b", "c"], load_ground_truth(tmp_path), run=run)
    assert table.loc[0, "low"] <= table.loc[0, "spearman"] <= table.loc[0, "high"]
    # a fold without per-clip occlusion relations (trained before they existed): no interval for them
    next(iter(run_dir.folds())).relations_path("occlusion_relations").unlink()
    assert load_run(run_dir).sample_occlusion is None
    assert not re.search(r"occlusion -?[0-9.]+ \[", relation_agreement_line(load_run(run_dir)))


def test_a_damaged_baseline_fails_pooling_before_metrics_are_rewritten(tmp_path):
    from geomer.errors import GeomerError
    from geomer.train import pool_run

    graphs = planted_clips(GRAPH, 8, seed=7)
    config = TrainConfig(model="relations-test-linear", epochs=1, batch_size=8, seeds=(0,), progress=False)
    run = run_loso(graphs, ["a", "b", "c"], config, tmp_path / "run", face_graph=GRAPH).run_dir.path
    metrics = json.loads((run / "metrics.json").read_text())
    baseline = run / "baseline_relations.npy"
    baseline.write_bytes(baseline.read_bytes()[:150])
    (run / "metrics.json").write_bytes(b"{}")  # stale, as after an interrupted evaluate
    with pytest.raises(GeomerError, match=str(baseline)):
        pool_run(run)
    assert (run / "metrics.json").read_bytes() == b"{}"
    baseline.unlink()  # a run without a baseline (trained before it existed) pools as before
    pool_run(run)
    assert json.loads((run / "metrics.json").read_text())["uf1"] == metrics["uf1"]


@pytest.mark.parametrize("dtype", [np.complex64, bool])
def test_a_relation_file_of_no_real_numbers_is_refused(tmp_path, dtype):
    from geomer.errors import GeomerError
    from geomer.rundir import load_relation_array

    path = tmp_path / "relations.npy"
    np.save(path, np.ones((2, 7, 7), dtype=dtype))
    with pytest.raises(GeomerError, match=f"{path}: holds .* values, not real numbers"):
        load_relation_array(path, 3, components=7)


def test_a_relation_file_beyond_float32s_range_is_refused_without_warnings(tmp_path):
    import warnings

    from geomer.errors import GeomerError
    from geomer.rundir import load_relation_array

    path = tmp_path / "relations.npy"
    np.save(path, np.full((2, 7, 7), 1e300))  # finite in float64, inf once read as float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning would print lines of its own
        with pytest.raises(GeomerError, match=f"{path}: contains NaN or infinite values"):
            load_relation_array(path, 3, components=7)


def test_json_nested_too_deep_to_parse_is_one_line_naming_the_file(tmp_path):
    from geomer.errors import GeomerError
    from geomer.rundir import read_json_object

    path = tmp_path / "config.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(GeomerError, match=f"{path}: not readable JSON"):
        read_json_object(path)
