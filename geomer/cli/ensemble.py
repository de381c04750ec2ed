"""``geomer ensemble RUN_DIR... --out DIR``: average the fold probabilities of finished runs and pool them."""

from __future__ import annotations

from geomer.cli._common import add_command, output_path


def register(subparsers) -> None:
    parser = add_command(
        subparsers, "ensemble",
        "average the class probabilities of runs with the same samples, folds and seeds, then pool "
        "them like any run (metrics.json, per-dataset parts, figures)", run,
    )
    parser.add_argument("run_dirs", metavar="RUN_DIR", nargs="+", help="directories written by `geomer train`")
    parser.add_argument("--out", required=True, type=output_path, help="the ensemble's run directory")
    parser.add_argument("--no-figures", action="store_true", help="do not draw figures/")


def run(args) -> int:
    from geomer.cli._common import summarise_run
    from geomer.train.ensemble import build_ensemble

    run_dir, metrics = build_ensemble(args.run_dirs, args.out)
    summarise_run(run_dir, metrics, figures=not args.no_figures)
    print(f"\nrun directory: {run_dir.path}")
    return 0
