"""``geomer datasets``: the dataset names with their expected on-disk layout."""

from __future__ import annotations

from geomer.cli._common import add_command


def register(subparsers) -> None:
    add_command(
        subparsers,
        "datasets",
        "List the dataset names geomer reads, with their default class scheme and expected layout.",
        run,
    )


def run(args) -> int:
    from geomer.data.datasets import describe_datasets

    rows = describe_datasets()
    width = max(len(name) for name, _, _ in rows)
    scheme_width = max(len(scheme) for _, scheme, _ in rows)
    for name, scheme, layout in rows:
        print(f"{name:<{width}}  {scheme:<{scheme_width}}  {layout}")
    return 0
