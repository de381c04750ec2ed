"""Pooled metrics against hand-computed values; the pooled metric is the headline, not the fold mean."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from geomer.bootstrap import bootstrap_interval, subject_resamples
from geomer.train.metrics import (
    classification_metrics, confusion_matrix, headline_of_confusions, mean_std, subject_bootstrap_intervals,
)
from geomer.train.pool import pool_run
from geomer.version import __version__


def test_metrics_match_hand_computed_values():
    # true:      0 0 0 1 1 2
    # predicted: 0 0 1 1 2 2
    # class 0: TP 2 FP 0 FN 1 → F1 = 4/5 = 0.8, recall 2/3
    # class 1: TP 1 FP 1 FN 1 → F1 = 2/4 = 0.5, recall 1/2
    # class 2: TP 1 FP 1 FN 0 → F1 = 2/3,       recall 1
    true = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2])
    metrics = classification_metrics(true, predicted, 3)
    np.testing.assert_allclose(metrics.f1, [0.8, 0.5, 2 / 3])
    np.testing.assert_allclose(metrics.recall, [2 / 3, 0.5, 1.0])
    assert metrics.uf1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert metrics.uar == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    assert metrics.acc == pytest.approx(4 / 6)
    np.testing.assert_array_equal(metrics.confusion, [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    np.testing.assert_array_equal(metrics.support, [3, 2, 1])


def test_absent_class_is_left_out_of_the_macro_means():
    # Class 2 is neither true nor predicted (a per-dataset part without it): F1/recall undefined.
    metrics = classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), 3)
    assert np.isnan(metrics.f1[2]) and np.isnan(metrics.recall[2])
    assert metrics.uf1 == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert metrics.uar == pytest.approx((1.0 + 0.5) / 2)
    # Predicted but never true: F1 is 0 (counts), recall undefined.
    metrics = classification_metrics(np.array([0, 0]), np.array([0, 2]), 3)
    assert metrics.f1[2] == 0.0 and np.isnan(metrics.recall[2])


def test_confusion_rejects_labels_out_of_range():
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)


def test_mean_std_is_population_std():
    assert mean_std([0.8, 1.0]) == (pytest.approx(0.9), pytest.approx(0.1))


def _write_run(run_dir, folds: dict[str, list[tuple[str, str]]], classes=("a", "b"), datasets=None):
    """``datasets``: each fold's dataset column (default "d" for every fold)."""
    config = {
        "geomer_version": __version__,
        "model": "hand",
        "classes": list(classes),
        "component_names": ["p", "q"],
        "seeds": [0],
        "folds": list(folds),
        "leaky": False,
    }
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(config))
    for fold, rows in folds.items():
        fold_dir = run_dir / "seed-0" / fold
        fold_dir.mkdir(parents=True)
        with open(fold_dir / "predictions.csv", "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["sample", "subject", "dataset", "true", "predicted", "prob_a", "prob_b"])
            for i, (true, predicted) in enumerate(rows):
                p = 0.9 if predicted == "a" else 0.1
                writer.writerow([f"{fold}/c{i}", fold, (datasets or {}).get(fold, "d"), true, predicted, p, 1 - p])
        relations = np.tile(np.eye(2, dtype=np.float32), (len(rows), 1, 1))
        np.save(fold_dir / "relations.npy", relations)


def test_pooled_metric_is_reported_not_the_mean_of_folds(tmp_path):
    # Fold s1: 4 clips of class a, all right → fold UF1 = 1 (only class a defined).
    # Fold s2: 1 a right, 1 b predicted a → fold UF1 = mean(F1_a 2/3, F1_b 0) = 1/3.
    # Mean of folds = 2/3; pooled: a TP 5 FP 1 FN 0 → F1 10/11; b TP 0 FN 1 → 0; UF1 = 5/11.
    folds = {
        "s1": [("a", "a")] * 4,
        "s2": [("a", "a"), ("b", "a")],
    }
    _write_run(tmp_path / "run", folds)
    metrics = pool_run(tmp_path / "run")
    assert metrics["uf1"] == pytest.approx(5 / 11)
    assert metrics["uar"] == pytest.approx((1.0 + 0.0) / 2)
    assert metrics["acc"] == pytest.approx(5 / 6)
    fold_mean = np.mean(
        [classification_metrics(np.array(t), np.array(p), 2).uf1 for t, p in ([[0] * 4, [0] * 4], [[0, 1], [0, 0]])]
    )
    assert fold_mean == pytest.approx(2 / 3)
    assert metrics["uf1"] != pytest.approx(fold_mean)
    assert metrics["confusion"] == [[5, 0], [1, 0]]
    assert metrics["leaky"] is False
    # two subjects are too few for a bootstrap interval of the headline: null, not a width of 0
    assert metrics["uf1_interval"] == metrics["uar_interval"] == metrics["acc_interval"] == [None, None]
    assert "test subjects" in metrics["interval"]
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["uf1"] == pytest.approx(5 / 11)
    assert written["per_seed"]["0"]["uf1"] == pytest.approx(5 / 11)
    relations = np.load(tmp_path / "run" / "relations.npy")
    assert relations.shape == (2, 2, 2)
    np.testing.assert_allclose(relations[0], np.eye(2))


def test_the_headline_of_confusions_follows_the_pooled_conventions():
    rng = np.random.default_rng(0)
    for _ in range(20):  # with classes that are absent, never predicted or both
        true, predicted = rng.integers(0, 3, 12), rng.integers(0, 4, 12) % 3
        true[true == 2] = rng.integers(0, 2)
        expected = classification_metrics(true, predicted, 3)
        got = headline_of_confusions(confusion_matrix(true, predicted, 3))
        assert [float(got[n]) for n in ("uf1", "uar", "acc")] == pytest.approx([expected.uf1, expected.uar, expected.acc])
    assert np.isnan(headline_of_confusions(np.zeros((3, 3)))["uf1"])


def test_the_headline_interval_resamples_subjects_not_clips():
    # three subjects' 40 clips are all right, three others' all wrong: a resample draws each
    # subject 0, 1, 2… times, so accuracy spreads with the mix of the six (standard deviation about
    # 0.2); resampling the 240 clips one by one would spread it by about 0.03
    true = np.tile([0, 1], 120)
    predicted = np.concatenate([true[:120], 1 - true[120:]])
    subjects = np.repeat(["r1", "r2", "r3", "w1", "w2", "w3"], 40)
    pooled = {"true": true, "predicted": predicted, "subject": subjects, "dataset": np.full(240, "d")}
    low, high = subject_bootstrap_intervals([pooled], 2)["acc"]
    assert low < 0.2 and high > 0.8 and (low + high) / 2 == pytest.approx(0.5)
    # within datasets: with the right and the wrong subjects each a dataset of their own, every
    # resample keeps three of each, and accuracy stays at 0.5
    low, high = subject_bootstrap_intervals([{**pooled, "dataset": np.repeat(["r", "w"], 120)}], 2)["acc"]
    assert low == high == pytest.approx(0.5)
    # fewer than five subjects: no interval (one subject would give one resample, width 0)
    few = {key: value[:160] for key, value in pooled.items()}
    assert all(np.isnan(v) for bounds in subject_bootstrap_intervals([few], 2).values() for v in bounds)


def test_the_headline_interval_is_centred_on_the_mean_over_seeds():
    rng = np.random.default_rng(1)
    seeds = []
    for _ in range(3):
        true = rng.integers(0, 3, 600)
        predicted = np.where(rng.random(600) < 0.8, true, rng.integers(0, 3, 600))
        seeds.append({"true": true, "predicted": predicted, "subject": np.repeat([f"s{i}" for i in range(60)], 10),
                      "dataset": np.full(600, "d")})
    for name in ("uf1", "uar", "acc"):
        figures = [getattr(classification_metrics(s["true"], s["predicted"], 3), name) for s in seeds]
        low, high = subject_bootstrap_intervals(seeds, 3)[name]
        assert (low + high) / 2 == pytest.approx(np.mean(figures)) and 0.01 < high - low < 0.1


def test_the_interval_is_the_figure_plus_minus_z_standard_deviations_of_the_resamples():
    """95 %: z = 1.96 (the 97.5 % normal quantile) times the resamples' standard deviation (ddof 1)."""
    resampled = [0.4, 0.5, 0.6]  # standard deviation 0.1
    low, high = bootstrap_interval(0.5, resampled)
    assert (low, high) == pytest.approx((0.5 - 0.1 * 1.959964, 0.5 + 0.1 * 1.959964))
    assert bootstrap_interval(0.5, resampled, level=0.9) == pytest.approx((0.5 - 0.1 * 1.644854, 0.5 + 0.1 * 1.644854))


def test_undefined_resamples_are_left_out_of_the_interval():
    """A resample whose figure is undefined (NaN) is dropped, not counted as 0."""
    resampled = [0.4, 0.5, 0.6, 0.45]
    assert bootstrap_interval(0.5, resampled + [np.nan, np.nan]) == pytest.approx(bootstrap_interval(0.5, resampled))
    assert all(np.isnan(v) for v in bootstrap_interval(0.5, [0.4, np.nan]))  # one defined resample: none


def test_each_stratum_draws_as_many_subjects_as_it_has():
    """Strata of different sizes: every resample draws each stratum's own number of subjects among them."""
    subjects = ["x1", "x2", "x3", "y1", "y2", "y3", "y4", "y5"]
    strata = ["x"] * 3 + ["y"] * 5
    index, draws = subject_resamples(subjects, strata, resamples=200)
    assert index.tolist() == list(range(8)) and draws.shape == (200, 8)  # subjects in sorted order
    assert (draws[:, :3].sum(axis=1) == 3).all() and (draws[:, 3:].sum(axis=1) == 5).all()
    assert draws[:, :3].std() > 0 and draws[:, 3:].std() > 0  # drawn, not copied


def test_the_headline_interval_stays_within_0_and_1():
    """A near-perfect run: figure + 1.96 standard deviations passes 1, the interval stops at 1."""
    true = np.tile([0, 1], 30)
    predicted = true.copy()
    predicted[50:55] = 1 - predicted[50:55]  # five errors, all of subject s5
    subjects = np.repeat([f"s{i}" for i in range(6)], 10)
    pooled = {"true": true, "predicted": predicted, "subject": subjects, "dataset": np.full(60, "d")}
    intervals = subject_bootstrap_intervals([pooled], 2)
    assert all(0.0 <= low <= high <= 1.0 for low, high in intervals.values())
    low, high = intervals["acc"]
    assert high == 1.0 and low < 55 / 60


def test_each_dataset_is_pooled_over_its_own_clips(tmp_path):
    # the folds of the test above, each from its own dataset: x is fold s1, y fold s2
    _write_run(tmp_path / "run", {"s1": [("a", "a")] * 4, "s2": [("a", "a"), ("b", "a")]},
               datasets={"s1": "x", "s2": "y"})
    metrics = pool_run(tmp_path / "run")
    assert metrics["uf1"] == pytest.approx(5 / 11)
    parts = metrics["per_seed"]["0"]["per_dataset"]
    assert parts["x"]["count"] == 4 and parts["x"]["uf1"] == pytest.approx(1.0) and parts["x"]["acc"] == 1.0
    assert parts["y"]["count"] == 2 and parts["y"]["uf1"] == pytest.approx(1 / 3) and parts["y"]["acc"] == 0.5
    assert metrics["per_dataset"]["y"]["uf1"] == pytest.approx(1 / 3) and metrics["per_dataset"]["y"]["uf1_std"] == 0


def _second_seed(run_dir, edit):
    """Add seed 1 to a run written by ``_write_run``: a copy of seed 0 with ``edit`` (old row, new row)."""
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "seeds": [0, 1]}))
    shutil.copytree(run_dir / "seed-0", run_dir / "seed-1")
    path = run_dir / "seed-1" / edit[0]
    lines = path.read_text().splitlines(keepends=True)
    changed = [i for i, line in enumerate(lines) if line.startswith(edit[1])]
    assert len(changed) == 1
    lines[changed[0]] = edit[2]
    path.write_text("".join(lines))


