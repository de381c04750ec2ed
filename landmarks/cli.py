"""The ``landmarks`` command: ``extract`` tracks, ``show`` a tracked frame.

Bad input, bad options and unusable outputs → one line on stderr and exit status 2 (after the
traceback with ``--debug``), checked before any tracking or writing where possible; Ctrl-C → one line,
exit status 130; SIGTERM → one line, exit status 143. Outputs are written atomically, so a failed run leaves no partial file.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import signal
import sys
import threading
import time
import traceback
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from landmarks.backends import BACKENDS
from landmarks.errors import LandmarksError
from landmarks.files import check_output_file, fingerprint

#: What the folder-of-frames reading rule is, for --help.
INPUTS_HELP = (
    "video files, images (one-frame tracks) or frame folders; a folder's frames are ordered by the "
    "number in their file names, or, when no name holds a number, in natural sort order "
    "(side2 before side10) and numbered from 0"
)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default in ``--help`` unless its help text already says it or there is
    none to show (None, False, an empty list): "(default: the model's) (default: None)" said it
    twice."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False or action.default == []:
            return text
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose help and usage either reach their stream or raise: argparse drops
    the error of a write it cannot make, so ``--help`` into a full disk with unbuffered output
    printed nothing and exited 0. Sub-command parsers are of the same class (``add_subparsers``
    makes them so)."""

    def print_help(self, file=None) -> None:
        (file or sys.stdout).write(self.format_help())

    def print_usage(self, file=None) -> None:
        (file or sys.stdout).write(self.format_usage())

    def error(self, message: str):
        """A bad option or argument: one line on stderr and exit status 2, as every other error
        of the command (argparse's own puts the whole usage above it)."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def output_path(value: str) -> str:
    """An output option's value (argparse ``type``): an empty one (an unset shell variable) would
    be the working directory, which the user did not name."""
    if not value.strip():
        raise argparse.ArgumentTypeError("an empty path (name a file or folder; . is the current folder)")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="landmarks", description="68-point face landmark tracks from videos and frame folders"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    formatter = DefaultsHelpFormatter

    extract = commands.add_parser(
        "extract", help="track landmarks; one .npz per input",
        description="track landmarks; one .npz per input",
        formatter_class=formatter,
    )
    extract.add_argument("inputs", nargs="+", metavar="INPUT", help=INPUTS_HELP)
    extract.add_argument(
        "-o", "--out", required=True, type=output_path,
        help="output .npz (one input) or folder (several; a name ending in .npz is refused unless it is "
        "an existing folder)",
    )
    extract.add_argument("--backend", default="dlib", choices=BACKENDS.names(), help="landmark backend")
    extract.add_argument("--redetect-every", type=int, default=30, help="frames between re-detections")
    extract.add_argument("--smooth", type=int, default=0, help="odd running-median window over frames (0: off)")
    extract.add_argument("--min-valid-fraction", type=float, default=0.5, help="fewer frames with a face is an error")
    extract.add_argument("--fps", type=float, default=None, help="frame rate of frame folders")
    extract.add_argument("--jobs", type=int, default=1, help="parallel processes over inputs (>= 1)")
    extract.add_argument("--quiet", action="store_true", help="no progress bars")
    extract.add_argument(
        "--overwrite", action="store_true",
        help="re-extract inputs whose .npz exists (default: keep those that load and were made from the "
        "same input and options, so an interrupted run resumes)",
    )
    _add_debug(extract)
    extract.set_defaults(func=_extract)

    show = commands.add_parser(
        "show", help="draw a track's points on one frame", description="draw a track's points on one frame",
        formatter_class=formatter,
    )
    show.add_argument("track", metavar="TRACK.npz", help="a track written by `landmarks extract`")
    show.add_argument("--frame", type=int, required=True, help="frame NUMBER (as in the track's frame_index)")
    show.add_argument("-o", "--out", required=True, type=output_path, help="output image (.png, .jpg)")
    _add_debug(show)
    show.set_defaults(func=_show)
    return parser


def _add_debug(command: argparse.ArgumentParser) -> None:
    """``--debug`` after the command name too (``landmarks extract --debug``), as geomer's commands
    take it: SUPPRESS keeps the sub-parser from overwriting the value set before the name."""
    command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                         help="show tracebacks for errors")


def _output_paths(inputs: list[str], out: str) -> list[Path]:
    """The output file of each input: ``out`` itself for one input (a .npz name, or an existing
    folder to hold ``<name>.npz``); for several, ``out/<name>.npz`` in folder ``out``, which must
    not be a file nor, unless it exists as a folder, a name ending in .npz."""
    if len(inputs) == 1 and not Path(out).is_dir():
        path = Path(out)
        if path.suffix.lower() != ".npz":
            raise LandmarksError(f"{out}: the output of one input must be a .npz file (or an existing folder)")
        return [path]
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise LandmarksError(f"{out}: several inputs need an output folder, this is a file")
    # a new folder named like a track file is most likely a mistyped -o, not a wish
    if not folder.exists() and folder.suffix.lower() == ".npz":
        raise LandmarksError(f"{out}: several inputs need an output folder, not a .npz file name")
    paths = [folder / f"{Path(item).stem if Path(item).is_file() else Path(item).name}.npz" for item in inputs]
    seen: dict[Path, str] = {}
    for item, path in zip(inputs, paths):
        if path in seen:
            raise LandmarksError(f"{item}: its output {path.name} collides with that of {seen[path]}")
        seen[path] = item
    return paths


def _settings(source: str, options: dict) -> str:
    """What determines a track besides the backend: the tracking options and the input's fingerprint."""
    keys = ("redetect_every", "smooth", "min_valid_fraction", "fps")
    return json.dumps({"options": {key: options[key] for key in keys}, "input": _input_fingerprint(source)},
                      sort_keys=True)


