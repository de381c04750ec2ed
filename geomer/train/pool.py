"""Pooling a run directory's per-fold predictions into ``metrics.json`` and ``relations.npy``.

For each seed, the predictions of ALL folds are concatenated and UF1, UAR and accuracy are computed
once on them (docs/architecture.md, "Evaluation"); the headline is the mean ± std of these pooled
values over the seeds. Per-dataset parts (composites) are the pooled predictions restricted to one
dataset. ``relations.npy`` is the mean relation matrix of the test clips of each TRUE class, over
all folds and seeds: [C, K, K] (NaN for a class without clips).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from geomer.errors import GeomerError
from geomer.rundir import (
    SEED_PREFIX, RunDir, check_subject_datasets, class_averaged_relations, read_json_object, samples_fingerprint,
)
from geomer.bootstrap import BOOTSTRAP_RESAMPLES, MIN_BOOTSTRAP_SUBJECTS
from geomer.train.metrics import classification_metrics, mean_std, subject_bootstrap_intervals
from geomer.version import __version__

HEADLINE = ("uf1", "uar", "acc")


def pool_run(run_dir: str | Path | RunDir) -> dict[str, Any]:
    """(Re)compute ``metrics.json`` and ``relations.npy`` of a finished run directory; returns
    the metrics (JSON-ready, as written).

    Raises GeomerError when the run is incomplete (a fold without ``predictions.csv``) or was
    written by an incompatible geomer version.
    """
    run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    config = run_dir.require_engine_config()
    class_names = [str(c) for c in config["classes"]]
    components = len(config["component_names"]) if "component_names" in config else None
    index = {name: i for i, name in enumerate(class_names)}
    per_seed: dict[str, dict] = {}
    datasets_of: dict[str, tuple[str, Path]] = {}  # every seed and fold agrees on a subject's dataset
    all_relations, all_true = [], []
    all_occlusion: list[np.ndarray] | None = []  # None once a fold lacks them (trained before they existed)
    pooled_by_seed = {}
    for seed in config["seeds"]:
        parts = []
        tested: set[str] = set()
        rows: list[tuple[str, ...]] = []  # (sample, subject, dataset, true class) as the run recorded them
        for fold_name in config["folds"]:
            fold = run_dir.fold(seed, fold_name)
            frame, relations, occlusion = fold.read_results(class_names, components,
                                                            occlusion=all_occlusion is not None)
            fold.check_tested_once(frame, tested)
            check_subject_datasets(frame, fold.predictions_path, datasets_of)
            true = frame["true"].map(index).to_numpy(dtype=np.int64)
            rows.extend(zip(*(frame[column].astype(str) for column in ("sample", "subject", "dataset", "true"))))
            all_relations.append(relations)
            if all_occlusion is not None and occlusion is not None:
                all_occlusion.append(occlusion)
            else:
                all_occlusion = None
            all_true.append(true)
            parts.append({
                "true": true,
                "predicted": frame["predicted"].map(index).to_numpy(dtype=np.int64),
                "dataset": frame["dataset"].astype(str).to_numpy(dtype=object),
                "subject": frame["subject"].astype(str).to_numpy(dtype=object),
            })
        pooled = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        expected = config.get("num_samples")
        if expected is not None and len(pooled["true"]) != expected:  # a row or fold edited away
            raise GeomerError(f"{run_dir.path / f'{SEED_PREFIX}{seed}'}: its folds' predictions hold {len(pooled['true'])} "
                              f"samples, the run has {expected} ({run_dir.config_path.name})")
        recorded = config.get("tested_samples")  # runs of geomer before 0.2.19 have none
        if recorded is not None and samples_fingerprint(sorted(rows)) != recorded:
            raise GeomerError(f"{run_dir.path / f'{SEED_PREFIX}{seed}'}: its folds' predictions are not of the run's "
                              f"clips (a sample, subject, dataset or true class differs from the record in "
                              f"{run_dir.config_path.name}; train again to redo an edited fold)")
        pooled_by_seed[str(seed)] = pooled
        per_seed[str(seed)] = _seed_metrics(pooled, class_names)

    metrics: dict[str, Any] = {
        "geomer_version": __version__,
        "run_geomer_version": config["geomer_version"],
        "model": config["model"],
        "dataset": config.get("dataset", ""),
        "classes": class_names,
        "seeds": list(config["seeds"]),
        "num_samples": int(len(next(iter(pooled_by_seed.values()))["true"])),
        "num_folds": len(config["folds"]),
        "pooling": "predictions pooled over all folds, per seed; mean ± std over seeds",
        "leaky": bool(config.get("leaky", False)),
        "settings": config.get("settings", {}),
        "cfg": config.get("cfg", {}),
        "feature_settings": config.get("feature_settings", {}),
        "init": config.get("init"),
        "pretraining": _pretraining(run_dir, config),
    }
    for name in HEADLINE:
        mean, std = mean_std([per_seed[s][name] for s in per_seed])
        metrics[name], metrics[f"{name}_std"] = mean, std
    intervals = subject_bootstrap_intervals(list(pooled_by_seed.values()), len(class_names))
    for name in HEADLINE:
        metrics[f"{name}_interval"] = list(intervals[name])
    metrics["interval"] = (f"95 %: the figure ± 1.96 standard deviations of its {BOOTSTRAP_RESAMPLES} resamples of "
                           "the test subjects (drawn within their datasets; a subject's predictions of every seed "
                           f"together); null with fewer than {MIN_BOOTSTRAP_SUBJECTS} subjects")
    metrics["per_class"] = {
        name: {
            measure: _nan_mean_std([per_seed[s]["per_class"][name][measure] for s in per_seed])
            for measure in ("f1", "recall")
        }
        for name in class_names
    }
    metrics["confusion"] = np.sum([per_seed[s]["confusion"] for s in per_seed], axis=0).tolist()
    datasets = sorted({d for s in per_seed for d in per_seed[s]["per_dataset"]})
    metrics["per_dataset"] = {
        dataset: {
            key: value
            for name in HEADLINE
            for key, value in zip(
                (name, f"{name}_std"),
                mean_std([per_seed[s]["per_dataset"][dataset][name] for s in per_seed]),
            )
        }
        for dataset in datasets
    }
    metrics["per_seed"] = per_seed

    metrics = _finite(metrics)
    relations = class_averaged_relations(np.concatenate(all_relations), np.concatenate(all_true), len(class_names))
    occlusion = (
        class_averaged_relations(np.concatenate(all_occlusion), np.concatenate(all_true), len(class_names))
        if all_occlusion else None
    )
    # the run's own baseline is read by every summary after pooling: a damaged one fails here,
    # before metrics.json is rewritten
    baseline = run_dir.load_relations("baseline_relations", components=len(config.get("component_names") or []) or None)
    if baseline is not None and len(baseline) != len(class_names):
        raise GeomerError(f"{run_dir.relations_path('baseline_relations')}: {len(baseline)} classes, "
                          f"config.json names {len(class_names)}")
    with run_dir.lock():
        run_dir.write_metrics(metrics)
        run_dir.save_relations(relations)
        if occlusion is not None:
            run_dir.save_relations(occlusion, kind="occlusion_relations")
        else:  # a fold without them (trained before they existed): an older run-level file is stale
            run_dir.relations_path("occlusion_relations").unlink(missing_ok=True)
    return json.loads(json.dumps(metrics))


def paired_seeds(run, other) -> tuple[list[dict], list[dict]]:
    """Two read runs' (:func:`geomer.rundir.load_run`) predictions per seed, as
    :func:`~geomer.train.metrics.subject_bootstrap_intervals` takes them (``run``'s, then
    ``against=`` ``other``'s), after checking that both are finished and were tested on the same
    clips of the same subjects with the same seeds and classes: a one-line GeomerError naming the
    run that differs, and in what, otherwise.

    Shapes: → two lists, one dict per seed of ``run.config["seeds"]`` (true, predicted: [n] int
    in ``run``'s class order; subject, dataset: [n]).
    """
    for which in (run, other):
        if which.unfinished:
            raise GeomerError(f"{which.path}: the run is incomplete ({len(which.unfinished)} fold(s) unfinished, "
                              f"e.g. {which.unfinished[0]}); finish it with geomer train first")
    if set(other.classes) != set(run.classes):
        raise GeomerError(f"{other.path}: classes {', '.join(other.classes)} differ from {run.path}'s "
                          f"({', '.join(run.classes)}); a paired comparison needs one class set")
    seeds = [str(seed) for seed in run.config["seeds"]]
    if sorted(str(seed) for seed in other.config["seeds"]) != sorted(seeds):
        raise GeomerError(f"{other.path}: seeds {', '.join(map(str, other.config['seeds']))} differ from "
                          f"{run.path}'s ({', '.join(seeds)}); a paired comparison needs the same seeds")
    index = {name: i for i, name in enumerate(run.classes)}
    paired: tuple[list[dict], list[dict]] = ([], [])
    for seed in seeds:
        tested = []
        for which, kept in zip((run, other), paired):
            rows = which.predictions[which.predictions["seed"] == seed]
            tested.append(set(zip(rows["sample"], rows["subject"])))
            kept.append({"true": rows["true"].map(index).to_numpy(np.int64),
                         "predicted": rows["predicted"].map(index).to_numpy(np.int64),
                         "subject": rows["subject"].astype(str).to_numpy(dtype=object),
                         "dataset": rows["dataset"].astype(str).to_numpy(dtype=object)})
        if tested[0] != tested[1]:
            sample, subject = sorted(tested[0] ^ tested[1])[0]
            raise GeomerError(f"{other.path}: seed {seed} was not tested on the same clips of the same subjects as "
                              f"{run.path} (e.g. {sample} of {subject} is in one run only)")
    return paired


def _seed_metrics(pooled: dict[str, np.ndarray], class_names: list[str]) -> dict[str, Any]:
    num_classes = len(class_names)
    result = classification_metrics(pooled["true"], pooled["predicted"], num_classes).to_dict(
        class_names
    )
    result["per_dataset"] = {}
    for dataset in sorted(set(pooled["dataset"].tolist())):
        if not dataset:
            continue
        mask = pooled["dataset"] == dataset
        part = classification_metrics(pooled["true"][mask], pooled["predicted"][mask], num_classes)
        result["per_dataset"][dataset] = {"uf1": part.uf1, "uar": part.uar, "acc": part.acc,
                                          "count": part.count}
    return result


def _nan_mean_std(values: list[float | None]) -> dict[str, float | None]:
    defined = [v for v in values if v is not None]
    mean, std = mean_std(defined)
    return {"mean": mean, "std": std}


def _pretraining(run_dir: RunDir, config: dict) -> dict | None:
    """The run's pretraining (None: none; external: the checkpoint's record); per-fold runs add
    each fold's record (``seed-<s>/<fold>``: steps, pairs, subjects) under ``folds``."""
    from geomer.train.fit import FOLD_PRETRAINING

    record = config.get("pretraining")
    if not record or record.get("mode") != "per-fold":
        return record
    folds = {}
    for fold in run_dir.folds():
        path = fold.path / FOLD_PRETRAINING
        folds[f"seed-{fold.seed}/{fold.name}"] = read_json_object(path) if path.is_file() else None
    return {**record, "folds": folds}


def _finite(value: Any) -> Any:
    """JSON has no NaN: undefined values become null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, np.floating | np.integer):
        return _finite(value.item())
    return value
