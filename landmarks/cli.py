"""The ``landmarks`` command: ``extract`` tracks, ``show`` a tracked frame.

Bad input → one line on stderr and exit status 2 (a traceback only with ``--debug``); outputs are
written atomically, so a failed run leaves no partial file.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from landmarks.backends import BACKENDS
from landmarks.errors import LandmarksError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="landmarks", description="68-point face landmark tracks from videos and frame folders"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    formatter = argparse.ArgumentDefaultsHelpFormatter

    extract = commands.add_parser(
        "extract", help="track landmarks; one .npz per input", description="track landmarks; one .npz per input",
        formatter_class=formatter,
    )
    extract.add_argument("inputs", nargs="+", metavar="INPUT", help="video files or frame folders")
    extract.add_argument("-o", "--out", required=True, help="output .npz (one input) or folder (several)")
    extract.add_argument("--backend", default="dlib", choices=BACKENDS.names(), help="landmark backend")
    extract.add_argument("--redetect-every", type=int, default=30, help="frames between re-detections")
    extract.add_argument("--smooth", type=int, default=0, help="odd running-median window over frames (0: off)")
    extract.add_argument("--min-valid-fraction", type=float, default=0.5, help="fewer frames with a face is an error")
    extract.add_argument("--fps", type=float, default=None, help="frame rate of frame folders")
    extract.add_argument("--jobs", type=int, default=1, help="parallel processes over inputs")
    extract.add_argument("--quiet", action="store_true", help="no progress bars")
    extract.add_argument(
        "--overwrite", action="store_true",
        help="re-extract inputs whose .npz exists (default: keep them, so an interrupted run resumes)",
    )
    extract.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    extract.set_defaults(func=_extract)

    show = commands.add_parser(
        "show", help="draw a track's points on one frame", description="draw a track's points on one frame",
        formatter_class=formatter,
    )
    show.add_argument("track", metavar="TRACK.npz", help="a track written by `landmarks extract`")
    show.add_argument("--frame", type=int, required=True, help="frame NUMBER (as in the track's frame_index)")
    show.add_argument("-o", "--out", required=True, help="output image (.png, .jpg)")
    show.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    show.set_defaults(func=_show)
    return parser


def _output_paths(inputs: list[str], out: str) -> list[Path]:
    if len(inputs) == 1 and not Path(out).is_dir():
        path = Path(out)
        if path.suffix.lower() != ".npz":
            raise LandmarksError(f"{out}: the output of one input must be a .npz file (or an existing folder)")
        return [path]
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise LandmarksError(f"{out}: several inputs need an output folder, this is a file")
    paths = [folder / f"{Path(item).stem if Path(item).is_file() else Path(item).name}.npz" for item in inputs]
    seen: dict[Path, str] = {}
    for item, path in zip(inputs, paths):
        if path in seen:
            raise LandmarksError(f"{item}: its output {path.name} collides with that of {seen[path]}")
        seen[path] = item
    return paths


def _extract_one(job: tuple[str, str, dict]) -> str | None:
    """Worker: track one input and save it; returns an error line or None."""
    source, out, options = job
    from landmarks.tracker import track

    try:
        track(source, **options).save(out)
    except LandmarksError as error:
        return str(error)
    return None


def _extract(args) -> int:
    for item in args.inputs:
        if not Path(item).exists():
            raise LandmarksError(f"{item}: no such file or folder")
    outputs = _output_paths(args.inputs, args.out)
    if len(outputs) > 1:
        outputs[0].parent.mkdir(parents=True, exist_ok=True)
    single = len(args.inputs) == 1
    options = dict(
        backend=args.backend,
        redetect_every=args.redetect_every,
        smooth=args.smooth,
        min_valid_fraction=args.min_valid_fraction,
        fps=args.fps,
        progress=single and not args.quiet,
    )
    # Construct the backend once up front so a missing optional backend fails before any work.
    from landmarks.backends import get_backend

    get_backend(args.backend)
    jobs = [
        (item, str(out), options)
        for item, out in zip(args.inputs, outputs)
        if args.overwrite or not out.is_file()  # outputs are written atomically: present = complete
    ]
    if len(jobs) < len(outputs) and not args.quiet:
        print(f"landmarks: kept {len(outputs) - len(jobs)} existing output(s); --overwrite re-extracts them",
              file=sys.stderr)
    if args.jobs > 1 and len(jobs) > 1:
        from landmarks.pool import process_pool

        with process_pool(min(args.jobs, len(jobs))) as pool:
            results = pool.map(_extract_one, jobs)
            errors = _collect(results, len(jobs), args.quiet)
    else:
        errors = _collect(map(_extract_one, jobs), len(jobs), args.quiet or single)
    for error in errors:
        print(f"landmarks: error: {error}", file=sys.stderr)
    return 2 if errors else 0


def _collect(results, total: int, quiet: bool) -> list[str]:
    from tqdm import tqdm

    return [error for error in tqdm(results, total=total, disable=quiet, unit="clip") if error]


def _show(args) -> int:
    import cv2
    import numpy as np

    from landmarks.io import read_frames
    from landmarks.track import LandmarkTrack

    track = LandmarkTrack.load(args.track)
    position = track.position(args.frame)
    if not Path(track.source).exists():
        raise LandmarksError(f"{args.track}: its source {track.source} no longer exists")
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp"):
        raise LandmarksError(f"{out}: output must be an image (.png, .jpg, .bmp)")
    (image,) = read_frames(track.source, [position])
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    radius = max(1, round(min(image.shape[:2]) / 200))
    if track.valid[position]:
        for x, y in track.points[position]:
            cv2.circle(image, (int(round(x)), int(round(y))), radius, (0, 255, 0), -1, cv2.LINE_AA)
        x0, y0, x1, y1 = (int(round(v)) for v in track.box[position])
        cv2.rectangle(image, (x0, y0), (x1, y1), (255, 128, 0), 1)
    else:
        print(f"landmarks: frame {args.frame} of {track.source} has no face (valid=False)", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(out.suffix, image)
    if not ok:
        raise LandmarksError(f"{out}: cannot encode the image")
    temp = out.with_name(f".{out.name}.tmp")
    temp.write_bytes(np.asarray(encoded).tobytes())
    os.replace(temp, out)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except LandmarksError as error:
        if args.debug:
            raise
        print(f"landmarks: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