def _input_fingerprint(source: str) -> str:
    """The fingerprint of a video or image file, or of a frame folder's frame files."""
    from landmarks.io import list_frame_files

    return fingerprint(list_frame_files(source) if Path(source).is_dir() else [source])


def _input_changed(track) -> bool:
    """Whether the input's fingerprint differs from the one ``landmarks extract`` recorded in the
    track (False for a track that records none, e.g. one from geomer's cache)."""
    try:
        recorded = json.loads(track.settings)["input"]
    except (ValueError, TypeError, KeyError):
        return False
    try:
        return _input_fingerprint(track.source) != recorded
    except LandmarksError:  # no frames left in the folder
        return True


def _reusable(out: Path, source: str, options: dict) -> str | None:
    """None when the existing output ``out`` loads and was made from ``source`` with these
    options; otherwise why it is not (it is then extracted again). A LandmarksError when ``out``
    is no landmark track at all."""
    from landmarks.track import LandmarkTrack

    import zipfile

    # a whole archive that is no track (the user's own .npz) or no regular file (a FIFO) is not
    # an output of ours and is never replaced unasked; a file cut short is extracted again
    if not out.is_file():
        raise LandmarksError(f"{out}: exists and is not a regular file; remove it or pass --overwrite")
    try:
        track = LandmarkTrack.load(out)
    except LandmarksError as error:
        if zipfile.is_zipfile(out):
            raise LandmarksError(f"{out}: exists and is not a landmark track ({str(error).removeprefix(f'{out}: ')[:120]}); "
                                 "remove it or pass --overwrite") from None
        return "cannot be read (truncated or corrupt)"
    if track.source != os.path.abspath(source) or track.backend != options["backend"]:
        return "was made from another input or backend"
    if track.settings != _settings(source, options):
        return "was made with other options or the input has changed"
    return None


def _extract_one(job: tuple[str, str, dict]) -> str | None:
    """Worker: track one input and save it; returns an error line (a traceback with --debug) or None."""
    source, out, options = job
    import dataclasses
    import traceback

    from landmarks.tracker import track

    options = dict(options)
    debug = options.pop("debug", False)
    try:
        result = track(source, **options)
        try:
            dataclasses.replace(result, settings=_settings(source, options)).save(out)
        except OSError as error:
            raise LandmarksError(f"{out}: cannot write ({error.strerror or error})") from error
    except (LandmarksError, OSError) as error:
        # an OSError out of tracking is about an input file: name it
        message = str(error) if isinstance(error, LandmarksError) else f"{error.filename or source}: {error.strerror or error}"
        return traceback.format_exc() + message if debug else message
    return None


def _check_extract_options(args) -> None:
    from landmarks.tracker import check_track_options

    if args.jobs < 1:
        raise LandmarksError(f"--jobs must be >= 1, got {args.jobs}")
    try:
        check_track_options(
            redetect_every=args.redetect_every, smooth=args.smooth,
            min_valid_fraction=args.min_valid_fraction, fps=args.fps,
        )
    except LandmarksError as error:  # name the flag the user typed
        option = str(error).split(" ", 1)[0]
        raise LandmarksError(f"--{option.replace('_', '-')} {str(error).split(' ', 1)[1]}") from None


