"""The subject bootstrap: how far a LOSO figure would move with other test subjects.

Subjects are the independent unit of a LOSO evaluation (a subject's clips share a face, a
session and a camera), so a figure's uncertainty is estimated by drawing the TEST SUBJECTS with
replacement (:func:`subject_resamples`), recomputing the figure on each resample's clips, and
taking the figure ± 1.96 standard deviations of the resampled figures
(:func:`bootstrap_interval`). Used for the headline metrics (:mod:`geomer.train.metrics`) and for
the agreement of relations with a synthetic ground truth (:mod:`geomer.relations`).
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np


#: Resamples of every subject bootstrap (:func:`subject_resamples`).
BOOTSTRAP_RESAMPLES = 2000
#: Fewer test subjects than this give no interval: with 2 subjects a bootstrap has 3 different
#: resamples, with 1 a single one (an interval of width 0 that would claim certainty).
MIN_BOOTSTRAP_SUBJECTS = 5


def subject_resamples(subjects, strata=None, resamples: int = BOOTSTRAP_RESAMPLES,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    """The draws of a subject bootstrap: the test subjects drawn with replacement, as many as
    there are, ``resamples`` times; subjects are the independent unit of LOSO, so a subject's
    rows (of every seed) go together. With ``strata`` (each row's source dataset, on a
    composite), each stratum's subjects are drawn among themselves, as many as it has, so every
    resample keeps the composite's mix of sources.

    Shapes: subjects [n] (any keys), strata [n] or None → each row's subject index [n] int
    (subjects in sorted order) and how often each resample draws each subject [R, S] int; None
    with fewer than :data:`MIN_BOOTSTRAP_SUBJECTS` subjects.
    """
    names, index = np.unique(np.array([str(s) for s in subjects], dtype=str), return_inverse=True)
    if len(names) < MIN_BOOTSTRAP_SUBJECTS:
        return None
    stratum_of = np.zeros(len(names), dtype=np.int64)
    if strata is not None:  # a subject key is global: its rows share one dataset
        labels = np.unique(np.array([str(s) for s in strata], dtype=str), return_inverse=True)[1]
        stratum_of[index] = labels
    rng = np.random.default_rng(seed)
    draws = np.zeros((int(resamples), len(names)), dtype=np.int64)
    for stratum in np.unique(stratum_of):
        members = np.flatnonzero(stratum_of == stratum)
        draws[:, members] = rng.multinomial(len(members), np.full(len(members), 1.0 / len(members)),
                                            size=int(resamples))
    return index.astype(np.int64), draws


def bootstrap_interval(figure: float, resampled, level: float = 0.95,
                       bounds: tuple[float, float] = (-1.0, 1.0)) -> tuple[float, float]:
    """``figure`` ± z · the standard deviation of its ``resampled`` values (z = 1.96 for 95 %),
    within ``bounds``; NaN, NaN where the figure or fewer than two resampled values are defined.

    Centred on the figure, not on the resamples: a resample repeats subjects, so its class means
    are noisier, and noise pulls a rank agreement down, which would put a percentile interval
    below the figure; the resamples' spread is what they tell.
    """
    resampled = np.asarray(resampled, dtype=np.float64)
    resampled = resampled[np.isfinite(resampled)]
    if not np.isfinite(figure) or resampled.size < 2:
        return float("nan"), float("nan")
    half = NormalDist().inv_cdf(0.5 + level / 2) * float(resampled.std(ddof=1))
    return float(max(bounds[0], figure - half)), float(min(bounds[1], figure + half))
