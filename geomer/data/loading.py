"""Cached features of a dataset as PyTorch Geometric graphs, in sample order."""

from __future__ import annotations

from geomer.data.sample import DatasetIndex
from geomer.errors import GeomerError


def load_graphs(index: DatasetIndex, cache, graph=None, progress: bool = False) -> list:
    """One ``torch_geometric.data.Data`` per sample of ``index``, in the same order.

    Args:
        index: the dataset index whose clips were prepared.
        cache: a :class:`geomer.data.cache.FeatureCache` (its settings pick the cached features).
        graph: the :class:`geomer.graph.FaceGraph`; default: the one the cache settings describe.

    Each graph has ``y`` = ``sample.label_index`` and the strings ``clip`` = ``sample.key``,
    ``subject`` = ``sample.subject_key`` and ``dataset`` = ``sample.dataset``. A clip missing
    from the cache, or whose cache file fails to load or was made from another source, raises
    GeomerError naming it (run ``geomer prepare`` first).
    """
    from tqdm import tqdm

    from geomer.data.prepare import feature_job
    from geomer.data.pyg import to_pyg

    graph = graph if graph is not None else cache.settings.graph()
    graphs, missing = [], []
    for sample in tqdm(index.samples, desc="graphs", unit="clip", disable=not progress):
        features, problem = cache.load(feature_job(sample, index.name))
        if features is None:
            missing.append(f"{sample.key}: {problem}" if problem else sample.key)
            continue
        graphs.append(
            to_pyg(
                features, graph, sample.label_index,
                clip=sample.key, subject=sample.subject_key, dataset=sample.dataset,
            )
        )
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise GeomerError(
            f"clip {missing[0]}{more} not (or not usably) in the feature cache {cache.folder}: "
            f"run `geomer prepare --dataset {index.name} --root {index.root}` first"
        )
    return graphs
