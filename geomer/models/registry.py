"""The model registry (timm style): ``@register_model``, ``create``, ``list_models``.

A model is a ``torch.nn.Module`` class (or a factory function returning one) registered under a
name. ``create(name, num_classes, graph, features, **cfg)`` builds it as ``factory(num_classes,
graph, features=features, **cfg)`` (``features=`` only where the factory takes it); every model's
``forward(batch)`` returns :class:`~geomer.models.output.ModelOutput`. The feature geometry a model
is sized by (the patch scales S, the patch side P, the trajectory steps T, the sequence steps Tseq,
the flow-image side F) is read from that :class:`~geomer.features.FeatureSettings`, the one place
it is declared; it is not a model setting.

What a registered class declares (class attributes, all optional except ``paper``):

- ``paper``: the citation of the paper it reimplements;
- ``requires``: the ``torch_geometric`` ``Data`` attributes it needs, e.g. ``("geometry",)``;
- ``requires_any``: groups of attributes of which at least one must be present, e.g.
  ``(("geometry", "flow_stats"),)``;
- ``small_config``: settings for a small, fast instance (the contract tests build every model
  with it);
- ``inputs``: EVERY ``Data`` attribute its forward reads (the engine then drops the others before
  training, which makes batching and shipping graphs to worker processes cheaper);
- ``train_defaults``: the model's own training recipe (``epochs`` or ``steps``, ``batch_size``,
  ``lr``, ``weight_decay``, optionally ``cfg``, ``class_weighted`` and ``augment``), used where
  the user gives none;
- ``earlier_defaults``: ``{version: {setting: value}}``, the value a setting had in checkpoints
  written by geomer before ``version`` (when a new setting's default changes what the model
  computes), so that an earlier checkpoint is rebuilt as it was trained;
- a ``pretraining_objective`` method: the model can be pretrained (``geomer pretrain``).

All of it is read once, at registration, into the model's :class:`ModelSpec`, together with where
the model was defined (``origin``): worker processes (a process pool, Ray) start with a fresh
interpreter and import that module to know a model registered outside geomer
(:func:`ensure_registered`).

The model modules are imported lazily, on the first lookup in :data:`MODELS` (a
``landmarks.registry.Registry``, the one name → thing idiom), so that ``import geomer.models``
stays cheap and the modules can import this one without a cycle.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from geomer.errors import GeomerError
from geomer.features.types import FeatureSettings
from landmarks.registry import Registry

# The modules that hold registered models, imported (in this order) on the first lookup.
_MODEL_MODULES = ("dere_grl", "mmt", "mubert", "hsta", "ststnet")

MODELS: Registry[ModelSpec] = Registry("model", GeomerError, modules=[f"geomer.models.{m}" for m in _MODEL_MODULES])


@dataclass(frozen=True)
class ModelSpec:
    """One registered model: its name, how to build it, and what it needs.

    ``factory(num_classes, graph, **cfg)`` returns the ``nn.Module``; ``requires`` /
    ``requires_any`` name the ``Data`` attributes it consumes (see the module docstring);
    ``reads_features``: the factory takes ``features`` (the FeatureSettings it is sized by).
    """

    name: str
    factory: Callable[..., nn.Module]
    paper: str = ""
    summary: str = ""
    requires: tuple[str, ...] = ()
    requires_any: tuple[tuple[str, ...], ...] = ()
    small_config: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] | None = None
    train_defaults: dict[str, Any] = field(default_factory=dict)
    pretrainable: bool = False
    origin: tuple[str, str | None] = ("", None)
    reads_features: bool = True
    earlier_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)

    def settings_of_version(self, version: str) -> dict[str, Any]:
        """The settings a checkpoint written by geomer ``version`` was built with where it
        recorded none (see ``earlier_defaults``): every change made after ``version``, the
        earliest winning where a setting changed twice."""

        def key(text: str) -> tuple[int, ...]:  # "0.2" == "0.2.0"; a suffix ("0.2.2rc1") is ignored
            parts = [int(re.match(r"\d*", part).group() or 0) for part in str(text).split(".")[:3]]
            return tuple(parts + [0] * (3 - len(parts)))

        settings: dict[str, Any] = {}
        for introduced in sorted(self.earlier_defaults, key=key, reverse=True):
            if key(version) < key(introduced):
                settings.update(self.earlier_defaults[introduced])
        return settings


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model class or factory under ``name`` (decorator); returns it unchanged.

    Registering a second, different object under a name already taken is a programming error.
    """

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        known = MODELS.registered(name)
        if known is not None and known.factory is not factory:
            # Re-importing the same module (e.g. importlib.reload) re-registers an equal
            # qualname; anything else is two models fighting for one name.
            if getattr(known.factory, "__qualname__", None) != getattr(factory, "__qualname__", ""):
                raise ValueError(f"model name {name!r} is already registered by {known.factory!r}")
        doc = inspect.getdoc(factory) or ""
        # A sized variant (a factory function) declares through the class it builds.
        declared = getattr(factory, "model_class", factory)

        def attribute(key: str, default: Any) -> Any:
            return getattr(factory, key, getattr(declared, key, default))

        inputs = attribute("inputs", None)
        MODELS.register(name, ModelSpec(
            name=name,
            factory=factory,
            paper=str(attribute("paper", "")),
            summary=doc.splitlines()[0] if doc else "",
            requires=tuple(attribute("requires", ())),
            requires_any=tuple(tuple(group) for group in attribute("requires_any", ())),
            small_config=dict(attribute("small_config", {})),
            inputs=None if inputs is None else tuple(inputs),
            train_defaults=dict(attribute("train_defaults", {})),
            pretrainable=callable(getattr(declared, "pretraining_objective", None)),
            origin=_origin(factory),
            reads_features=_takes_keyword(factory, "features"),
            earlier_defaults={str(k): dict(v) for k, v in attribute("earlier_defaults", {}).items()},
        ), replace=True)
        return factory

    return decorate


