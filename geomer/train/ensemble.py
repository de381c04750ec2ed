"""Ensembles of finished runs: average the members' fold probabilities, then pool like any run.

An ensemble is made of runs evaluated on the same samples, classes, folds and seeds (e.g. several
models, or one model under several settings, each trained by ``geomer train`` on one dataset and
protocol). For every seed and fold the members' class probabilities are averaged clip by clip
(soft voting, equal weights) and the prediction is the class of the highest mean probability. The
ensemble is written as a run directory of its own (:mod:`geomer.rundir`): ``config.json`` (model
``"ensemble"``, the members, each with the trained runs it stands for: their paths and a
fingerprint of their predictions, so that no trained run enters an ensemble twice), per seed and fold ``predictions.csv`` and ``relations.npy``, and is
then pooled by :func:`geomer.train.pool.pool_run` (UF1, UAR, accuracy, per-dataset parts,
``metrics.json``), so ``geomer evaluate`` and ``geomer plot`` read it like any run.

Relations: an ensemble has no mechanism of its own; its intrinsic ``relations.npy`` per fold is the
members' mean, and ``occlusion_relations.npy`` (when every member has it) the mean of the members'
occlusion relations — not the occlusion of the averaged model (that would need the members'
models re-run). ``baseline_relations.npy`` is the members' input-only baseline (the same samples).

Leak-freedom carries over: ``leaky`` is true when any member is leaky. Nothing is selected on a
test fold: the members are weighed equally.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geomer.errors import GeomerError
from geomer.rundir import RunDir

#: The config keys every member must share, and what the refusal calls them.
SHARED = {"classes": "classes", "component_names": "components", "samples": "samples",
          "num_samples": "samples", "folds": "folds", "seeds": "seeds"}


def check_members(members: Sequence[RunDir]) -> list[dict]:
    """The members' configs, after checking that they can be ensembled (one-line GeomerError
    naming the first run that differs from the first member, and in what)."""
    if len(members) < 2:
        raise GeomerError("an ensemble needs at least two run directories")
    seen = set()
    for member in members:
        if member.path.resolve() in seen:
            raise GeomerError(f"{member.path}: given twice")
        seen.add(member.path.resolve())
    configs = [member.require_engine_config() for member in members]
    first = configs[0]
    for member, config in zip(members[1:], configs[1:]):
        for key, what in SHARED.items():
            if config.get(key) != first.get(key):
                raise GeomerError(
                    f"{member.config_path}: its {what} differ from those of {members[0].path} "
                    f"({key}); an ensemble needs runs of the same samples, classes, folds and seeds"
                )
    return configs


def check_counted_once(members: Sequence[RunDir], configs: Sequence[dict]) -> list[list[dict]]:
    """The trained runs each member stands for (:func:`_trained_runs`), after checking that no
    trained run is in two members: it would count twice in the equal-weight mean. Call it after
    the members' predictions were read and checked."""
    trained = [_trained_runs(member.path, config) for member, config in zip(members, configs)]
    counted: dict[str, tuple[str, Path]] = {}  # fingerprint → (the run's path, the member bringing it)
    for member, runs in zip(members, trained):
        for run in runs:
            if run["fingerprint"] in counted:
                where, other = counted[run["fingerprint"]]
                raise GeomerError(f"{member.path}: its trained run {run['path']} has the predictions of "
                                  f"{where} in {other}; it would count twice")
            counted[run["fingerprint"]] = (run["path"], member.path)
    return trained


def _trained_runs(path: Path, config: dict, seen: frozenset[Path] = frozenset()) -> list[dict]:
    """The trained runs a run stands for, each ``{"path", "fingerprint"}`` (a sha256 of its
    predictions files): itself, or an ensemble's members' (recorded in its config.json when it
    was made; an ensemble made before 0.2.15 recorded paths only, which are followed while they
    lead to a readable run, ``seen`` ending an edited record that loops). Fingerprints, not
    paths, tell runs apart, because a copied or moved run is still the same run."""
    if config.get("model") != "ensemble":
        return [{"path": str(path.resolve()), "fingerprint": _fingerprint(path, config)}]
    if path in seen:
        return []
    runs = []
    members = config.get("members")
    for entry in members if isinstance(members, list) else []:
        recorded = entry.get("trained") if isinstance(entry, dict) else None
        if isinstance(recorded, list):
            runs += [run for run in recorded if isinstance(run, dict) and isinstance(run.get("fingerprint"), str)
                     and isinstance(run.get("path"), str)]
        elif isinstance(entry, dict) and isinstance(entry.get("path"), str):
            try:
                runs += _trained_runs(Path(entry["path"]), RunDir(entry["path"]).require_engine_config(),
                                      seen | {path})
            except (GeomerError, OSError):  # moved or removed since, or no longer readable: unknown
                continue
    return runs or [{"path": str(path.resolve()), "fingerprint": _fingerprint(path, config)}]


