"""The engine's view of the model registry (``geomer.models``, engineer M's).

Worker processes (a spawned process pool, Ray workers) start with a fresh interpreter: models
built into geomer register themselves on ``import geomer.models``, but a model registered by a
user's own script or test module does not. :func:`model_origin` records where such a model was
defined and :func:`ensure_registered` imports it in the worker, so any registered model can be
trained in parallel.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from geomer.errors import GeomerError


def known_models() -> list[str]:
    from geomer.models import list_models

    return list(list_models())


def model_class(name: str):
    """The registered class (or factory) of model ``name``; unknown names raise GeomerError."""
    from geomer.models import get_spec

    return get_spec(name).factory


def check_model_inputs(name: str, data) -> None:
    """One-line GeomerError when ``data`` lacks an input model ``name`` requires."""
    from geomer.models import check_inputs

    check_inputs(name, data)


def create_model(name: str, num_classes: int, graph, cfg: dict):
    from geomer.models import create

    return create(name, num_classes, graph, **dict(cfg))


def model_origin(name: str) -> tuple[str, str | None]:
    """(module name, folder to put on sys.path or None) of the module defining model ``name``."""
    cls = model_class(name)
    module = sys.modules.get(cls.__module__)
    if cls.__module__.startswith("geomer.") or module is None:
        return cls.__module__, None
    file = getattr(module, "__file__", None)
    if file is None:
        return cls.__module__, None
    # The folder that makes ``import <module name>`` find the file (one level per dot).
    folder = Path(file).resolve().parent
    for _ in range(cls.__module__.count(".")):
        folder = folder.parent
    return cls.__module__, str(folder)


def ensure_registered(name: str, origin: tuple[str, str | None]) -> None:
    """Import the module that registers model ``name`` if this process does not know it yet."""
    if name in known_models():
        return
    module_name, folder = origin
    if folder is not None and folder not in sys.path:
        sys.path.insert(0, folder)
    importlib.import_module(module_name)
    if name not in known_models():
        raise GeomerError(f"model {name!r} is not registered by module {module_name!r}")


def model_requires(name: str) -> tuple[str, ...]:
    """The inputs model ``name`` requires; unknown names raise GeomerError listing the known ones."""
    from geomer.models import get_spec

    return tuple(get_spec(name).requires)


# What the engine always keeps on a graph: labels, batching structure and the meta strings, and
# the node motion x from which occlusion relations recompute a neutralised clip's edge_attr.
_ALWAYS_KEPT = ("y", "edge_index", "component", "clip", "subject", "dataset", "x")


def slim_graphs(name: str, graphs: list) -> list:
    """The graphs reduced to the attributes model ``name`` reads, if it declares them.

    A model class may declare ``inputs``: EVERY ``Data`` attribute its forward reads. The engine
    then drops the other modalities before training, which makes batching (collation) and
    shipping the graphs to worker processes cheaper. Without ``inputs`` the graphs are unchanged.
    """
    from torch_geometric.data import Data

    inputs = getattr(model_class(name), "inputs", None)
    if inputs is None:
        return graphs
    keep = set(inputs) | set(_ALWAYS_KEPT)
    return [
        Data(**{key: graph[key] for key in graph.keys() if key in keep}, num_nodes=graph.num_nodes)
        for graph in graphs
    ]
