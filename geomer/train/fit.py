"""Training and testing one model on one fold with one seed.

The recipe is fixed (docs/architecture.md, "Evaluation"): AdamW, a cosine learning-rate schedule over the whole
budget (per optimiser step), a fixed number of epochs (or of optimiser steps, rounded up to whole
epochs), cross-entropy (optionally weighted by the inverse class frequency of the TRAINING fold)
plus the model's ``aux_loss``. The model of the last
epoch is tested, unless a validation split of training subjects picks the epoch, or the explicitly
leaky best-test-epoch mode is on.

Determinism: every random source is seeded from the seed (and the fold for the validation split),
deterministic algorithms are requested, and training runs on one CPU thread, so the same seed gives
the same numbers whether the fold runs in-process, in a process pool or on a Ray worker.

Per fold it writes, through :class:`geomer.rundir.FoldDir` (each file atomically), the history,
the relations, the occlusion relations (``geomer.relations.occlusion_relations`` of the fold's
model on its test clips, true class), the checkpoint and last the predictions, whose presence
marks the fold as finished (resume).
"""

from __future__ import annotations

import json
import random
import time
import zlib
from contextlib import contextmanager
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geomer.errors import GeomerError
from geomer.rundir import FoldDir
from geomer.train.checkpoint import Checkpoint, save_checkpoint
from geomer.train.config import TrainConfig
from geomer.train.metrics import classification_metrics


#: A fold's per-fold pretraining record (``--pretrain per-fold``), pooled into metrics.json.
FOLD_PRETRAINING = "pretraining.json"


@dataclass(frozen=True)
class FoldTask:
    """One unit of work: a fold under one seed; indices point into the shared graph list."""

    fold: str
    seed: int
    train: tuple[int, ...]
    test: tuple[int, ...]
    out: FoldDir


@dataclass(frozen=True)
class FitContext:
    """What every task of a run shares (sent once per worker, not once per task).

    ``graphs`` are PyG ``Data`` objects with ``y`` [1] and the meta strings ``clip``, ``subject``
    and ``dataset``; ``face_graph`` is the :class:`~geomer.graph.FaceGraph` the model is built on.
    """

    graphs: list
    class_names: tuple[str, ...]
    config: TrainConfig
    face_graph: Any
    component_names: tuple[str, ...]
    feature_settings: dict = field(default_factory=dict)
    init: str | None = None
    pretraining: Any = None  # geomer.train.pretrain.FoldPretraining: pretrain each fold first
    device: str = "cpu"
    model_origin: tuple[str, str | None] = ("", None)

    @property
    def features(self):
        """The :class:`~geomer.features.FeatureSettings` the graphs were made with (the model
        reads its input geometry there)."""
        from geomer.features.types import FeatureSettings

        return FeatureSettings.from_dict(self.feature_settings)


@dataclass(frozen=True)
class FoldSummary:
    fold: str
    seed: int
    num_train: int
    num_test: int
    seconds: float
    epochs_run: int
    selected_epoch: int


# What the engine always keeps on a graph: labels, batching structure and the meta strings, and
# the node motion x from which occlusion relations recompute a neutralised clip's edge_attr, and
# the flow image's component regions by which they neutralise it.
_ALWAYS_KEPT = ("y", "edge_index", "component", "clip", "subject", "dataset", "x")


def slim_graphs(inputs: Sequence[str] | None, graphs: list) -> list:
    """The graphs reduced to a model's declared ``inputs`` (its spec's) plus what the engine
    needs; unchanged when the model declares none."""
    from torch_geometric.data import Data

    if inputs is None:
        return graphs
    keep = set(inputs) | set(_ALWAYS_KEPT)
    if "texture_apex" in keep:
        # occlusion neutralises an apex patch to its onset patch, which only `texture` holds
        # (geomer.relations.neutralise); without it, it would fall back to the no-onset rule
        keep.add("texture")
    if "flow_image" in keep:
        # occlusion neutralises a component's region of the flow image (geomer.relations.neutralise)
        keep.add("flow_image_component")
    return [
        Data(**{key: graph[key] for key in graph.keys() if key in keep}, num_nodes=graph.num_nodes)
        for graph in graphs
    ]


_COLLATED: tuple[list, int, Any] | None = None  # (graphs, their count, CollatedGraphs): see collated()


def collated(graphs: list):
    """The run's graphs collated once per process (:class:`geomer.data.pyg.CollatedGraphs`):
    every fold a worker trains gathers its minibatches from them (a Ray task receives its own
    copy of the run's context, so there it is once per fold). One run at a time is kept;
    :func:`release_collated` frees it."""
    global _COLLATED
    from geomer.data.pyg import CollatedGraphs

    if _COLLATED is None or _COLLATED[0] is not graphs or _COLLATED[1] != len(graphs):
        _COLLATED = None  # free the previous run's table before collating this one
        _COLLATED = (graphs, len(graphs), CollatedGraphs(graphs))
    return _COLLATED[2]


