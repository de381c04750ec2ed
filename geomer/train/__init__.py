"""Training and evaluation: fitting, protocol folds, seeds, executors, pooled metrics, checkpoints.

``run_loso(graphs, class_names, config, out_dir)`` is the engine; ``train_dataset`` (in
:mod:`geomer.train.pipeline`) puts a dataset or the synthetic default in front of it;
``pool_run(run_dir)`` re-pools a run directory (:mod:`geomer.rundir` owns its files). See
docs/architecture.md for the rules.
"""

from __future__ import annotations

from geomer.data.protocols import Fold
from geomer.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from geomer.train.config import TrainConfig
from geomer.train.metrics import ClassificationMetrics, classification_metrics, confusion_matrix
from geomer.train.pipeline import train_dataset
from geomer.train.pool import pool_run
from geomer.train.predict import Prediction, predict_clip
from geomer.train.run import RunResult, run_loso

__all__ = [
    "Checkpoint",
    "ClassificationMetrics",
    "Fold",
    "Prediction",
    "RunResult",
    "TrainConfig",
    "classification_metrics",
    "confusion_matrix",
    "load_checkpoint",
    "pool_run",
    "predict_clip",
    "run_loso",
    "save_checkpoint",
    "train_dataset",
]