def _fingerprint(path: Path, config: dict) -> str:
    """sha256 of a run's predictions files, seed by seed and fold by fold in its config's order."""
    run, digest = RunDir(path), hashlib.sha256()
    for seed in config["seeds"]:
        for name in config["folds"]:
            digest.update(run.fold(seed, name).predictions_path.read_bytes())
    return digest.hexdigest()


def build_ensemble(run_dirs: Sequence[str | Path], out: str | Path) -> tuple[RunDir, dict[str, Any]]:
    """Write the ensemble of ``run_dirs`` into ``out`` and pool it; returns (run dir, metrics).

    Everything is read and checked (configs, every fold's predictions and relations, the clips'
    order) before anything is written; ``out`` may not be one of the members.
    """
    from geomer.train.pool import pool_run

    members = [RunDir(path) for path in run_dirs]
    configs = check_members(members)
    target = RunDir(out)
    if target.path.resolve() in {member.path.resolve() for member in members}:
        raise GeomerError(f"{target.path}: the output is one of the ensembled runs; choose another --out")
    target.check_writable()
    first = configs[0]
    classes = [str(c) for c in first["classes"]]
    components = len(first["component_names"])

    folds = {}  # (seed, fold) → (frame of the first member, mean probabilities, relations by kind)
    for seed in first["seeds"]:
        for name in first["folds"]:
            folds[(seed, name)] = _average_fold([m.fold(seed, name) for m in members], classes, components)
    trained = check_counted_once(members, configs)

    config = {
        key: first[key]
        for key in ("dataset", "classes", "component_names", "graph", "feature_settings", "seeds", "folds",
                    "num_samples", "samples", "tested_samples", "protocol", "root")
        if key in first
    }
    config.update({
        "model": "ensemble",
        "members": [{"path": str(m.path.resolve()), "model": c.get("model"), "cfg": c.get("cfg", {}),
                     "leaky": bool(c.get("leaky", False)), "trained": runs}
                    for m, c, runs in zip(members, configs, trained)],
        "combination": "mean of the members' class probabilities (equal weights)",
        "leaky": any(bool(c.get("leaky", False)) for c in configs),
    })
    baseline = members[0].load_relations("baseline_relations", components=components)
    with target.lock():
        target.open(config)
        if baseline is not None:
            target.save_relations(baseline, kind="baseline_relations")
        for (seed, name), (frame, probabilities, relations) in folds.items():
            fold = target.fold(seed, name)
            fold.path.mkdir(parents=True, exist_ok=True)
            for kind, values in relations.items():
                fold.save_relations(values, kind=kind)
            index = {c: i for i, c in enumerate(classes)}
            fold.write_predictions(frame["sample"].tolist(), frame["subject"].tolist(), frame["dataset"].tolist(),
                                   frame["true"].map(index).tolist(), probabilities, classes)
        metrics = pool_run(target)
        metrics["members"] = config["members"]
        target.write_metrics(metrics)
    return target, metrics


def _average_fold(folds, classes: list[str], components: int):
    """(first member's predictions frame, mean probabilities [n, C], mean relations by kind) of
    one seed × fold over the members; GeomerError when their clips or labels differ."""
    probability_columns = [f"prob_{c}" for c in classes]
    frames, relations = [], {"relations": [], "occlusion_relations": []}
    for fold in folds:
        frame = fold.read_predictions(classes)  # probabilities checked there: numbers in [0, 1] summing to 1
        if frames and (frame["sample"].tolist() != frames[0]["sample"].tolist()
                       or frame["true"].tolist() != frames[0]["true"].tolist()):
            raise GeomerError(f"{fold.predictions_path}: its clips or labels differ from "
                              f"{folds[0].predictions_path}")
        frames.append(frame)
        relations["relations"].append(_checked_relations(fold, "relations", components, len(frame)))
        if relations["occlusion_relations"] is not None and fold.relations_path("occlusion_relations").is_file():
            relations["occlusion_relations"].append(
                _checked_relations(fold, "occlusion_relations", components, len(frame)))
        else:
            relations["occlusion_relations"] = None
    probabilities = np.mean([f[probability_columns].to_numpy(dtype=np.float64) for f in frames], axis=0)
    mean = {kind: np.mean(values, axis=0) for kind, values in relations.items() if values is not None}
    return frames[0], probabilities, mean


def _checked_relations(fold, kind: str, components: int, rows: int) -> np.ndarray:
    values = fold.load_relations(kind, components=components)
    if len(values) != rows:
        raise GeomerError(f"{fold.relations_path(kind)}: {len(values)} matrices for {rows} predictions")
    return values
