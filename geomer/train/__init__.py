"""Training and evaluation: fitting, protocol folds, seeds, executors, pooled metrics, checkpoints.

``run_loso(graphs, class_names, config, out_dir)`` is the engine; ``train_dataset`` (in
:mod:`geomer.train.pipeline`) puts a dataset or the synthetic default in front of it;
``pool_run(run_dir)`` re-pools a run directory. See DESIGN.md section 6 for the rules.
"""

from __future__ import annotations

from geomer.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from geomer.train.config import TrainConfig
from geomer.train.metrics import ClassificationMetrics, classification_metrics, confusion_matrix
from geomer.train.pipeline import train_dataset
from geomer.train.pool import format_table, pool_run
from geomer.train.predict import Prediction, predict_clip
from geomer.train.run import Fold, RunResult, check_folds, loso_folds, read_run_config, run_loso

__all__ = [
    "Checkpoint",
    "ClassificationMetrics",
    "Fold",
    "RunResult",
    "TrainConfig",
    "check_folds",
    "classification_metrics",
    "confusion_matrix",
    "format_table",
    "load_checkpoint",
    "loso_folds",
    "pool_run",
    "predict_clip",
    "Prediction",
    "train_dataset",
    "read_run_config",
    "run_loso",
    "save_checkpoint",
]
