"""``geomer evaluate RUN_DIR [--against OTHER_RUN]``: re-pool a run directory's predictions and print
the table; with ``--against``, also the paired difference to another run tested on the same clips."""

from __future__ import annotations

import math

from geomer.cli._common import add_command

LABELS = {"uf1": "UF1", "uar": "UAR", "acc": "acc"}


def register(subparsers) -> None:
    parser = add_command(
        subparsers, "evaluate", "re-pool a run directory (metrics.json, relations.npy) and print the table", run
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `geomer train`")
    parser.add_argument("--no-figures", action="store_true", help="do not redraw figures/")
    parser.add_argument("--against", metavar="OTHER_RUN", default=None,
                        help="another run tested on the same clips and seeds (e.g. a reference model): print the "
                             "difference of UF1, UAR and accuracy with its 95 %% interval, the same test subjects "
                             "resampled for both runs")


def run(args) -> int:
    from geomer.cli._common import summarise_run
    from geomer.errors import GeomerError
    from geomer.rundir import RunDir
    from geomer.train.pool import pool_run

    run_dir = RunDir(args.run_dir)
    run_dir.require_engine_config()
    difference = None
    if args.against is not None:  # checked (and computed) before metrics.json is rewritten
        from geomer.rundir import load_run
        from geomer.train.metrics import subject_bootstrap_intervals
        from geomer.train.pool import paired_seeds

        other = RunDir(args.against)
        other.require_engine_config()
        if other.path.resolve() == run_dir.path.resolve():
            raise GeomerError(f"{other.path}: --against names the run itself")
        run = load_run(run_dir, check_stored=False)  # its run-level files are re-pooled below
        seeds, against = paired_seeds(run, load_run(other))
        difference = subject_bootstrap_intervals(seeds, len(run.classes), against=against)
    if not args.no_figures:
        run_dir.check_figures_folder()  # before metrics.json is rewritten
    summarise_run(run_dir, pool_run(run_dir), figures=not args.no_figures)
    if difference is not None:
        # the difference's interval is not clipped: its centre is the difference of the headlines
        print(f"\nminus {other.path}, paired (the same test subjects resampled for both; 95 % interval): "
              + ", ".join(f"{LABELS[name]} n/a" if math.isnan(low) else
                          f"{LABELS[name]} {(low + high) / 2:+.4f} [{low:+.4f}, {high:+.4f}]"
                          for name, (low, high) in difference.items()))
    return 0
