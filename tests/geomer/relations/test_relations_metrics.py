"""geomer.relations: agreement metrics against hand-computed values, run and ground-truth loading."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from geomer.errors import GeomerError
from geomer.rundir import Run, RunDir
from geomer.relations import (
    GROUND_TRUTH_NAME,
    GroundTruth,
    agreement_ceiling,
    agreement_table,
    aggregate_relations,
    compare_relations,
    ground_truth_agreement,
    load_ground_truth,
    load_run,
    off_diagonal,
    run_labels,
    run_relations_by,
    subject_bootstrap_interval,
    synthetic_ground_truth,
)

# off-diagonal entries (row-major) of A are 1..6; of B they are 2,1,4,3,6,5
A = np.array([[9.0, 1, 2], [3, 9, 4], [5, 6, 9]])
B = np.array([[0.0, 2, 1], [4, 0, 3], [6, 5, 0]])


def test_off_diagonal_row_major():
    assert off_diagonal(A).tolist() == [1, 2, 3, 4, 5, 6]
    assert off_diagonal(np.stack([A, B])).shape == (2, 6)


def test_spearman_and_pearson_match_hand_computation():
    result = compare_relations(A, B)
    # every rank differs by one: rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 36 / 210
    assert result.spearman == pytest.approx(1 - 36 / 210)
    # the values are their own ranks, so Pearson is the same number
    assert result.pearson == pytest.approx(1 - 36 / 210)
    assert result.entries == 6
    assert result.exact and result.permutations == math.factorial(3)


def test_diagonal_is_ignored():
    noisy_diagonal = B + np.diag([100.0, -50.0, 7.0])
    assert compare_relations(A, noisy_diagonal).spearman == pytest.approx(compare_relations(A, B).spearman)


def test_exact_permutation_p_value_matches_enumeration():
    rng = np.random.default_rng(3)
    a, b = rng.random((4, 4)), rng.random((4, 4))
    observed = stats.spearmanr(off_diagonal(a), off_diagonal(b)).statistic
    null = [stats.spearmanr(off_diagonal(a), off_diagonal(b[np.ix_(p, p)])).statistic
            for p in itertools.permutations(range(4))]
    expected = np.mean(np.array(null) >= observed - 1e-12)
    result = compare_relations(a, b)
    assert result.spearman == pytest.approx(observed)
    assert result.p_value == pytest.approx(expected)
    assert result.permutations == 24


def test_exact_pearson_p_value_matches_enumeration_on_skewed_values():
    """The Pearson null relabels the VALUES (not their ranks): on skewed data it is the enumerated one."""
    for seed in range(5):
        rng = np.random.default_rng(seed)
        a, b = np.exp(4 * rng.random((4, 4))), np.exp(4 * rng.random((4, 4)))
        b = b + a**2 / a.max()  # related, with a few large values dominating
        observed = stats.pearsonr(off_diagonal(a), off_diagonal(b)).statistic
        null = [stats.pearsonr(off_diagonal(a), off_diagonal(b[np.ix_(p, p)])).statistic
                for p in itertools.permutations(range(4))]
        result = compare_relations(a, b)
        assert result.pearson == pytest.approx(observed)
        assert result.pearson_p_value == pytest.approx(np.mean(np.array(null) >= observed - 1e-12))


def test_identical_matrices_have_the_smallest_possible_p_value():
    # distinct entries: only the identity relabelling reproduces rho = 1
    result = compare_relations(A, A)
    assert result.spearman == pytest.approx(1.0)
    assert result.p_value == pytest.approx(1 / 6)


def test_seven_components_and_5040_permutations_is_the_exact_test():
    """K! = permutations: every relabelling is enumerated (K = 7: 5040), so p is exact."""
    a = np.random.default_rng(8).random((7, 7))
    result = compare_relations(a, a, permutations=5040)
    assert result.exact and result.permutations == 5040
    assert result.p_value == pytest.approx(1 / 5040)  # only the identity reproduces rho = 1
    assert not compare_relations(a, a, permutations=5039).exact


def test_overall_pools_classes_under_one_relabelling():
    rng = np.random.default_rng(5)
    a, b = rng.random((2, 4, 4)), rng.random((2, 4, 4))
    pooled = compare_relations(a, b)
    assert pooled.entries == 24
    assert pooled.spearman == pytest.approx(stats.spearmanr(off_diagonal(a).ravel(), off_diagonal(b).ravel()).statistic)
    assert pooled.pearson == pytest.approx(stats.pearsonr(off_diagonal(a).ravel(), off_diagonal(b).ravel()).statistic)
    null = []
    for p in itertools.permutations(range(4)):
        relabelled = b[:, p][:, :, p]
        null.append(stats.spearmanr(off_diagonal(a).ravel(), off_diagonal(relabelled).ravel()).statistic)
    assert pooled.p_value == pytest.approx(np.mean(np.array(null) >= pooled.spearman - 1e-12))


def test_random_permutations_are_seeded():
    rng = np.random.default_rng(7)
    a = rng.random((9, 9))
    b = a + 0.3 * rng.random((9, 9))
    first = compare_relations(a, b, permutations=200, seed=1)
    again = compare_relations(a, b, permutations=200, seed=1)
    assert not first.exact and first.permutations == 200
    assert first == again
    assert 1 / 200 <= first.p_value < 0.05  # strongly related: hardly any relabelling does as well


def test_constant_side_gives_nan_and_bad_shapes_raise():
    result = compare_relations(A, np.ones((3, 3)))
    assert math.isnan(result.spearman) and math.isnan(result.p_value)
    with pytest.raises(GeomerError, match="shape"):
        compare_relations(A, np.ones((4, 4)))
    with pytest.raises(GeomerError, match="NaN"):
        compare_relations(A, np.full((3, 3), np.nan))


def test_a_side_constant_up_to_float_noise_has_no_ranking():
    from geomer.relations import faithfulness, spearman_undefined

    noisy = 1 / 7 + 1e-9 * np.random.default_rng(0).random((3, 3))  # uniform relations after averaging
    assert math.isnan(compare_relations(A, noisy).spearman)  # not a correlation of rounding errors
    assert spearman_undefined(A, noisy) == "uniform relations"
    assert spearman_undefined(A, np.full((3, 3), np.nan)) == "no clips"
    assert spearman_undefined(A, B) is None
    faithful = faithfulness(np.stack([noisy, A]), np.stack([A, B]), ["flat", "ranked"])
    assert math.isnan(faithful["flat"]) and faithful["ranked"] == pytest.approx(stats.spearmanr(
        off_diagonal(A), off_diagonal(B)).statistic)


def test_agreement_table_rows_and_values():
    models = {"m1": {"x": A, "y": B}, "m2": {"x": B, "y": A}, "m3": {"x": A}}
    truth = {"x": A, "y": A}
    table = agreement_table(models, truth, per_class=True)
    overall = table[table.scope == "overall"]
    pairs = list(zip(overall.model_a, overall.model_b))
    assert pairs == [("m1", "m2"), ("m1", "m3"), ("m2", "m3"), ("m1", GROUND_TRUTH_NAME),
                     ("m2", GROUND_TRUTH_NAME), ("m3", GROUND_TRUTH_NAME)]
    row = table[(table.model_a == "m1") & (table.model_b == "m2") & (table.scope == "x")].iloc[0]
    assert row.spearman == pytest.approx(1 - 36 / 210)
    m1_m3 = overall[(overall.model_a == "m1") & (overall.model_b == "m3")].iloc[0]
    assert m1_m3.classes == 1 and m1_m3.spearman == pytest.approx(1.0)  # only class x is shared
    m1_truth = overall[overall.model_a == "m1"].iloc[-1]
    assert m1_truth.entries == 12
    expected = stats.spearmanr(np.r_[off_diagonal(A), off_diagonal(B)], np.r_[off_diagonal(A), off_diagonal(A)]).statistic
    assert m1_truth.spearman == pytest.approx(expected)


def test_agreement_ceiling_is_what_a_tie_free_readout_can_reach():
    # one relevant pair of three components: ground-truth ranks 5.5, 2.5, 5.5, 2.5, 2.5, 2.5 and
    # the best tie-free symmetric read-out's 5.5, 3.5, 5.5, 1.5, 3.5, 1.5 correlate at sqrt(3)/2
    relevance = np.zeros((1, 3, 3))
    relevance[0, 0, 1] = relevance[0, 1, 0] = 1.0
    assert agreement_ceiling(relevance) == pytest.approx(math.sqrt(3) / 2)
    # a read-out that ties its irrelevant pairs exactly (at 0) is not capped
    assert compare_relations(relevance * 2, relevance).spearman == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    for _ in range(20):  # symmetric read-outs with the relevant pair on top and noise elsewhere
        noise = rng.normal(0, 0.1, (1, 3, 3))
        readout = np.where(relevance > 0, 1.0, -np.abs(noise + noise.transpose(0, 2, 1)))
        assert compare_relations(readout, relevance).spearman <= agreement_ceiling(relevance) + 1e-12
    assert agreement_ceiling(np.array([[[0.0, 1, 2], [1, 0, 3], [2, 3, 0]]])) == pytest.approx(1.0)  # dense
    # beside an agreement table, over the same classes: a class without test clips (NaN) is left out
    dense = np.array([[0.0, 1, 2], [1, 0, 3], [2, 3, 0]])
    truth = GroundTruth(classes=("a", "b"), component_names=("x", "y", "z"), path="truth.json",
                        relations=np.stack([relevance[0], dense]))
    table = ground_truth_agreement({"model": np.stack([relevance[0], np.full((3, 3), np.nan)])}, ["a", "b"], truth)
    assert table.attrs["ceiling"] == pytest.approx(math.sqrt(3) / 2) and table["classes"].tolist() == [1]


def _clips_of_subjects(relevance: np.ndarray, signs: dict[str, float], per_class: int, seed: int = 0):
    """Per subject, ``per_class`` clips of each class whose relations are ``sign`` × relevance +
    noise. Shapes: relevance [C, K, K] → relations [n, K, K], row_class [n], subjects [n]."""
    rng = np.random.default_rng(seed)
    relations, row_class, subjects = [], [], []
    for subject, sign in signs.items():
        for c, matrix in enumerate(relevance):
            for _ in range(per_class):
                noise = rng.normal(0, 0.01, matrix.shape)
                relations.append(sign * matrix + noise + noise.T)
                row_class.append(c)
                subjects.append(subject)
    return np.stack(relations), np.array(row_class), np.array(subjects)


def test_the_bootstrap_interval_resamples_subjects_not_clips():
    rng = np.random.default_rng(1)
    relevance = rng.random((3, 5, 5))
    relevance = relevance + relevance.transpose(0, 2, 1)
    # three subjects whose clips agree with the relevance and three whose clips reverse it at half
    # the strength: a resample draws them in any mix, and one of at most two agreeing subjects
    # reverses the class means, so the agreement spreads over most of [-1, 1]; resampling the 540
    # clips one by one would keep the mix at about half and half (agreement near 1) every time
    signs = {"a1": 1.0, "a2": 1.0, "a3": 1.0, "r1": -0.5, "r2": -0.5, "r3": -0.5}
    relations, row_class, subjects = _clips_of_subjects(relevance, signs, per_class=30)
    low, high = subject_bootstrap_interval(relations, row_class, subjects, relevance)
    assert high - low > 1.0
    # within datasets: with each kind of subject its own dataset, every resample keeps three of each
    low, high = subject_bootstrap_interval(relations, row_class, subjects, relevance,
                                           strata=np.array([s[0] for s in subjects]))
    assert high - low < 0.5
    # fewer than five subjects, or no row kept (-1), give no interval: with one subject every
    # resample would be the data itself, an interval of width 0
    agrees = np.isin(subjects, ["a1", "a2", "a3"])
    assert all(math.isnan(v) for v in subject_bootstrap_interval(relations[agrees], row_class[agrees],
                                                                 subjects[agrees], relevance))
    assert all(math.isnan(v) for v in subject_bootstrap_interval(relations, np.full(len(row_class), -1),
                                                                 subjects, relevance))


def test_the_bootstrap_interval_holds_the_figure_of_many_similar_subjects():
    rng = np.random.default_rng(2)
    relevance = rng.random((2, 5, 5))
    relevance = relevance + relevance.transpose(0, 2, 1)
    relations, row_class, subjects = [], [], []
    for subject in range(12):  # each subject's clips: the relevance plus noise of its own
        for c, matrix in enumerate(relevance):
            noise = rng.normal(0, 0.4, matrix.shape)
            relations.append(matrix + noise + noise.T)
            row_class.append(c)
            subjects.append(f"s{subject}")
    relations, row_class = np.stack(relations), np.array(row_class)
    means = np.stack([relations[row_class == c].mean(0) for c in range(2)])
    figure = compare_relations(means, relevance).spearman
    low, high = subject_bootstrap_interval(relations, row_class, np.array(subjects), relevance)
    assert low < figure < high and 0.05 < high - low < 0.8
    assert (low + high) / 2 == pytest.approx(figure, abs=1e-3)  # centred on the figure of all the clips (up to float ties)


def test_agreement_table_refuses_disjoint_classes():
    with pytest.raises(GeomerError, match="share no class"):
        agreement_table({"m1": {"x": A}, "m2": {"y": B}})


def test_agreement_table_refuses_runs_naming_different_components(tmp_path, make_run):
    """Two runs (or a run and the ground truth) whose component names differ are not compared."""
    first = load_run(make_run(tmp_path / "a"))
    second = make_run(tmp_path / "b", seed=1)
    config = json.loads((second / "config.json").read_text())
    (second / "config.json").write_text(json.dumps({**config, "component_names": list(first.component_names[::-1])}))
    second = load_run(second)
    with pytest.raises(GeomerError, match="one and two name different components: contour, .* vs mouth, "):
        agreement_table({"one": first, "two": second})
    truth = GroundTruth(classes=first.classes, component_names=first.component_names[::-1],
                        relations=first.class_relations)
    with pytest.raises(GeomerError, match=f"one and {GROUND_TRUTH_NAME} name different components"):
        agreement_table({"one": first}, truth)
    assert len(agreement_table({"one": first, "again": load_run(tmp_path / "a")})) == 1


def test_aggregate_by_subject_and_class():
    import pandas as pd

    predictions = pd.DataFrame({"true": ["a", "b", "a"], "subject": ["s1", "s1", "s2"]})
    relations = np.stack([A, B, 3 * A]).astype(np.float32)
    by_subject = aggregate_relations(predictions, relations, by="subject")
    assert list(by_subject) == ["s1", "s2"]
    np.testing.assert_allclose(by_subject["s1"], (A + B) / 2)
    np.testing.assert_allclose(aggregate_relations(predictions, relations, by="true")["a"], 2 * A)
    with pytest.raises(GeomerError, match="no column"):
        aggregate_relations(predictions, relations, by="dataset")


def _run_of_clips(tmp_path, relations, row_class, subjects, datasets, classes, components) -> Run:
    """A read run whose test clips are the given ones (one seed, one fold per subject)."""
    probabilities = np.eye(len(classes))[row_class]
    predictions = pd.DataFrame({
        "sample": [f"{s}/clip{i}" for i, s in enumerate(subjects)], "subject": subjects, "dataset": datasets,
        "true": [classes[c] for c in row_class], "predicted": [classes[c] for c in row_class],
        **{f"prob_{c}": probabilities[:, i] for i, c in enumerate(classes)},
        "seed": "0", "fold": [f"fold-{s}" for s in subjects],
    })
    means = np.stack([relations[row_class == c].mean(0) for c in range(len(classes))]).astype(np.float32)
    return Run(path=str(tmp_path), model="m", config={}, classes=tuple(classes), component_names=tuple(components),
               predictions=predictions, sample_relations=relations.astype(np.float32), class_relations=means)


def _agreeing_and_reversing_subjects(tmp_path):
    """Three subjects of dataset "a" whose clips agree with the relevance, three of dataset "r"
    whose clips reverse it (as in the bootstrap test above), read as a run; and the relevance."""
    rng = np.random.default_rng(1)
    relevance = rng.random((3, 5, 5))
    relevance = relevance + relevance.transpose(0, 2, 1)
    signs = {"a1": 1.0, "a2": 1.0, "a3": 1.0, "r1": -0.5, "r2": -0.5, "r3": -0.5}
    relations, row_class, subjects = _clips_of_subjects(relevance, signs, per_class=10)
    datasets = np.array([s[0] for s in subjects])
    run = _run_of_clips(tmp_path, relations, row_class, subjects, datasets, ["x", "y", "z"], list("pqrst"))
    return run, relevance


def test_the_ground_truth_agreement_interval_resamples_subjects_within_their_datasets(tmp_path):
    """A run's interval is the subject bootstrap drawn within datasets, as the headline's is."""
    run, relevance = _agreeing_and_reversing_subjects(tmp_path)
    truth = GroundTruth(classes=("x", "y", "z"), component_names=tuple("pqrst"),
                        relations=relevance.astype(np.float32))
    table = ground_truth_agreement({"intrinsic": run.class_relations}, run.classes, truth, permutations=120, run=run)
    row_class = run.predictions["true"].map({"x": 0, "y": 1, "z": 2}).to_numpy()
    expected = subject_bootstrap_interval(run.sample_relations, row_class, run.predictions["subject"].to_numpy(),
                                          truth.relations, strata=run.predictions["dataset"].to_numpy())
    assert (table.loc[0, "low"], table.loc[0, "high"]) == pytest.approx(expected)
    assert table.loc[0, "high"] - table.loc[0, "low"] < 0.5  # across datasets it would span more than 1


def test_ground_truth_agreement_matches_classes_by_name_not_position(tmp_path):
    """A ground truth listing its classes in another order than the run gives the same agreement."""
    run, relevance = _agreeing_and_reversing_subjects(tmp_path)
    kinds = {"intrinsic": run.class_relations}
    ordered = GroundTruth(classes=("x", "y", "z"), component_names=tuple("pqrst"),
                          relations=relevance.astype(np.float32))
    shuffled = GroundTruth(classes=("z", "x", "y"), component_names=tuple("pqrst"),
                           relations=relevance[[2, 0, 1]].astype(np.float32))
    tables = [ground_truth_agreement(kinds, run.classes, truth, permutations=120, run=run)
              for truth in (ordered, shuffled)]
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert tables[0].loc[0, "spearman"] > 0.5 and tables[0].attrs["ceiling"] == tables[1].attrs["ceiling"]


def test_load_run_reads_every_fold(run_dir, patterns):
    run = load_run(run_dir)
    assert run.model == "dere-grl"
    assert run.classes == ("negative", "positive", "surprise")
    assert len(run.predictions) == 12 and run.sample_relations.shape == (12, 7, 7)
    assert run.class_relations.shape == (3, 7, 7)
    assert len(run.history_files) == 2
    assert run.metrics["uf1"] == 0.7
    assert run.partition == "k7"
    # class averages recovered from the per-sample matrices, close to the planted patterns
    by_class = run_relations_by(run, "class")
    np.testing.assert_allclose(np.stack(list(by_class.values())), run.class_relations, atol=1e-6)
    assert np.abs(run.class_relations - patterns).max() < 0.03  # noise 0.01 per entry, renormalised
    assert set(run_relations_by(run, "subject")) == {"synth/s1", "synth/s2"}
    assert list(run_relations_by(run, "dataset")) == ["synth"]
    # confusion: per fold true [0,0,1,1,2,2], predicted [0,1,1,1,2,0]; two folds
    np.testing.assert_array_equal(run.confusion(), [[2, 2, 0], [0, 4, 0], [2, 0, 2]])


def test_relations_by_class_follow_the_runs_class_order(run_dir):
    """By class: the run's class order, not the order in which the classes first appear in predictions."""
    for fold in run_dir.glob("seed-*/*"):  # each fold's rows (and their relations) in reverse: surprise first
        frame = pd.read_csv(fold / "predictions.csv")
        frame.iloc[::-1].to_csv(fold / "predictions.csv", index=False)
        np.save(fold / "relations.npy", np.load(fold / "relations.npy")[::-1])
    run = load_run(run_dir)
    assert list(aggregate_relations(run.predictions, run.sample_relations, by="true")) == [
        "surprise", "positive", "negative"]
    by_class = run_relations_by(run, "class")
    assert list(by_class) == list(run.classes) == ["negative", "positive", "surprise"]
    np.testing.assert_allclose(np.stack(list(by_class.values())), run.class_relations, atol=1e-6)