def test_per_dataset_and_per_class_figures_are_the_mean_and_std_over_seeds(tmp_path):
    """Seed 0 as above; seed 1 gets s2's b clip right: per dataset and per class, mean ± std over both seeds."""
    _write_run(tmp_path / "run", {"s1": [("a", "a")] * 4, "s2": [("a", "a"), ("b", "a")]},
               datasets={"s1": "x", "s2": "y"})
    _second_seed(tmp_path / "run", ("s2/predictions.csv", "s2/c1,", "s2/c1,s2,y,b,b,0.1,0.9\n"))
    metrics = pool_run(tmp_path / "run")
    # dataset y: UF1 1/3 in seed 0 (above), 1 in seed 1
    assert metrics["per_seed"]["1"]["per_dataset"]["y"]["uf1"] == pytest.approx(1.0)
    assert metrics["per_dataset"]["y"]["uf1"] == pytest.approx(2 / 3)
    assert metrics["per_dataset"]["y"]["uf1_std"] == pytest.approx(1 / 3)
    assert metrics["per_dataset"]["y"]["acc"] == pytest.approx(0.75)
    assert metrics["per_dataset"]["y"]["acc_std"] == pytest.approx(0.25)
    assert metrics["per_dataset"]["x"]["uf1"] == pytest.approx(1.0) and metrics["per_dataset"]["x"]["uf1_std"] == 0
    # class b: F1 and recall 0 in seed 0, 1 in seed 1; class a: F1 10/11, then 1
    assert metrics["per_class"]["b"]["f1"] == {"mean": pytest.approx(0.5), "std": pytest.approx(0.5)}
    assert metrics["per_class"]["b"]["recall"] == {"mean": pytest.approx(0.5), "std": pytest.approx(0.5)}
    assert metrics["per_class"]["a"]["f1"]["mean"] == pytest.approx((10 / 11 + 1) / 2)
    assert metrics["per_class"]["a"]["recall"] == {"mean": pytest.approx(1.0), "std": pytest.approx(0.0)}