def _extract(args) -> int:
    _check_extract_options(args)
    for item in args.inputs:
        if not Path(item).exists():
            raise LandmarksError(f"{item}: no such file or folder")
    from landmarks.io import open_frames

    for item in args.inputs:
        open_frames(item, fps=args.fps)  # an unreadable input is named before any work
    # Construct the backend before any output folder is made: a missing optional backend fails first.
    from landmarks.backends import get_backend

    get_backend(args.backend)
    outputs = _output_paths(args.inputs, args.out)
    for out in outputs:
        check_output_file(out)
    single = len(args.inputs) == 1
    options = dict(
        backend=args.backend,
        redetect_every=args.redetect_every,
        smooth=args.smooth,
        min_valid_fraction=args.min_valid_fraction,
        fps=args.fps,
        progress=single and not args.quiet,
        debug=args.debug,
    )
    jobs, kept = [], 0
    for item, out in zip(args.inputs, outputs):
        if out.exists() and not args.overwrite:
            reason = _reusable(out, item, options)
            if reason is None:
                kept += 1
                continue
            print(f"landmarks: {out} {reason}: extracting it again", file=sys.stderr)
        jobs.append((item, str(out), options))
    if kept and not args.quiet:
        print(f"landmarks: kept {kept} existing output(s); --overwrite re-extracts them", file=sys.stderr)
    if not jobs:  # every output kept: no empty progress bar
        return 0
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

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp"):
        raise LandmarksError(f"{out}: output must be an image (.png, .jpg, .bmp)")
    track = LandmarkTrack.load(args.track)
    position = track.position(args.frame)
    if not Path(track.source).exists():
        raise LandmarksError(f"{args.track}: its source {track.source} no longer exists")
    if _input_changed(track):
        raise LandmarksError(f"{args.track}: its source {track.source} has changed since it was tracked; extract it again")
    check_output_file(out)
    (image,) = read_frames(track.source, [position], numbers=[args.frame])
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    radius = max(1, round(min(image.shape[:2]) / 200))
    if track.valid[position]:
        # clipped a frame's size beyond the image: OpenCV takes 32-bit coordinates only, and a
        # hand-edited track may hold any finite number
        limit = 2 * max(image.shape[:2])
        for x, y in np.clip(track.points[position], -limit, limit):
            cv2.circle(image, (int(round(x)), int(round(y))), radius, (0, 255, 0), -1, cv2.LINE_AA)
        x0, y0, x1, y1 = (int(round(v)) for v in np.clip(track.box[position], -limit, limit))
        cv2.rectangle(image, (x0, y0), (x1, y1), (255, 128, 0), 1)
    else:
        print(f"landmarks: frame {args.frame} of {track.source} has no face (valid=False)", file=sys.stderr)
    ok, encoded = cv2.imencode(out.suffix, image)
    if not ok:
        raise LandmarksError(f"{out}: cannot encode the image")
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name[:40]}.{os.getpid()}.tmp")
    try:
        temp.write_bytes(np.asarray(encoded).tobytes())
        os.replace(temp, out)
    except BaseException as error:
        temp.unlink(missing_ok=True)
        if isinstance(error, OSError):  # a full disk names no file: name the output
            raise LandmarksError(f"{out}: cannot write ({error.strerror or error})") from error
        raise
    return 0


#: What an error writing to ``sys.stdout`` names as its file.
STANDARD_OUTPUT = "standard output"


