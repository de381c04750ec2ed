"""landmarks: face detection and 68-point landmark tracking from videos, frame folders and images.

A standalone package (it knows nothing about geomer). See ``landmarks.track`` for the entry point
and ``LandmarkTrack`` for the result.

Note: ``landmarks.track`` is the tracking FUNCTION (from ``landmarks.tracker``); the module that
defines ``LandmarkTrack`` is also named ``landmarks/track.py`` — import the class as
``from landmarks import LandmarkTrack``.
"""

#: Changes whenever the same input and settings would give different tracks (caches key on it).
__version__ = "0.2.0"

from landmarks.errors import LandmarksError  # noqa: E402
from landmarks.template import CANONICAL_TEMPLATE  # noqa: E402
from landmarks.track import LandmarkTrack  # noqa: E402
from landmarks.io import open_frames, read_frames  # noqa: E402
from landmarks.backends import find_faces, get_backend, landmarks_on_image  # noqa: E402
from landmarks.tracker import track  # noqa: E402

__all__ = [
    "CANONICAL_TEMPLATE",
    "LandmarkTrack",
    "LandmarksError",
    "find_faces",
    "get_backend",
    "landmarks_on_image",
    "open_frames",
    "read_frames",
    "track",
]