def _takes_keyword(factory: Callable[..., nn.Module], name: str) -> bool:
    """Whether ``factory`` (a class: its ``__init__``) accepts the keyword ``name``."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    parameters = inspect.signature(target).parameters.values()
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _origin(factory: Callable[..., nn.Module]) -> tuple[str, str | None]:
    """(module name, folder to put on sys.path or None) of the module defining ``factory``."""
    module_name = factory.__module__
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if module_name.startswith("geomer.") or file is None:
        return module_name, None
    # The folder that makes ``import <module name>`` find the file (one level per dot).
    folder = Path(file).resolve().parent
    for _ in range(module_name.count(".")):
        folder = folder.parent
    return module_name, str(folder)


def ensure_registered(name: str, origin: tuple[str, str | None]) -> None:
    """Import the module that registers model ``name`` (its spec's ``origin``) if this process
    does not know the model yet (a fresh worker process)."""
    if name in MODELS:
        return
    module_name, folder = origin
    if folder is not None and folder not in sys.path:
        sys.path.insert(0, folder)
    importlib.import_module(module_name)
    if name not in MODELS:
        raise GeomerError(f"model {name!r} is not registered by module {module_name!r}")


def list_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(MODELS)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered under ``name``; unknown names raise GeomerError."""
    return MODELS[name]


def create(
    name: str, num_classes: int, graph: Any, features: FeatureSettings | None = None, **cfg: Any
) -> nn.Module:
    """Build the model registered as ``name`` for ``num_classes`` classes on ``graph``.

    ``graph`` is the :class:`geomer.graph.FaceGraph` the data were made on (it fixes the nodes,
    the components K and the prior edges); ``features`` the :class:`FeatureSettings` they were
    extracted with (the default settings when None), from which the model reads its input
    geometry. ``cfg`` are the model's settings; a setting the model does not have raises
    GeomerError listing the ones it has. The built module carries ``model_name`` and
    ``model_cfg`` so checkpoints can record how to rebuild it (with their feature settings).
    """
    spec = get_spec(name)
    features = FeatureSettings() if features is None else features
    if int(num_classes) < 2:
        raise GeomerError(f"model {name!r} needs at least 2 classes, got {num_classes}")
    declared = _check_known_settings(name, spec.factory, cfg)
    for key, value in cfg.items():
        kind = declared.get(key)
        if kind is not None and not _is_of(value, kind):
            raise GeomerError(f"model {name!r} setting {key}={value!r}: expected {kind.__name__}")
    geometry = {"features": features} if spec.reads_features else {}
    try:
        model = spec.factory(int(num_classes), graph, **geometry, **cfg)
    except (TypeError, ValueError, RuntimeError, AssertionError, ZeroDivisionError) as error:
        # settings of the right types that do not fit together (dim not divisible by heads)
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise GeomerError(f"model {name!r} cannot be built with settings {cfg}: {first}") from None
    model.model_name = name
    model.model_cfg = dict(cfg)
    return model


def _declared_settings(factory: Callable[..., nn.Module]) -> dict[str, type | None] | None:
    """Setting name → declared type (bool, int, float, str or tuple — a sequence, such as
    ``dere-grl``'s ``streams``; None: anything) of ``factory``'s keyword settings, or None when it
    takes ``**kwargs``. The type is the default value's, else the annotation's."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    parameters = list(inspect.signature(target).parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    skip = {"self", "num_classes", "graph", "features"}
    declared: dict[str, type | None] = {}
    for p in parameters:
        if p.name in skip or p.kind not in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            continue
        kind = type(p.default) if p.default is not inspect.Parameter.empty and p.default is not None else None
        if kind is None and p.annotation is not inspect.Parameter.empty:
            text = str(getattr(p.annotation, "__name__", p.annotation)).replace(" ", "")
            text = text.removesuffix("|None").removeprefix("Optional[").removesuffix("]")
            kind = _SCALARS.get(text)
        kind = tuple if kind is list else kind
        declared[p.name] = kind if kind in (*_SCALARS.values(), tuple) else None
    return declared


_SCALARS = {"bool": bool, "int": int, "float": float, "str": str}
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _check_known_settings(name: str, factory, settings) -> dict[str, type | None]:
    declared = _declared_settings(factory)
    if declared is None:
        return {}
    unknown = sorted(set(settings) - set(declared))
    if unknown:
        raise GeomerError(
            f"model {name!r} has no setting {', '.join(map(repr, unknown))}; "
            f"its settings: {', '.join(sorted(declared)) or 'none'}"
        )
    return declared


def _is_of(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind is tuple:  # a list too: config.json and checkpoints store sequences as JSON lists
        return isinstance(value, tuple | list)
    return isinstance(value, kind)


def parse_settings(name: str, texts: dict[str, str]) -> dict[str, Any]:
    """Model settings given as text (``geomer train --set KEY=VALUE``), parsed by each setting's
    declared type: ``16.7`` for an int, ``maybe`` for a bool or ``nan`` for a float are
    GeomerErrors; text is plain or a JSON string (``rrm=vector`` or ``rrm='"vector"'``); a
    sequence is a JSON list or comma-separated text (``streams=node,edge``); a setting of
    undeclared type is parsed as JSON when it parses, else kept as text."""
    spec = get_spec(name)
    declared = _check_known_settings(name, spec.factory, texts)
    settings: dict[str, Any] = {}
    for key, text in texts.items():
        kind = declared.get(key)
        try:
            if kind is bool:
                settings[key] = _BOOLEANS[text.strip().lower()]
            elif kind is int:
                settings[key] = int(text)
            elif kind is float:
                settings[key] = float(text)
                if not math.isfinite(settings[key]):
                    raise ValueError(text)
            elif kind is str:
                settings[key] = _text(text)
            elif kind is tuple:
                settings[key] = _sequence(text)
            else:
                try:
                    settings[key] = json.loads(text)
                except json.JSONDecodeError:
                    settings[key] = text
        except (KeyError, ValueError):
            raise GeomerError(f"--set {key}={text}: expected {kind.__name__} for model {name!r}") from None
    return settings


def _text(text: str) -> str:
    """``vector`` or the JSON string ``"vector"`` → ``vector``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if isinstance(value, str) else text


def _sequence(text: str) -> tuple:
    """``["node", "edge"]`` (JSON) or ``node,edge`` → ``("node", "edge")``; a JSON string
    (``"node"``) is one item."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, str):
        return (value,)
    return tuple(part.strip() for part in text.split(","))


def _has(data: Any, attribute: str) -> bool:
    return getattr(data, attribute, None) is not None


def check_inputs(model: nn.Module | str, data: Any) -> None:
    """Raise a one-line GeomerError when ``data`` lacks an input ``model`` needs.

    ``model`` is a built model or a registered name; ``data`` a ``Data`` or ``Batch``. The
    engine calls this once before training, so a dataset without a modality fails at the start
    (e.g. a frame-sequence model on ``megc2019-flow``).
    """
    if isinstance(model, str):
        spec = get_spec(model)
        name, requires, requires_any = spec.name, spec.requires, spec.requires_any
    else:
        name = getattr(model, "model_name", type(model).__name__)
        requires = tuple(getattr(model, "requires", ()))
        requires_any = tuple(getattr(model, "requires_any", ()))
    clip = getattr(data, "clip", None)
    where = f" (clip {clip[0] if isinstance(clip, list | tuple) else clip})" if clip else ""
    for attribute in requires:
        if not _has(data, attribute):
            raise GeomerError(f"model {name!r} needs input {attribute!r}, which the data lack{where}")
    for group in requires_any:
        if not any(_has(data, attribute) for attribute in group):
            raise GeomerError(
                f"model {name!r} needs one of the inputs {', '.join(map(repr, group))}, "
                f"and the data have none{where}"
            )