def test_pooling_an_incomplete_run_names_the_missing_fold(tmp_path):
    from geomer.errors import GeomerError

    _write_run(tmp_path / "run", {"s1": [("a", "a")], "s2": [("b", "b")]})
    (tmp_path / "run" / "seed-0" / "s2" / "predictions.csv").unlink()
    with pytest.raises(GeomerError, match="s2"):
        pool_run(tmp_path / "run")


def test_pooling_refuses_a_sample_tested_twice_in_a_seed(tmp_path):
    from geomer.errors import GeomerError

    _write_run(tmp_path / "run", {"s1": [("a", "a"), ("a", "a")], "s2": [("b", "b")]})
    path = tmp_path / "run" / "seed-0" / "s2" / "predictions.csv"
    path.write_text(path.read_text().replace("s2/c0,", "s1/c1,"))  # a row of s1 copied over s2's clip
    with pytest.raises(GeomerError, match=r"s2/predictions.csv: row 2: sample 's1/c1' was already tested in seed 0"):
        pool_run(tmp_path / "run")


def test_pooling_refuses_a_subject_whose_rows_name_two_datasets(tmp_path):
    from geomer.errors import GeomerError

    _write_run(tmp_path / "run", {"s1": [("a", "a"), ("b", "b")], "s2": [("b", "b")]})
    path = tmp_path / "run" / "seed-0" / "s1" / "predictions.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace(",s1,d,", ",s1,other,")  # one clip moved into a dataset of its own
    path.write_text("".join(lines))
    with pytest.raises(GeomerError, match=r"s1/predictions.csv: row 3: dataset 'other', while subject 's1' is of 'd'"):
        pool_run(tmp_path / "run")
    # a whole file moved into another dataset: the other seed's fold of the subject disagrees
    _write_run(tmp_path / "two", {"s1": [("a", "a")], "s2": [("b", "b")]})
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    (tmp_path / "two" / "config.json").write_text(json.dumps({**config, "seeds": [0, 1]}))
    shutil.copytree(tmp_path / "two" / "seed-0", tmp_path / "two" / "seed-1")
    moved = tmp_path / "two" / "seed-1" / "s1" / "predictions.csv"
    moved.write_text(moved.read_text().replace(",s1,d,", ",s1,other,"))
    with pytest.raises(GeomerError, match=r"seed-1/s1/predictions.csv: row 2: dataset 'other', while subject 's1' is of 'd' in"):
        pool_run(tmp_path / "two")


