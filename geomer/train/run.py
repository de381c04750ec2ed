"""Orchestration of a whole evaluation: graphs → protocol folds → fold × seed tasks → pooled metrics.

:func:`run_loso` is the engine's entry point; it needs only a list of PyG ``Data`` (with ``y`` and
the meta strings ``clip``, ``subject``, ``dataset``), the class names and a :class:`TrainConfig`.
:func:`geomer.train.pipeline.train_dataset` puts a dataset (or the synthetic default) in front.

Run directory (the contract shared with ``geomer evaluate``/``plot``/``compare``)::

    config.json                       settings, classes, components, folds, geomer version
    seed-<s>/<fold>/checkpoint.pt     trained model of that fold (see geomer.train.checkpoint)
    seed-<s>/<fold>/predictions.csv   sample, subject, dataset, true, predicted, prob_<class>…
    seed-<s>/<fold>/relations.npy     [n_test, K, K] in predictions order
    seed-<s>/<fold>/history.csv       epoch, loss, acc (+ val_uf1 / test_uf1 when selecting)
    metrics.json                      pooled metrics (geomer.train.pool)
    seed-<s>/<fold>/occlusion_relations.npy  [n_test, K, K] (geomer.relations.occlusion_relations)
    relations.npy                     [C, K, K] class-averaged relations
    occlusion_relations.npy           [C, K, K] class-averaged occlusion relations
    baseline_relations.npy            [C, K, K] input-only baseline (geomer.relations.input_baseline)
    figures/                          when geomer.viz is available

A run directory resumes: a fold whose ``predictions.csv`` exists is not trained again, provided
``config.json`` describes the same run (otherwise GeomerError: use another ``--out``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geomer import __version__
from geomer.data.protocols import LOSO, Fold, check_disjoint
from geomer.errors import GeomerError
from geomer.train.checkpoint import compatible_version, graph_record
from geomer.train.config import TrainConfig
from geomer.atomic import atomic_write_text
from geomer.train.fit import FitContext, FoldSummary, FoldTask, sample_key


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    metrics: dict[str, Any]
    trained: list[FoldSummary]
    skipped: int


@dataclass(frozen=True)
class _Clip:
    """The part of a ``Sample`` the protocols look at, for graphs that come without samples."""

    subject_key: str
    label_index: int
    dataset: str


def _clips(graphs: Sequence) -> list[_Clip]:
    return [_Clip(str(g.subject), int(g.y.view(-1)[0]), str(getattr(g, "dataset", ""))) for g in graphs]


def loso_folds(graphs: Sequence, class_names: Sequence[str]) -> list[Fold]:
    """``geomer.data.protocols.LOSO`` over the graphs' global subject keys."""
    return list(LOSO(_clips(graphs), class_names).folds())


def check_folds(folds: Sequence[Fold], graphs: Sequence) -> None:
    """Every fold: train and test subjects disjoint (the protocols' ``check_disjoint``, raising
    ``LeakError``); all folds together: every sample tested exactly once (pooling needs it)."""
    clips = _clips(graphs)
    tested: dict[int, str] = {}
    for fold in folds:
        check_disjoint([clips[i] for i in fold.train], [clips[i] for i in fold.test], fold.name)
        for i in fold.test:
            if i in tested:
                raise GeomerError(
                    f"sample {i} is tested in folds {tested[i]} and {fold.name}; "
                    "pooled metrics need every sample tested once"
                )
            tested[i] = fold.name
    missing = len(clips) - len(tested)
    if missing:
        raise GeomerError(f"{missing} samples are never tested by the protocol's folds")