def test_load_run_maps_label_indices_and_computes_missing_class_relations(tmp_path, make_run):
    run = load_run(make_run(tmp_path / "r", labels_as_indices=True, top_level_relations=False))
    assert set(run.predictions["true"]) == {"negative", "positive", "surprise"}
    expected = run.sample_relations[run.predictions["true"].to_numpy() == "positive"].mean(0)
    np.testing.assert_allclose(run.class_relations[1], expected, rtol=1e-6)


def test_load_run_refuses_a_class_index_out_of_range(tmp_path, make_run):
    """A true index of -1 names no class (Python would read it as the last one): refused naming the row."""
    run_dir = make_run(tmp_path / "r", labels_as_indices=True, top_level_relations=False)
    path = run_dir / "seed-0" / "fold-s1" / "predictions.csv"
    frame = pd.read_csv(path)
    frame.loc[1, "true"] = -1
    frame.to_csv(path, index=False)
    with pytest.raises(GeomerError, match=r"fold-s1/predictions.csv: row 3: true index -1 outside 0..2"):
        load_run(run_dir)


def test_class_without_test_clips_is_nan_and_left_out_of_comparisons(run_dir):
    for csv in run_dir.glob("seed-*/*/predictions.csv"):  # no test clip of class 2 (surprise) left
        csv.write_text(csv.read_text().replace("synth,surprise,", "synth,negative,"))
    (run_dir / "relations.npy").unlink()  # the class averages come from the folds' files
    run = load_run(run_dir)
    assert np.isnan(run.class_relations[2]).all() and np.isfinite(run.class_relations[:2]).all()
    averaged = run.class_relations.copy()
    rows = agreement_table({"a": run, "b": run}, per_class=True)
    assert list(rows.scope) == ["overall", "negative", "positive"]
    averaged[1, 0, 0] = np.nan  # a partly missing matrix is damage, not an absent class
    np.save(run_dir / "relations.npy", averaged)
    with pytest.raises(GeomerError, match="relations.npy: contains NaN"):
        load_run(run_dir)


