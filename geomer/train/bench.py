"""``geomer bench train``: time a full LOSO of a model on a MEGC2019-sized composite.

The data are "cached features": 442 clips of 68 subjects split like the MEGC 2019 composite
(CASME II 145 clips / 24 subjects, SAMM 133 / 28, SMIC-HS 164 / 16; negative 250, positive 109,
surprise 83), built as :class:`~geomer.features.ClipFeatures` with the real shapes of the default
:class:`~geomer.features.FeatureSettings` (every modality present) from SEEDED RANDOM TENSORS plus
a small class-dependent displacement, then converted by the real ``to_pyg``. No video is decoded:
what is timed is the engine and the model (feature extraction has its own bench).

Rows: total seconds, training clips/s (clip-epochs over summed fold training time), seconds per
fold; with CUDA available, the same LOSO in-process on the GPU too (``device="auto"``), or on one
of the two alone (``"cpu"``, ``"cuda"``).
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

# MEGC 2019 composite: (dataset, subjects, clips per class negative/positive/surprise).
COMPOSITE = (
    ("casme2", 24, (88, 32, 25)),
    ("samm", 28, (92, 26, 15)),
    ("smic", 16, (70, 51, 43)),
)
CLASSES = ("negative", "positive", "surprise")


def composite_graphs(settings=None, seed: int = 0) -> list:
    """442 PyG graphs of 68 subjects with the contract shapes (see the module docstring)."""
    from geomer.data.pyg import to_pyg
    from geomer.features.types import ClipFeatures, FeatureSettings

    settings = settings if settings is not None else FeatureSettings()
    graph = settings.graph()
    rng = np.random.default_rng(seed)
    n, s, p, f = graph.num_nodes, len(settings.scales), settings.patch_size, settings.flow_image_size
    # the nodes inside the middle 60 % of the flow image, the template's shape kept
    template = graph.template - graph.template.min(axis=0)
    image_points = (0.2 + 0.6 * template / template.max()) * (f - 1)
    direction = rng.normal(size=(len(CLASSES), n, 2)).astype(np.float32)
    graphs = []
    for dataset, subjects, per_class in COMPOSITE:
        labels = np.repeat(np.arange(len(CLASSES)), per_class)
        owners = rng.integers(0, subjects, size=len(labels))
        owners[:subjects] = np.arange(subjects)  # every subject has at least one clip
        for i, (label, owner) in enumerate(zip(labels, owners)):
            apex = 0.05 * direction[label] + 0.02 * rng.normal(size=(n, 2)).astype(np.float32)
            ramp = np.sin(np.linspace(0, np.pi, settings.steps, dtype=np.float32))[:, None, None]
            features = ClipFeatures(
                clip=f"{dataset}/s{owner:02d}/clip{i:03d}",
                onset=0, apex=settings.steps // 2, offset=settings.steps - 1, apex_spotted=False,
                points=graph.template.astype(np.float32),
                geometry=ramp * apex[None],
                apex_displacement=apex,
                edge_displacement=apex[graph.edges[:, 1]] - apex[graph.edges[:, 0]],
                flow_stats=rng.random((n, s, 12), dtype=np.float32),
                flow_patches=rng.normal(size=(n, s, 3, p, p)).astype(np.float32),
                texture_onset=rng.random((n, s, p, p), dtype=np.float32),
                texture_apex=rng.random((n, s, p, p), dtype=np.float32),
                sequence=rng.random((settings.sequence_steps, n, p, p), dtype=np.float32),
                flow_image=rng.normal(size=(3, f, f)).astype(np.float32),
                flow_image_points=image_points.astype(np.float32),
            )
            graphs.append(
                to_pyg(features, graph, int(label), clip=f"clip{i:03d}",
                       subject=f"{dataset}/s{owner:02d}", dataset=dataset)
            )
    return graphs


def bench_train(model: str = "dere-grl", epochs: int | None = None, jobs: int = 2,
                steps: int | None = None, device: str = "auto") -> list[tuple[str, float, str]]:
    """Rows ``(what, value, unit)`` of a full LOSO (one seed) of ``model``; see the module doc.

    ``device``: "auto" (the CPU with ``jobs`` processes, then the GPU in-process when CUDA is
    available), "cpu" or "cuda" (that one alone; "cuda" without a GPU is a GeomerError)."""
    import torch

    from geomer.errors import GeomerError
    from geomer.features.types import FeatureSettings
    from geomer.train.config import TrainConfig

    if device not in ("auto", "cpu", "cuda"):
        raise GeomerError(f"unknown bench device {device!r}; use auto, cpu or cuda")
    config = TrainConfig.for_model(model, epochs=epochs, steps=steps, seeds=(0,), jobs=jobs, device="cpu",
                                   progress=False)
    gpu = torch.cuda.is_available() and device in ("auto", "cuda")
    if device == "cuda" and not gpu:
        raise GeomerError("--device cuda: torch sees no CUDA device")
    settings = FeatureSettings()
    graphs = composite_graphs(settings)
    rows = []
    if device in ("auto", "cpu"):
        rows += _timed_rows(graphs, config, settings, f"{jobs} CPU processes" if jobs > 1 else "CPU")
    if gpu:
        rows += _timed_rows(graphs, config.replace(jobs=1, device="cuda"), settings, "GPU")
    return rows


def _timed_rows(graphs, config, settings, label: str) -> list[tuple[str, float, str]]:
    from geomer.train.run import run_loso

    with tempfile.TemporaryDirectory(prefix="geomer-bench-") as out:
        started = time.perf_counter()
        result = run_loso(
            graphs, CLASSES, config, out, face_graph=settings.graph(), dataset="bench-composite",
            feature_settings=settings.to_dict(),
        )
        total = time.perf_counter() - started
    fold_seconds = [t.seconds for t in result.trained]
    clip_epochs = sum(t.num_train * t.epochs_run for t in result.trained)
    return [
        (f"LOSO total, {len(graphs)} clips, {len(fold_seconds)} folds, {config.budget()} ({label})", total, "s"),
        (f"training throughput per worker ({label})", clip_epochs / max(sum(fold_seconds), 1e-9), "clips/s"),
        (f"training throughput overall ({label})", clip_epochs / max(total, 1e-9), "clips/s"),
        (f"seconds per fold, mean ({label})", float(np.mean(fold_seconds)), "s"),
        (f"seconds per fold, max ({label})", float(np.max(fold_seconds)), "s"),
        (f"UF1 on the random composite ({label}; a sanity check, not a result)", float(result.metrics["uf1"]), ""),
    ]
