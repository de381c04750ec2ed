"""The ``geomer`` command: parses arguments, then calls the library.

Each sub-command lives in its own module ``geomer.cli.<name>`` with a ``register(subparsers)``
function; modules import heavy libraries (torch, cv2) inside their run functions so that
``geomer --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import traceback
from concurrent.futures.process import BrokenProcessPool

from landmarks.cli import (
    ArgumentParser,
    DefaultsHelpFormatter,
    drop_standard_output,
    exit_status,
    standard_output_named,
    terminations_raised,
    was_terminated,
)
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
    parser = ArgumentParser(
        prog="geomer",
        description="Facial micro-expression recognition on facial-landmark region graphs.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"geomer.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:  # building the parser imports every command's module: a second or so of Ctrl-C to catch
        with standard_output_named():  # --help into a full disk
            args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        print("geomer: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:  # the reader left (`geomer --help | head -1`): not an error
        drop_standard_output()
        return 0
    except OSError as error:
        print(f"geomer: error: {os_error_line(error)}", file=sys.stderr)
        return 2
    with terminations_raised():
        return _run(args)


def _failed(args, line: object) -> int:
    """Report an error the user can fix: its traceback first with ``--debug``, then one line;
    exit status 2 either way (a script sees the same status with and without ``--debug``)."""
    if args.debug:
        traceback.print_exc()
    print(f"geomer {args.command}: error: {line}", file=sys.stderr)
    return 2


def _run(args) -> int:
    try:
        with standard_output_named():
            status = args.func(args)
    except (GeomerError, LandmarksError) as error:
        return _failed(args, error)
    except BrokenPipeError:  # the reader closed the pipe (`geomer models | head`): not an error
        drop_standard_output()
        return 0
    except OSError as error:
        # A file the command reads or writes (an unwritable folder, an output path naming an
        # existing file, a name too long, a full disk): the user's to fix, one line naming it.
        return _failed(args, os_error_line(error))
    except BrokenProcessPool:
        return _failed(args, "a worker process died (killed or out of memory); finished work is kept: "
                             "run the command again, with fewer --jobs")
    except (MemoryError, RuntimeError) as error:
        # settings too large for this machine (a batch, a width): torch reports an allocation it
        # cannot make as a RuntimeError; any other RuntimeError is a defect, shown as one
        signs = ("can't allocate memory", "out of memory", "not enough memory")
        lines = (str(error) or type(error).__name__).splitlines()
        detail = next((line.strip() for line in lines if any(sign in line for sign in signs)), None)
        if detail is None and not isinstance(error, MemoryError):
            raise
        return _failed(args, f"out of memory ({(detail or lines[0])[:200]}): use smaller settings "
                             "(or fewer --jobs)")
    except KeyboardInterrupt as interruption:
        ending = "terminated" if was_terminated(interruption) else "interrupted"
        print(f"geomer {args.command}: {ending}", file=sys.stderr)
        return exit_status(interruption)
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