@pytest.mark.parametrize("kind", ["relations", "occlusion_relations"])
def test_a_run_level_relations_file_that_is_not_its_folds_mean_is_refused(run_dir, kind):
    for fold in run_dir.glob("seed-*/*"):  # occlusion relations per clip, as the engine writes them
        np.save(fold / "occlusion_relations.npy", np.load(fold / "relations.npy")[:, ::-1])
    good = load_run(run_dir).class_relations
    np.save(run_dir / "occlusion_relations.npy", good[:, ::-1])
    load_run(run_dir)  # both files are their folds' class means
    good = np.load(run_dir / f"{kind}.npy")
    for damage in ("class", "value"):
        edited = good.copy()
        if damage == "class":
            edited[0] = np.nan  # a class with test clips passed off as one without
        else:
            edited[1, 2, 3] += 0.05
        np.save(run_dir / f"{kind}.npy", edited)
        with pytest.raises(GeomerError, match=rf"/{kind}.npy: does not match the folds' relations"):
            load_run(run_dir)
    np.save(run_dir / f"{kind}.npy", good)
    load_run(run_dir)


def test_load_run_errors_name_the_file(tmp_path, run_dir):
    with pytest.raises(GeomerError, match="config.json: missing"):
        load_run(tmp_path)
    with pytest.raises(GeomerError, match="not a directory"):
        load_run(tmp_path / "nothing")
    (tmp_path / "config.json").mkdir()  # where a file belongs: said so, not "missing"
    with pytest.raises(GeomerError, match="config.json: not a file"):
        load_run(tmp_path)
    fold = RunDir(tmp_path).fold(0, "fold-s1")
    fold.predictions_path.mkdir(parents=True)
    with pytest.raises(GeomerError, match="predictions.csv: not a file; remove it, then train again to resume"):
        fold.read_predictions(["negative"])
    bad = run_dir / "seed-0" / "fold-s1" / "relations.npy"
    np.save(bad, np.zeros((5, 7, 7), np.float32))
    with pytest.raises(GeomerError, match=r"fold-s1/relations.npy: 5 matrices for 6 rows"):
        load_run(run_dir)
    np.save(bad, np.zeros((6, 5, 5), np.float32))
    with pytest.raises(GeomerError, match="5 components"):
        load_run(run_dir)
    np.save(bad, np.zeros((6, 7, 7), np.float32))
    csv = run_dir / "seed-0" / "fold-s1" / "predictions.csv"
    csv.write_text(csv.read_text().replace("surprise", "suprise"))
    with pytest.raises(GeomerError, match=r"predictions.csv: row \d+: unknown true class 'suprise'"):
        load_run(run_dir)


