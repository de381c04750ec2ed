"""Saving and loading trained models with everything needed to use them again.

A checkpoint is a ``torch.save`` dict: the model name and settings, the class names, the facial
components and the region graph it was trained on, the feature settings, the ``state_dict`` and the
geomer version. Loading checks all of it, so a checkpoint is never silently applied to another
model, another class set or features made differently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geomer import __version__
from geomer.atomic import atomic_path
from geomer.errors import GeomerError

CHECKPOINT_FORMAT = "geomer-checkpoint/1"


def compatible_version(version: str, current: str = __version__) -> bool:
    """Whether files written by geomer ``version`` can be read by ``current``.

    Semantic versioning: the same major version; before 1.0, the same minor version too.
    """
    try:
        theirs = [int(part) for part in version.split(".")[:2]]
        ours = [int(part) for part in current.split(".")[:2]]
    except (AttributeError, ValueError):
        return False
    if len(theirs) < 2 or theirs[0] != ours[0]:
        return False
    return ours[0] > 0 or theirs[1] == ours[1]


@dataclass(frozen=True)
class Checkpoint:
    """A trained model and what it was trained on (``state_dict`` holds CPU tensors)."""

    model: str
    cfg: dict[str, Any]
    classes: tuple[str, ...]
    component_names: tuple[str, ...]
    graph: dict[str, Any]
    state_dict: dict[str, Any]
    feature_settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    geomer_version: str = __version__

    def build_model(self):
        """A model of the recorded kind and size with the saved weights, in eval mode."""
        from geomer.train._models import create_model

        model = create_model(self.model, len(self.classes), self.face_graph(), self.cfg)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0]
            raise GeomerError(f"checkpoint weights do not fit model {self.model!r}: {first}") from None
        return model.eval()

    def face_graph(self):
        """The region graph the model was trained on."""
        from geomer.graph import FaceGraph

        return FaceGraph(partition=self.graph["partition"], nodes=self.graph.get("nodes"))


def graph_record(graph) -> dict[str, Any]:
    """What identifies a :class:`~geomer.graph.FaceGraph`: partition, node ids, name."""
    nodes = getattr(graph, "node_ids", None)
    return {
        "partition": getattr(graph, "partition", None) or str(graph.name).split("-")[0],
        "nodes": None if nodes is None else [int(node) for node in nodes],
        "name": str(graph.name),
    }


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` atomically (temp file in the same folder, then rename)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "geomer_version": checkpoint.geomer_version,
        "model": checkpoint.model,
        "cfg": dict(checkpoint.cfg),
        "classes": list(checkpoint.classes),
        "component_names": list(checkpoint.component_names),
        "graph": dict(checkpoint.graph),
        "feature_settings": dict(checkpoint.feature_settings),
        "extra": dict(checkpoint.extra),
        "state_dict": {key: value.detach().cpu() for key, value in checkpoint.state_dict.items()},
    }
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)
    return path


def load_checkpoint(
    path: str | Path,
    *,
    model: str | None = None,
    classes: list[str] | tuple[str, ...] | None = None,
) -> Checkpoint:
    """Read a checkpoint; with ``model``/``classes`` given, insist that they match.

    Raises :class:`GeomerError` for a missing or foreign file, a checkpoint from an incompatible
    geomer version, or one of another model or class set.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise GeomerError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise GeomerError(f"{path}: not a geomer checkpoint ({type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise GeomerError(f"{path}: not a geomer checkpoint (format {CHECKPOINT_FORMAT} expected)")
    version = str(payload.get("geomer_version"))
    if not compatible_version(version):
        raise GeomerError(
            f"{path}: written by geomer {version}, incompatible with geomer {__version__}"
        )
    if model is not None and payload["model"] != model:
        raise GeomerError(f"{path}: a checkpoint of model {payload['model']!r}, not {model!r}")
    if classes is not None and list(classes) != list(payload["classes"]):
        raise GeomerError(
            f"{path}: trained on classes {payload['classes']}, not {list(classes)}"
        )
    return Checkpoint(
        model=payload["model"],
        cfg=dict(payload["cfg"]),
        classes=tuple(payload["classes"]),
        component_names=tuple(payload["component_names"]),
        graph=dict(payload["graph"]),
        state_dict=payload["state_dict"],
        feature_settings=dict(payload.get("feature_settings", {})),
        extra=dict(payload.get("extra", {})),
        geomer_version=version,
    )
