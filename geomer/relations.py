"""Component-relation analysis: load runs, aggregate relations, compare them across models.

Every model emits ``relations`` [B,K,K] (row-normalised weights between the K facial components).
A training run stores them per test sample (``seed-<s>/<fold>/relations.npy`` in the order of
``predictions.csv``) and class-averaged (``relations.npy`` [C,K,K]). This module

- reads a synthetic ground truth (:func:`load_ground_truth`); a run directory is read by
  :func:`geomer.rundir.load_run` (re-exported here);
- averages per-sample relations by class, subject or dataset (:func:`aggregate_relations`);
- measures how much two sets of relation matrices agree (:func:`compare_relations`,
  :func:`agreement_table`): Spearman and Pearson correlation over the OFF-DIAGONAL entries (the
  diagonal is a component's relation to itself, which models and the ground truth scale
  differently), per class and overall (all classes' off-diagonal entries pooled).

Significance is a one-sided permutation test of the Spearman (and Pearson) correlation under
the null "the component labels of one side carry no information" — a Mantel test: the K
component labels of the second matrix are permuted, rows and columns together and the same
permutation for every class, which keeps each matrix's internal structure (rows stay rows) and
so respects the dependence between entries that an entry-wise shuffle would ignore. With
K! ≤ ``permutations`` every permutation is enumerated (K = 7: 5040, an exact test); otherwise
``permutations`` random ones are drawn from a seeded generator. p = (#{null ≥ observed}) / P with
the identity included in the null, so p is never 0.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from geomer.errors import GeomerError
from geomer.rundir import Run, load_run, read_json_object

__all__ = [
    "GROUND_TRUTH_NAME",
    "GroundTruth",
    "RelationAgreement",
    "Run",
    "agreement_table",
    "aggregate_relations",
    "compare_relations",
    "load_ground_truth",
    "load_run",
    "off_diagonal",
    "run_labels",
    "run_relations_by",
]

GROUND_TRUTH_NAME = "ground truth"


# --------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class GroundTruth:
    """The synthetic generator's ground-truth component co-activation.

    Shapes:
        relations: [C, K, K] float32, class order = ``classes``.
    """

    classes: tuple[str, ...]
    component_names: tuple[str, ...]
    relations: np.ndarray
    path: str = ""


def load_ground_truth(path: str | Path) -> GroundTruth:
    """Read ``ground_truth.json`` from a synthetic dataset (a file, or the dataset folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "ground_truth.json"
    data = read_json_object(path)
    try:
        classes = tuple(str(c) for c in data["classes"])
        components = tuple(str(c) for c in data["components"])
        relations = data["relations"]
        matrices = np.asarray([relations[c] for c in classes], dtype=np.float32)
    except (KeyError, TypeError, ValueError) as error:
        raise GeomerError(f"{path}: needs 'classes', 'components' and a K×K 'relations' matrix per class ({error})") from None
    if matrices.shape != (len(classes), len(components), len(components)):
        raise GeomerError(f"{path}: relations have shape {list(matrices.shape)}, expected [{len(classes)},{len(components)},{len(components)}]")
    return GroundTruth(classes=classes, component_names=components, relations=matrices, path=str(path))


# --------------------------------------------------------------------------------------------
# aggregation


def aggregate_relations(predictions: pd.DataFrame, sample_relations: np.ndarray, by: str = "true") -> dict[str, np.ndarray]:
    """Mean relation matrix per value of the column ``by`` ("true" class, "predicted" class,
    "subject", "dataset", "seed", …), in order of first appearance.

    Shapes:
        sample_relations: [n, K, K] aligned with the rows of ``predictions``; values [K, K].
    """
    if by not in predictions.columns:
        raise GeomerError(f"no column {by!r} to aggregate relations by (have {', '.join(map(str, predictions.columns))})")
    if len(predictions) != len(sample_relations):
        raise GeomerError(f"{len(sample_relations)} relation matrices for {len(predictions)} predictions")
    keys = predictions[by].astype(str).to_numpy()
    return {key: sample_relations[keys == key].mean(axis=0).astype(np.float32) for key in dict.fromkeys(keys)}


def run_relations_by(run: Run, by: str) -> dict[str, np.ndarray]:
    """``aggregate_relations`` over a run: by "class" (true class, in the run's class order),
    "subject", "dataset" or any other predictions column."""
    if by == "class":
        grouped = aggregate_relations(run.predictions, run.sample_relations, by="true")
        return {c: grouped[c] for c in run.classes if c in grouped}
    return aggregate_relations(run.predictions, run.sample_relations, by=by)


# --------------------------------------------------------------------------------------------
# agreement


@dataclass(frozen=True)
class RelationAgreement:
    """Agreement of two sets of relation matrices over their off-diagonal entries.

    ``p_value`` / ``pearson_p_value``: one-sided component-label permutation test (module doc);
    ``permutations``: size of the null (identity included); ``exact``: every permutation used.
    """

    spearman: float
    pearson: float
    p_value: float
    pearson_p_value: float
    entries: int
    permutations: int
    exact: bool


def off_diagonal(matrices: np.ndarray) -> np.ndarray:
    """Off-diagonal entries in row-major order. Shapes: [K,K] → [K(K-1)]; [C,K,K] → [C, K(K-1)]."""
    matrices = np.asarray(matrices)
    k = matrices.shape[-1]
    mask = ~np.eye(k, dtype=bool)
    return matrices[..., mask]


def _label_permutations(k: int, permutations: int, seed: int) -> tuple[np.ndarray, bool]:
    """[P, k] component-label permutations, the identity first; all of them when k! ≤ permutations."""
    if math.factorial(k) <= permutations:
        return np.array(list(itertools.permutations(range(k))), dtype=np.int64), True
    rng = np.random.default_rng(seed)
    drawn = np.stack([rng.permutation(k) for _ in range(permutations - 1)]) if permutations > 1 else np.zeros((0, k), np.int64)
    return np.concatenate([np.arange(k)[None], drawn]).astype(np.int64), False


def _correlations(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of x [n] with every row of y [P, n] (NaN where a side is constant)."""
    xc = x - x.mean()
    yc = y - y.mean(axis=1, keepdims=True)
    denominator = np.sqrt((xc**2).sum() * (yc**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (yc @ xc) / np.where(denominator > 0, denominator, 1), np.nan)


def compare_relations(a: np.ndarray, b: np.ndarray, *, permutations: int = 5040, seed: int = 0) -> RelationAgreement:
    """Spearman and Pearson agreement of ``a`` and ``b`` over off-diagonal entries, with a
    permutation test that relabels the components of ``b`` (same relabelling for every class).

    Shapes:
        a, b: [K, K] or [C, K, K] (classes already aligned); C·K·(K-1) entries are compared.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim not in (2, 3) or a.shape[-1] != a.shape[-2]:
        raise GeomerError(f"relation matrices to compare must share a [K,K] or [C,K,K] shape, got {list(a.shape)} and {list(b.shape)}")
    if a.ndim == 2:
        a, b = a[None], b[None]
    k = a.shape[-1]
    x = off_diagonal(a).reshape(-1)
    y = off_diagonal(b)  # [C, K(K-1)]
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise GeomerError("relation matrices to compare contain NaN (a class without samples?)")

    # Position of entry (i, j) in the off-diagonal ordering, so that a label permutation π of b
    # (b'[i, j] = b[π i, π j]) becomes an index gather on the off-diagonal vector.
    position = np.full((k, k), -1, dtype=np.int64)
    rows, cols = np.nonzero(~np.eye(k, dtype=bool))
    position[rows, cols] = np.arange(len(rows))
    labels, exact = _label_permutations(k, max(int(permutations), 1), seed)
    gather = position[labels[:, rows], labels[:, cols]]  # [P, K(K-1)]

    # Ranks are taken once: relabelling permutes b's entries, and permuting values permutes their
    # (average) ranks in the same way, so each permuted Spearman is a Pearson of gathered ranks.
    y_ranks = stats.rankdata(y.reshape(-1)).reshape(y.shape)
    x_ranks = stats.rankdata(x)
    null_spearman = _correlations(x_ranks, y_ranks[:, gather].transpose(1, 0, 2).reshape(len(labels), -1))
    null_pearson = _correlations(x, y[:, gather].transpose(1, 0, 2).reshape(len(labels), -1))

    flat_y = y.reshape(-1)
    constant = np.ptp(x) == 0 or np.ptp(flat_y) == 0
    spearman = float("nan") if constant else float(stats.spearmanr(x, flat_y).statistic)
    pearson = float("nan") if constant else float(stats.pearsonr(x, flat_y).statistic)

    def p_value(null: np.ndarray, observed: float) -> float:
        if math.isnan(observed):
            return float("nan")
        # a tolerance so that permutations tying the observed value count as "as extreme"
        return float(np.count_nonzero(null >= observed - 1e-12) / len(null))

    return RelationAgreement(
        spearman=spearman,
        pearson=pearson,
        p_value=p_value(null_spearman, spearman),
        pearson_p_value=p_value(null_pearson, pearson),
        entries=int(x.size),
        permutations=len(labels),
        exact=exact,
    )


def _as_class_dict(value) -> tuple[dict[str, np.ndarray], tuple[str, ...] | None]:
    """Normalise a Run, GroundTruth, mapping class → [K,K], or [K,K] array to (class → matrix, components)."""
    if isinstance(value, Run):
        present = {c: m for c, m in zip(value.classes, value.class_relations) if np.all(np.isfinite(m))}
        return present, value.component_names
    if isinstance(value, GroundTruth):
        return dict(zip(value.classes, value.relations)), value.component_names
    if isinstance(value, Mapping):
        return {str(k): np.asarray(v, np.float32) for k, v in value.items()}, None
    array = np.asarray(value, np.float32)
    if array.ndim == 2:
        return {"all": array}, None
    raise GeomerError(f"cannot compare relations given as {type(value).__name__} with shape {list(array.shape)}")


def agreement_table(
    models: Mapping[str, object],
    ground_truth: GroundTruth | Mapping[str, np.ndarray] | None = None,
    *,
    per_class: bool = False,
    permutations: int = 5040,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per model pair and per model vs ground truth: model_a, model_b, scope ("overall"
    or a class name when ``per_class``), classes, spearman, pearson, p_value, pearson_p_value,
    entries, permutations.

    ``models`` maps a display name to a :class:`Run`, a mapping class → [K,K], or a [K,K] array.
    Classes are matched by name (only shared classes count); component names must agree.
    """
    named = {name: _as_class_dict(value) for name, value in models.items()}
    pairs = list(itertools.combinations(named, 2))
    if ground_truth is not None:
        named[GROUND_TRUTH_NAME] = _as_class_dict(ground_truth)
        pairs += [(name, GROUND_TRUTH_NAME) for name in models]
    rows = []
    for left, right in pairs:
        (a, a_components), (b, b_components) = named[left], named[right]
        if a_components is not None and b_components is not None and tuple(a_components) != tuple(b_components):
            raise GeomerError(f"{left} and {right} name different components: {', '.join(a_components)} vs {', '.join(b_components)}")
        shared = [c for c in a if c in b]
        if not shared:
            raise GeomerError(f"{left} and {right} share no class ({', '.join(a)} vs {', '.join(b)})")
        scopes = [("overall", shared)] + ([(c, [c]) for c in shared] if per_class else [])
        for scope, classes in scopes:
            result = compare_relations(
                np.stack([a[c] for c in classes]), np.stack([b[c] for c in classes]), permutations=permutations, seed=seed
            )
            rows.append(
                {
                    "model_a": left,
                    "model_b": right,
                    "scope": scope,
                    "classes": len(classes),
                    "spearman": result.spearman,
                    "pearson": result.pearson,
                    "p_value": result.p_value,
                    "pearson_p_value": result.pearson_p_value,
                    "entries": result.entries,
                    "permutations": result.permutations,
                }
            )
    return pd.DataFrame(rows, columns=[
        "model_a", "model_b", "scope", "classes", "spearman", "pearson", "p_value", "pearson_p_value", "entries", "permutations",
    ])


def run_labels(runs: Sequence[Run]) -> list[str]:
    """Display names for runs: the model name, with the folder name added where models repeat."""
    models = [run.model for run in runs]
    return [run.model if models.count(run.model) == 1 else f"{run.model} ({Path(run.path).name})" for run in runs]