def test_load_run_refuses_a_file_where_a_subjects_rows_name_two_datasets(run_dir):
    """One fold's file alone: a subject is of one dataset (the per-dataset parts pool by it)."""
    path = run_dir / "seed-0" / "fold-s1" / "predictions.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace(",synth/s1,synth,", ",synth/s1,other,")
    path.write_text("".join(lines))
    with pytest.raises(GeomerError, match=r"fold-s1/predictions.csv: row 3: dataset 'other', while subject "
                                          r"'synth/s1' is of 'synth'"):
        load_run(run_dir)


def test_occlusion_relations_of_another_shape_than_the_folds_relations_are_refused(run_dir):
    """A fold's occlusion_relations.npy with a matrix fewer than its relations.npy: evaluate, plot, compare refuse it."""
    from geomer.train import pool_run
    from geomer.version import __version__

    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "geomer_version": __version__,
                                                     "folds": ["fold-s1", "fold-s2"]}))
    for fold in run_dir.glob("seed-*/*"):
        np.save(fold / "occlusion_relations.npy", np.load(fold / "relations.npy"))
    pool_run(run_dir)
    load_run(run_dir)  # as written
    cut = run_dir / "seed-0" / "fold-s2" / "occlusion_relations.npy"
    np.save(cut, np.load(cut)[:-1])
    for read in (load_run, pool_run):
        with pytest.raises(GeomerError, match=r"fold-s2/occlusion_relations.npy must be \[6, 7, 7\], got \[5, 7, 7\] "
                                              r"\(as relations.npy\)"):
            read(run_dir)


