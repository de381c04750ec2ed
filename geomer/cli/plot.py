"""``geomer plot RUN_DIR [-o DIR]``: the figures of a training run (``geomer.viz.run`` lists them).

Writes into RUN_DIR/figures (or DIR).
"""

from __future__ import annotations

import sys

from geomer.cli._common import add_command, output_path


def register(subparsers) -> None:
    parser = add_command(subparsers, "plot", "draw a run's relation matrices, confusion matrix, graph on a face and training curves", _run)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by 'geomer train'")
    parser.add_argument("-o", "--out", metavar="DIR", default=None, type=output_path, help="output folder (default: RUN_DIR/figures)")
    parser.add_argument(
        "--face",
        choices=("photo", "template"),
        default="photo",
        help="draw the graph on the bundled astronaut photo, or at the canonical template positions",
    )
    parser.add_argument("--quiet", action="store_true", help="do not list the files written")


def _run(args) -> int:
    from geomer.errors import GeomerError
    from landmarks.files import check_output_folder
    from geomer.rundir import RunDir, load_run
    from geomer.viz.run import write_run_figures

    run_dir = RunDir(args.run_dir)
    check_output_folder(args.out if args.out is not None else run_dir.figures_dir, "-o", GeomerError)
    run = load_run(run_dir)
    if run.unfinished:  # figures of a running or interrupted run are useful, but must say so
        print(f"note: {run_dir.path}: {len(run.unfinished)} fold(s) unfinished; the figures show the finished ones",
              file=sys.stderr)
    written = write_run_figures(run, args.out, face=args.face)
    if not args.quiet:
        for path in written:
            print(path)
    return 0