def fold_dir_name(fold_name: str) -> str:
    """A folder name for a fold (subject keys such as ``casme2/sub01`` contain slashes)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", fold_name)


def _as_fold(fold: Any) -> Fold:
    return Fold(
        name=str(fold.name),
        train=tuple(int(i) for i in fold.train),
        test=tuple(int(i) for i in fold.test),
        test_subjects=tuple(str(s) for s in getattr(fold, "test_subjects", ())),
    )


def run_loso(
    graphs: list,
    class_names: Sequence[str],
    config: TrainConfig,
    out_dir: str | Path,
    *,
    folds: Iterable[Any] | None = None,
    face_graph: Any = None,
    dataset: str = "",
    feature_settings: dict | None = None,
    init: str | Path | None = None,
    pretraining: dict | None = None,
    extra: dict | None = None,
    progress: bool | None = None,
) -> RunResult:
    """Train and test ``config.model`` on every fold × seed and pool the predictions.

    ``folds`` default to LOSO over each graph's ``subject``; any objects with ``name``,
    ``train`` and ``test`` (index lists) work, e.g. a ``geomer.data.protocols`` protocol's folds.
    ``face_graph`` defaults to ``FaceGraph()`` (k7 over 68 points). ``init``: pretrained weights
    loaded into every fold's model before fine-tuning (``pretraining`` describes them for
    metrics.json; the caller checks that they never saw a test subject).
    """
    from geomer.train._models import check_model_inputs, model_origin, slim_graphs
    from geomer.train.executors import run_tasks
    from geomer.train.pool import pool_run

    progress = config.progress if progress is None else progress
    class_names = tuple(str(name) for name in class_names)
    if not graphs:
        raise GeomerError("no samples to train on")
    if face_graph is None:
        from geomer.graph import FaceGraph

        face_graph = FaceGraph()
    check_model_inputs(config.model, graphs[0])
    labels = [int(g.y.view(-1)[0]) for g in graphs]
    if min(labels) < 0 or max(labels) >= len(class_names):
        raise GeomerError(f"labels must lie in 0..{len(class_names) - 1} ({', '.join(class_names)})")
    keys = [sample_key(g) for g in graphs]
    if len(set(keys)) != len(keys):
        duplicated = sorted({k for k in keys if keys.count(k) > 1})[0]
        raise GeomerError(f"sample {duplicated} appears more than once")
    fold_list = [_as_fold(f) for f in (folds if folds is not None else loso_folds(graphs, class_names))]
    check_folds(fold_list, graphs)
    names = [fold_dir_name(f.name) for f in fold_list]
    if len(set(names)) != len(names):
        raise GeomerError("fold names collide once made into folder names")

    out_dir = Path(out_dir)
    component_names = tuple(str(c) for c in getattr(face_graph, "component_names", ()))
    run_config = {
        "geomer_version": __version__,
        "model": config.model,
        "cfg": config.cfg,
        "dataset": dataset,
        "classes": list(class_names),
        "component_names": list(component_names),
        "graph": graph_record(face_graph),
        "feature_settings": feature_settings or {},
        "seeds": list(config.seeds),
        "epochs": config.epochs,
        "settings": config.result_settings(),
        "execution": {"jobs": config.jobs, "executor": config.executor},
        "leaky": bool(config.leaky_best_epoch),
        "num_samples": len(graphs),
        "folds": names,
        "init": None if init is None else str(init),
        "pretraining": pretraining,
        **(extra or {}),
    }
    _open_run_dir(out_dir, run_config)
    from geomer.atomic import atomic_save_npy
    from geomer.relations import input_baseline

    if all(getattr(g, "flow_stats", None) is not None for g in graphs):
        atomic_save_npy(out_dir / "baseline_relations.npy",
                        input_baseline(graphs, len(class_names), len(component_names)))

    device = _resolve_device(config)
    context = FitContext(
        graphs=slim_graphs(config.model, graphs),
        class_names=class_names,
        config=config,
        face_graph=face_graph,
        model_origin=model_origin(config.model),
        component_names=component_names,
        feature_settings=feature_settings or {},
        init=None if init is None else str(init),
        device=device,
    )
    tasks, skipped = [], 0
    for seed in config.seeds:
        for fold, name in zip(fold_list, names):
            fold_out = out_dir / f"seed-{seed}" / name
            if (fold_out / "predictions.csv").is_file():
                skipped += 1
                continue
            tasks.append(FoldTask(name, seed, fold.train, fold.test, str(fold_out)))
    trained = run_tasks(tasks, context, progress=progress)
    metrics = pool_run(out_dir)
    return RunResult(out_dir=out_dir, metrics=metrics, trained=trained, skipped=skipped)


def _resolve_device(config: TrainConfig) -> str:
    import torch

    if config.device == "auto":
        return "cuda" if torch.cuda.is_available() and config.jobs == 1 else "cpu"
    return config.device


# Settings that may change between a run and its resumption without changing any result.
_RESUMABLE_KEYS = ("execution",)


def _open_run_dir(out_dir: Path, run_config: dict) -> None:
    """Create the run directory, or check that an existing one holds the same run."""
    path = out_dir / "config.json"
    if path.is_file():
        existing = read_run_config(out_dir)
        wanted = json.loads(json.dumps(run_config))
        differing = sorted(
            key
            for key in set(existing) | set(wanted)
            if key not in _RESUMABLE_KEYS and existing.get(key) != wanted.get(key)
        )
        if differing:
            raise GeomerError(
                f"{path}: the run directory holds a different run (differs in "
                f"{', '.join(differing)}); choose another --out"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(run_config, indent=2, sort_keys=True) + "\n")


def read_run_config(run_dir: str | Path) -> dict:
    """``config.json`` of a run directory; GeomerError if missing, broken or incompatible."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise GeomerError(f"{path}: missing; not a geomer run directory")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise GeomerError(f"{path}: unreadable ({error})") from None
    version = str(config.get("geomer_version"))
    if not compatible_version(version):
        raise GeomerError(
            f"{path}: a run of geomer {version}, incompatible with geomer {__version__}"
        )
    return config