@pytest.mark.parametrize("key, value", [
    ("classes", "negative"), ("classes", ["negative", "negative", "surprise"]), ("classes", []),
    ("component_names", ["brow_l", 3]), ("component_names", None),
])
def test_load_run_blames_malformed_names_on_config_json(run_dir, key, value):
    config = json.loads((run_dir / "config.json").read_text())
    config[key] = value
    (run_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(GeomerError, match=rf"config.json: '{key}' must be a non-empty list of distinct names"):
        load_run(run_dir)


@pytest.mark.parametrize("damage, message", [
    (lambda text: text.replace("synth/s2/clip0,", ",", 1), r"fold-s2/predictions.csv: row 2: empty sample"),
    (lambda text: text.replace("synth/s2/clip0,", "synth/s1/clip3,", 1),
     r"fold-s2/predictions.csv: row 2: sample 'synth/s1/clip3' was already tested in seed 0"),
    (lambda text: text.replace("synth/s2/clip1,", "synth/s2/clip0,", 1),
     r"fold-s2/predictions.csv: row 3: sample 'synth/s2/clip0' was already tested in seed 0"),
    # pandas would take a first row's extra fields as an index: a traceback before
    (lambda text: text.replace("\n", ",1,2\n", 2).replace(",1,2\n", "\n", 1),
     r"fold-s2/predictions.csv: row 2: more fields than the header's 8"),
    # without the dataset column the per-dataset parts would leave the fold out
    (lambda text: "".join(",".join(line.split(",")[:2] + line.split(",")[3:]) + "\n" for line in text.splitlines()),
     r"fold-s2/predictions.csv: missing column\(s\) dataset"),
])
def test_plot_and_compare_refuse_the_sample_keys_evaluate_refuses(run_dir, damage, message):
    # load_run (plot, compare) reads a fold's predictions by the rules of pool_run (evaluate)
    from geomer.train import pool_run
    from geomer.version import __version__

    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "geomer_version": __version__,
                                                     "folds": ["fold-s1", "fold-s2"]}))
    pool_run(run_dir)  # an engine run as written
    path = run_dir / "seed-0" / "fold-s2" / "predictions.csv"
    path.write_text(damage(path.read_text()))
    for read in (load_run, pool_run):
        with pytest.raises(GeomerError, match=message):
            read(run_dir)


