"""Orchestration of a whole evaluation: graphs → protocol folds → fold × seed tasks → pooled metrics.

:func:`run_loso` is the engine's entry point; it needs only a list of PyG ``Data`` (with ``y`` and
the meta strings ``clip``, ``subject``, ``dataset``), the class names and a :class:`TrainConfig`.
:func:`geomer.train.pipeline.train_dataset` puts a dataset (or the synthetic default) in front.
The files it leaves are described and written by :mod:`geomer.rundir`.

A run directory resumes: a fold whose predictions exist is not trained again, provided
``config.json`` describes the same run (otherwise GeomerError: use another ``--out``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geomer.data.protocols import Fold, check_folds, fold_name, loso_folds
from geomer.errors import GeomerError
from geomer.rundir import FoldDir, RunDir, samples_fingerprint
from geomer.train.config import TrainConfig
from geomer.train.executors import executor_session, run_tasks
from geomer.train.fit import FitContext, FoldSummary, FoldTask, sample_key, slim_graphs
from geomer.train.pool import pool_run


@dataclass(frozen=True)
class RunResult:
    """What :func:`run_loso` did: the run directory (its config loaded), the pooled metrics, the
    folds trained now and the number of finished folds kept."""

    run_dir: RunDir
    metrics: dict[str, Any]
    trained: list[FoldSummary]
    skipped: int

    @property
    def out_dir(self) -> Path:
        return self.run_dir.path

    @property
    def config(self) -> dict:
        return self.run_dir.config


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
    fold_pretraining: Any = None,
    extra: dict | None = None,
    sample_details: Sequence[Sequence[Any]] | None = None,
    progress: bool | None = None,
) -> RunResult:
    """Train and test ``config.model`` on every fold × seed and pool the predictions.

    ``folds`` default to LOSO over each graph's ``subject``; any objects with ``name``,
    ``train`` and ``test`` (index lists) work, e.g. a ``geomer.data.protocols`` protocol's folds.
    ``face_graph`` defaults to ``FaceGraph()`` (k7 over 68 points). ``init``: pretrained weights
    loaded into every fold's model before fine-tuning (``pretraining`` describes them for
    metrics.json; the caller checks that they never saw a test subject). ``fold_pretraining``
    (:class:`geomer.train.pretrain.FoldPretraining`, exclusive with ``init``): pretrain each
    fold × seed on its training clips' frames first. ``sample_details``: per
    sample, what else identifies it (onset, apex, offset, source), fingerprinted with the keys and
    labels into config.json so a changed dataset is never resumed into old folds.

    Everything is checked (folds, model inputs, model settings, the run directory) before anything
    is written; one process writes a run directory at a time.
    """
    from geomer.models import check_inputs, get_spec

    progress = config.progress if progress is None else progress
    class_names = tuple(str(name) for name in class_names)
    if not graphs:
        raise GeomerError("no samples to train on")
    if face_graph is None:
        from geomer.graph import FaceGraph

        face_graph = FaceGraph()
    spec = get_spec(config.model)
    labels = [int(g.y.view(-1)[0]) for g in graphs]
    if min(labels) < 0 or max(labels) >= len(class_names):
        raise GeomerError(f"labels must lie in 0..{len(class_names) - 1} ({', '.join(class_names)})")
    keys = [sample_key(g) for g in graphs]
    if len(set(keys)) != len(keys):
        duplicated = sorted({k for k in keys if keys.count(k) > 1})[0]
        raise GeomerError(f"sample {duplicated} appears more than once")
    subjects = [str(g.subject) for g in graphs]
    fold_list = [_as_fold(f) for f in (folds if folds is not None else loso_folds(subjects))]
    check_folds(fold_list, subjects)
    names = [fold_name(f.name) for f in fold_list]

    if fold_pretraining is not None:
        if init is not None:
            raise GeomerError("give either pretrained weights (--init) or per-fold pretraining (--pretrain per-fold), not both")
        if len(fold_pretraining.pairs) != len(graphs):
            raise GeomerError(f"per-fold pretraining has frame pairs of {len(fold_pretraining.pairs)} clips, the run {len(graphs)}")
        pretraining = fold_pretraining.record()
    check_inputs(config.model, graphs[0])
    check_model_settings(config, len(class_names), face_graph, feature_settings, init=init)
    records = [
        (key, g.subject, getattr(g, "dataset", ""), class_names[label], *(sample_details[i] if sample_details else ()))
        for i, (key, g, label) in enumerate(zip(keys, graphs, labels))
    ]
    component_names = tuple(str(c) for c in face_graph.component_names)
    run_config = {
        **config.run_record(),
        "dataset": dataset,
        "classes": list(class_names),
        "component_names": list(component_names),
        "graph": face_graph.to_record(),
        "feature_settings": feature_settings or {},
        "execution": {"jobs": config.jobs, "executor": config.executor},
        "leaky": bool(config.leaky_best_epoch),
        "num_samples": len(graphs),
        "samples": samples_fingerprint(records),
        # what each seed's predictions must hold, read back from them by pool_run (sorted: the
        # folds are read in their own order)
        "tested_samples": samples_fingerprint(sorted(tuple(str(v) for v in record[:4]) for record in records)),
        "folds": names,
        "init": None if init is None else str(init),
        "pretraining": pretraining,
        **(extra or {}),
    }
    context = FitContext(
        graphs=slim_graphs(spec.inputs, graphs),
        class_names=class_names,
        config=config,
        face_graph=face_graph,
        component_names=component_names,
        feature_settings=feature_settings or {},
        init=None if init is None else str(init),
        pretraining=fold_pretraining,
        device=_resolve_device(config),
        model_origin=spec.origin,
    )
    run_dir = RunDir(out_dir)
    # Ray is reached before the run directory is touched: an unreachable cluster writes nothing
    with executor_session(config), run_dir.lock():
        run_dir.check_result_paths(run_dir.fold(seed, name) for seed in config.seeds for name in names)
        run_dir.open(run_config)
        if all(getattr(g, "flow_stats", None) is not None for g in graphs):
            from geomer.relations import input_baseline

            run_dir.save_relations(input_baseline(graphs, len(class_names), len(component_names)),
                                   kind="baseline_relations")
        tasks, skipped = [], 0
        for seed in config.seeds:
            for fold, name in zip(fold_list, names):
                fold_dir = run_dir.fold(seed, name)
                if fold_dir.has_predictions():
                    expected = ([keys[i] for i in fold.test], [class_names[labels[i]] for i in fold.test],
                                [str(graphs[i].subject) for i in fold.test],
                                [str(getattr(graphs[i], "dataset", "")) for i in fold.test])
                    problem = _finished_fold_problem(fold_dir, context, expected)
                    if problem is None:
                        skipped += 1
                        continue
                    print(f"geomer: {problem}; training fold {name} (seed {seed}) again", file=sys.stderr)
                tasks.append(FoldTask(name, seed, fold.train, fold.test, fold_dir))
        trained = run_tasks(tasks, context, progress=progress)
        metrics = pool_run(run_dir)
    return RunResult(run_dir=run_dir, metrics=metrics, trained=trained, skipped=skipped)


def check_model_settings(
    config: TrainConfig, num_classes: int, face_graph, feature_settings: dict | None = None,
    init: str | Path | None = None,
) -> None:
    """Build ``config.model`` once with its settings on features of ``feature_settings`` (a
    :meth:`FeatureSettings.to_dict`; the defaults when None), and load the pretrained weights
    ``init`` into it: a bad setting or checkpoint is a one-line GeomerError before anything is
    written."""
    from geomer.features.types import FeatureSettings
    from geomer.models import create
    from geomer.train.augment import mirror_components, parse_recipe

    recipe = parse_recipe(config.augment)
    if recipe.flip or recipe.mirror:
        mirror_components(face_graph)  # the mirror needs a mirror-symmetric graph
    features = FeatureSettings.from_dict(feature_settings or {})
    model = create(config.model, num_classes, face_graph, features, **config.cfg)  # GeomerError for bad settings
    if init is not None:
        from geomer.models.pretrained import load_pretrained

        load_pretrained(model, init)


def _short(value, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finished_fold_problem(fold: FoldDir, context: FitContext, expected: tuple[list[str], ...]) -> str | None:
    """None when every file of a finished fold reads back cleanly, its checkpoint is this fold's
    (fold, seed, test subjects, model settings, graph and feature settings recorded in it, weights
    that load into the model) and its predictions are of the ``expected`` (test sample keys, true
    class names, subjects, datasets), else what is wrong with it."""
    from geomer.train.checkpoint import load_checkpoint

    class_names, components = context.class_names, len(context.component_names)
    try:
        checkpoint = load_checkpoint(fold.checkpoint_path, model=context.config.model, classes=class_names)
        for what, recorded, own in (("fold", checkpoint.extra.get("fold"), fold.name),
                                    ("seed", checkpoint.extra.get("seed"), int(fold.seed)),
                                    ("test subjects", checkpoint.extra.get("test_subjects"), sorted(set(expected[2]))),
                                    ("model settings", checkpoint.cfg, context.config.cfg),
                                    ("graph", checkpoint.graph, context.face_graph.to_record()),
                                    ("feature settings", checkpoint.feature_settings, context.feature_settings)):
            if recorded != own:
                return f"{fold.checkpoint_path}: the checkpoint of {what} {_short(recorded)}, not {_short(own)}"
        try:
            checkpoint.build_model()  # weights of another size or with keys missing do not load
        except GeomerError as error:
            return f"{fold.checkpoint_path}: {error}"
        # the epoch count catches a history cut short (checkpoints written before it was recorded
        # have none: their history is checked as before)
        frame, _, occluded = fold.read_results(class_names, components, epochs=checkpoint.extra.get("epochs"))
        fold.check_samples(frame, *expected)
        # the engine writes both for every fold it trains: without them the fold is unfinished
        if occluded is None:
            return f"{fold.relations_path('occlusion_relations')}: missing"
        if not fold.history_path.is_file():
            return f"{fold.history_path}: missing"
    except GeomerError as error:
        return str(error)
    return None


def _resolve_device(config: TrainConfig) -> str:
    import torch

    if config.device == "auto":
        return "cuda" if torch.cuda.is_available() and config.jobs == 1 else "cpu"
    return config.device
