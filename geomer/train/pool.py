"""Pooling a run directory's per-fold predictions into ``metrics.json`` and ``relations.npy``.

For each seed, the predictions of ALL folds are concatenated and UF1, UAR and accuracy are computed
once on them (DESIGN.md section 6); the headline is the mean ± std of these pooled values over the
seeds. Per-dataset parts (composites) are the pooled predictions restricted to one dataset.
``relations.npy`` is the mean relation matrix of the test clips of each TRUE class, over all folds
and seeds: [C, K, K] (NaN for a class without clips).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from geomer import __version__
from geomer.errors import GeomerError
from geomer.atomic import atomic_save_npy, atomic_write_text
from geomer.train.fit import predictions_header
from geomer.train.metrics import classification_metrics, mean_std

HEADLINE = ("uf1", "uar", "acc")


def read_predictions(path: Path, class_names: list[str]) -> dict[str, np.ndarray]:
    """One ``predictions.csv``: sample/subject/dataset strings, true/predicted indices, probabilities."""
    index = {name: i for i, name in enumerate(class_names)}
    with open(path, newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    if not rows or rows[0] != predictions_header(class_names):
        raise GeomerError(f"{path}: header does not match the run's classes {class_names}")
    body = rows[1:]
    try:
        return {
            "sample": np.array([r[0] for r in body], dtype=object),
            "subject": np.array([r[1] for r in body], dtype=object),
            "dataset": np.array([r[2] for r in body], dtype=object),
            "true": np.array([index[r[3]] for r in body], dtype=np.int64),
            "predicted": np.array([index[r[4]] for r in body], dtype=np.int64),
            "probabilities": np.array([[float(v) for v in r[5:]] for r in body]).reshape(
                len(body), len(class_names)
            ),
        }
    except (KeyError, ValueError, IndexError) as error:
        raise GeomerError(f"{path}: malformed row ({error})") from None


def pool_run(run_dir: str | Path, *, figures: bool = True) -> dict[str, Any]:
    """(Re)compute ``metrics.json`` and ``relations.npy`` of a finished run directory.

    Raises GeomerError when the run is incomplete (a fold without ``predictions.csv``) or was
    written by an incompatible geomer version.
    """
    from geomer.train.run import read_run_config

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    class_names = list(config["classes"])
    num_classes = len(class_names)
    per_seed: dict[str, dict] = {}
    relation_sums, relation_counts = None, np.zeros(num_classes)
    occlusion_sums = None  # stays None unless every fold has occlusion_relations.npy
    occlusion_complete = True
    pooled_by_seed = {}
    for seed in config["seeds"]:
        parts = []
        for fold in config["folds"]:
            fold_dir = run_dir / f"seed-{seed}" / fold
            path = fold_dir / "predictions.csv"
            if not path.is_file():
                raise GeomerError(f"{path}: missing; the run is incomplete (train again to resume)")
            predictions = read_predictions(path, class_names)
            relations = np.load(fold_dir / "relations.npy")
            if len(relations) != len(predictions["true"]):
                raise GeomerError(f"{fold_dir / 'relations.npy'}: {len(relations)} rows, "
                                  f"{len(predictions['true'])} predictions")
            if relation_sums is None:
                relation_sums = np.zeros((num_classes, *relations.shape[1:]), dtype=np.float64)
            np.add.at(relation_sums, predictions["true"], relations.astype(np.float64))
            relation_counts += np.bincount(predictions["true"], minlength=num_classes)
            occlusion_path = fold_dir / "occlusion_relations.npy"
            if occlusion_complete and occlusion_path.is_file():
                occlusion = np.load(occlusion_path)
                if occlusion.shape != relations.shape:
                    raise GeomerError(f"{occlusion_path}: shape {list(occlusion.shape)}, relations.npy has "
                                      f"{list(relations.shape)}")
                if occlusion_sums is None:
                    occlusion_sums = np.zeros_like(relation_sums)
                np.add.at(occlusion_sums, predictions["true"], occlusion.astype(np.float64))
            else:
                occlusion_complete = False  # a fold trained before occlusion relations existed
            parts.append(predictions)
        pooled = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
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
        "pretraining": config.get("pretraining"),
    }
    for name in HEADLINE:
        mean, std = mean_std([per_seed[s][name] for s in per_seed])
        metrics[name], metrics[f"{name}_std"] = mean, std
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

    atomic_write_text(run_dir / "metrics.json", json.dumps(_finite(metrics), indent=2) + "\n")
    if relation_sums is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            averaged = relation_sums / relation_counts[:, None, None]
        averaged[relation_counts == 0] = np.nan
        atomic_save_npy(run_dir / "relations.npy", averaged.astype(np.float32))
        if occlusion_complete and occlusion_sums is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                occlusion_mean = occlusion_sums / relation_counts[:, None, None]
            occlusion_mean[relation_counts == 0] = np.nan
            atomic_save_npy(run_dir / "occlusion_relations.npy", occlusion_mean.astype(np.float32))
        if figures:
            _write_figures(run_dir, averaged, np.array(metrics["confusion"]), config)
    return json.loads(json.dumps(_finite(metrics)))


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


def _write_figures(run_dir: Path, relations: np.ndarray, confusion: np.ndarray, config) -> None:
    """Relations per class, the confusion matrix and training curves via geomer.viz, if present."""
    try:
        import geomer.viz as viz
    except ImportError:
        return
    figures = run_dir / "figures"
    classes = list(config["classes"])
    components = list(config.get("component_names") or [])
    panel = getattr(viz, "plot_relation_panel", None)
    confusion_plot = getattr(viz, "plot_confusion_matrix", None)
    if panel is not None and components:
        def by_class(array):
            return {name: array[i] for i, name in enumerate(classes) if np.isfinite(array[i]).all()}

        matrices = by_class(relations)
        if matrices:
            rows = {f"{config['model']} intrinsic": matrices}
            baseline = None
            if (run_dir / "occlusion_relations.npy").is_file():
                rows[f"{config['model']} occlusion"] = by_class(np.load(run_dir / "occlusion_relations.npy"))
            if (run_dir / "baseline_relations.npy").is_file():
                baseline = by_class(np.load(run_dir / "baseline_relations.npy"))
            truth = _synthetic_truth(config, components, classes)
            figure = panel(rows, components, baseline=baseline, ground_truth=truth, title="class-averaged relations")
            viz.save_figure(figure, figures / "relations.png")
    if confusion_plot is not None:
        viz.save_figure(confusion_plot(confusion, classes), figures / "confusion.png")
    curves = getattr(viz, "plot_training_curves", None)
    histories = sorted(run_dir.glob("seed-*/*/history.csv"))
    if curves is not None and histories:
        viz.save_figure(curves(histories, title="training"), figures / "training.png")


def _synthetic_truth(config, components, classes) -> dict | None:
    """The relevance ground truth by class when the run's dataset is synthetic (its root holds
    ``ground_truth.json`` with the run's components and classes), else None."""
    root = config.get("root")
    path = Path(root) / "ground_truth.json" if root else None
    if path is None or not path.is_file():
        return None
    from geomer.relations import load_ground_truth

    truth = load_ground_truth(path)
    if list(truth.component_names) != list(components) or not set(classes) <= set(truth.classes):
        return None
    return {name: truth.relations[truth.classes.index(name)] for name in classes}


