"""``geomer compare RUN_DIR... -o FIG [--ground-truth GT.json]``: relations of several runs side by
side, beside the input-only baseline, and how much they agree.

Writes FIG (a grid: one row per run's intrinsic relations and one per run's occlusion relations,
then the input-only baseline, the ground truth's ``motion_relations`` and its relevance
``relations``; one column per class) and FIG's stem + ``.csv`` beside it: the agreement table
(rows: pairs of those and each vs the ground truth; Spearman and Pearson over off-diagonal
entries, one-sided component-label permutation p-values; see ``geomer.relations``), which is also
printed; a pair with a uniform side (no ranking, e.g. ststnet's intrinsic relations) prints n/a
and leaves the CSV's cells empty. The baseline is read from the runs' ``baseline_relations.npy``
(one row when the runs share it, one per run otherwise). Runs of different class sets are refused.
"""

from __future__ import annotations

from geomer.cli._common import add_command, output_path


def register(subparsers) -> None:
    parser = add_command(subparsers, "compare", "compare the relation matrices of several runs (and the ground truth)", _run)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by 'geomer train'")
    parser.add_argument("-o", "--out", metavar="FIG", required=True, type=output_path, help="figure to write (.png, .pdf, .svg); the table goes beside it as .csv")
    parser.add_argument("--ground-truth", metavar="GT.json", default=None, help="a synthetic dataset's ground_truth.json (or its folder)")
    parser.add_argument("--per-class", action="store_true", help="add one table row per class beside the overall row")
    parser.add_argument("--permutations", type=int, default=5040, help="permutation-test size (all K! when K! is not larger)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random permutations")


def compare_runs(run_dirs, out, *, ground_truth=None, per_class: bool = False, permutations: int = 5040, seed: int = 0):
    """Write the side-by-side figure and the agreement CSV; returns the table (a DataFrame)."""
    from pathlib import Path

    import numpy as np

    from geomer.atomic import atomic_write_text
    from geomer.errors import GeomerError
    from geomer.relations import (
        agreement_table, check_ground_truth_of, load_ground_truth, load_run, load_run_relations, run_labels,
    )
    from geomer.viz import plot_relation_panel, save_figure
    from geomer.viz.relations import BASELINE_LABEL, MOTION_LABEL

    out = check_figure_path(out)
    runs = [load_run(path) for path in run_dirs]
    seen = set()
    for run in runs:  # a run beside itself is one panel twice, not a comparison
        if Path(run.path).resolve() in seen:
            raise GeomerError(f"{run.path}: given twice")
        seen.add(Path(run.path).resolve())
    for run in runs:  # agreement over some of the folds would not be the run's
        if run.unfinished:
            raise GeomerError(f"{run.path}: the run is incomplete ({len(run.unfinished)} fold(s) unfinished, e.g. "
                              f"{run.unfinished[0]}); finish it with geomer train first")
    components = runs[0].component_names
    for run in runs[1:]:
        if run.component_names != components:
            raise GeomerError(f"{run.path}/config.json: components {', '.join(run.component_names)} differ from {runs[0].path}'s ({', '.join(components)})")
    for run in runs[1:]:  # a grid of other classes has columns that only some rows fill
        if set(run.classes) != set(runs[0].classes):
            raise GeomerError(f"{run.path}/config.json: classes {', '.join(run.classes)} differ from {runs[0].path}'s "
                              f"({', '.join(runs[0].classes)}); compare runs of one class set")
    truth = load_ground_truth(ground_truth) if ground_truth is not None else None
    if truth is not None and truth.component_names != components:
        raise GeomerError(f"{truth.path}: components {', '.join(truth.component_names)} differ from the runs' ({', '.join(components)})")
    for run in runs if truth is not None else ():  # another dataset's ground truth would score nonsense
        if not set(run.classes) <= set(truth.classes):  # a run may use a scheme of fewer classes
            raise GeomerError(f"{truth.path}: classes {', '.join(truth.classes)} lack {run.path}'s "
                              f"{', '.join(sorted(set(run.classes) - set(truth.classes)))}; "
                              "is it the ground truth of the runs' dataset?")
        check_ground_truth_of(run, truth)

    def by_class(classes, matrices):
        return {c: m for c, m in zip(classes, matrices) if np.all(np.isfinite(m))}

    labels = run_labels(runs)
    columns, baselines = {}, []
    for label, run in zip(labels, runs):
        kinds = load_run_relations(run.path, run.classes, len(components))
        columns[label] = by_class(run.classes, run.class_relations)
        if "occlusion" in kinds:
            columns[f"{label} occlusion"] = by_class(run.classes, kinds["occlusion"])
        if "input-only baseline" in kinds:
            matrices = by_class(run.classes, kinds["input-only baseline"])
            if not any(b.keys() == matrices.keys() and all(np.allclose(b[c], matrices[c]) for c in b) for _, b in baselines):
                baselines.append((label, matrices))
    rows = dict(columns)
    baseline = None
    for label, matrices in baselines:
        name = BASELINE_LABEL if len(baselines) == 1 else f"{BASELINE_LABEL} ({label})"
        rows[name] = matrices
        baseline = matrices if len(baselines) == 1 else baseline
    motion = None
    if truth is not None and truth.motion_relations is not None:
        motion = dict(zip(truth.classes, truth.motion_relations))
        rows[MOTION_LABEL] = motion
    table = agreement_table(rows, truth, per_class=per_class, permutations=permutations, seed=seed)

    # the panel owns the row order (runs, baseline, motion_relations, relevance): pass those apart
    figure = plot_relation_panel(
        {k: v for k, v in rows.items() if k not in (BASELINE_LABEL, MOTION_LABEL)}, components,
        ground_truth=dict(zip(truth.classes, truth.relations)) if truth is not None else None,
        baseline=baseline, motion_relations=motion, title="component relations",
    )
    save_figure(figure, out)
    csv = out.with_suffix(".csv")
    atomic_write_text(csv, table.to_csv(index=False))
    return table


