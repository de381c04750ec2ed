"""Face detection + 68-point landmark backends behind one small interface.

``Backend``: ``.name``; ``.detect(gray, upsample=None) -> [F, 4]`` float32 boxes (x0, y0, x1, y1),
largest first; ``.predict(gray, box) -> [68, 2]`` float32 points (x, y) in pixels (a box may reach
outside the image). ``find_faces(gray, backend, thorough=True)`` is the search used where a face
must not be missed (a single image, a clip's first frame): more scales, then retries for face crops
with no margin around the face.

- ``dlib`` (default): dlib's HOG frontal detector (or its CNN "mmod" detector with
  ``detector="cnn"``) and the 68-point shape predictor; the weights ship in the
  ``face_recognition_models`` package, nothing is downloaded.
- ``fan``: face-alignment (optional extra ``fan``); it runs its own network on the given box. When
  the package or its weights (in the torch hub cache) are missing it fails at construction with
  one line saying which file to put where; it never downloads.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import cv2
import numpy as np

from landmarks.errors import LandmarksError
from landmarks.registry import Registry


def _models_folder() -> Path:
    # Found by spec, not by import: face_recognition_models/__init__ needs pkg_resources.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise LandmarksError("the face_recognition_models package (dlib's 68-point weights) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def model_file(name: str) -> Path:
    """Path of a weight file shipped in face_recognition_models (error if absent)."""
    path = _models_folder() / name
    if not path.is_file():
        raise LandmarksError(f"{path}: dlib weight file missing; reinstall face_recognition_models")
    return path


# Loading the 100 MB predictor takes about a second: once per process.
@functools.lru_cache(maxsize=None)
def _dlib_predictor():
    import dlib

    return dlib.shape_predictor(str(model_file("shape_predictor_68_face_landmarks.dat")))


@functools.lru_cache(maxsize=None)
def _dlib_detector(kind: str):
    import dlib

    if kind == "hog":
        return dlib.get_frontal_face_detector()
    if kind == "cnn":
        return dlib.cnn_face_detection_model_v1(str(model_file("mmod_human_face_detector.dat")))
    raise LandmarksError(f"unknown dlib detector {kind!r} (known: hog, cnn)")


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 grey ``H×W`` from a grey or BGR image (contiguous, as dlib needs)."""
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def crop_padded(gray: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """``gray[y0:y1, x0:x1]`` where the bounds may lie outside the image: the outside is filled by
    repeating the border pixels (a detector or predictor sees a plausible continuation, not a
    black frame). Shape [y1 - y0, x1 - x0]."""
    height, width = gray.shape
    inner = gray[max(0, y0) : max(0, min(height, y1)), max(0, x0) : max(0, min(width, x1))]
    if inner.size == 0:  # the region misses the image: nothing to continue
        return np.zeros((max(0, y1 - y0), max(0, x1 - x0)), dtype=gray.dtype)
    top, left = max(0, -y0), max(0, -x0)
    bottom, right = max(0, y1 - height), max(0, x1 - width)
    if top or left or bottom or right:
        inner = cv2.copyMakeBorder(inner, top, bottom, left, right, cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(inner)


def _largest_first(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[np.argsort(-areas, kind="stable")]


class DlibBackend:
    """dlib HOG (default) or CNN detector + dlib's 68-point shape predictor.

    ``upsample``: dlib's detector upsampling count (finds faces smaller than ~80 px, slower).
    ``upscale``: the predictor runs on a crop around the box enlarged this many times (bilinear).
    dlib returns INTEGER point coordinates and reads pixels at integer positions, so on the
    original image the points are quantised to 1 px — as large as a micro-expression. On a crop
    enlarged 3× the step is 1/3 px; on rendered sub-pixel shifts this cut the error of the mean
    displacement from 0.18 to 0.05 px and the frame-to-frame jitter by half, for ~0.1 ms per frame.
    ``upscale=1`` is plain dlib.
    """

    #: Crop margin around the box, in box widths: the predictor's pixel probes reach outside the box.
    CROP_MARGIN = 0.2

    def __init__(self, detector: str = "hog", upsample: int = 0, upscale: int = 3) -> None:
        self.detector_kind = detector
        self.upsample = int(upsample)
        self.upscale = max(1, int(upscale))
        self._detector = _dlib_detector(detector)
        self._predictor = _dlib_predictor()
        self.name = "dlib" if detector == "hog" else f"dlib-{detector}"

    def detect(self, gray: np.ndarray, upsample: int | None = None) -> np.ndarray:
        """Boxes [F, 4] largest first; ``upsample`` overrides the backend's upsampling count."""
        return _dlib_boxes(self._detector, gray, self.upsample if upsample is None else upsample)

    def predict(self, gray: np.ndarray, box: np.ndarray) -> np.ndarray:
        import dlib

        box = np.asarray(box, dtype=np.float64)
        factor = self.upscale
        if factor == 1:
            x0 = y0 = 0
            image = gray
        else:
            margin = self.CROP_MARGIN * (box[2] - box[0])
            height, width = gray.shape
            # A box found in a tight face crop reaches outside the image: the crop is padded there.
            x0, y0 = int(min(max(0, box[0] - margin), box[0])), int(min(max(0, box[1] - margin), box[1]))
            x1 = int(max(min(width, box[2] + margin + 1), box[2] + 1))
            y1 = int(max(min(height, box[3] + margin + 1), box[3] + 1))
            image = cv2.resize(crop_padded(gray, x0, y0, x1, y1), None, fx=factor, fy=factor,
                               interpolation=cv2.INTER_LINEAR)
            box = (box - (x0, y0, x0, y0)) * factor
        left, top, right, bottom = (int(round(value)) for value in box)
        shape = self._predictor(image, dlib.rectangle(left, top, right, bottom))
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        if factor == 1:
            return points
        # pixel i of the enlarged crop is centred on (i + 0.5) / factor - 0.5 of the crop
        return ((points + 0.5) / factor - 0.5 + np.array([x0, y0], dtype=np.float32)).astype(np.float32)


class FanBackend:
    """face-alignment's 2-D FAN (optional): dlib's HOG detector finds faces, FAN places points.

    face-alignment fetches its weights into ``torch.hub.get_dir()/checkpoints`` on first use; we
    never download, so both files (the 2DFAN-4 network and the S3FD detector its constructor
    loads) must already be there.
    """

    FALLBACK_FAN_URL = "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-cd938726ad.zip"
    DETECTOR_FILE = "s3fd-619a316812.pth"

    def __init__(self, device: str = "cpu") -> None:
        if importlib.util.find_spec("face_alignment") is None:
            raise LandmarksError("the fan backend needs face-alignment: pip install 'geomer[fan]'")
        import torch  # only here: `import landmarks` must stay light

        checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
        for weight in (self._fan_weight_name(torch.__version__), self.DETECTOR_FILE):
            if not (checkpoints / weight).is_file():
                raise LandmarksError(
                    f"fan backend: weights missing; put {weight} (face-alignment's release file) "
                    f"in {checkpoints}"
                )
        import face_alignment

        landmarks_type = getattr(face_alignment.LandmarksType, "TWO_D", None) or face_alignment.LandmarksType._2D
        self._model = face_alignment.FaceAlignment(landmarks_type, device=device)
        self._detector = _dlib_detector("hog")
        self.name = "fan"

    @classmethod
    def _fan_weight_name(cls, torch_version: str) -> str:
        try:  # the file name face-alignment itself would fetch for this torch version
            from face_alignment.api import default_model_urls, models_urls

            urls = models_urls.get(".".join(torch_version.split(".")[:2]), default_model_urls)
            return urls["2DFAN-4"].rsplit("/", 1)[-1]
        except (ImportError, AttributeError, KeyError):
            return cls.FALLBACK_FAN_URL.rsplit("/", 1)[-1]

    def detect(self, gray: np.ndarray, upsample: int | None = None) -> np.ndarray:
        return _dlib_boxes(self._detector, gray, 0 if upsample is None else upsample)

    def predict(self, gray: np.ndarray, box: np.ndarray) -> np.ndarray:
        rgb = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
        result = self._model.get_landmarks_from_image(rgb, detected_faces=[np.asarray(box, dtype=np.float32)])
        if not result:
            return np.full((68, 2), np.nan, dtype=np.float32)
        return np.asarray(result[0][:, :2], dtype=np.float32)


def _dlib_boxes(detector, gray: np.ndarray, upsample: int) -> np.ndarray:
    found = detector(np.ascontiguousarray(gray), int(upsample))
    rects = [getattr(item, "rect", item) for item in found]  # the CNN detector wraps its rects
    boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]
    return _largest_first(np.array(boxes, dtype=np.float32))


#: A face crop with no margin gives the HOG window no context: the retry adds a black border of
#: this fraction of the image width on each side (black found more faces in real crops than a
#: repeated border, whose smeared edges look like more face).
CROP_PAD = 0.25
#: The padded retries run on a copy whose longer side is at most this (a face that fills an
#: image is large at any resolution; the CNN detector's cost grows with the area).
CROP_RETRY_SIDE = 640
#: The CNN detector is skipped on a (padded) image with a side below this: dlib's CNN raises on an
#: image under 10 px wide and may corrupt its heap doing so, and no face it can find is this small.
CNN_MIN_SIDE = 32


def find_faces(gray: np.ndarray, backend, *, thorough: bool = True) -> np.ndarray:
    """Face boxes [F, 4] float32 (x0, y0, x1, y1) in ``gray``'s pixels, largest first.

    ``thorough=False``: one pass of the backend's detector. ``thorough=True`` (a single image, a
    clip's first detection, re-acquiring a lost face), stopping at the first step that finds a face:

    1. the detector with one more upsampling than the backend's own: it finds faces smaller than
       HOG's 80 px window, and large faces that the coarser pyramid misses (on a 1080p photo of
       two faces the plain pass can find only the smaller one); it costs about 4× a plain pass.
       Then, if nothing was found, the plain pass (the two pyramids sample different scales).
    2. the image with a black border of ``CROP_PAD`` of its width on each side, plain then
       upsampled once: face crops with no margin, e.g. the 224×224 crops of preprocessed datasets;
    3. dlib's CNN ("mmod") detector on that padded image, if its sides are ``CNN_MIN_SIDE`` or more.

    Boxes from steps 2-3 are mapped back to the unpadded image and may reach outside it; the
    predictors handle such boxes.
    """
    backend = resolve_backend(backend)
    gray = to_gray(gray)
    base = int(getattr(backend, "upsample", 0))
    if not thorough:
        return backend.detect(gray, upsample=base)
    for upsample in (base + 1, base):
        boxes = backend.detect(gray, upsample=upsample)
        if len(boxes):
            return boxes
    height, width = gray.shape
    pad = int(round(CROP_PAD * width))
    padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    scale = min(1.0, CROP_RETRY_SIDE / max(padded.shape))
    if scale < 1.0:
        padded = cv2.resize(padded, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    to_image = lambda found: (found / scale - pad).astype(np.float32)  # noqa: E731
    for upsample in (base, base + 1):
        boxes = backend.detect(padded, upsample=upsample)
        if len(boxes):
            return to_image(boxes)
    if min(padded.shape) < CNN_MIN_SIDE:
        return np.zeros((0, 4), np.float32)
    boxes = _dlib_boxes(_dlib_detector("cnn"), padded, 0)
    return to_image(boxes) if len(boxes) else boxes


#: Searches near a known box run on a copy scaled so the face is about this wide.
DETECT_FACE_PX = 100
#: The side of dlib's HOG detection window: smaller faces are not found at their own size.
HOG_WINDOW_PX = 80
#: A search near a box covers this many box widths on each side of it.
NEAR_MARGIN = 0.75
#: Minimum IoU between two boxes for them to be the same face.
SAME_FACE_IOU = 0.3


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of ``box`` [4] with each of ``others`` [N, 4] → [N]."""
    x0 = np.maximum(box[0], others[:, 0])
    y0 = np.maximum(box[1], others[:, 1])
    x1 = np.minimum(box[2], others[:, 2])
    y1 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(others) - inter, 1e-6)


def detect_near(gray: np.ndarray, box: np.ndarray, backend) -> np.ndarray:
    """Face boxes [F, 4] (largest first, in ``gray``'s pixels) in the region of ``NEAR_MARGIN``
    box widths around ``box``: the cheap search of a face whose place is known (a few ms)."""
    box_width = box[2] - box[0]
    margin = NEAR_MARGIN * box_width
    # Where the region leaves the image (a face at the edge, a face crop's box) it is padded,
    # so the detector always sees the margin around the face that it needs.
    x0, y0 = int(np.floor(box[0] - margin)), int(np.floor(box[1] - margin))
    x1, y1 = int(np.ceil(box[2] + margin)), int(np.ceil(box[3] + margin))
    region = crop_padded(gray, x0, y0, x1, y1)
    # Scaled down so a large face is DETECT_FACE_PX wide (fast); a face below HOG's window is
    # scaled up to that width, as the detector would not find it at its own size. Faces in
    # between keep their size, so the box comes out as a full-image detection's would.
    scale = DETECT_FACE_PX / max(box_width, 1.0)
    if box_width >= HOG_WINDOW_PX:
        scale = min(1.0, scale)
    if scale != 1.0:
        interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        region = cv2.resize(region, None, fx=scale, fy=scale, interpolation=interpolation)
    boxes = resolve_backend(backend).detect(np.ascontiguousarray(region))
    if len(boxes) == 0:
        return boxes
    return (boxes / scale + np.array([x0, y0, x0, y0], dtype=np.float32)).astype(np.float32)


def refit_box(gray: np.ndarray, box: np.ndarray, backend) -> np.ndarray:
    """``box`` as ``detect_near`` fits it (the same face, IoU >= ``SAME_FACE_IOU``), else as given.

    A box from the thorough search (upsampled, padded) and one from a plain search differ by up
    to a pyramid step, and the predicted points follow the box by a fraction of a pixel: a
    tracker that re-detects near its box, and a single image meant to give the same points as a
    one-frame track, both start from the re-fitted box.
    """
    found = detect_near(gray, box, backend)
    if len(found):
        overlap = box_iou(box, found)
        if overlap.max() >= SAME_FACE_IOU:
            return found[int(overlap.argmax())]
    return np.asarray(box, dtype=np.float32)


def _dlib_cnn(**options) -> DlibBackend:
    return DlibBackend(detector="cnn", **options)


#: Backend name → factory taking the backend's options.
BACKENDS: Registry = Registry(
    "landmark backend", LandmarksError, {"dlib": DlibBackend, "dlib-cnn": _dlib_cnn, "fan": FanBackend}
)


def get_backend(name: str = "dlib", **options):
    """A backend by name: ``dlib`` (options: ``detector="hog"|"cnn"``, ``upsample``, ``upscale``), ``dlib-cnn``,
    or ``fan`` (options: ``device``)."""
    return BACKENDS[name](**options)


def resolve_backend(backend) -> object:
    """A backend object from a name or an existing backend."""
    return get_backend(backend) if isinstance(backend, str) else backend


def landmarks_on_image(image: np.ndarray, backend="dlib") -> np.ndarray:
    """68 points [68, 2] float32 of the largest face in one image (grey, BGR), found by the
    thorough ``find_faces`` (so tight face crops work), its box re-fitted by ``refit_box`` (so
    the points equal those of a one-frame track)."""
    backend = resolve_backend(backend)
    gray = to_gray(image)
    boxes = find_faces(gray, backend, thorough=True)
    if len(boxes) == 0:
        raise LandmarksError("no face found in the image (also padded, upsampled and by the CNN detector)")
    return backend.predict(gray, refit_box(gray, boxes[0], backend))
