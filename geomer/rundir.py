"""The run directory: the one owner of every file a training run leaves (writer and reader).

Layout (every name below is spelled once, here)::

    config.json                         what the run is: settings, classes, components, graph,
                                        folds, samples fingerprint, geomer version (written first)
    .geomer.lock                        the pid of the one process writing the run (flock-held)
    metrics.json                        pooled metrics (geomer.train.pool)
    relations.npy                       [C, K, K] class-averaged intrinsic relations
    <kind>.npy                          other per-run relation arrays of the same shape, one file per
                                        kind in RELATION_KINDS (e.g. occlusion_relations.npy)
    figures/                            the run's figures (geomer.viz.run is their one writer)
    seed-<s>/<fold>/checkpoint.pt       the fold's trained model (geomer.train.checkpoint)
    seed-<s>/<fold>/predictions.csv     PREDICTION_COLUMNS + prob_<class>…; written last, so its
                                        presence (and a clean read: predicted = most probable
                                        class; on resume, the fold's own test samples and labels)
                                        marks the fold as finished
    seed-<s>/<fold>/relations.npy       [n_test, K, K] in predictions order (and <kind>.npy the same)
    seed-<s>/<fold>/history.csv         epoch, loss, acc (+ val_uf1 / test_uf1 when selecting)

:class:`RunDir` writes and reads these files; :class:`Run` is a finished (or partly finished)
run read back as one object (:func:`load_run`), which ``geomer evaluate/plot/compare`` and the
notebooks use. Every file is written atomically (``geomer.atomic``).

Adding a per-run or per-fold relation array: add its kind to :data:`RELATION_KINDS` and write it
with :meth:`RunDir.save_relations` / :meth:`FoldDir.save_relations` (``kind=``).
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
from contextlib import contextmanager
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geomer.atomic import atomic_save_npy, atomic_write_text
from geomer.errors import GeomerError, check_shape
from geomer.version import __version__, check_version

CONFIG = "config.json"
LOCK = ".geomer.lock"
METRICS = "metrics.json"
FIGURES = "figures"
CHECKPOINT = "checkpoint.pt"
PRETRAINED = "pretrained-{key}.pt"  # per-fold pretraining (geomer.train.pretrain.pretrain_fold)
PREDICTIONS = "predictions.csv"
HISTORY = "history.csv"
SEED_PREFIX = "seed-"

#: Relation arrays a run keeps: ``<kind>.npy`` per run [C, K, K] and per fold [n_test, K, K].
#: "relations" are the model's intrinsic relations; "occlusion_relations" are measured by
#: neutralising components (same shapes, same order); "baseline_relations" is the input-only
#: baseline of the run's dataset (per run only; geomer.relations.input_baseline).
RELATION_KINDS = ("relations", "occlusion_relations", "baseline_relations")

#: The fixed leading columns of predictions.csv; one ``prob_<class>`` column per class follows.
PREDICTION_COLUMNS = ("sample", "subject", "dataset", "true", "predicted")

#: How far a predictions.csv row's probabilities may sum from 1. They are written with 6 decimals
#: (each off by at most 5e-7), so a row of C classes is off by at most C × 5e-7 plus float32
#: softmax error: 1e-4 holds for up to ~200 classes and still catches a damaged cell.
PROBABILITY_SUM_TOLERANCE = 1e-4

# Settings that may change between a run and its resumption without changing any result.
RESUMABLE_KEYS = ("execution",)


def predictions_header(class_names: Sequence[str]) -> list[str]:
    """The header row of ``predictions.csv`` for these classes."""
    return [*PREDICTION_COLUMNS, *(f"prob_{name}" for name in class_names)]


def _relations_file(kind: str) -> str:
    if kind not in RELATION_KINDS:
        raise ValueError(f"unknown relation kind {kind!r}; known: {', '.join(RELATION_KINDS)}")
    return f"{kind}.npy"


def samples_fingerprint(records: Iterable[Sequence[Any]]) -> str:
    """A digest of what identifies the samples a run trains on, one record per sample in order
    (key, subject, dataset, label, onset, apex, offset, …): a relabelled sheet changes it."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps([None if v is None else str(v) for v in record]).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def read_json_object(path: Path) -> dict:
    """A JSON object from ``path``; one-line GeomerError naming the file otherwise."""
    if not path.is_file():
        raise GeomerError(f"{path}: {'not a file' if path.exists() else 'missing'}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise GeomerError(f"{path}: not readable JSON ({str(error) or type(error).__name__})") from None
    if not isinstance(value, dict):
        raise GeomerError(f"{path}: expected a JSON object")
    return value


def load_relation_array(
    path: Path, ndim: int, components: int | None = None, allow_nan_matrices: bool = False
) -> np.ndarray:
    """A relation array ``[..., K, K]`` of ``ndim`` dimensions, checked; float32.

    ``allow_nan_matrices``: whole matrices may be NaN (a class-averaged file holds NaN for a class
    no test clip had), never parts of one.
    """
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise GeomerError(f"{path}: not a readable .npy array ({error})") from None
    if array.dtype.kind not in "fiu":  # a complex or boolean array is no relation file of ours
        raise GeomerError(f"{path}: holds {array.dtype} values, not real numbers")
    k = check_shape(array, ("n", "K", "K")[3 - ndim:], f"{path}: relations")["K"]
    if components is not None and k != components:
        raise GeomerError(f"{path}: {k} components, the run's config names {components}")
    with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf, refused below
        array = array.astype(np.float32)
    finite = np.isfinite(array)
    if allow_nan_matrices:
        acceptable = np.all(finite | np.isnan(array).all(axis=(-2, -1), keepdims=True))
    else:
        acceptable = np.all(finite)
    if not acceptable:
        raise GeomerError(f"{path}: contains NaN or infinite values (as float32)")
    return array


def class_averaged_relations(relations: np.ndarray, true: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean relation matrix of the samples of each true class; NaN for a class without samples.

    Shapes: relations [n, K, K], true [n] class indices → [C, K, K] float32.
    """
    relations = np.asarray(relations, dtype=np.float64)
    sums = np.zeros((num_classes, *relations.shape[1:]), dtype=np.float64)
    np.add.at(sums, np.asarray(true, dtype=np.int64), relations)
    counts = np.bincount(np.asarray(true, dtype=np.int64), minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        averaged = sums / counts[:, None, None]
    averaged[counts == 0] = np.nan
    return averaged.astype(np.float32)


def _class_names(column: pd.Series, classes: Sequence[str], path: Path, name: str) -> pd.Series:
    """Map a ``true``/``predicted`` column to class names (it may hold names or indices)."""
    if pd.api.types.is_integer_dtype(column):
        bad = column[(column < 0) | (column >= len(classes))]
        if len(bad):
            raise GeomerError(f"{path}: row {bad.index[0] + 2}: {name} index {bad.iloc[0]} outside 0..{len(classes) - 1}")
        return column.map(lambda i: classes[int(i)])
    column = column.astype(str)
    unknown = column[~column.isin(classes)]
    if len(unknown):
        raise GeomerError(f"{path}: row {unknown.index[0] + 2}: unknown {name} class {unknown.iloc[0]!r}")
    return column


def check_subject_datasets(frame: pd.DataFrame, path: Path, seen: dict[str, tuple[str, Path]]) -> None:
    """GeomerError naming the row when a subject of ``frame`` (the predictions read from ``path``)
    is of another dataset than in ``seen`` (subject → its dataset and the file that said so, which
    this extends): the per-dataset parts are pooled by the ``dataset`` column, so an edited cell
    would move clips into another dataset's figures. A fold being resumed is checked against its
    clips (:meth:`FoldDir.check_samples`)."""
    for row, (subject, dataset) in enumerate(zip(frame["subject"].astype(str), frame["dataset"].astype(str))):
        first, where = seen.setdefault(subject, (dataset, path))
        if first != dataset:
            raise GeomerError(f"{path}: row {row + 2}: dataset {dataset!r}, while subject {subject!r} is of "
                              f"{first!r} in {where}")


def _probabilities(frame: pd.DataFrame, columns: Sequence[str], path: Path) -> np.ndarray:
    """The ``prob_<class>`` columns as [n, C] float64, each a finite number in [0, 1] and each row
    summing to 1; GeomerError naming the file and row otherwise (a damaged cell must not be averaged
    or pooled silently)."""
    values = np.stack([pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float64) for c in columns], axis=1)
    bad = np.argwhere(~(np.isfinite(values) & (values >= 0) & (values <= 1)))  # non-numbers became NaN
    if len(bad):
        row, column = bad[0]
        raise GeomerError(f"{path}: row {row + 2}: {columns[column]} is {str(frame[columns[column]].iloc[row])!r}, "
                          f"not a probability in [0, 1]")
    off = np.flatnonzero(np.abs(values.sum(axis=1) - 1) > PROBABILITY_SUM_TOLERANCE)
    if len(off):
        raise GeomerError(f"{path}: row {off[0] + 2}: probabilities sum to {values[off[0]].sum():.6f}, not 1")
    return values


def read_history(path: Path) -> pd.DataFrame:
    """A fold's ``history.csv``: one row per epoch, column ``epoch`` and numeric metric columns
    (loss, acc, …; a selection metric's cell may be empty), epochs 1, 2, … in order. GeomerError
    naming the file (and row) otherwise."""
    if not path.exists():
        raise GeomerError(f"{path}: missing")
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as error:  # an empty file is a ValueError too
        raise GeomerError(f"{path}: not a readable CSV ({error})") from None
    if "epoch" not in frame.columns:
        raise GeomerError(f"{path}: missing column epoch")
    if frame.empty or len(frame.columns) < 2:
        raise GeomerError(f"{path}: no epochs or no metric besides epoch")
    for column in frame.columns:
        numbers = pd.to_numeric(frame[column], errors="coerce")
        # an empty metric cell is allowed (not measured that epoch); text, or no epoch, is damage.
        # "nan" and "inf" are numbers here: a fold whose loss diverged after the epoch that
        # --val-fraction selected finishes with that epoch's model and records the diverged losses
        bad = np.flatnonzero(numbers.isna() & (frame[column].notna() | (column == "epoch")))
        if len(bad):
            row = int(bad[0])
            raise GeomerError(f"{path}: row {row + 2}: {column} is {str(frame[column].iloc[row])!r}, not a number")
        frame[column] = numbers
    # epochs count from 1 (a file cut short is caught against the checkpoint's epoch count)
    for row, epoch in enumerate(frame["epoch"]):
        if epoch != row + 1:
            raise GeomerError(f"{path}: row {row + 2}: epoch is {epoch:g}, expected {row + 1}")
    return frame


@dataclass(frozen=True)
class FoldDir:
    """``seed-<s>/<fold>/`` of a run directory: one fold under one seed."""

    path: Path
    seed: int | str
    name: str

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    def pretrained_path(self, key: str) -> Path:
        """The fold's own pretraining checkpoint, keyed by what determines its weights."""
        return self.path / PRETRAINED.format(key=key)

    @property
    def predictions_path(self) -> Path:
        return self.path / PREDICTIONS

    @property
    def history_path(self) -> Path:
        return self.path / HISTORY

    def relations_path(self, kind: str = "relations") -> Path:
        return self.path / _relations_file(kind)

    def has_predictions(self) -> bool:
        return self.predictions_path.is_file()

    def check_writable(self) -> None:
        """One-line GeomerError when something of the wrong kind sits where the engine writes
        this fold (a file at a folder of ``seed-<s>/<fold>/``, a folder at one of its files):
        found before the fold trains, not when its results cannot be written after."""
        for folder in (self.path.parent, self.path):
            if folder.exists() and not folder.is_dir():
                raise GeomerError(f"{folder}: is not a folder, and the run writes its folds there; move it away")
        for path in (self.checkpoint_path, self.predictions_path, self.history_path,
                     self.relations_path(), self.relations_path("occlusion_relations")):
            if path.is_dir():
                raise GeomerError(f"{path}: is a folder, where the run writes the fold's {path.name}; move it away")

    def write_history(self, history: list[dict[str, float]]) -> None:
        """One row per epoch (floats with 6 decimals)."""
        columns = list(dict.fromkeys(key for row in history for key in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in history:
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
        atomic_write_text(self.history_path, buffer.getvalue())

    def save_relations(self, relations: np.ndarray, kind: str = "relations") -> None:
        """[n_test, K, K] in the order of the fold's predictions."""
        atomic_save_npy(self.relations_path(kind), np.asarray(relations, dtype=np.float32))

    def load_relations(self, kind: str = "relations", components: int | None = None) -> np.ndarray:
        path = self.relations_path(kind)
        if not path.is_file():
            raise GeomerError(f"{path}: missing")
        return load_relation_array(path, 3, components)

    def read_results(
        self, class_names: Sequence[str], components: int | None = None, occlusion: bool = True,
        epochs: int | None = None,
    ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray | None]:
        """A finished fold's predictions, its relations ``[n, K, K]`` (matrix i for prediction row
        i) and, with ``occlusion``, its occlusion relations (the same shape; None when the fold has
        none). Its ``history.csv``, when it has one (an ensemble's folds have none), is verified
        too, and with ``epochs`` (what its checkpoint says it trained) must hold that many, so a
        resumed run trains a fold with a damaged or cut history again. One-line GeomerError
        naming the file that is missing, unreadable or does not match."""
        frame = self.read_predictions(class_names)
        if self.history_path.exists():
            recorded = len(read_history(self.history_path))
            if epochs is not None and recorded != epochs:
                raise GeomerError(f"{self.history_path}: {recorded} epochs recorded, the fold trained {epochs}")
        relations = self.load_relations(components=components)
        if len(relations) != len(frame):
            raise GeomerError(
                f"{self.relations_path()}: {len(relations)} matrices for {len(frame)} rows of {PREDICTIONS}"
            )
        occluded = None
        if occlusion and self.relations_path("occlusion_relations").is_file():
            occluded = self.load_relations("occlusion_relations", components=components)
            check_shape(occluded, relations.shape, str(self.relations_path("occlusion_relations")),
                        hint=f" (as {self.relations_path().name})")
        return frame, relations, occluded

    def write_predictions(
        self,
        samples: Sequence[str],
        subjects: Sequence[str],
        datasets: Sequence[str],
        true: Sequence[int],
        probabilities: np.ndarray,
        class_names: Sequence[str],
    ) -> None:
        """One row per test clip: keys, true and predicted class names, probabilities [n, C]."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(predictions_header(class_names))
        for sample, subject, dataset, label, row in zip(samples, subjects, datasets, true, probabilities):
            writer.writerow(
                [sample, subject, dataset, class_names[int(label)], class_names[int(np.argmax(row))],
                 *(f"{p:.6f}" for p in row)]
            )
        atomic_write_text(self.predictions_path, buffer.getvalue())

    def read_predictions(self, classes: Sequence[str]) -> pd.DataFrame:
        """The fold's predictions; ``true``/``predicted`` as class names (indices are mapped),
        ``prob_<class>`` as floats (checked: numbers in [0, 1], each row summing to 1).

        Raises GeomerError naming the file (and row) for a missing, unreadable or malformed file.
        """
        path = self.predictions_path
        if not path.is_file():  # a folder in its place: training again could not write it there either
            raise GeomerError(f"{path}: not a file; remove it, then train again to resume" if path.exists()
                              else f"{path}: missing; the run is incomplete (train again to resume)")
        try:
            frame = pd.read_csv(path, dtype={"sample": str, "subject": str, "dataset": str}, keep_default_na=False)
        except (OSError, ValueError, UnicodeDecodeError) as error:
            raise GeomerError(f"{path}: not a readable CSV ({error})") from None
        if not isinstance(frame.index, pd.RangeIndex):  # pandas takes a first row's extra fields as an index
            raise GeomerError(f"{path}: row 2: more fields than the header's {len(frame.columns)}")
        # every column the writer writes: without subject or dataset the per-dataset parts would
        # silently leave the fold out
        missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
        if missing:
            raise GeomerError(f"{path}: missing column(s) {', '.join(missing)}")
        if frame.empty:  # every fold tests at least one clip: a header alone is a file cut short
            raise GeomerError(f"{path}: no rows")
        for column in ("sample", "true", "predicted"):
            empty = np.flatnonzero(frame[column].astype(str).eq("").to_numpy())
            if len(empty):
                raise GeomerError(f"{path}: row {int(empty[0]) + 2}: empty {column}")
        check_subject_datasets(frame, path, {})
        frame["true"] = _class_names(frame["true"], classes, path, "true")
        frame["predicted"] = _class_names(frame["predicted"], classes, path, "predicted")
        probability_columns = [f"prob_{name}" for name in classes]
        missing = [c for c in probability_columns if c not in frame.columns]
        if missing:
            raise GeomerError(f"{path}: missing column(s) {', '.join(missing)}")
        probabilities = _probabilities(frame, probability_columns, path)
        # the writer's predicted class is the row's argmax; 6-decimal rounding keeps the order, so
        # the predicted class's written probability is exactly the row's maximum
        predicted = frame["predicted"].map({name: i for i, name in enumerate(classes)}).to_numpy()
        wrong = np.flatnonzero(probabilities[np.arange(len(frame)), predicted] < probabilities.max(axis=1))
        if len(wrong):
            row = int(wrong[0])
            raise GeomerError(f"{path}: row {row + 2}: predicted {frame['predicted'].iloc[row]!r} is not "
                              f"the class of highest probability")
        frame[probability_columns] = probabilities
        return frame

    def check_tested_once(self, frame: pd.DataFrame, tested: set[str]) -> None:
        """GeomerError naming the file and row for a sample of ``frame`` (this fold's predictions)
        already in ``tested`` (the samples of the seed's other folds read so far), which it
        extends: each sample is tested once per seed, so a fold's file edited or copied into
        another fold is not pooled twice."""
        for row, sample in enumerate(frame["sample"]):
            if sample in tested:
                raise GeomerError(f"{self.predictions_path}: row {row + 2}: sample {sample!r} was already "
                                  f"tested in seed {self.seed} (each sample is tested once)")
            tested.add(sample)

    def check_samples(self, frame: pd.DataFrame, samples: Sequence[str], true: Sequence[str],
                      subjects: Sequence[str], datasets: Sequence[str]) -> None:
        """GeomerError naming the file and row unless the fold's predictions (``frame``, as
        :meth:`read_predictions` returns it) are of exactly these test samples, in this order, with
        these true classes, subjects and datasets: a fold is reused only for the clips it was
        trained to test, and pooled by their subjects and datasets."""
        path = self.predictions_path
        written = frame["sample"].astype(str).tolist()
        for row, (got, expected) in enumerate(zip(written, samples)):
            if got != expected:
                raise GeomerError(f"{path}: row {row + 2}: sample {got!r}, the fold tests {expected!r} there")
        if len(written) != len(samples):
            raise GeomerError(f"{path}: {len(written)} rows, the fold tests {len(samples)} samples")
        for column, what, values in (("true", "true class", true), ("subject", "subject", subjects),
                                     ("dataset", "dataset", datasets)):
            for row, (got, expected) in enumerate(zip(frame[column].astype(str), values)):
                if got != expected:
                    raise GeomerError(f"{path}: row {row + 2}: {what} {got!r}, the sample's is {expected!r}")


class RunDir:
    """A run directory: paths of every file, and the one reader and writer of each.

    ``config`` is read from disk once per ``RunDir`` object (or set by :meth:`open`), so code
    that passes the object along never re-reads it.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._config: dict | None = None
        self._lock_depth = 0
        self._lock_stream = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ---------------------------------------------------------------------------- paths

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def figures_dir(self) -> Path:
        return self.path / FIGURES

    def relations_path(self, kind: str = "relations") -> Path:
        return self.path / _relations_file(kind)

    def fold(self, seed: int | str, name: str) -> FoldDir:
        return FoldDir(self.path / f"{SEED_PREFIX}{seed}" / name, seed, name)

    def folds(self) -> list[FoldDir]:
        """Every seed × fold the config names; a config without a fold list (a run written by
        other tools): the ``seed-*/<fold>`` folders present on disk."""
        config = self.config
        if isinstance(config.get("folds"), list) and isinstance(config.get("seeds"), list):
            return [self.fold(seed, name) for seed in config["seeds"] for name in config["folds"]]
        found = []
        for seed_dir in sorted(self.path.glob(f"{SEED_PREFIX}*")):
            if seed_dir.is_dir():
                seed = seed_dir.name.removeprefix(SEED_PREFIX)
                found += [FoldDir(p, seed, p.name) for p in sorted(seed_dir.iterdir()) if p.is_dir()]
        return found

    # ---------------------------------------------------------------------------- writing

    def check_writable(self, folds: Iterable[FoldDir] = ()) -> None:
        """One-line GeomerError unless the run directory can be created or written, and nothing of
        the wrong kind sits where it writes (:meth:`check_result_paths`, ``folds`` included):
        checked before any work, so a bad ``--out`` costs nothing."""
        from landmarks.files import check_output_folder

        check_output_folder(self.path, "--out", GeomerError)
        self.check_figures_folder()
        self.check_result_paths(folds)
        if self.config_path.is_file():
            return  # a run's own folder: resumed or re-pooled
        # a new run writes config.json, metrics.json, *relations.npy, figures/ and seed-*/: never over
        # such files of the user's, nor inside another run (whose files it would replace); other
        # files (a log the shell made, a dot-file) are left alone
        check_not_inside_a_run(self.path)
        if self.path.is_dir():
            clashing = sorted(entry.name for entry in self.path.iterdir() if _run_writes(entry.name))
            if clashing:
                raise GeomerError(f"{self.path}: not a run directory (no {CONFIG}) but holds {', '.join(clashing)}, "
                                  "which a run would replace; choose another --out")

    def check_result_paths(self, folds: Iterable[FoldDir] = ()) -> None:
        """One-line GeomerError when a folder sits where the run writes ``metrics.json`` or a
        relation file, or something of the wrong kind where it writes one of ``folds``
        (:meth:`FoldDir.check_writable`): found before a fold trains, not when its results or the
        pooled ones cannot be written after."""
        for path in (self.metrics_path, *(self.relations_path(kind) for kind in RELATION_KINDS)):
            if path.is_dir():
                raise GeomerError(f"{path}: is a folder, where the run writes its {path.name}; move it away")
        for fold in folds:
            fold.check_writable()

    def check_figures_folder(self) -> None:
        """One-line GeomerError when ``figures/`` is a file or a folder that cannot be written:
        found before the run's other files are rewritten, not after."""
        from landmarks.files import check_output_folder

        if self.figures_dir.exists() and not self.figures_dir.is_dir():
            raise GeomerError(f"{self.figures_dir}: is not a folder, and the run draws its figures there; move it away")
        if self.figures_dir.exists():
            check_output_folder(self.figures_dir, "figures folder", GeomerError)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run directory for this process (re-entrant for this object).

        A second writer gets a one-line GeomerError naming the holder's pid; a lock left by a
        killed process is stale (the kernel released its ``flock``) and simply taken over.
        """
        import fcntl

        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        self.check_writable()
        new_folder, new_lock = not self.path.exists(), not (self.path / LOCK).exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            stream = open(self.path / LOCK, "a+", encoding="utf-8")
        except OSError as error:
            raise GeomerError(f"{self.path}: cannot write the run directory ({error.strerror})") from None
        try:
            fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            stream.seek(0)
            holder = stream.read().strip() or "unknown"
            stream.close()
            if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise GeomerError(
                    f"{self.path}: another geomer process (pid {holder}) is writing this run directory"
                ) from None
            raise GeomerError(f"{self.path / LOCK}: cannot lock ({error.strerror})") from None
        stream.seek(0)
        stream.truncate()
        stream.write(f"{os.getpid()}\n")
        stream.flush()
        self._lock_stream, self._lock_depth = stream, 1
        try:
            yield
        except BaseException:
            # a refusal (e.g. --out holding another run) leaves the folder as it was found: the
            # lock file this call made goes (a later writer needs none), and the folder too when
            # this call made it and nothing was written into it
            if new_lock:
                (self.path / LOCK).unlink(missing_ok=True)
                if new_folder and not any(self.path.iterdir()):
                    self.path.rmdir()
            raise
        finally:
            self._lock_depth = 0
            self._lock_stream = None
            stream.close()  # releases the flock

    # ---------------------------------------------------------------------------- config

    @property
    def config(self) -> dict:
        """``config.json`` (read once); GeomerError if missing, broken or of another version."""
        if self._config is None:
            if not self.path.is_dir():
                raise GeomerError(f"{self.path}: not a directory (a run directory holds {CONFIG})")
            config = read_json_object(self.config_path)
            if "geomer_version" in config:
                check_version(self.config_path, config["geomer_version"], "run")
            _check_config_types(config, self.config_path)
            self._config = config
        return self._config

    def require_engine_config(self) -> dict:
        """The config, insisting on what the engine wrote (a version, seeds, folds, classes)."""
        config = self.config
        missing = [key for key in ("geomer_version", "seeds", "folds", "classes") if key not in config]
        if missing:
            raise GeomerError(f"{self.config_path}: not written by geomer train (no {', '.join(missing)})")
        return config

    def check_same_run(self, config: dict, every_key: bool = False) -> None:
        """One-line GeomerError when the folder's ``config.json`` describes another run than
        ``config`` in one of ``config``'s keys (``every_key``: in any key of either), RESUMABLE_KEYS
        aside; nothing when the folder holds no run. Called with the settings known before the
        features are extracted, so a wrong ``--out`` costs no extraction."""
        if not self.config_path.is_file():
            return
        existing = RunDir(self.path).config
        wanted = json.loads(json.dumps(config))
        keys = set(existing) | set(wanted) if every_key else set(wanted)
        differing = sorted(key for key in keys if key not in RESUMABLE_KEYS and existing.get(key) != wanted.get(key))
        if differing:
            raise GeomerError(f"{self.config_path}: the run directory holds a different run (differs in "
                              f"{', '.join(differing)}); choose another --out")

    def open(self, config: dict) -> None:
        """Start or resume the run described by ``config``: write it, or check that the existing
        ``config.json`` describes the same run (only RESUMABLE_KEYS may differ)."""
        wanted = json.loads(json.dumps({"geomer_version": __version__, **config}))
        self.check_same_run(wanted, every_key=True)
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config_path, json.dumps(wanted, indent=2, sort_keys=True) + "\n")
        self._config = wanted

    # ---------------------------------------------------------------------------- results

    def write_metrics(self, metrics: dict) -> None:
        atomic_write_text(self.metrics_path, json.dumps(metrics, indent=2) + "\n")

    def read_metrics(self) -> dict | None:
        """``metrics.json``, or None when the run was not pooled yet."""
        return read_json_object(self.metrics_path) if self.metrics_path.is_file() else None

    def save_relations(self, relations: np.ndarray, kind: str = "relations") -> None:
        """[C, K, K] per-class relations of the whole run (NaN for a class without test clips)."""
        atomic_save_npy(self.relations_path(kind), np.asarray(relations, dtype=np.float32))

    def load_relations(self, kind: str = "relations", components: int | None = None) -> np.ndarray | None:
        """The per-class array of ``kind``, or None when the run has none."""
        path = self.relations_path(kind)
        if not path.is_file():
            return None
        return load_relation_array(path, 3, components, allow_nan_matrices=True)


# -------------------------------------------------------------------------------- read back


@dataclass(frozen=True)
class Run:
    """A training run directory, read.

    Shapes:
        predictions: n rows (every seed and fold concatenated; columns sample, subject, dataset,
            true, predicted, prob_<class>…, plus ``seed`` and ``fold``); ``true`` and
            ``predicted`` are class NAMES.
        sample_relations: [n, K, K] float32, row i belongs to ``predictions`` row i.
        sample_occlusion: [n, K, K] float32, the occlusion relations of the same rows, or None
            when a finished fold has none (a run from before they existed).
        class_relations: [C, K, K] float32, class-averaged (the run's ``relations.npy``, which
            must be the mean of its finished folds' per clip, as is ``occlusion_relations.npy``);
            all NaN for a class no test clip belongs to.
        unfinished: ``seed-<s>/<fold>`` of every fold the config names that has no predictions yet
            (an interrupted or running run: the other fields hold the finished folds only).
    """

    path: str
    model: str
    config: dict
    classes: tuple[str, ...]
    component_names: tuple[str, ...]
    predictions: pd.DataFrame
    sample_relations: np.ndarray
    class_relations: np.ndarray
    sample_occlusion: np.ndarray | None = None
    metrics: dict | None = None
    history_files: tuple[str, ...] = field(default_factory=tuple)
    unfinished: tuple[str, ...] = ()

    @property
    def num_components(self) -> int:
        return len(self.component_names)

    @property
    def graph_record(self) -> dict:
        """The run's region-graph record (``FaceGraph.to_record``): config.json's "graph", else
        the feature settings' partition and nodes, else k7 with its default nodes."""
        for section in ("graph", "feature_settings"):
            value = self.config.get(section)
            if isinstance(value, Mapping) and isinstance(value.get("partition"), str):
                return {"partition": value["partition"], "nodes": value.get("nodes")}
        return {"partition": "k7", "nodes": None}

    @property
    def partition(self) -> str:
        return self.graph_record["partition"]

    def face_graph(self):
        """The :class:`~geomer.graph.FaceGraph` the run used, checked against its components."""
        from geomer.graph import FaceGraph

        graph = FaceGraph.from_record(self.graph_record)
        if tuple(graph.component_names) != tuple(self.component_names):
            raise GeomerError(
                f"{Path(self.path) / CONFIG}: component names {', '.join(self.component_names)} do not "
                f"match the {graph.name} graph ({', '.join(graph.component_names)})"
            )
        return graph

    def confusion(self) -> np.ndarray:
        """[C, C] int64 counts (rows true, columns predicted) over every prediction row."""
        index = {name: i for i, name in enumerate(self.classes)}
        matrix = np.zeros((len(self.classes), len(self.classes)), dtype=np.int64)
        for true, predicted in zip(self.predictions["true"], self.predictions["predicted"]):
            matrix[index[true], index[predicted]] += 1
        return matrix


def load_run(run_dir: str | Path | RunDir, check_stored: bool = True) -> Run:
    """Read a run directory (see the module docstring); finished folds only.

    ``check_stored=False`` leaves the run-level relation files unread (the class relations are
    the folds' means) for a caller that re-pools them, as ``geomer evaluate`` does: a stale or
    damaged file is what it repairs, not an error.
    Raises :class:`GeomerError` (one line naming the file) when it is not a readable run.
    """
    run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    config = run_dir.config
    classes, component_names = (_names(config, key, run_dir.config_path) for key in ("classes", "component_names"))
    components = len(component_names)

    frames: list[pd.DataFrame] = []
    relations: list[np.ndarray] = []
    occlusion: list[np.ndarray] | None = []  # None once a fold lacks them (trained before they existed)
    histories: list[str] = []  # a finished fold's, verified by read_results (an unfinished one's may be partial)
    unfinished: list[str] = []
    tested: dict[str, set[str]] = {}  # per seed
    for fold in run_dir.folds():
        if not fold.has_predictions():
            unfinished.append(f"{SEED_PREFIX}{fold.seed}/{fold.name}")
            continue  # a fold not finished yet
        frame, fold_relations, fold_occlusion = fold.read_results(classes, components, occlusion=occlusion is not None)
        fold.check_tested_once(frame, tested.setdefault(str(fold.seed), set()))
        frame["seed"] = str(fold.seed)
        frame["fold"] = fold.name
        frames.append(frame)
        relations.append(fold_relations)
        if fold_occlusion is None:
            occlusion = None
        elif occlusion is not None:
            occlusion.append(fold_occlusion)
        if fold.history_path.exists():
            histories.append(str(fold.history_path))

    if frames:
        predictions = pd.concat(frames, ignore_index=True)
        sample_relations = np.concatenate(relations).astype(np.float32)
    else:
        predictions = pd.DataFrame(columns=[*PREDICTION_COLUMNS, "seed", "fold"])
        sample_relations = np.zeros((0, components, components), np.float32)
    sample_occlusion = np.concatenate(occlusion).astype(np.float32) if occlusion else None

    index = {name: i for i, name in enumerate(classes)}
    true = predictions["true"].map(index).to_numpy()
    class_relations = None
    for kind, per_sample in (("relations", sample_relations), ("occlusion_relations", sample_occlusion)):
        stored = run_dir.load_relations(kind, components=components) if check_stored else None
        if stored is not None and len(stored) != len(classes):
            raise GeomerError(f"{run_dir.relations_path(kind)}: {len(stored)} classes, {CONFIG} names {len(classes)}")
        averaged = class_averaged_relations(per_sample, true, len(classes)) if frames and per_sample is not None else None
        # the run's files are what pool_run made of the finished folds' files: an edited or stale
        # copy (a class's matrix gone to NaN, other values) is not passed on as the run's relations
        if (stored is not None and averaged is not None and not unfinished
                and not np.allclose(stored, averaged, rtol=1e-4, atol=1e-6, equal_nan=True)):
            raise GeomerError(f"{run_dir.relations_path(kind)}: does not match the folds' relations "
                              f"(recompute it with geomer evaluate {run_dir.path})")
        if kind == "relations":
            class_relations = stored if stored is not None else averaged
    if class_relations is None:
        raise GeomerError(
            f"{run_dir.path}: no {run_dir.relations_path().name} and no finished fold "
            f"({SEED_PREFIX}*/<fold>/{PREDICTIONS})"
        )

    return Run(
        path=str(run_dir.path),
        model=str(config.get("model", run_dir.path.name)),
        config=config,
        classes=classes,
        component_names=component_names,
        predictions=predictions,
        sample_relations=sample_relations,
        class_relations=class_relations,
        sample_occlusion=sample_occlusion,
        metrics=run_dir.read_metrics(),
        history_files=tuple(histories),
        unfinished=tuple(unfinished),
    )


def _names(config: dict, key: str, path: Path) -> tuple[str, ...]:
    """config.json's ``key``: a non-empty list of distinct non-empty strings, or a one-line
    GeomerError naming the file (a string or a repeated name would otherwise surface later as
    an unknown class in some predictions.csv row)."""
    names = config.get(key)
    if (not isinstance(names, list) or not names or len(set(map(str, names))) != len(names)
            or not all(isinstance(name, str) and name for name in names)):
        raise GeomerError(f"{path}: '{key}' must be a non-empty list of distinct names, got {names!r:.80}")
    return tuple(names)


def _check_config_types(config: dict, path: Path) -> None:
    """One-line GeomerError naming ``path`` for a key of the engine's config that has the wrong
    type (a hand-edited ``"seeds": 0`` or a fold that is not a folder name would otherwise be a
    traceback in whichever command reads it first). Absent keys are left to the caller."""
    if "seeds" in config:
        seeds = config["seeds"]
        if (not isinstance(seeds, list) or not seeds
                or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
                or len(set(seeds)) != len(seeds)):
            raise GeomerError(f"{path}: 'seeds' must be a non-empty list of distinct integers, got {seeds!r:.80}")
    if "folds" in config:
        from geomer.data.protocols import fold_name

        # fold folders are named by fold_name: anything else ("../x", "a/b") is not a fold of a run
        bad = next((f for f in _names(config, "folds", path) if fold_name(f) != f), None)
        if bad is not None:
            raise GeomerError(f"{path}: fold {bad!r:.80} is not a fold folder name")
    for key in ("classes", "component_names"):
        if key in config:
            _names(config, key, path)
    for key in ("pretraining", "settings", "cfg", "feature_settings", "graph", "execution"):
        if config.get(key) is not None and not isinstance(config[key], dict):
            raise GeomerError(f"{path}: '{key}' must be an object or null, got {config[key]!r:.80}")
    # a string "no" would mark the run leaky; a number as the root would fail where it is read
    for key, kind, what in (("leaky", bool, "true or false"), ("root", str, "a path"),
                            ("num_samples", int, "a count")):
        value = config.get(key)
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise GeomerError(f"{path}: '{key}' must be {what}, got {value!r:.80}")
    if config.get("graph") is not None:  # read by the figures, after the metrics are written
        from geomer.graph import FaceGraph

        try:
            FaceGraph.from_record(config["graph"])
        except (GeomerError, ValueError, TypeError, KeyError, IndexError) as error:
            raise GeomerError(f"{path}: malformed 'graph' ({str(error).splitlines()[0][:150]})") from None


def check_not_inside_a_run(path: str | Path, option: str = "--out") -> None:
    """One-line GeomerError when ``path`` lies inside a run directory (a folder above it holds a
    run's config.json): writing there would replace or confuse the run's own files."""
    for folder in Path(path).resolve().parents:
        if (folder / CONFIG).is_file() and _is_run_config(folder / CONFIG):
            raise GeomerError(f"{path}: inside the run directory {folder}; choose another {option}")


def _is_run_config(path: Path) -> bool:
    """Whether ``path`` is the config.json of a geomer run (a JSON object naming a geomer version)."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(config, dict) and "geomer_version" in config


def _run_writes(name: str) -> bool:
    """Whether a new run writes an entry called ``name`` at the top of its folder."""
    return name in (METRICS, FIGURES) or name.endswith("relations.npy") or name.startswith(SEED_PREFIX)
