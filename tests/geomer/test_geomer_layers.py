"""The layer order of the code, read from every import statement (also those inside functions).

landmarks → geomer's base modules → graph → features → data → synth → models → rundir →
relations → train → viz → cli (docs/architecture.md, "Layers"): a module imports only modules of
its own layer or lower ones, and no modules import each other in a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[2]

#: Lowest first; a module belongs to the layer of its longest matching name.
LAYERS = (
    ("landmarks",),
    ("geomer", "geomer.errors", "geomer.atomic", "geomer.paths", "geomer.version", "geomer.bootstrap"),
    ("geomer.graph",),
    ("geomer.features",),
    ("geomer.data",),
    ("geomer.synth",),
    ("geomer.models",),
    ("geomer.rundir",),
    ("geomer.relations",),
    ("geomer.train",),
    ("geomer.viz",),
    ("geomer.cli",),
)


def layer_of(module: str) -> int | None:
    """The index in LAYERS of ``module`` (None for a module outside both packages)."""
    best, rank = -1, None
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, rank = len(name), index
    return rank


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Module name → file for every module of ``landmarks`` and ``geomer`` under ``root``."""
    found = {}
    for package in ("landmarks", "geomer"):
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that ``module`` (its source at ``path``) imports anywhere."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets.add(base)
            # ``from geomer.models import registry`` imports a submodule
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    # a dotted target stands for the deepest module of it that exists
    resolved = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != module:
            resolved.add(target)
    return resolved


def import_graph(root: Path = ROOT) -> nx.DiGraph:
    known = module_files(root)
    graph = nx.DiGraph()
    graph.add_nodes_from(known)
    for module, path in known.items():
        graph.add_edges_from((module, target) for target in imports_of(module, path, known))
    return graph


def upward_imports(graph: nx.DiGraph) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, target in graph.edges
        if layer_of(target) > layer_of(module)
    )


def circles(graph: nx.DiGraph) -> list[list[str]]:
    """Import circles, leaving out a package's ``__init__`` and its own submodules (the package
    re-exports what they define; they import the package only for names like the version)."""
    kept = nx.DiGraph(
        (module, target) for module, target in graph.edges
        if not (target.startswith(module + ".") or module.startswith(target + "."))
    )
    return [sorted(cycle) for cycle in nx.simple_cycles(kept)]


def test_every_module_has_a_layer():
    assert [m for m in module_files() if layer_of(m) is None] == []


def test_no_module_imports_a_higher_layer():
    assert upward_imports(import_graph()) == []


def test_no_import_circles():
    assert circles(import_graph()) == []


def test_the_checks_catch_an_upward_import_and_a_circle(tmp_path):
    for name, text in {
        "landmarks/__init__.py": "",
        "geomer/__init__.py": "",
        "geomer/models/__init__.py": "",
        "geomer/models/net.py": "def build():\n    from geomer.train.fit import fit  # upward, hidden in a function\n",
        "geomer/train/__init__.py": "",
        "geomer/train/fit.py": "from . import pool\n",
        "geomer/train/pool.py": "from geomer.train.fit import fit\n",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path)
    assert upward_imports(graph) == ["geomer.models.net imports geomer.train.fit"]
    assert circles(graph) == [["geomer.train.fit", "geomer.train.pool"]]
