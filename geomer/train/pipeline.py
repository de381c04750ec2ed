"""A dataset (or the synthetic default) in front of the engine: read → prepare → graphs → LOSO.

``train_dataset`` is what ``geomer train`` runs. With ``root`` it reads the named dataset
(``geomer.data``'s readers); without, it uses the standard synthetic dataset of :mod:`geomer.synth`
(generated once into the cache). Features are prepared into the feature cache (resumable, only
missing clips are extracted), loaded as PyG graphs in sample order, and handed to
:func:`geomer.train.run.run_loso` with the protocol's folds.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from geomer.errors import GeomerError
from geomer.train.config import TrainConfig
from geomer.paths import cache_root
from landmarks.files import check_output_folder
from geomer.rundir import RunDir
from geomer.train.executors import executor_session
from geomer.train.run import RunResult, check_model_settings, run_loso


def default_out_dir(model: str, dataset: str) -> Path:
    """``runs/<model>-<dataset>`` under the working folder: re-running a command resumes it."""
    return Path("runs") / f"{model}-{dataset}"


def train_dataset(
    config: TrainConfig,
    *,
    dataset: str | None = None,
    root: str | Path | None = None,
    protocol: str = "loso",
    cache: str | Path | None = None,
    out: str | Path | None = None,
    init: str | Path | None = None,
    pretrain=None,
    settings=None,
    scheme: str | None = None,
    skip_bad: bool = False,
    prepare_jobs: int | None = None,
    progress: bool = True,
) -> RunResult:
    """Train and evaluate ``config.model`` on a dataset under ``protocol``; see the module doc.

    ``settings``: :class:`geomer.features.FeatureSettings` (defaults when None). ``init``: a
    pretraining checkpoint (``geomer pretrain``) loaded into every fold's model; it must not have
    seen any test subject of the protocol nor read any frame of an evaluated clip (GeomerError
    otherwise). ``pretrain``: a :class:`geomer.train.pretrain.PretrainConfig` for per-fold
    pretraining (each fold × seed pretrained on its training clips' frames), exclusive with ``init``.
    """
    from geomer.data import list_datasets, read_dataset
    from geomer.data.cache import FeatureCache
    from geomer.data.loading import load_graphs
    from geomer.data.prepare import prepare_dataset
    from geomer.data.datasets import check_scheme
    from geomer.data.protocols import PROTOCOLS, check_folds, fold_name, get_protocol
    from geomer.features.types import FeatureSettings
    from geomer.models import check_inputs, get_spec

    # Everything that can be refused is refused before any expensive step or any file written:
    # the model and its settings (their validity does not depend on the class count), the output.
    get_spec(config.model)
    settings = settings if settings is not None else FeatureSettings()
    face_graph = settings.graph()
    check_model_settings(config, 2, face_graph, settings.to_dict())
    if pretrain is not None:
        from geomer.train.pretrain import check_pretrainable

        if init is not None:
            raise GeomerError("give either --init (external pretraining) or --pretrain per-fold, not both")
        check_pretrainable(config.model)
    if out is not None:
        RunDir(out).check_writable()
    check_output_folder(cache if cache is not None else cache_root() / "features", "--cache", GeomerError)
    PROTOCOLS[protocol]  # an unknown name, before the dataset is read (or rendered)
    if root is None:
        if dataset not in (None, "synth"):
            raise GeomerError(f"--dataset {dataset} needs --root PATH (the dataset's folder)")
        from geomer.synth import standard_dataset

        check_scheme("synth", scheme)
        dataset, root = "synth", standard_dataset(progress=progress)
    elif dataset is None:
        raise GeomerError(f"--root {root} needs --dataset NAME (known: {', '.join(list_datasets())})")
    elif dataset not in list_datasets():
        raise GeomerError(f"unknown dataset {dataset!r}; known: {', '.join(list_datasets())}")

    index = read_dataset(dataset, root, scheme=scheme, skip_bad=skip_bad)
    folds = list(get_protocol(protocol, index).folds())
    check_folds(folds, [sample.subject_key for sample in index.samples])  # before any extraction
    out = Path(out) if out is not None else default_out_dir(config.model, index.name)
    run_dir = RunDir(out)
    run_dir.check_writable(run_dir.fold(seed, fold_name(f.name)) for seed in config.seeds for f in folds)
    # what run_loso records of these settings (config.json), compared before any extraction
    run_dir.check_same_run({**config.run_record(), "dataset": index.name, "protocol": protocol})
    pretraining = None
    if init is not None:
        from geomer.models.pretrained import check_pretraining, check_pretraining_frames, pretraining_record

        # Checked before any feature extraction. Every subject is tested in some fold, so one
        # checkpoint for all folds must not have seen any of them (external data).
        check_pretraining(init, [s for fold in folds for s in fold.test_subjects])
        check_pretraining_frames(init, index.samples)
        pretraining = pretraining_record(init)
    # Ray is reached before any extraction: an unreachable cluster costs nothing (run_loso uses
    # the connection it finds; a local Ray started here waits idle through the extraction)
    with executor_session(config):
        feature_cache = FeatureCache(cache, settings)
        # Check the model's inputs on one prepared clip before extracting the whole dataset, so a
        # model asking for a modality the dataset lacks fails at the start.
        probe = replace(index, samples=index.samples[:1])
        if not prepare_dataset(probe, cache, settings, jobs=1, progress=False).failures:
            check_inputs(config.model, load_graphs(probe, feature_cache, face_graph)[0])
        summary = prepare_dataset(
            index, cache, settings, jobs=prepare_jobs or config.jobs, progress=progress
        )
        if summary.failures and skip_bad:  # e.g. clips in which no face is found: listed, left out
            from geomer.data.prepare import without_failures

            index = without_failures(index, summary.failures)
            folds = list(get_protocol(protocol, index).folds())
        elif summary.failures:
            raise GeomerError(summary.error_line())
        graphs = load_graphs(index, feature_cache, face_graph, progress=progress)
        fold_pretraining = None
        if pretrain is not None:
            from geomer.train.pretrain import fold_pretraining as build_fold_pretraining

            fold_pretraining = build_fold_pretraining(index.samples, settings, pretrain, progress=progress)
        return run_loso(
            graphs,
            index.classes,
            config,
            out,
            folds=folds,
            face_graph=face_graph,
            dataset=index.name,
            feature_settings=settings.to_dict(),
            init=init,
            pretraining=pretraining,
            fold_pretraining=fold_pretraining,
            extra={
                "protocol": protocol,
                "root": str(Path(root).resolve()) if not isinstance(root, dict) else str(root),
                "skipped_rows": [str(row) for row in index.skipped],
            },
            sample_details=[_sample_details(s, index.name) for s in index.samples],
            progress=progress,
        )


def _sample_details(sample, dataset: str) -> tuple:
    """What a finished fold's validity depends on beyond key, subject and label: the clip's
    frame numbers, its resolved source files and their size+mtime fingerprint (replaced frames or
    another copy at the same root change it)."""
    from geomer.data.cache import clip_identity
    from geomer.data.prepare import feature_job

    identity = clip_identity(feature_job(sample, dataset))
    return (sample.onset, sample.apex, sample.offset, identity["source"], identity["apex_image"],
            identity["flow_image"], identity["fingerprint"])
