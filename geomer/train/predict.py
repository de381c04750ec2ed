"""Running a trained model (a fold's ``checkpoint.pt``) on a new video or frame folder.

landmarks.track → features (``extract_clip`` with the checkpoint's feature settings; the apex is
spotted when not given) → ``to_pyg`` → model → class probabilities and the clip's relations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geomer.errors import GeomerError


@dataclass(frozen=True)
class Prediction:
    """A model's reading of one clip.

    Shapes:
        probabilities: [C] (order of ``classes``); relations: [K, K] rows sum to 1.
    """

    source: str
    classes: tuple[str, ...]
    probabilities: np.ndarray
    relations: np.ndarray
    component_names: tuple[str, ...]
    onset: int
    apex: int
    offset: int
    apex_spotted: bool

    @property
    def predicted(self) -> str:
        return self.classes[int(np.argmax(self.probabilities))]

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "predicted": self.predicted,
            "probabilities": {c: float(p) for c, p in zip(self.classes, self.probabilities)},
            "onset": self.onset,
            "apex": self.apex,
            "offset": self.offset,
            "apex_spotted": self.apex_spotted,
            "component_names": list(self.component_names),
            "relations": self.relations.tolist(),
        }


def _check_frame_range(source: Path, onset: int | None, apex: int | None, offset: int | None,
                       frames: list[int] | None = None) -> None:
    """One-line GeomerError unless the clip has two frames or more and the given frame numbers
    are in order (onset <= apex <= offset) and among ``frames`` (default: a frame folder's
    numbered files; a video's frames are only known once it is read, so then only the order is
    checked)."""
    given = [(name, int(value)) for name, value in (("onset", onset), ("apex", apex), ("offset", offset))
             if value is not None]
    if any(first[1] > second[1] for first, second in zip(given, given[1:])):
        raise GeomerError(f"{source}: frames must satisfy onset <= apex <= offset "
                          f"(got {', '.join(f'{name} {value}' for name, value in given)})")
    if frames is None and source.is_dir():
        from geomer.data.frames import frames_of

        frames = list(frames_of(source))
    if frames is not None and len(frames) == 1:
        raise GeomerError(f"{source}: one frame ({frames[0]}) has no motion; a clip needs at least two")
    for name, value in given if frames else ():
        if value not in frames:
            raise GeomerError(f"{source}: {name} frame {value} is not among frames {frames[0]}..{frames[-1]}")


def predict_clip(
    source: str | Path,
    checkpoint: str | Path,
    *,
    onset: int | None = None,
    apex: int | None = None,
    offset: int | None = None,
    progress: bool = False,
) -> Prediction:
    """Class probabilities and relations of the clip at ``source`` (video file or frame folder).

    ``onset``/``apex``/``offset`` are frame numbers (video frame number, or the number in the
    frame file names); defaults: the first frame, the spotted apex, the last frame. Raises
    ``LandmarksError`` when no face is found, GeomerError for a bad checkpoint or frame range.
    """
    import landmarks
    import torch

    from geomer.data.cache import notice
    from geomer.data.frames import frame_gap
    from geomer.data.pyg import to_pyg
    from geomer.features.extract import extract_clip
    from geomer.features.types import FeatureSettings
    from geomer.models import check_inputs
    from geomer.train.checkpoint import load_checkpoint

    source = Path(source)
    if not source.exists():
        raise GeomerError(f"{source}: no such video or frame folder")
    from landmarks.io import IMAGE_SUFFIXES

    if source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
        raise GeomerError(f"{source}: one image has no motion; give a video or a folder of the clip's frames")
    _check_frame_range(source, onset, apex, offset)  # before the tracking, which takes a while
    saved = load_checkpoint(checkpoint)
    try:
        settings = FeatureSettings.from_dict(saved.feature_settings)
        face_graph = saved.face_graph()
        model = saved.build_model()
        if settings.graph().num_nodes != face_graph.num_nodes:  # found now, not after the tracking
            raise GeomerError(f"its feature settings sample {settings.graph().num_nodes} nodes, "
                              f"its graph has {face_graph.num_nodes}")
    except GeomerError as error:  # a checkpoint's settings or weights that do not build its model
        raise GeomerError(f"{checkpoint}: {error}") from None

    track = landmarks.track(source, backend=settings.backend, progress=progress)
    frames = [int(f) for f in track.frame_index]
    onset = frames[0] if onset is None else int(onset)
    offset = frames[-1] if offset is None else int(offset)
    _check_frame_range(source, onset, apex, offset, frames)  # with the defaults, on the tracked frames
    missing, first = frame_gap(frames, onset, offset) if source.is_dir() else (0, None)
    if missing:  # as geomer prepare says it: the tracker steps over a gap
        notice(f"{source}: {missing} frame(s) missing between onset {onset} and offset {offset} "
               f"(first: {first}); the clip is tracked without them")
    features = extract_clip(source, track, onset, apex, offset, settings=settings, clip=source.name)
    data = to_pyg(features, face_graph, 0, clip=source.name, subject="predict", dataset="")
    check_inputs(saved.model, data)
    from torch_geometric.data import Batch

    with torch.no_grad():
        output = model(Batch.from_data_list([data]))
    return Prediction(
        source=str(source),
        classes=saved.classes,
        probabilities=torch.softmax(output.logits, dim=1)[0].numpy().astype(np.float64),
        relations=output.relations[0].numpy(),
        component_names=saved.component_names,
        onset=int(features.onset),
        apex=int(features.apex),
        offset=int(features.offset),
        apex_spotted=bool(features.apex_spotted),
    )