def release_collated() -> None:
    """Free the table :func:`collated` keeps (after an in-process run)."""
    global _COLLATED
    _COLLATED = None


def sample_key(data) -> str:
    """A clip's unique name: its global subject key and clip id."""
    return f"{data.subject}/{data.clip}"


def validation_subjects(subjects: list[str], fraction: float, seed: int, fold: str) -> set[str]:
    """A seeded draw of ``fraction`` of the given TRAINING subjects (at least one, never all)."""
    unique = sorted(set(subjects))
    if fraction <= 0 or len(unique) < 2:
        return set()
    count = min(len(unique) - 1, max(1, round(fraction * len(unique))))
    rng = np.random.default_rng([seed, zlib.crc32(fold.encode())])
    return set(rng.choice(unique, size=count, replace=False).tolist())


@contextmanager
def _deterministic_cpu():
    import torch

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # deterministic mode would otherwise fill every new tensor with NaN before it is written
    # (about 400 fills a dere-grl training step, 7 % of its time on a CPU, a kernel each on a
    # GPU); no geomer code reads memory it has not written, so the results are the same
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.utils.deterministic.fill_uninitialized_memory = fill


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights ``n / (C · n_c)`` of the training labels (0 for absent classes).

    Shapes: labels [n] int → [C] float32.
    """
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)


def fit_fold(context: FitContext, task: FoldTask) -> FoldSummary:
    """Train on ``task.train``, test on ``task.test``, write the fold's files; see the module doc."""
    import torch

    from geomer.models import create
    from geomer.models.registry import ensure_registered

    started = time.perf_counter()
    config = context.config
    ensure_registered(config.model, context.model_origin)
    device = torch.device(context.device)
    graphs = context.graphs
    num_classes = len(context.class_names)

    train_graphs = [graphs[i] for i in task.train]
    test_graphs = [graphs[i] for i in task.test]
    held_out = validation_subjects(
        [str(g.subject) for g in train_graphs], config.val_fraction, task.seed, task.fold
    )
    val_graphs = [g for g in train_graphs if str(g.subject) in held_out]
    train_positions = [i for i in task.train if str(graphs[i].subject) not in held_out]
    train_graphs = [graphs[i] for i in train_positions]

    with _deterministic_cpu():
        init, pretraining = context.init, None
        if context.pretraining is not None:
            from geomer.train.pretrain import pretrain_fold

            init, pretraining = pretrain_fold(
                context.pretraining, task.train, sorted({str(g.subject) for g in test_graphs}),
                task.out, model=config.model, model_cfg=config.cfg, graph=context.face_graph,
                seed=task.seed, feature_settings=context.feature_settings, device=device,
            )
        _seed_everything(task.seed)
        model = create(config.model, num_classes, context.face_graph, context.features, **config.cfg).to(device)
        if init:
            from geomer.models.pretrained import load_pretrained

            load_pretrained(model, init)
        labels = np.array([int(g.y.view(-1)[0]) for g in train_graphs], dtype=np.int64)
        weight = (
            torch.from_numpy(class_weights(labels, num_classes)).to(device)
            if config.class_weighted
            else None
        )
        from geomer.train.augment import (
            Augmenter, MirrorAveraged, averaged_model, parse_recipe, refresh_batch_norm,
        )

        recipe = parse_recipe(config.augment)
        loss_function = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=recipe.smooth)
        generator = torch.Generator().manual_seed(task.seed)
        augmenter = (Augmenter(recipe, context.face_graph, torch.Generator().manual_seed(task.seed + 1))
                     if recipe.augments else None)
        averaged = averaged_model(model, recipe.ema) if recipe.ema else None
        # each minibatch is gathered from the run's clips collated once per process; the
        # sampler (and so the order of the clips) is the one PyG's DataLoader would use
        table = collated(graphs)
        loader = torch.utils.data.DataLoader(
            train_positions, batch_size=config.batch_size, shuffle=True, generator=generator,
            collate_fn=list,
        )
        # fused: one kernel per step for all parameters instead of a Python loop over them
        # (5× faster for dere-grl's 49 small tensors on a CPU)
        optimiser = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True
        )
        epochs = config.epochs_for(len(loader))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, epochs * len(loader)))

        history: list[dict[str, float]] = []
        best_score, best_epoch, best_state = -1.0, epochs, None
        for epoch in range(1, epochs + 1):
            model.train()
            total_loss, correct, seen = 0.0, 0, 0
            for indices in loader:
                partner, mix_weight = None, 1.0
                if augmenter is None:
                    batch = table.batch(indices)
                else:
                    batch, partner, mix_weight = augmenter.mix(augmenter.batch(table, indices))
                if device.type != "cpu":
                    batch = batch.to(device)
                output = model(batch)
                target = batch.y.view(-1)
                loss = loss_function(output.logits, target)
                if partner is not None:  # mixup: the loss of the mix is the mix of the two losses
                    partner_target = target[partner.to(target.device)]
                    loss = mix_weight * loss + (1.0 - mix_weight) * loss_function(output.logits, partner_target)
                if output.aux_loss is not None:
                    loss = loss + output.aux_loss
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()
                if averaged is not None:
                    averaged.update_parameters(model)
                total_loss += float(loss.detach()) * target.numel()
                correct += int((output.logits.argmax(dim=1) == target).sum())
                seen += target.numel()
            row = {"epoch": epoch, "loss": total_loss / max(seen, 1), "acc": correct / max(seen, 1)}
            selection = val_graphs if val_graphs else (test_graphs if config.leaky_best_epoch else [])
            evaluated = model if averaged is None else averaged.module
            if averaged is not None and (selection or epoch == epochs):
                # the training clips as they are (not augmented), in an order of their own: the
                # clips are stored by dataset and subject, and batches of one subject would leave
                # the variance between subjects out of the statistics
                refresh_batch_norm(evaluated, _shuffled(table, train_positions, config.batch_size, device,
                                                        torch.Generator().manual_seed(task.seed + 2)))
            if recipe.mirror:
                evaluated = MirrorAveraged(evaluated, context.face_graph)
            if selection:
                probabilities, _ = _predict(evaluated, selection, config.batch_size, device)
                truth = np.array([int(g.y.view(-1)[0]) for g in selection])
                score = classification_metrics(truth, probabilities.argmax(1), num_classes).uf1
                row["val_uf1" if val_graphs else "test_uf1"] = score
                if score > best_score:
                    best_score, best_epoch = score, epoch
                    best_state = {k: v.detach().clone() for k, v in evaluated.state_dict().items()}
            history.append(row)
        if averaged is not None:
            model = averaged.module  # the weight average is the model tested and saved
        if best_state is not None:
            model.load_state_dict(best_state)
        tested = MirrorAveraged(model, context.face_graph) if recipe.mirror else model
        probabilities, relations = _predict(tested, test_graphs, config.batch_size, device)
        if not np.isfinite(probabilities).all():
            raise GeomerError(f"fold {task.fold} (seed {task.seed}): training diverged (non-finite class "
                              f"probabilities); try a smaller --lr")
        from geomer.relations import occlusion_relations

        occlusion = occlusion_relations(tested, test_graphs, num_components=len(context.component_names),
                                        batch_size=config.batch_size, device=device)
        model.train()

    out = task.out
    out.path.mkdir(parents=True, exist_ok=True)
    if pretraining is not None:
        from geomer.atomic import atomic_write_text

        atomic_write_text(out.path / FOLD_PRETRAINING, json.dumps(pretraining, indent=2))
    out.write_history(history)
    out.save_relations(relations)
    out.save_relations(occlusion.pairwise, kind="occlusion_relations")
    save_checkpoint(
        out.checkpoint_path,
        Checkpoint(
            model=config.model,
            cfg=config.cfg,
            classes=context.class_names,
            component_names=context.component_names,
            graph=context.face_graph.to_record(),
            state_dict=model.state_dict(),
            feature_settings=context.feature_settings,
            extra={
                "fold": task.fold,
                "seed": task.seed,
                "epoch": best_epoch,
                "epochs": epochs,
                "test_subjects": sorted({str(g.subject) for g in test_graphs}),
                "validation_subjects": sorted(held_out),
                "init": None if init is None else str(init),
                "pretraining": pretraining,
                "mirror": bool(recipe.mirror),
            },
        ),
    )
    out.write_predictions(
        [sample_key(g) for g in test_graphs],
        [str(g.subject) for g in test_graphs],
        [str(getattr(g, "dataset", "")) for g in test_graphs],
        [int(g.y.view(-1)[0]) for g in test_graphs],
        probabilities,
        context.class_names,
    )
    return FoldSummary(
        fold=task.fold,
        seed=task.seed,
        num_train=len(train_graphs),
        num_test=len(test_graphs),
        seconds=time.perf_counter() - started,
        epochs_run=epochs,
        selected_epoch=best_epoch,
    )


def _shuffled(table, positions: list[int], batch_size: int, device, generator):
    """The clips at ``positions`` in batches, in an order drawn from ``generator``, not augmented,
    on ``device``."""
    import torch

    order = [positions[i] for i in torch.randperm(len(positions), generator=generator).tolist()]
    for start in range(0, len(order), batch_size):
        batch = table.batch(order[start:start + batch_size])
        yield batch if device.type == "cpu" else batch.to(device)


def _predict(model, graphs: list, batch_size: int, device) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities [n, C] and relations [n, K, K] in the order of ``graphs``."""
    import torch
    from torch_geometric.loader import DataLoader

    model.eval()
    probabilities, relations = [], []
    with torch.no_grad():
        for batch in DataLoader(graphs, batch_size=batch_size, shuffle=False):
            output = model(batch.to(device))
            probabilities.append(torch.softmax(output.logits, dim=1).cpu().numpy())
            relations.append(output.relations.cpu().numpy())
    model.train()
    return np.concatenate(probabilities).astype(np.float64), np.concatenate(relations)
