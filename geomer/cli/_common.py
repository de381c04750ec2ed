"""Helpers shared by the sub-command modules: adding a command, printing tables."""

from __future__ import annotations

import argparse
from typing import Any

from geomer.train.pool import HEADLINE
from landmarks.cli import DefaultsHelpFormatter, output_path  # noqa: F401  (the commands' type of an output option)


def add_command(subparsers, name: str, help: str, func) -> argparse.ArgumentParser:
    """Add sub-command ``name`` that runs ``func(args)``; defaults show in ``--help``.

    ``--debug`` is accepted before and after the command name (``geomer --debug train`` and
    ``geomer train --debug``); SUPPRESS keeps the sub-parser from overwriting the main one's value.
    """
    parser = subparsers.add_parser(
        name,
        help=help,
        description=help,
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks for errors")
    parser.set_defaults(func=func)
    return parser


def format_table(metrics: dict[str, Any]) -> str:
    """The results table printed by ``geomer train`` and ``geomer evaluate``."""
    seeds = metrics["seeds"]
    lines = [
        f"{metrics['model']} on {metrics.get('dataset') or 'the given graphs'}: "
        f"{metrics['num_samples']} clips, {metrics['num_folds']} folds, "
        f"seeds {', '.join(map(str, seeds))}"
        + ("  [LEAKY: best test epoch]" if metrics.get("leaky") else ""),
        "",
        f"{'':<16}{'UF1':>20}{'UAR':>20}{'acc':>20}",
        f"{'pooled':<16}" + "".join(_pm(metrics[n], metrics[f"{n}_std"]) for n in HEADLINE),
    ]
    lines.append(f"{'95 % interval':<16}" + "".join(_interval(metrics[f"{n}_interval"]) for n in HEADLINE)
                 + "  (test subjects resampled)")
    for dataset, part in metrics.get("per_dataset", {}).items():
        if len(metrics["per_dataset"]) > 1:
            lines.append(f"{dataset:<16}" + "".join(_pm(part[n], part[f"{n}_std"]) for n in HEADLINE))
    lines += ["", f"{'class':<16}{'F1':>20}{'recall':>20}"]
    for name, values in metrics["per_class"].items():
        lines.append(
            f"{name:<16}"
            + _pm(values["f1"]["mean"], values["f1"]["std"])
            + _pm(values["recall"]["mean"], values["recall"]["std"])
        )
    return "\n".join(lines)


def _interval(bounds: list) -> str:
    low, high = bounds
    return f"{'n/a':>20}" if low is None or high is None else f"[{low:.4f}, {high:.4f}]".rjust(20)


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return f"{'n/a':>20}"
    return f"{mean:.4f} ± {std or 0:.4f}".rjust(20)


def print_rows(rows: list[tuple[str, float, str]]) -> None:
    """Rows ``(what, value, unit)`` as an aligned table (``geomer bench``)."""
    width = max(len(name) for name, _, _ in rows)
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:>12.2f}  {unit}")


def summarise_run(run_dir, metrics: dict[str, Any], *, figures: bool = True) -> None:
    """Print a pooled run's table (and its relations' agreement with a synthetic ground truth,
    when the run was trained on one), and draw its summary figures."""
    from geomer.rundir import load_run

    print(format_table(metrics))
    run = load_run(run_dir)
    agreement = relation_agreement_line(run)
    if agreement:
        print(agreement)
    if figures:
        from geomer.viz.run import write_run_figures

        write_run_figures(run, per_class=False)


def relation_agreement_line(run) -> str | None:
    """The run's relations in words: faithfulness (intrinsic vs occlusion, Spearman per class) and,
    on a synthetic dataset (the ``ground_truth.json`` of the root it was trained on), each kind's
    agreement with the relevance ground truth (with the subject-bootstrap interval of the kinds the
    run keeps per clip) beside the input-only baseline, the ground truth's motion_relations and the
    ceiling of a tie-free read-out; None when there is nothing to say."""
    import math

    from geomer.relations import (
        faithfulness,
        ground_truth_agreement,
        load_run_relations,
        spearman_undefined,
        synthetic_ground_truth,
    )

    classes = list(run.classes)
    kinds = load_run_relations(run.path, classes, run.num_components)
    lines = []
    if "intrinsic" in kinds and "occlusion" in kinds:
        per_class = faithfulness(kinds["intrinsic"], kinds["occlusion"], classes)
        # NaN says nothing; say why Spearman is undefined (ststnet's intrinsic relations are uniform)
        why = {c: spearman_undefined(a, b) for c, a, b in zip(classes, kinds["intrinsic"], kinds["occlusion"])}
        lines.append("faithfulness (intrinsic vs occlusion relations, Spearman per class): "
                     + ", ".join(f"{name} n/a ({why[name]})" if why[name] else f"{name} {value:.2f}"
                                 for name, value in per_class.items()))
    truth = synthetic_ground_truth(run)
    if truth is not None:
        table = ground_truth_agreement(kinds, classes, truth, run=run)

        def interval(row) -> str:
            return "" if math.isnan(row.low) else f" [{row.low:.3f}, {row.high:.3f}]"

        # classes without clips are left out there, so a NaN row can only be a constant side
        lines.append("relations vs the relevance ground truth (Spearman over off-diagonal entries of all "
                     "classes [95 % interval, test subjects resampled]; permutation p): "
                     + ", ".join(f"{row.relation} n/a (uniform relations)" if math.isnan(row.spearman)
                                 else f"{row.relation} {row.spearman:.3f}{interval(row)} (p = {row.p_value:.2g})"
                                 for row in table.itertuples())
                     + "; a read-out without ties among the irrelevant pairs reaches at most "
                     + f"{table.attrs['ceiling']:.3f}")
    return "\n" + "\n".join(lines) if lines else None
