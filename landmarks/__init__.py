"""landmarks: face detection and 68-point landmark tracking from videos and frame folders.

A standalone package (it knows nothing about geomer). See ``landmarks.track`` for the entry point
and ``LandmarkTrack`` for the result.

Note: ``landmarks.track`` is the tracking FUNCTION (from ``landmarks.tracker``); the module that
defines ``LandmarkTrack`` is also named ``landmarks/track.py`` — import the class as
``from landmarks import LandmarkTrack``.
"""

from landmarks.errors import LandmarksError
from landmarks.template import CANONICAL_TEMPLATE
from landmarks.track import LandmarkTrack
from landmarks.io import open_frames, read_frames
from landmarks.backends import get_backend, landmarks_on_image
from landmarks.tracker import track

__all__ = [
    "CANONICAL_TEMPLATE",
    "LandmarkTrack",
    "LandmarksError",
    "get_backend",
    "landmarks_on_image",
    "open_frames",
    "read_frames",
    "track",
]
