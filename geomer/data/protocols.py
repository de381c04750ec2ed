"""Evaluation protocols: leave-one-subject-out over global subject keys (docs/architecture.md),
and the cross-dataset hold-out of a composite.

- ``loso`` (:class:`LOSO`): a composite (``megc2019``) is LOSO over the union of its datasets'
  subjects; because subject keys are global ("casme2/sub01", "smic/s1"), subjects of different
  datasets never merge.
- ``holdout-dataset`` (:class:`HoldoutDataset`): MEB's "hold-out database" protocol on a
  composite: one fold per source dataset, trained on the other datasets and tested on it (three
  folds on the MEGC 2019 composite); a measure of transfer to unseen recording conditions.

Every fold
checks that no subject is on both sides (:func:`check_disjoint` raises :class:`LeakError`), and
:func:`check_folds` checks a whole fold list before training (disjoint sides, every sample tested
exactly once, fold names distinct as folder names).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from geomer.data.sample import DatasetIndex, Sample
from geomer.errors import GeomerError
from landmarks.registry import Registry


class LeakError(GeomerError):
    """A subject appears in both the training and the test side of a fold."""


def check_disjoint(train_samples: Sequence[Sample], test_samples: Sequence[Sample], fold: str = "") -> None:
    """Raise :class:`LeakError` when a subject key is in both ``train_samples`` and ``test_samples``."""
    shared = {s.subject_key for s in train_samples} & {s.subject_key for s in test_samples}
    if shared:
        where = f"fold {fold}: " if fold else ""
        raise LeakError(f"{where}subject(s) {', '.join(sorted(shared))} on both train and test sides")


@dataclass(frozen=True)
class Fold:
    """One train/test split.

    Attributes:
        name: a file-system-safe fold name ("casme2_sub01"), used for run sub-folders.
        train: indices into the protocol's samples.
        test: indices into the protocol's samples.
        test_subjects: the global subject keys tested in this fold.
    """

    name: str
    train: tuple[int, ...]
    test: tuple[int, ...]
    test_subjects: tuple[str, ...]


class Protocol:
    """A set of folds over a fixed list of samples that knows its class names.

    Subclasses implement :meth:`_splits`; :meth:`folds` checks every fold for leaks.
    """

    name = "protocol"

    def __init__(self, samples: Sequence[Sample] | DatasetIndex, class_names: Sequence[str] | None = None):
        if isinstance(samples, DatasetIndex):
            class_names = samples.classes if class_names is None else class_names
            samples = samples.samples
        if class_names is None:
            raise GeomerError(f"{self.name}: class names are required with a plain sample list")
        self.samples: tuple[Sample, ...] = tuple(samples)
        self.class_names: tuple[str, ...] = tuple(class_names)
        if not self.samples:
            raise GeomerError(f"{self.name}: no samples to split")
        for sample in self.samples:
            if not 0 <= sample.label_index < len(self.class_names):
                raise GeomerError(
                    f"{sample.key}: label index {sample.label_index} outside the "
                    f"{len(self.class_names)} classes {', '.join(self.class_names)}"
                )

    def _splits(self) -> Iterator[tuple[str, list[int], list[int], tuple[str, ...]]]:
        raise NotImplementedError

    def folds(self) -> Iterator[Fold]:
        """Yield the folds in a fixed order; each is checked for subject leaks."""
        for name, train, test, subjects in self._splits():
            check_disjoint([self.samples[i] for i in train], [self.samples[i] for i in test], name)
            yield Fold(name, tuple(train), tuple(test), tuple(subjects))

    def __iter__(self) -> Iterator[Fold]:
        return self.folds()

    def __len__(self) -> int:
        return sum(1 for _ in self._splits())

    def parts(self) -> dict[str, list[int]]:
        """Source dataset → indices of its samples (one entry unless the samples are a composite)."""
        parts: dict[str, list[int]] = {}
        for i, sample in enumerate(self.samples):
            parts.setdefault(sample.dataset, []).append(i)
        return parts

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.subject_key for s in self.samples))


class LOSO(Protocol):
    """Leave-one-subject-out: one fold per global subject key, in first-appearance order.

    Every sample is tested exactly once; the training side of a fold is every other subject.
    """

    name = "loso"

    def _splits(self):
        for fold in loso_folds([sample.subject_key for sample in self.samples]):
            yield fold.name, fold.train, fold.test, fold.test_subjects


def loso_folds(subject_keys: Sequence[str]) -> list[Fold]:
    """LOSO over a list of global subject keys (one per sample, in sample order)."""
    by_subject: dict[str, list[int]] = {}
    for i, subject in enumerate(subject_keys):
        by_subject.setdefault(str(subject), []).append(i)
    folds = []
    for subject, test in by_subject.items():
        test_set = set(test)
        train = tuple(i for i in range(len(subject_keys)) if i not in test_set)
        folds.append(Fold(fold_name(subject), train, tuple(test), (subject,)))
    return folds


def fold_name(name: str) -> str:
    """A fold name made safe as a folder name: "casme2/sub01" → "casme2_sub01" (every run of
    characters other than letters, digits, ``.``, ``_`` and ``-`` becomes one ``_``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name))
    return f"_{safe}" if safe in ("", ".", "..") else safe