def test_evaluate_refuses_a_seed_whose_folds_test_fewer_samples_than_the_run(run_dir):
    # a prediction row (with its relations) edited away, or a fold left out of config.json's
    # folds, would be pooled silently over fewer clips
    from geomer.train import pool_run
    from geomer.version import __version__

    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "geomer_version": __version__,
                                                     "folds": ["fold-s1", "fold-s2"], "num_samples": 12}))
    assert pool_run(run_dir)["num_samples"] == 12
    fold = run_dir / "seed-0" / "fold-s2"
    lines = (fold / "predictions.csv").read_text().splitlines()
    (fold / "predictions.csv").write_text("\n".join(lines[:-1]) + "\n")
    np.save(fold / "relations.npy", np.load(fold / "relations.npy")[:-1])
    with pytest.raises(GeomerError, match=r"seed-0: its folds' predictions hold 11 samples, the run has 12 \(config.json\)"):
        pool_run(run_dir)


@pytest.mark.parametrize("edit", [
    lambda text: text.replace("synth/s2/clip0,synth/s2,synth,negative,", "synth/s2/clip0,synth/s2,synth,positive,"),
    lambda text: text.replace("synth/s2/clip0,synth/s2,", "synth/s2/clip0,synth/s1,"),  # another fold's subject
])
def test_evaluate_refuses_predictions_whose_clips_differ_from_the_runs_record(run_dir, edit):
    # a true class or subject edited in predictions.csv would otherwise be pooled as the run's
    from geomer.rundir import samples_fingerprint
    from geomer.train import pool_run
    from geomer.version import __version__

    rows = [(f"{subject}/clip{i}", subject, "synth", ["negative", "positive", "surprise"][i // 2])
            for subject in ("synth/s1", "synth/s2") for i in range(6)]  # the run's clips (conftest)
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "geomer_version": __version__, "folds": ["fold-s1", "fold-s2"],
                                                     "tested_samples": samples_fingerprint(sorted(rows))}))
    pool_run(run_dir)  # as written
    path = run_dir / "seed-0" / "fold-s2" / "predictions.csv"
    edited = edit(path.read_text())
    assert edited != path.read_text()
    path.write_text(edited)
    with pytest.raises(GeomerError, match=r"seed-0: its folds' predictions are not of the run's clips .*config.json"):
        pool_run(run_dir)


