"""The ``geomer`` command: parses arguments, then calls the library.

Each sub-command lives in its own module ``geomer.cli.<name>`` with a ``register(subparsers)``
function; modules import heavy libraries (torch, cv2) inside their run functions so that
``geomer --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import traceback
from concurrent.futures.process import BrokenProcessPool

from landmarks.cli import DefaultsHelpFormatter, interrupts_not_lost
from landmarks.errors import LandmarksError

from geomer.errors import GeomerError

COMMANDS = (
    "synth",
    "prepare",
    "train",
    "evaluate",
    "ensemble",
    "predict",
    "plot",
    "compare",
    "pretrain",
    "models",
    "datasets",
    "bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geomer",
        description="Facial micro-expression recognition on facial-landmark region graphs.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"geomer.cli.{name}").register(subparsers)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's time limit), raised like Ctrl-C so that the same cleanup
    runs: temp folders removed, worker processes ended, finished work kept for a resume."""


#: Set by the SIGTERM handler: a library waiting in native code (Ray's ``ray.wait``) may turn the
#: raised :class:`Terminated` into a plain KeyboardInterrupt, whose exit status would then say Ctrl-C.
_terminated = threading.Event()


def _terminate(signum, frame) -> None:
    _terminated.set()
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    try:  # building the parser imports every command's module: a second or so of Ctrl-C to catch
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        print("geomer: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    # signal handlers can only be set from the main thread (tests may call main from others)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    _terminated.clear()
    try:
        with interrupts_not_lost({Terminated: signal.SIGTERM}):
            return _run(args)
    finally:
        if in_main_thread and previous is not None:  # None: a handler set outside Python, kept as ours
            signal.signal(signal.SIGTERM, previous)


def _failed(args, line: object) -> int:
    """Report an error the user can fix: its traceback first with ``--debug``, then one line;
    exit status 2 either way (a script sees the same status with and without ``--debug``)."""
    if args.debug:
        traceback.print_exc()
    print(f"geomer {args.command}: error: {line}", file=sys.stderr)
    return 2


def _run(args) -> int:
    try:
        status = args.func(args)
    except (GeomerError, LandmarksError) as error:
        return _failed(args, error)
    except BrokenPipeError:
        # the reader closed the pipe (`geomer models | head`): not an error; keep the interpreter
        # from failing again while flushing stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:
        # A file the command reads or writes (an unwritable folder, an output path naming an
        # existing file, a name too long, a full disk): the user's to fix, one line naming it.
        return _failed(args, os_error_line(error))
    except BrokenProcessPool:
        return _failed(args, "a worker process died (killed or out of memory); finished work is kept: "
                             "run the command again, with fewer --jobs")
    except KeyboardInterrupt as interruption:
        terminated = isinstance(interruption, Terminated) or _terminated.is_set()
        print(f"geomer {args.command}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    return int(status or 0)


def os_error_line(error: OSError) -> str:
    """``path: reason`` (and ``→ other path`` for a rename) of an operating-system error; the
    reason alone (and where to look) when the error names no file."""
    if error.filename is None:
        return f"{error.strerror or error} (run with --debug to see where)"
    where = str(error.filename) + (f" → {error.filename2}" if error.filename2 else "")
    return f"{where}: {error.strerror or error}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