def check_folds(folds: Sequence[Fold], subject_keys: Sequence[str]) -> None:
    """Check a fold list over samples with ``subject_keys`` before anything is trained.

    Every fold: training samples (a dataset of one subject has none under LOSO), train and test
    subjects disjoint (:class:`LeakError`); all folds together: every sample tested exactly once
    (pooled metrics need it) and fold names distinct as folder names.
    """
    tested: dict[int, str] = {}
    for fold in folds:
        if len(fold.train) == 0:
            raise GeomerError(f"fold {fold.name}: no training samples (the protocol needs samples "
                              f"of at least two subjects; these are of {len(set(subject_keys))})")
        shared = {subject_keys[i] for i in fold.train} & {subject_keys[i] for i in fold.test}
        if shared:
            raise LeakError(f"fold {fold.name}: subject(s) {', '.join(sorted(shared))} on both train and test sides")
        for i in fold.test:
            if i in tested:
                raise GeomerError(
                    f"sample {i} is tested in folds {tested[i]} and {fold.name}; "
                    "pooled metrics need every sample tested once"
                )
            tested[i] = fold.name
    missing = len(subject_keys) - len(tested)
    if missing:
        raise GeomerError(f"{missing} samples are never tested by the protocol's folds")
    names = [fold_name(fold.name) for fold in folds]
    if len(set(names)) != len(names):
        raise GeomerError("fold names collide once made into folder names")


class HoldoutDataset(Protocol):
    """Hold out one source dataset of a composite per fold: train on the others, test on it.

    Folds are named by the held-out dataset ("casme2", "samm", "smic"), in first-appearance order;
    every sample is tested exactly once. Subject keys carry their dataset, so the two sides never
    share a subject. Refused (GeomerError) on samples of a single source dataset: there is nothing
    to hold out.
    """

    name = "holdout-dataset"

    def __init__(self, samples: Sequence[Sample] | DatasetIndex, class_names: Sequence[str] | None = None):
        super().__init__(samples, class_names)
        datasets = tuple(dict.fromkeys(s.dataset for s in self.samples))
        if len(datasets) < 2:
            what = getattr(samples, "name", "") or (datasets[0] if datasets else "")
            raise GeomerError(
                f"--protocol {self.name}: dataset {what!r} is not a composite (all its clips come from "
                f"{datasets[0] if datasets else 'one dataset'}); it needs clips of two or more datasets, e.g. "
                "megc2019 or megc2019-flow"
            )

    def _splits(self):
        for dataset, test in self.parts().items():
            test_set = set(test)
            train = [i for i in range(len(self.samples)) if i not in test_set]
            subjects = tuple(dict.fromkeys(self.samples[i].subject_key for i in test))
            yield fold_name(dataset), train, list(test), subjects


PROTOCOLS: Registry[type[Protocol]] = Registry(
    "protocol", GeomerError, {"loso": LOSO, "holdout-dataset": HoldoutDataset}
)


def get_protocol(name: str, index: DatasetIndex) -> Protocol:
    """The protocol ``name`` over a dataset index; GeomerError listing the known ones otherwise."""
    return PROTOCOLS[name](index)