@pytest.mark.parametrize("key, value, message", [
    ("seeds", 0, "'seeds' must be a non-empty list of distinct integers"),
    ("seeds", [True], "'seeds' must be a non-empty list of distinct integers"),
    ("seeds", [0, 0], "'seeds' must be a non-empty list of distinct integers"),
    ("seeds", [[0]], "'seeds' must be a non-empty list of distinct integers"),
    ("folds", 5, "'folds' must be a non-empty list of distinct names"),
    ("folds", [{"a": 1}], "'folds' must be a non-empty list of distinct names"),
    ("folds", ["../fold-s1"], "fold '../fold-s1' is not a fold folder name"),
    ("pretraining", "x", "'pretraining' must be an object or null"),
    ("settings", 3, "'settings' must be an object or null"),
    ("leaky", "no", "'leaky' must be true or false"),  # a string would mark the run leaky
    ("root", 5, "'root' must be a path"),
    ("num_samples", "12", "'num_samples' must be a count"),
    ("graph", {"partition": "zzz", "nodes": None}, r"malformed 'graph' \(unknown graph partition 'zzz'"),
])
def test_every_reader_blames_a_wrongly_typed_config_key_on_config_json(run_dir, key, value, message):
    # hand-edited config.json: evaluate (pool_run), plot and compare (load_run) give one line
    from geomer.train import pool_run

    config = json.loads((run_dir / "config.json").read_text())
    config[key] = value
    (run_dir / "config.json").write_text(json.dumps(config))
    for read in (load_run, pool_run):
        with pytest.raises(GeomerError, match=rf"config.json: {message}"):
            read(run_dir)


