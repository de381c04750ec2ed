"""Training settings: one frozen record that goes into ``config.json`` and every checkpoint."""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from geomer.errors import GeomerError

EXECUTORS = ("local", "ray")
DEFAULT_EPOCHS = 20


@dataclass(frozen=True)
class TrainConfig:
    """How one model is trained and evaluated under a protocol.

    The budget is fixed, in ``epochs`` or in optimiser ``steps`` (give one; neither: 20 epochs):
    the model of the LAST epoch is evaluated (no selection on the test fold). ``steps`` is rounded
    up to whole epochs of each fold's training set (:meth:`epochs_for`), so a model takes about as
    many optimiser steps on a dataset of 150 training clips as on one of 430, where a budget in
    epochs would give the larger one about three times as many. ``val_fraction`` > 0 holds out
    that fraction of the TRAINING subjects (never test subjects) and keeps the epoch with the best
    validation UF1. ``leaky_best_epoch`` reproduces papers that report the best test epoch; the run
    is then marked ``leaky: true``.

    ``jobs`` > 1 with ``executor="local"`` runs fold × seed tasks in a process pool;
    ``executor="ray"`` submits one Ray task per fold × seed (``ray_address`` None: a local Ray).
    ``device`` "auto" is CUDA when available for in-process runs, CPU in worker processes.
    ``augment``: the training recipe (augmentation, label smoothing, EMA, mirror-averaged testing),
    a SPEC of :mod:`geomer.train.augment` stored in its canonical form; default ``flip,mirror``
    (``none`` or empty: off). :meth:`for_model` (and so ``geomer train``) starts from the model's
    registered ``train_defaults`` instead, which may name its own recipe.
    """

    model: str = "dere-grl"
    cfg: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    steps: int | None = None
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-2
    class_weighted: bool = True
    seeds: tuple[int, ...] = (0, 1, 2)
    val_fraction: float = 0.0
    leaky_best_epoch: bool = False
    jobs: int = 1
    executor: str = "local"
    ray_address: str | None = None
    device: str = "auto"
    progress: bool = True
    augment: str = "flip,mirror"

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(int(seed) for seed in self.seeds))
        object.__setattr__(self, "cfg", dict(self.cfg))
        if self.epochs is not None and self.steps is not None:
            raise GeomerError(f"give an epoch budget or a step budget, not both "
                              f"(epochs {self.epochs}, steps {self.steps})")
        if self.epochs is None and self.steps is None:
            object.__setattr__(self, "epochs", DEFAULT_EPOCHS)
        if self.epochs is not None and self.epochs < 1:
            raise GeomerError(f"epochs must be at least 1, got {self.epochs}")
        if self.steps is not None and self.steps < 1:
            raise GeomerError(f"steps must be at least 1, got {self.steps}")
        if self.batch_size < 1:
            raise GeomerError(f"batch size must be at least 1, got {self.batch_size}")
        if not self.seeds:
            raise GeomerError("at least one seed is needed")
        if len(set(self.seeds)) != len(self.seeds):
            raise GeomerError(f"seeds repeat: {list(self.seeds)}")
        if any(not 0 <= seed < 2**63 for seed in self.seeds):  # the range torch's generators take
            raise GeomerError(f"seeds must lie in [0, 2**63), got {list(self.seeds)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise GeomerError(f"val fraction must lie in [0, 1), got {self.val_fraction}")
        if self.val_fraction > 0 and self.leaky_best_epoch:
            raise GeomerError("choose either a validation split or leaky best-epoch selection")
        if self.executor not in EXECUTORS:
            raise GeomerError(f"unknown executor {self.executor!r}; known: {', '.join(EXECUTORS)}")
        if self.ray_address is not None and self.executor != "ray":  # it would be ignored
            raise GeomerError(f"--ray-address {self.ray_address} needs --executor ray")
        if self.jobs < 1:
            raise GeomerError(f"jobs must be at least 1, got {self.jobs}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise GeomerError(f"learning rate must be a positive number, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise GeomerError(f"weight decay must be a number >= 0, got {self.weight_decay}")
        _check_device(self.device)
        from geomer.train.augment import parse_recipe

        object.__setattr__(self, "augment", parse_recipe(self.augment).spec())
        if self.executor == "ray" and importlib.util.find_spec("ray") is None:
            raise GeomerError("--executor ray needs Ray: pip install 'geomer[ray]'")

    def epochs_for(self, batches_per_epoch: int) -> int:
        """The epochs a fold trains when an epoch is ``batches_per_epoch`` optimiser steps."""
        if self.steps is None:
            return int(self.epochs)
        return max(1, math.ceil(self.steps / max(1, batches_per_epoch)))

    def budget(self) -> str:
        """The budget in words: ``"20 epochs"`` or ``"200 steps"``."""
        return f"{self.epochs} epochs" if self.steps is None else f"{self.steps} steps"

    def to_dict(self) -> dict[str, Any]:
        """Every setting, JSON-ready (tuples become lists)."""
        data = asdict(self)
        data["seeds"] = list(self.seeds)
        return data

    def run_record(self) -> dict[str, Any]:
        """What a run directory's ``config.json`` records of this configuration and a resumed or
        reused run is compared on (:meth:`geomer.rundir.RunDir.check_same_run`)."""
        return {"model": self.model, "cfg": self.cfg, "seeds": list(self.seeds), "epochs": self.epochs,
                "settings": self.result_settings()}

    def result_settings(self) -> dict[str, Any]:
        """The settings that determine the results (not how or where they are computed)."""
        data = self.to_dict()
        for key in ("jobs", "executor", "ray_address", "device", "progress"):
            data.pop(key)
        if not data["augment"]:
            data.pop("augment")  # runs without the recipe read as before it existed (resume)
        if data["steps"] is None:
            data.pop("steps")  # an epoch budget's settings read as before steps existed
        return data

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes``; a new budget (``epochs`` or ``steps``) replaces the old one."""
        if "epochs" in changes:
            changes.setdefault("steps", None)
        elif "steps" in changes:
            changes.setdefault("epochs", None)
        return replace(self, **changes)

    @classmethod
    def for_model(cls, model: str, *, cfg: dict | None = None, **settings: Any) -> TrainConfig:
        """The model's own recipe (its registered ``train_defaults``) with ``settings`` given as
        not-None over it; ``cfg`` entries go over the recipe's model settings."""
        from geomer.models import get_spec

        recipe = dict(get_spec(model).train_defaults)
        chosen = {key: value for key, value in settings.items() if value is not None}
        if "epochs" in chosen or "steps" in chosen:  # the user's budget replaces the model's
            recipe.pop("epochs", None)
            recipe.pop("steps", None)
        merged_cfg = {**dict(recipe.pop("cfg", {})), **dict(cfg or {})}
        return cls(model=model, cfg=merged_cfg, **{**recipe, **chosen})


def _check_device(device: str) -> None:
    """``auto``, ``cpu``, or ``cuda``/``cuda:N`` on a machine where torch sees that GPU."""
    if device in ("auto", "cpu"):
        return
    match = re.fullmatch(r"cuda(?::(\d+))?", str(device))
    if match is None:
        raise GeomerError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(match.group(1) or 0)
    if index >= count:
        raise GeomerError(f"device {device!r} is not available (torch sees {count} CUDA device(s))")