def check_figure_path(out):
    """``out`` as a Path, or a one-line GeomerError before any work: the name must end in a figure
    format (compare never writes over ``notes`` or ``table.txt``), and neither the figure nor the
    table beside it (stem + ``.csv``) may be a directory."""
    from pathlib import Path

    from geomer.errors import GeomerError
    from geomer.viz import figure_format

    out = Path(out)
    if out.is_dir():
        raise GeomerError(f"{out}: is a directory; -o needs a figure file name (.png, .pdf or .svg)")
    figure_format(out)
    if out.with_suffix(".csv").is_dir():
        raise GeomerError(f"{out.with_suffix('.csv')}: is a directory, cannot write the table there")
    return out


def _run(args) -> int:
    from pathlib import Path

    from geomer.errors import GeomerError
    from landmarks.files import check_output_folder

    if args.permutations < 1:
        raise GeomerError(f"--permutations must be at least 1, got {args.permutations}")
    if args.seed < 0:  # numpy's seed sequences take non-negative integers only
        raise GeomerError(f"--seed must be at least 0, got {args.seed}")
    check_output_folder(Path(args.out).parent, "-o", GeomerError)
    table = compare_runs(args.run_dirs, args.out, ground_truth=args.ground_truth, per_class=args.per_class,
                         permutations=args.permutations, seed=args.seed)
    shown = table[["model_a", "model_b", "scope", "spearman", "pearson", "p_value"]]
    # p-values go down to 1/permutations: 3 decimals would print them as 0.000
    print(shown.to_string(index=False, na_rep="n/a", formatters={"spearman": "{:.3f}".format, "pearson": "{:.3f}".format,
                                                                 "p_value": "{:.2g}".format}))
    if shown["spearman"].isna().any():  # the CSV keeps these cells empty
        print("n/a: one side's off-diagonal relations are uniform (e.g. ststnet's intrinsic 1/K), so there is "
              "no ranking to correlate")
    print(f"figure: {args.out}\ntable: {Path(args.out).with_suffix('.csv')}")
    return 0
