"""The feature settings and the per-clip feature record.

Both are small frozen dataclasses. :class:`FeatureSettings` names every choice that changes the
features; its :meth:`FeatureSettings.key` (a hash of all fields plus the geomer version) names the
feature-cache folder, so a changed setting never reads stale features.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

import geomer
from geomer.errors import GeomerError, check_shape
from geomer.features.sampling import NUM_FLOW_STATS

FLOW_METHODS = ("farneback", "dis", "tvl1")
FLOW_MODES = ("dense", "patches")


MAX_FACE_SIZE = 4096
MAX_PATCH_SIZE = 128


@dataclass(frozen=True)
class FeatureSettings:
    """Every setting that changes the extracted features.

    Attributes:
        backend: landmark backend used to track the clip (``landmarks.get_backend`` name).
        face_size: side in pixels of the aligned square face crop on which flow and texture are
            computed. Crop geometry: the canonical template is scaled so that the inter-ocular
            distance is ``0.4 * face_size`` and its eye-centre midpoint sits at
            ``(0.5, 0.27) * face_size`` (the whole 68-point face, chin included, fits inside;
            see ``geomer.features.crop``).
        scales: patch sides in crop pixels (at ``face_size``) around each node, S of them.
        patch_size: P, the side every patch is resized to.
        flow_method: ``"farneback"``, ``"dis"`` (OpenCV) or ``"tvl1"`` (needs opencv-contrib).
        flow_mode: ``"dense"`` (flow on the whole crop, then sampled) or ``"patches"`` (flow only
            on a window around each node's largest patch).
        steps: T, time steps the onset..offset landmark trajectory is resampled to.
        sequence_steps: Tseq, frames (evenly spaced onset..offset) whose grey patches are kept.
        flow_image_size: F, the side of the whole-face flow image (``ClipFeatures.flow_image``;
            28 as the widely shared STSTNet inputs).
        partition, nodes: the :class:`geomer.graph.FaceGraph` the features live on.
    """

    backend: str = "dlib"
    face_size: int = 256
    scales: tuple[int, ...] = (8, 16, 32)
    patch_size: int = 8
    flow_method: str = "farneback"
    flow_mode: str = "dense"
    steps: int = 16
    sequence_steps: int = 8
    flow_image_size: int = 28
    partition: str = "k7"
    nodes: str | tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", tuple(int(s) for s in self.scales))
        if self.nodes is not None and not isinstance(self.nodes, str):
            object.__setattr__(self, "nodes", tuple(int(i) for i in self.nodes))
        if self.flow_method not in FLOW_METHODS:
            raise GeomerError(
                f"unknown flow method {self.flow_method!r}; known: {', '.join(FLOW_METHODS)}"
            )
        if self.flow_mode not in FLOW_MODES:
            raise GeomerError(
                f"unknown flow mode {self.flow_mode!r}; known: {', '.join(FLOW_MODES)}"
            )
        if not self.scales or min(self.scales) < 2:
            raise GeomerError(f"feature scales must be patch sides ≥ 2 px, got {self.scales}")
        # the upper bounds keep a hand-edited record (a checkpoint's settings) from asking for
        # terabytes: a 4096-px face and 128-sample patches are far beyond any use
        if (not 32 <= self.face_size <= MAX_FACE_SIZE or not 1 <= self.patch_size <= MAX_PATCH_SIZE
                or self.steps < 2 or self.sequence_steps < 1 or self.flow_image_size < 4
                or max(self.scales) > self.face_size):
            raise GeomerError(
                f"feature settings out of range: 32 ≤ face_size ≤ {MAX_FACE_SIZE}, 1 ≤ patch_size ≤ "
                f"{MAX_PATCH_SIZE}, scales ≤ face_size, steps ≥ 2, sequence_steps ≥ 1, flow_image_size ≥ 4"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (tuples as lists)."""
        out = dataclasses.asdict(self)
        out["scales"] = list(self.scales)
        if isinstance(self.nodes, tuple):
            out["nodes"] = list(self.nodes)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "FeatureSettings":
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise GeomerError(f"unknown feature settings: {', '.join(sorted(unknown))}")
        wrong = next((name for name, value in values.items() if not _has_field_type(name, value)), None)
        if wrong is not None:  # a record edited by hand: a setting of the wrong type is no traceback later
            raise GeomerError(f"feature setting {wrong}={values[wrong]!r:.60}: wrong type")
        return cls(**values)

    def key(self) -> str:
        """A short hash of every field and the geomer version (names the cache folder)."""
        payload = json.dumps({**self.to_dict(), "version": geomer.__version__}, sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()[:16]

    def graph(self):
        """The :class:`geomer.graph.FaceGraph` these settings describe (built once per process)."""
        return _graph(self.partition, self.nodes)

    def sizes(self) -> dict[str, int]:
        """The size of every named dimension of :class:`ClipFeatures` these settings make: nodes
        N and edges E of the graph, scales S, patch side P, time steps T and Tseq, flow-image
        side F."""
        graph = self.graph()
        return {"N": graph.num_nodes, "E": graph.num_edges, "S": len(self.scales), "P": self.patch_size,
                "T": self.steps, "Tseq": self.sequence_steps, "F": self.flow_image_size}


def _has_field_type(name: str, value: Any) -> bool:
    """Whether ``value`` (as JSON holds it) fits FeatureSettings' field ``name``."""
    def integer(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if name == "scales":
        return isinstance(value, list | tuple) and all(integer(v) for v in value)
    if name == "nodes":
        return value is None or isinstance(value, str) or (
            isinstance(value, list | tuple) and all(integer(v) for v in value))
    default = next(f.default for f in dataclasses.fields(FeatureSettings) if f.name == name)
    return integer(value) if integer(default) else isinstance(value, type(default))


@functools.lru_cache(maxsize=16)
def _graph(partition: str, nodes):
    from geomer.graph import FaceGraph

    return FaceGraph(partition, nodes)


#: ClipFeatures fields that hold arrays (None when the clip lacks that modality).
ARRAY_FIELDS = (
    "points",
    "geometry",
    "apex_displacement",
    "edge_displacement",
    "flow_stats",
    "flow_patches",
    "texture_onset",
    "texture_apex",
    "sequence",
    "flow_image",
    "flow_image_points",
)
_REQUIRED = ("points", "flow_stats", "flow_patches", "texture_apex")
# Each array field's shape (see ClipFeatures); a name stands for one size in all of them.
_SHAPES = {
    "points": ("N", 2),
    "geometry": ("T", "N", 2),
    "apex_displacement": ("N", 2),
    "edge_displacement": ("E", 2),
    "flow_stats": ("N", "S", NUM_FLOW_STATS),
    "flow_patches": ("N", "S", 3, "P", "P"),
    "texture_onset": ("N", "S", "P", "P"),
    "texture_apex": ("N", "S", "P", "P"),
    "sequence": ("Tseq", "N", "P", "P"),
    "flow_image": (3, "F", "F"),
    "flow_image_points": ("N", 2),
}


@dataclass(frozen=True)
class ClipFeatures:
    """Features of one clip on a FaceGraph of N nodes (all arrays float32).

    ``onset``/``apex``/``offset`` are frame NUMBERS (as in the label sheet / file names); ``onset``
    and ``offset`` are None for a flow-image clip (megc2019-flow), which has no frames.

    Shapes:
        points: [N, 2] aligned canonical positions at onset (at apex when there is no onset).
        geometry: [T, N, 2] | None, aligned displacement from onset, onset..offset resampled to T
            steps by linear interpolation in time, in inter-ocular distances.
        apex_displacement: [N, 2] | None, aligned onset→apex displacement (IOD units).
        edge_displacement: [E, 2] | None, apex_displacement[j] - apex_displacement[i] per edge.
        flow_stats: [N, S, 12] per node and scale: mean u, mean v, mean magnitude, 8-bin
            magnitude-weighted orientation histogram (sums to 1 where there is motion), mean
            optical strain; u, v in pixels of the ``face_size`` crop.
        flow_patches: [N, S, 3, P, P] u, v, strain patches.
        texture_onset: [N, S, P, P] | None grey patches at onset (0..1, i.e. /255).
        texture_apex: [N, S, P, P] grey patches at apex (0..1).
        sequence: [Tseq, N, P, P] | None grey patches at the middle scale, Tseq frames evenly
            spaced onset..offset (0..1).
        flow_image: [3, F, F] | None the whole face's onset→apex flow (u, v, optical strain),
            each channel min-max normalised per image with u and v re-centred on their median
            (:func:`geomer.features.flow_image.normalise_flow_image`, the convention of the
            shared composite's flow images).
        flow_image_points: [N, 2] | None the nodes' positions (x, y) in the flow image's pixels
            (0..F−1, pixel centres): where each node's region of the flow image lies
            (:func:`geomer.features.flow_image.flow_image_regions`).
    """

    clip: str
    onset: int | None
    apex: int
    offset: int | None
    apex_spotted: bool
    points: np.ndarray
    geometry: np.ndarray | None
    apex_displacement: np.ndarray | None
    edge_displacement: np.ndarray | None
    flow_stats: np.ndarray
    flow_patches: np.ndarray
    texture_onset: np.ndarray | None
    texture_apex: np.ndarray
    sequence: np.ndarray | None
    flow_image: np.ndarray | None = None
    flow_image_points: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ARRAY_FIELDS:
            value = getattr(self, name)
            if value is None:
                if name in _REQUIRED:
                    raise GeomerError(f"clip {self.clip}: features lack {name}")
                continue
            object.__setattr__(self, name, np.ascontiguousarray(value, dtype=np.float32))
        self.check_sizes()  # N, S, P, ... agree across the arrays

    @property
    def num_nodes(self) -> int:
        return int(self.points.shape[0])

    def check_sizes(self, settings: FeatureSettings | None = None) -> None:
        """GeomerError (one line) unless the arrays agree on every named size (N, S, P, …) and,
        with ``settings``, have the sizes those make (:meth:`FeatureSettings.sizes`): a stored
        entry must not pass for these settings' with another shape."""
        sizes = settings.sizes() if settings is not None else {}
        for name, shape in _SHAPES.items():
            value = getattr(self, name)
            if value is not None:
                check_shape(value, shape, f"clip {self.clip}: {name}", sizes=sizes)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """A flat dict of arrays for ``np.savez`` (absent modalities are left out)."""
        out = {name: getattr(self, name) for name in ARRAY_FIELDS if getattr(self, name) is not None}
        meta = {
            "clip": self.clip,
            "onset": self.onset,
            "apex": self.apex,
            "offset": self.offset,
            "apex_spotted": self.apex_spotted,
        }
        out["meta"] = np.array(json.dumps(meta))
        return out

    @classmethod
    def from_arrays(cls, arrays) -> "ClipFeatures":
        """Inverse of :meth:`to_arrays` (accepts an ``np.load`` result)."""
        meta = json.loads(str(arrays["meta"]))
        values = {name: (arrays[name] if name in arrays else None) for name in ARRAY_FIELDS}
        return cls(**meta, **values)