class _NamedStandardOutput:
    """``sys.stdout`` whose write errors name it: a full disk or ``/dev/full`` behind ``>``
    raises an OSError naming no file. What it could not take is dropped (the descriptor is
    pointed at /dev/null), so that the interpreter does not fail again flushing it at exit."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def __getattr__(self, name: str):
        return getattr(self._stream, name)

    def write(self, text: str) -> int:
        return self._named(self._stream.write, text)

    def flush(self) -> None:
        return self._named(self._stream.flush)

    def _named(self, call, *args):
        try:
            return call(*args)
        except BrokenPipeError:  # the reader left (`| head`): the callers' own case
            raise
        except OSError as error:
            if error.filename is None:
                error.filename = STANDARD_OUTPUT
                drop_standard_output(self._stream)
            raise


class _ClosedStandardOutput:
    """Stands for ``sys.stdout`` when the command started with descriptor 1 closed (``>&-``;
    Python then sets ``sys.stdout`` to None and ``print`` drops what it is given): writing is an
    output error like any other, a command that prints nothing is unaffected."""

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "the descriptor is closed")

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        raise ValueError("standard output is closed")


def drop_standard_output(stream=None) -> None:
    """Point standard output's descriptor at /dev/null: what it still holds goes nowhere, so the
    interpreter does not fail again flushing it at exit (a closed pipe, a full disk)."""
    with contextlib.suppress(OSError, ValueError):  # ValueError: no descriptor (a test's capture)
        descriptor = (stream or sys.stdout).fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, descriptor)
        os.close(devnull)


@contextlib.contextmanager
def standard_output_named():
    """Within the block, an error writing ``sys.stdout`` names it (:class:`_NamedStandardOutput`);
    buffered output is flushed however the block ends, so that its error can still be reported:
    it replaces a normal end or a SystemExit (argparse's ``--help``); after the command's own
    error or an interrupt, that one is reported and the failed flush dropped."""
    stream = sys.stdout
    sys.stdout = named = _NamedStandardOutput(stream if stream is not None else _ClosedStandardOutput())
    try:
        yield
    except SystemExit:
        named.flush()
        raise
    except BaseException:  # the command's own error (or interrupt) is the one to report
        with contextlib.suppress(OSError):
            named.flush()
        raise
    else:
        named.flush()
    finally:
        sys.stdout = stream


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's time limit), raised like Ctrl-C so that the same cleanup
    runs: temp files removed, worker processes ended, finished work kept for a rerun."""


#: Set by the SIGTERM handler: a library waiting in native code (Ray's ``ray.wait``) may turn the
#: raised :class:`Terminated` into a plain KeyboardInterrupt, whose exit status would then say Ctrl-C.
_terminated = threading.Event()


def _terminate(signum, frame) -> None:
    _terminated.set()
    raise Terminated()


@contextlib.contextmanager
def terminations_raised():
    """Within the block SIGTERM raises :class:`Terminated` (main thread only: signal handlers
    can only be set there), and a Ctrl-C or SIGTERM lost in a finaliser is raised again
    (:func:`interrupts_not_lost`); the previous SIGTERM handler comes back after it."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    _terminated.clear()
    try:
        with interrupts_not_lost({Terminated: signal.SIGTERM}):
            yield
    finally:
        if in_main_thread and previous is not None:  # None: a handler set outside Python, kept as ours
            signal.signal(signal.SIGTERM, previous)


def was_terminated(interruption: KeyboardInterrupt) -> bool:
    """Whether ``interruption`` (caught in a :func:`terminations_raised` block) came from SIGTERM."""
    return isinstance(interruption, Terminated) or _terminated.is_set()


def exit_status(interruption: KeyboardInterrupt) -> int:
    """The shell's status for a command ended by a signal: 128 + SIGTERM (143) or SIGINT (130)."""
    return 128 + (signal.SIGTERM if was_terminated(interruption) else signal.SIGINT)


#: How long after a lost interrupt it is raised again (:func:`interrupts_not_lost`): long enough
#: for the finaliser that lost it to have returned.
_REDELIVERY_DELAY = 0.01


@contextlib.contextmanager
def interrupts_not_lost(raised_for: dict[type[BaseException], int] | None = None):
    """Within the block, a Ctrl-C (or another signal whose handler raises a KeyboardInterrupt)
    that Python drops is raised again. ``raised_for``: such subclasses and their signal (e.g. a
    SIGTERM handler's), the rest being Ctrl-C's.

    A signal's handler runs at the next bytecode the main thread executes; when that is in a
    finaliser (a ``__del__``, e.g. a closed ``ZipFile``'s while archives are read), its
    KeyboardInterrupt is printed as "Exception ignored" and dropped, and the command ran on to
    the end. ``sys.unraisablehook`` sees it: a helper thread delivers the same signal to the
    main thread again a moment later, once the finaliser has returned. Only in the main thread
    (signals are handled there); elsewhere the block does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if not issubclass(unraisable.exc_type, KeyboardInterrupt):
            return previous(unraisable)
        number = next((number for kind, number in (raised_for or {}).items()
                       if issubclass(unraisable.exc_type, kind)), signal.SIGINT)
        threading.Thread(target=_interrupt_main, args=(number,), daemon=True).start()

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def _interrupt_main(number: int) -> None:
    import _thread

    time.sleep(_REDELIVERY_DELAY)
    _thread.interrupt_main(number)


def main(argv: list[str] | None = None) -> int:
    args = None  # an error while parsing (``--help`` into a full disk) comes before any
    try:
        with terminations_raised(), standard_output_named():
            args = _parser().parse_args(argv)
            return args.func(args)
    except KeyboardInterrupt as interruption:
        ending = "terminated" if was_terminated(interruption) else "interrupted"
        print(f"landmarks: {ending}", file=sys.stderr)
        return exit_status(interruption)
    except BrokenPipeError:  # the reader left (`landmarks --help | head -1`): not an error
        drop_standard_output()
        return 0
    except BrokenProcessPool:
        if args is not None and args.debug:
            traceback.print_exc()
        print("landmarks: error: a worker process died (killed or out of memory); finished outputs are kept: "
              "run the command again, with fewer --jobs", file=sys.stderr)
        return 2
    except (LandmarksError, OSError) as error:
        # OSError: a file system failure on an output not foreseen by the checks (disk full, a
        # folder made read-only meanwhile); its message names the path. With --debug its
        # traceback comes first; the status is 2 either way.
        if args is not None and args.debug:
            traceback.print_exc()
        if isinstance(error, OSError) and error.filename is not None:
            error = f"{error.filename}: {error.strerror or error}"
        print(f"landmarks: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
