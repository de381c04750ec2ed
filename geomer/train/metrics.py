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
independent unit of LOSO) with replacement, within their datasets, and recomputes the pooled
figures on the drawn subjects' predictions; the figure ± 1.96 standard deviations of the
resampled figures is written beside the mean ± std over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geomer.bootstrap import bootstrap_interval, subject_resamples


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
    per_class = _per_class(matrix)
    headline = headline_of_confusions(matrix)
    return ClassificationMetrics(
        uf1=float(headline["uf1"]),
        uar=float(headline["uar"]),
        acc=float(headline["acc"]),
        f1=per_class["f1"],
        recall=per_class["recall"],
        support=matrix.sum(axis=1),
        confusion=matrix,
        count=int(matrix.sum()),
    )


def _per_class(confusions: np.ndarray) -> dict[str, np.ndarray]:
    """F1 and recall per class of confusion matrices (the module's conventions: NaN where
    undefined). Shapes: [..., C, C] (rows true) → each [..., C]."""
    confusions = np.asarray(confusions, dtype=np.float64)
    tp = np.diagonal(confusions, axis1=-2, axis2=-1)
    support, predicted = confusions.sum(axis=-1), confusions.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"f1": np.where(support + predicted > 0, 2 * tp / (support + predicted), np.nan),  # 2TP/(2TP+FP+FN)
                "recall": np.where(support > 0, tp / support, np.nan)}


def headline_of_confusions(confusions: np.ndarray) -> dict[str, np.ndarray]:
    """UF1, UAR and accuracy of (stacked) confusion matrices, the figures of
    :func:`classification_metrics`. Shapes: [..., C, C] (rows true) → each [...] (NaN where
    undefined)."""
    confusions = np.asarray(confusions, dtype=np.float64)
    per_class = _per_class(confusions)
    count = confusions.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(count > 0, np.diagonal(confusions, axis1=-2, axis2=-1).sum(axis=-1) / count, np.nan)
    return {"uf1": _nanmean_last(per_class["f1"]), "uar": _nanmean_last(per_class["recall"]), "acc": acc}


def _nanmean_last(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the defined values; NaN where none is (without a warning)."""
    defined = ~np.isnan(values)
    counts = defined.sum(axis=-1)
    return np.where(counts > 0, np.where(defined, values, 0.0).sum(axis=-1) / np.maximum(counts, 1), np.nan)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0) over seeds; (nan, nan) for no values."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return float("nan"), float("nan")
    return float(array.mean()), float(array.std())


def _json_float(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def subject_bootstrap_intervals(seeds: list[dict[str, np.ndarray]], num_classes: int, level: float = 0.95,
                                against: list[dict[str, np.ndarray]] | None = None) -> dict[str, tuple[float, float]]:
    """95 % intervals (:func:`geomer.bootstrap.bootstrap_interval`) of the mean over seeds of the
    pooled UF1, UAR and accuracy, the test subjects resampled within their datasets
    (:func:`geomer.bootstrap.subject_resamples`).

    In each resample, every seed's figure is computed on the drawn subjects' pooled predictions
    (a subject drawn twice counts twice) and the seeds' figures are averaged, as the headline
    is. The interval says how far the headline would move with other subjects from the same
    sources; it does not cover another preprocessing or another dataset.

    ``against``: another run's seeds, tested on the same subjects: the intervals are then those of
    the DIFFERENCE (``seeds`` minus ``against``), both runs' figures taken on the same resamples,
    centred on the difference of the headlines.
    Two models tested on the same subjects err on the same hard subjects, so the paired
    difference is surer than two separate intervals suggest.

    Shapes: ``seeds``, ``against``: per seed ``{"true": [n] int, "predicted": [n] int,
    "subject": [n], "dataset": [n]}`` → ``{"uf1": (low, high), "uar": …, "acc": …}`` (NaN where
    undefined).
    """
    runs = [seeds] if against is None else [seeds, against]
    rows = [pooled for run in runs for pooled in run]
    subjects, datasets = (np.concatenate([np.asarray(pooled[key], dtype=object) for pooled in rows])
                          for key in ("subject", "dataset"))
    drawn = subject_resamples(subjects, datasets)
    if drawn is None:
        return {name: (float("nan"), float("nan")) for name in ("uf1", "uar", "acc")}
    subject_index, draws = drawn
    identity = np.ones((1, draws.shape[1]), dtype=np.int64)  # every subject once: the headline itself
    figures, resampled, start = [], [], 0
    for run in runs:  # the mean over seeds of each seed's figure, on all subjects and on each resample
        confusions = []
        for pooled in run:
            subjects = subject_index[start:start + len(pooled["subject"])]
            start += len(pooled["subject"])
            per_subject = np.zeros((draws.shape[1], num_classes, num_classes))
            np.add.at(per_subject, (subjects, np.asarray(pooled["true"]), np.asarray(pooled["predicted"])), 1.0)
            confusions.append(per_subject)
        for weights, kept in ((identity, figures), (draws, resampled)):
            per_seed = [headline_of_confusions(np.einsum("rs,scd->rcd", weights, c)) for c in confusions]
            kept.append({name: np.mean([f[name] for f in per_seed], axis=0) for name in ("uf1", "uar", "acc")})
    if against is not None:
        # not clipped, so that the interval's centre is the difference itself
        return {name: bootstrap_interval(float(figures[0][name][0] - figures[1][name][0]),
                                         resampled[0][name] - resampled[1][name], level, bounds=(-np.inf, np.inf))
                for name in ("uf1", "uar", "acc")}
    return {name: bootstrap_interval(float(figures[0][name][0]), resampled[0][name], level, bounds=(0.0, 1.0))
            for name in ("uf1", "uar", "acc")}
