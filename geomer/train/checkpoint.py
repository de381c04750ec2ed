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

from geomer.atomic import atomic_torch_save, check_torch_archive
from geomer.errors import GeomerError
from geomer.version import __version__, check_version

CHECKPOINT_FORMAT = "geomer-checkpoint/1"


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

    def build_model(self, trained: bool = True):
        """A model of the recorded kind and size with the saved weights, in eval mode; wrapped in
        :class:`~geomer.train.augment.MirrorAveraged` when it was tested that way
        (``extra["mirror"]``). ``trained=False``: the same model freshly initialised from torch's
        current random state (the untrained control of a diagnosis)."""
        from geomer.features.types import FeatureSettings
        from geomer.models import create, get_spec

        features = FeatureSettings.from_dict(self.feature_settings)
        earlier = get_spec(self.model).settings_of_version(self.geomer_version)
        model = create(self.model, len(self.classes), self.face_graph(), features, **{**earlier, **self.cfg})
        if trained:
            try:
                model.load_state_dict(self.state_dict)
            except RuntimeError as error:
                # torch's first line only introduces the list of missing, unexpected or resized keys
                detail = " ".join(line.strip() for line in str(error).strip().splitlines()[1:])
                raise GeomerError(f"checkpoint weights do not fit model {self.model!r}: {detail[:300]}") from None
        model.eval()
        if self.extra.get("mirror"):
            from geomer.train.augment import MirrorAveraged

            return MirrorAveraged(model, self.face_graph())
        return model

    def face_graph(self):
        """The region graph the model was trained on."""
        from geomer.graph import FaceGraph

        return FaceGraph.from_record(self.graph)


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` atomically (temp file in the same folder, then rename); a failed write
    (a full disk) is a GeomerError naming ``path``, and leaves no file under its name."""
    path = Path(path)
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
    atomic_torch_save(path, payload)
    return path


#: The fields of a checkpoint and their types (feature_settings and extra may be absent).
_FIELDS = {"model": str, "cfg": dict, "classes": list, "component_names": list, "graph": dict,
           "state_dict": dict, "feature_settings": dict, "extra": dict}


def _check_fields(path: Path, payload: dict) -> None:
    """One-line GeomerError naming ``path`` unless every field has its type and the graph record
    builds a graph (a file edited by hand or written by other code is refused, not a traceback)."""
    from geomer.graph import FaceGraph

    for name, kind in _FIELDS.items():
        value = payload.get(name, {} if name in ("feature_settings", "extra") else None)
        # lists (classes, component names) hold distinct names
        if not isinstance(value, kind) or (kind is list and (
                not value or not all(isinstance(v, str) and v for v in value) or len(set(value)) != len(value))):
            raise GeomerError(f"{path}: not a geomer checkpoint (missing or malformed {name!r})")
    # a string "false" would count as true and wrap the model in mirror averaging
    if not isinstance(payload.get("extra", {}).get("mirror", False), bool):
        raise GeomerError(f"{path}: not a geomer checkpoint (extra 'mirror' must be true or false)")
    try:
        graph = FaceGraph.from_record(payload["graph"])
    except (GeomerError, ValueError, TypeError, KeyError, IndexError) as error:
        raise GeomerError(f"{path}: not a geomer checkpoint (malformed 'graph': {str(error).splitlines()[0][:150]})") from None
    if list(graph.component_names) != payload["component_names"]:
        raise GeomerError(f"{path}: not a geomer checkpoint (component names {payload['component_names']} are not "
                          f"the {graph.name} graph's {list(graph.component_names)})")


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
    check_torch_archive(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise GeomerError(f"{path}: not a geomer checkpoint ({type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise GeomerError(f"{path}: not a geomer checkpoint (format {CHECKPOINT_FORMAT} expected)")
    version = str(payload.get("geomer_version"))
    check_version(path, version, "checkpoint")
    _check_fields(path, payload)
    # training that diverged writes no checkpoint: non-finite weights are damage (resume would
    # otherwise keep the fold, and only its predictions would show it)
    damaged = next((name for name, value in payload["state_dict"].items()
                    if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all()), None)
    if damaged is not None:
        raise GeomerError(f"{path}: non-finite weights in {damaged!r} (a damaged checkpoint)")
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
