"""``geomer evaluate RUN_DIR``: re-pool a run directory's predictions and print the table."""

from __future__ import annotations

from geomer.cli._common import add_command


def register(subparsers) -> None:
    parser = add_command(
        subparsers, "evaluate", "re-pool a run directory (metrics.json, relations.npy) and print the table", run
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `geomer train`")
    parser.add_argument("--no-figures", action="store_true", help="do not redraw figures/")


def run(args) -> int:
    from geomer.cli._common import summarise_run
    from geomer.rundir import RunDir
    from geomer.train.pool import pool_run

    run_dir = RunDir(args.run_dir)
    run_dir.require_engine_config()
    if not args.no_figures:
        run_dir.check_figures_folder()  # before metrics.json is rewritten
    summarise_run(run_dir, pool_run(run_dir), figures=not args.no_figures)
    return 0