def format_table(metrics: dict[str, Any]) -> str:
    """The results table printed by ``geomer train`` and ``geomer evaluate``."""
    seeds = metrics["seeds"]
    lines = [
        f"{metrics['model']} on {metrics.get('dataset') or 'the given graphs'}: "
        f"{metrics['num_samples']} clips, {metrics['num_folds']} folds, "
        f"seeds {', '.join(map(str, seeds))}"
        + ("  [LEAKY: best test epoch]" if metrics.get("leaky") else ""),
        "",
        f"{'':<16}{'UF1':>20}{'UAR':>20}{'acc':>20}",
        f"{'pooled':<16}" + "".join(_pm(metrics[n], metrics[f"{n}_std"]) for n in HEADLINE),
    ]
    for dataset, part in metrics.get("per_dataset", {}).items():
        if len(metrics["per_dataset"]) > 1:
            lines.append(f"{dataset:<16}" + "".join(_pm(part[n], part[f"{n}_std"]) for n in HEADLINE))
    lines += ["", f"{'class':<16}{'F1':>20}{'recall':>20}"]
    for name, values in metrics["per_class"].items():
        lines.append(
            f"{name:<16}"
            + _pm(values["f1"]["mean"], values["f1"]["std"])
            + _pm(values["recall"]["mean"], values["recall"]["std"])
        )
    return "\n".join(lines)


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return f"{'n/a':>20}"
    return f"{mean:.4f} ± {std or 0:.4f}".rjust(20)
