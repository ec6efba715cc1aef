"""The import contract of ``docs/architecture.md``: layers, bottom to top; no import goes up.

Read from the source with ``ast`` (nothing is imported), so imports inside functions and under
``if TYPE_CHECKING:`` count like any other. A module may import its own layer or a lower one; the
top-level units (a package such as ``tunesmith.data`` or a root module such as
``tunesmith.models``) never import each other in a loop, even within one layer. A new top-level
module or package fails here until it is given a layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tunesmith

SRC = Path(tunesmith.__file__).parent

# Bottom to top; the same table is drawn in docs/architecture.md.
LAYERS: list[tuple[str, set[str]]] = [
    ("core", {"errors", "registry", "paths", "configschema", "metrics", "fingerprint", "atomic"}),
    ("config", {"config"}),
    ("data", {"data"}),
    ("tasks", {"tasks"}),
    (
        "models",
        {
            "models",
            "loadopts",
            "embedded",
            "testing",
            "transfer",
            "optim",
            "heads",
            "pooling",
            "precision",
            "memory",
            "packedattn",
            "causalattn",
        },
    ),
    ("adapters", {"adapters"}),
    ("objectives", {"objectives", "distill"}),
    ("train", {"train", "report", "figures"}),
    ("drivers", {"continual", "predict", "push"}),
    ("api", {"cli", "tuner", "__main__", "__init__"}),
]
LAYER_OF = {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    """``tunesmith.data.readers`` -> ``data``; ``tunesmith`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(path: Path, module: str) -> list[tuple[str, int]]:
    """Every ``tunesmith`` module ``path`` imports (anywhere in the file), with its line."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: len(module.split(".")) - (0 if is_package else 1)]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found += [(f"{target}.{a.name}", node.lineno) for a in node.names]
    return [(name, line) for name, line in found if name.split(".")[0] == "tunesmith"]


def import_graph() -> list[tuple[str, str, str, int]]:
    """(importing unit, imported unit, importing file, line) for every cross-unit import."""
    edges = []
    for path in sorted(SRC.rglob("*.py")):
        module = module_name(path)
        for target, line in imported_modules(path, module):
            if target.count(".") == 1 and target.split(".")[1] not in LAYER_OF:
                target = "tunesmith"  # `from tunesmith import X`: the package itself
            a, b = unit_of(module), unit_of(target)
            if a != b:
                edges.append((a, b, str(path.relative_to(SRC.parent)), line))
    return edges


def cycles(edges: list[tuple[str, str, str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for a, b, _, _ in edges:
        graph.setdefault(a, set()).add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_top_level_unit_has_a_layer():
    units = {unit_of(module_name(p)) for p in SRC.rglob("*.py")}
    missing = sorted(units - set(LAYER_OF))
    assert not missing, f"give these a layer in LAYERS and docs/architecture.md: {missing}"


def test_no_import_goes_up():
    upward = [
        f"{where}:{line}: {a} ({LAYERS[LAYER_OF[a]][0]}) imports {b} ({LAYERS[LAYER_OF[b]][0]})"
        for a, b, where, line in import_graph()
        if a in LAYER_OF and b in LAYER_OF and LAYER_OF[b] > LAYER_OF[a]
    ]
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_no_package_loops():
    assert cycles(import_graph()) == []


MAX_LINES = 400  # STYLE.md: small modules with one job; a longer one wants splitting along a seam


def test_modules_stay_small():
    long = {
        str(p.relative_to(SRC)): n
        for p in sorted(SRC.rglob("*.py"))
        if (n := len(p.read_text(encoding="utf-8").splitlines())) >= MAX_LINES
    }
    assert not long, f"modules of {MAX_LINES}+ lines (split them along a seam): {long}"


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    """The contract would be empty if the parser missed imports inside functions."""
    path = SRC / "data" / "fake_module.py"  # never written: parsed from text below
    source = "def f():\n    from tunesmith.train import loop\n\nfrom .readers import x\n"
    tree_file = tmp_path / "m.py"
    tree_file.write_text(source)
    found = imported_modules(tree_file, module_name(path))
    assert ("tunesmith.train.loop", 2) in found
    assert ("tunesmith.data.readers.x", 4) in found
    edges = [("data", "train", "x", 1), ("train", "data", "y", 2), ("cli", "train", "z", 3)]
    assert cycles(edges) == [["data", "train"]]


def test_architecture_doc_lists_the_layers():
    doc = (SRC.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    for name, units in LAYERS:
        assert f"`{name}`" in doc, f"docs/architecture.md does not describe layer {name}"
        for unit in units - {"__init__", "__main__"}:
            assert unit in doc, f"docs/architecture.md does not place {unit}"


def test_registries_are_full_whatever_is_imported_first():
    """Lower layers look methods up by name in the core registries; importing any module of the
    package (here only the config layer, in a fresh interpreter) must have filled them."""
    import subprocess
    import sys

    code = (
        "import tunesmith.config, tunesmith.registry as r; "
        "print(len(r.TASKS.names()), len(r.ADAPTERS.names()), len(r.OBJECTIVES.names()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    tasks, adapters, objectives = map(int, out.stdout.split())
    assert tasks >= 4 and adapters >= 7 and objectives >= 10
