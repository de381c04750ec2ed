"""Dataset readers, ``Sample`` records, class schemes, protocols, the feature cache and conversion
to PyTorch Geometric graphs (docs/architecture.md, "Data sources" and "Evaluation").

Importing this package stays light (no torch); :mod:`geomer.data.loading` and
:mod:`geomer.data.pyg` pull in torch when used.
"""

from __future__ import annotations

from geomer.data.datasets import list_datasets, read_dataset
from geomer.data.loading import load_graphs
from geomer.data.prepare import PrepareSummary, prepare_dataset
from geomer.data.protocols import LOSO, Fold, LeakError, Protocol, check_disjoint, get_protocol
from geomer.data.sample import BadRow, DatasetIndex, Sample

__all__ = [
    "LOSO",
    "BadRow",
    "DatasetIndex",
    "Fold",
    "LeakError",
    "PrepareSummary",
    "Protocol",
    "Sample",
    "check_disjoint",
    "get_protocol",
    "list_datasets",
    "load_graphs",
    "prepare_dataset",
    "read_dataset",
]