def test_a_paired_difference_is_surer_than_two_intervals():
    # two models that fail on the same hard subjects: subject quality spreads each model's figure,
    # but the second model's three extra errors are the only difference between them
    rng = np.random.default_rng(3)
    true = np.tile([0, 1], 120)
    hard = np.repeat(rng.random(12) < 0.5, 20)  # 12 subjects of 20 clips, about half of them hard
    first = np.where(hard & (rng.random(240) < 0.7), 1 - true, true)
    second = first.copy()
    second[[5, 65, 125]] = 1 - second[[5, 65, 125]]
    subjects = np.repeat([f"s{i}" for i in range(12)], 20)

    def pooled(predicted):
        return [{"true": true, "predicted": predicted, "subject": subjects, "dataset": np.full(240, "d")}]

    separate = [subject_bootstrap_intervals(pooled(p), 2)["acc"] for p in (first, second)]
    low, high = subject_bootstrap_intervals(pooled(first), 2, against=pooled(second))["acc"]
    difference = (first == true).mean() - (second == true).mean()
    assert (low + high) / 2 == pytest.approx(difference)  # centred on the difference of the headlines
    assert high - low < 0.25 * min(h - l for l, h in separate)


def test_evaluate_against_prints_the_paired_difference_and_refuses_other_clips(tmp_path, capsys):
    from geomer.cli import main

    right = {f"s{i}": [("a", "a"), ("b", "b"), ("a", "a")] for i in range(6)}
    worse = {**right, "s0": [("a", "b"), ("b", "b"), ("a", "a")], "s3": [("a", "a"), ("b", "a"), ("a", "a")]}
    _write_run(tmp_path / "right", right)
    _write_run(tmp_path / "worse", worse)
    _write_run(tmp_path / "other", {**right, "s6": [("a", "a")]})
    assert main(["evaluate", str(tmp_path / "right"), "--no-figures", "--against", str(tmp_path / "worse")]) == 0
    printed = capsys.readouterr().out
    assert f"minus {tmp_path / 'worse'}, paired" in printed and "acc +0.1111 [" in printed
    # refused in one line before anything is written: clips the other run was not tested on
    metrics = (tmp_path / "right" / "metrics.json").read_bytes()
    assert main(["evaluate", str(tmp_path / "right"), "--no-figures", "--against", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert "not tested on the same clips" in err and "s6/c0 of s6" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "right" / "metrics.json").read_bytes() == metrics
    # a run is not compared with itself (a difference of 0 that says nothing)
    assert main(["evaluate", str(tmp_path / "right"), "--no-figures", "--against", str(tmp_path / "right" / ".")]) == 2
    err = capsys.readouterr().err
    assert "--against names the run itself" in err and len(err.strip().splitlines()) == 1


def test_evaluate_against_refuses_a_run_of_another_class_set(tmp_path, capsys):
    """--against a run whose classes differ: one line naming it and both class sets, nothing written."""
    from geomer.cli import main

    right = {f"s{i}": [("a", "a"), ("b", "b"), ("a", "a")] for i in range(6)}
    _write_run(tmp_path / "right", right)
    other = {fold: [(t.replace("b", "c"), p.replace("b", "c")) for t, p in rows] for fold, rows in right.items()}
    _write_run(tmp_path / "other", other, classes=("a", "c"))
    for path in (tmp_path / "other").glob("seed-0/*/predictions.csv"):
        path.write_text(path.read_text().replace("prob_b", "prob_c"))
    pool_run(tmp_path / "other")  # a readable run of its own
    assert main(["evaluate", str(tmp_path / "right"), "--no-figures", "--against", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert (f"{tmp_path / 'other'}: classes a, c differ from {tmp_path / 'right'}'s (a, b); "
            "a paired comparison needs one class set") in err
    assert not (tmp_path / "right" / "metrics.json").exists()


def test_evaluate_against_repairs_a_stale_run_level_file_as_evaluate_does(tmp_path, capsys):
    # load_run's advice for a stale relations.npy is "recompute it with geomer evaluate RUN";
    # with --against the run is read before it is re-pooled, and that read must not refuse it
    from geomer.cli import main
    from geomer.rundir import load_run

    rows = {f"s{i}": [("a", "a"), ("b", "b")] for i in range(5)}
    _write_run(tmp_path / "run", rows)
    _write_run(tmp_path / "reference", rows)
    pool_run(tmp_path / "run")
    stale = np.load(tmp_path / "run" / "relations.npy")
    np.save(tmp_path / "run" / "relations.npy", stale + 0.25)
    from geomer.errors import GeomerError

    with pytest.raises(GeomerError, match="does not match the folds. relations"):
        load_run(tmp_path / "run")
    assert main(["evaluate", str(tmp_path / "run"), "--no-figures", "--against", str(tmp_path / "reference")]) == 0
    assert "paired" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(tmp_path / "run" / "relations.npy"), stale)
    (tmp_path / "run" / "relations.npy").write_bytes(b"not an array")  # damaged: repaired alike
    assert main(["evaluate", str(tmp_path / "run"), "--no-figures", "--against", str(tmp_path / "reference")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "run" / "relations.npy"), stale)
