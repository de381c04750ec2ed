"""Classification metrics on pooled predictions: UF1 (macro F1), UAR (macro recall), accuracy.

The headline of a LOSO evaluation is computed ONCE on the predictions of all folds pooled together
(docs/architecture.md, "Evaluation"), never as the mean of per-fold values: a fold of a subject with two clips of
one class makes per-fold F1 meaningless, and MEGC reports the pooled figures.

Conventions (the ones MEGC and scikit-learn's ``zero_division=0`` give on full label sets):

- F1 of a class is ``2·TP / (2·TP + FP + FN)``; a class that is neither in the truth nor in the
  predictions of the evaluated set has no F1 and is left out of the macro mean (this only happens
  for per-dataset parts, e.g. a dataset without one of the composite's classes).
- Recall of a class is ``TP / (TP + FN)``; classes without support are left out of UAR.

How sure a headline is: :func:`subject_bootstrap_intervals` resamples the TEST SUBJECTS (the
independent unit of LOSO) with replacement and recomputes the pooled figures on the drawn
subjects' predictions; its percentile interval is written beside the mean ± std over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (true, predicted) pairs.

    Shapes:
        true, predicted: [n] integer class indices in 0..C-1.
        returns: [C, C] int64, rows = true class, columns = predicted class.
    """
    true = np.asarray(true, dtype=np.int64).ravel()
    predicted = np.asarray(predicted, dtype=np.int64).ravel()
    if true.shape != predicted.shape:
        raise ValueError(f"true {true.shape} and predicted {predicted.shape} differ in length")
    for name, values in (("true", true), ("predicted", predicted)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} labels must lie in 0..{num_classes - 1}")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix


@dataclass(frozen=True)
class ClassificationMetrics:
    """Metrics of one set of predictions.

    Shapes:
        f1, recall: [C] float (NaN where undefined, see the module docstring).
        support: [C] int, confusion: [C, C] int.
    """

    uf1: float
    uar: float
    acc: float
    f1: np.ndarray
    recall: np.ndarray
    support: np.ndarray
    confusion: np.ndarray
    count: int

    def to_dict(self, class_names: list[str] | tuple[str, ...]) -> dict:
        """JSON-ready: headline numbers, per-class f1/recall/support, confusion matrix."""
        return {
            "uf1": self.uf1,
            "uar": self.uar,
            "acc": self.acc,
            "count": self.count,
            "per_class": {
                name: {
                    "f1": _json_float(self.f1[i]),
                    "recall": _json_float(self.recall[i]),
                    "support": int(self.support[i]),
                }
                for i, name in enumerate(class_names)
            },
            "confusion": self.confusion.tolist(),
        }


def classification_metrics(
    true: np.ndarray, predicted: np.ndarray, num_classes: int
) -> ClassificationMetrics:
    """UF1, UAR, accuracy, per-class F1/recall and the confusion matrix of pooled predictions."""
    matrix = confusion_matrix(true, predicted, num_classes)
    tp = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted_count = matrix.sum(axis=0)
    f1_denominator = support + predicted_count  # = 2TP + FP + FN
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(f1_denominator > 0, 2 * tp / f1_denominator, np.nan)
        recall = np.where(support > 0, tp / support, np.nan)
    count = int(matrix.sum())
    return ClassificationMetrics(
        uf1=_nanmean(f1),
        uar=_nanmean(recall),
        acc=float(tp.sum() / count) if count else float("nan"),
        f1=f1,
        recall=recall,
        support=support,
        confusion=matrix,
        count=count,
    )


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0) over seeds; (nan, nan) for no values."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return float("nan"), float("nan")
    return float(array.mean()), float(array.std())


def _nanmean(values: np.ndarray) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def _json_float(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


#: Resamples of every subject bootstrap (:func:`subject_resamples`); its percentiles move by
#: about 0.002 between seeds of the resampling on the composite's 68 subjects.
BOOTSTRAP_RESAMPLES = 2000


def subject_resamples(subjects, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The draws of a subject bootstrap: test subjects drawn with replacement, as many as there
    are, ``resamples`` times (subjects are the independent unit of LOSO; a subject's rows go
    together).

    Shapes: subjects [n] (any keys) → each row's subject index [n] int (subjects in sorted
    order), how often each resample draws each subject [R, S] int.
    """
    names, index = np.unique(np.asarray([str(s) for s in subjects], dtype=object).astype(str), return_inverse=True)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(names), np.full(len(names), 1.0 / len(names)), size=int(resamples))
    return index.astype(np.int64), draws


def percentile_interval(values, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of the finite ``values`` (NaN, NaN without any)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        return float("nan"), float("nan")
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def headline_of_confusions(confusions: np.ndarray) -> dict[str, np.ndarray]:
    """UF1, UAR and accuracy of stacked confusion matrices, with :func:`classification_metrics`'
    conventions (a class neither true nor predicted has no F1; one without support no recall).

    Shapes: confusions [..., C, C] (rows true) → each value [...] (NaN where undefined).
    """
    confusions = np.asarray(confusions, dtype=np.float64)
    tp = np.diagonal(confusions, axis1=-2, axis2=-1)
    support, predicted = confusions.sum(axis=-1), confusions.sum(axis=-2)
    count = support.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), np.nan)
        recall = np.where(support > 0, tp / support, np.nan)
        acc = np.where(count > 0, tp.sum(axis=-1) / count, np.nan)
    return {"uf1": _nanmean_last(f1), "uar": _nanmean_last(recall), "acc": acc}


def _nanmean_last(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the defined values; NaN where none is (without a warning)."""
    defined = ~np.isnan(values)
    total = np.where(defined, values, 0.0).sum(axis=-1)
    counts = defined.sum(axis=-1)
    return np.where(counts > 0, total / np.maximum(counts, 1), np.nan)


def subject_bootstrap_intervals(seeds: list[dict[str, np.ndarray]], num_classes: int,
                                level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of the mean over seeds of the pooled UF1, UAR and accuracy,
    resampling the test subjects with replacement (:func:`subject_resamples`).

    A subject's predictions of every seed are drawn together; in each resample, every seed's
    figure is computed on the drawn subjects' pooled predictions (a subject drawn twice counts
    twice) and the seeds' figures are averaged, as the headline is. The interval says how far the
    headline would move with other subjects from the same source; it does not cover another
    preprocessing or another dataset.

    Shapes: ``seeds``: per seed ``{"true": [n] int, "predicted": [n] int, "subject": [n]}`` →
    ``{"uf1": (low, high), "uar": …, "acc": …}`` (NaN where undefined).
    """
    rows = np.concatenate([np.asarray(pooled["subject"], dtype=object) for pooled in seeds])
    subject_index, draws = subject_resamples(rows)
    figures, start = [], 0
    for pooled in seeds:
        subjects = subject_index[start:start + len(pooled["subject"])]
        start += len(pooled["subject"])
        per_subject = np.zeros((draws.shape[1], num_classes, num_classes))
        np.add.at(per_subject, (subjects, np.asarray(pooled["true"]), np.asarray(pooled["predicted"])), 1.0)
        figures.append(headline_of_confusions(np.einsum("rs,scd->rcd", draws, per_subject)))
    return {name: percentile_interval(np.mean([f[name] for f in figures], axis=0), level)
            for name in ("uf1", "uar", "acc")}