@pytest.mark.parametrize("cell, message", [
    ("abc", r"row 3: prob_positive is 'abc', not a probability in \[0, 1\]"),
    ("", r"row 3: prob_positive is '', not a probability"),
    ("7.5", r"row 3: prob_positive is '7.5', not a probability"),
    ("-0.1", r"row 3: prob_positive is '-0.1', not a probability"),
    ("inf", r"row 3: prob_positive is 'inf', not a probability"),
    ("0.5", r"row 3: probabilities sum to 0\.633333, not 1"),  # was 0.8667 of a row summing to 1
    (None, r"missing column\(s\) prob_positive"),
])
def test_load_run_refuses_damaged_probabilities(run_dir, cell, message):
    path = run_dir / "seed-0" / "fold-s1" / "predictions.csv"
    frame = pd.read_csv(path)
    if cell is None:
        frame = frame.drop(columns="prob_positive")
    else:
        frame["prob_positive"] = frame["prob_positive"].astype(object)
        frame.loc[1, "prob_positive"] = cell
    frame.to_csv(path, index=False)
    with pytest.raises(GeomerError, match=rf"fold-s1/predictions.csv: {message}"):
        load_run(run_dir)


def test_load_run_verifies_the_histories_of_finished_folds(run_dir):
    history = run_dir / "seed-0" / "fold-s2" / "history.csv"
    history.write_text("")
    with pytest.raises(GeomerError, match=r"fold-s2/history.csv: not a readable CSV"):
        load_run(run_dir)
    history.write_text("epoch,loss,acc\n1,0.5,abc\n")
    with pytest.raises(GeomerError, match=r"fold-s2/history.csv: row 2: acc is 'abc', not a number"):
        load_run(run_dir)
    history.write_text("epoch,loss,acc\n")
    with pytest.raises(GeomerError, match=r"fold-s2/history.csv: no epochs"):
        load_run(run_dir)
    # an unfinished fold's history (training went on until it was stopped) is neither read nor drawn
    (run_dir / "seed-0" / "fold-s2" / "predictions.csv").unlink()
    assert [Path(p).parent.name for p in load_run(run_dir).history_files] == ["fold-s1"]


def test_ground_truth_round_trip_and_errors(tmp_path, ground_truth_file, patterns):
    truth = load_ground_truth(ground_truth_file.parent)  # the dataset folder works too
    assert truth.classes == ("negative", "positive", "surprise")
    assert truth.relations.shape == (3, 7, 7)
    np.testing.assert_allclose(truth.relations, (patterns + patterns.transpose(0, 2, 1)) / 2, rtol=1e-6)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"classes": ["a"], "components": ["x", "y"], "relations": {"a": [[1, 2, 3]]}}))
    with pytest.raises(GeomerError, match="broken.json"):
        load_ground_truth(broken)
    data = json.loads(ground_truth_file.read_text())
    for bad in (None, float("inf")):  # JSON null and Infinity: NaN and inf once read
        data["relations"]["positive"][3][1] = bad
        broken.write_text(json.dumps(data))
        with pytest.raises(GeomerError, match=r"broken.json: relations of class 'positive', row 3: not a finite"):
            load_ground_truth(broken)


def test_run_agrees_with_its_planted_ground_truth(run_dir, ground_truth_file, tmp_path, make_run):
    run = load_run(run_dir)
    other = load_run(make_run(tmp_path / "other", model="dere-grl", seed=1))
    labels = run_labels([run, other])
    assert labels[0] != labels[1] and labels[0].startswith("dere-grl")
    table = agreement_table(dict(zip(labels, [run, other])), load_ground_truth(ground_truth_file))
    assert len(table) == 3
    assert (table.spearman > 0.6).all()
    assert (table.p_value < 0.01).all()


def test_a_runs_synthetic_ground_truth_needs_its_components(tmp_path, ground_truth_file, make_run):
    """ground_truth.json at the run's root is the run's only when it names the run's components (and classes)."""
    path = ground_truth_file
    run_dir = make_run(tmp_path / "run")
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "root": str(path.parent)}))
    truth = synthetic_ground_truth(load_run(run_dir))
    assert truth is not None and truth.path == str(path)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "components": data["components"][::-1]}))
    assert synthetic_ground_truth(load_run(run_dir)) is None
    path.write_text(json.dumps({**data, "classes": ["negative", "positive"]}))
    assert synthetic_ground_truth(load_run(run_dir)) is None


def test_load_run_relations_refuses_a_baseline_of_another_class_count(run_dir):
    """baseline_relations.npy with C + 1 classes: a one-line error naming it and config.json's count."""
    from geomer.relations import load_run_relations

    np.save(run_dir / "baseline_relations.npy", np.zeros((3, 7, 7), np.float32))
    assert set(load_run_relations(run_dir, load_run(run_dir).classes, 7)) == {"intrinsic", "input-only baseline"}
    np.save(run_dir / "baseline_relations.npy", np.zeros((4, 7, 7), np.float32))
    with pytest.raises(GeomerError, match=r"/baseline_relations.npy: 4 classes, config.json names 3"):
        load_run_relations(run_dir, ("negative", "positive", "surprise"), 7)
