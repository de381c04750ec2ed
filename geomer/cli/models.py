"""``geomer models``: the registered models, what they need, and one line about each."""

from __future__ import annotations

from geomer.cli._common import add_command


def register(subparsers) -> None:
    add_command(subparsers, "models", "list the registered models with their inputs", run)


def run(args) -> int:
    from geomer.models import get_spec, list_models

    rows = []
    for name in list_models():
        spec = get_spec(name)
        needs = list(spec.requires) + [" or ".join(group) for group in spec.requires_any]
        rows.append((name, ", ".join(needs) or "-", spec.summary))
    width = max(len(name) for name, _, _ in rows)
    needs_width = max(len(needs) for _, needs, _ in rows)
    print(f"{'model':<{width}}  {'requires':<{needs_width}}  description")
    for name, needs, summary in rows:
        print(f"{name:<{width}}  {needs:<{needs_width}}  {summary}")
    return 0
