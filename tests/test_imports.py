"""The package's layering, read from the source with `ast` (nothing is imported):

    cli  →  report, reference  →  runs  →  engine  →  study

A module imports from its own subpackage or from one below it, never from one above; nothing imports the
command line; the study (what is claimed and how it is judged) needs no torch; the report reads records and
never trains. An import inside a function counts like one at the top: hiding it only defers a cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

PACKAGE = Path(__file__).resolve().parents[1] / "ablation"
LAYERS = {"study": 0, "engine": 1, "runs": 2, "report": 3, "reference": 3, "cli": 4}
TRAINING = {"engine.train", "runs.runner", "runs.ray_backend"}  # what starts or runs a training


def module_name(path: Path) -> str:
    """'engine.train' for ablation/engine/train.py, 'engine' for its __init__.py, '__init__' for the package's."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """(the package's modules `path` imports anywhere in it, the top-level outside packages it imports)."""
    here = list(path.relative_to(PACKAGE).parent.parts)
    inside, outside = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - (node.level - 1)]
            elif (node.module or "").split(".")[0] == "ablation":
                base, node.module = [], node.module.partition(".")[2] or None
            else:
                outside.add(node.module.split(".")[0])
                continue
            target = base + (node.module.split(".") if node.module else [])
            for alias in node.names:  # `from . import x`: a module, or a name the package's __init__ defines
                name = ".".join(target + [alias.name])
                inside.add(name if name in known else ".".join(target) or "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top, _, rest = alias.name.partition(".")
                (inside.add(rest) if top == "ablation" else outside.add(top))
    return inside - {module_name(path)}, outside


def import_graph() -> dict[str, set[str]]:
    known = set(modules())
    return {name: imports(path, known)[0] for name, path in modules().items()}


def layer(module: str) -> int | None:
    return LAYERS.get(module.split(".")[0])


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path a -> ... -> a, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def reachable(graph: dict[str, set[str]], module: str) -> set[str]:
    """Every module `module` imports, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_graph_reader_resolves_every_kind_of_import(tmp_path):
    graph = import_graph()
    assert {"engine.augment", "engine.models", "engine.data", "engine", "study.step"} <= graph["engine.train"]
    assert "runs.records" in graph["runs.measure"]  # from . import records
    assert "engine.models" in graph["cli"]  # imported inside a function
    assert set(graph["__main__"]) == {"cli"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert {layer(m) for m in graph} - {None} == set(LAYERS.values()), "a subpackage without a layer"


def test_the_package_imports_have_no_cycle():
    graph = import_graph()
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_every_import_goes_down_the_layers():
    upward = [f"{m} imports {t}" for m, targets in import_graph().items() if layer(m) is not None
              for t in sorted(targets) if layer(t) is not None and layer(t) > layer(m)]
    assert not upward, upward


def test_nothing_imports_the_command_line():
    is_cli = lambda m: m == "cli" or m.startswith("cli.")
    users = sorted(m for m, targets in import_graph().items()
                   if any(map(is_cli, targets)) and not is_cli(m) and m != "__main__")
    assert not users, users


def test_the_study_needs_no_torch():
    """The registry, goals and statistics load and judge records on any Python: no torch, no engine."""
    heavy = {m: sorted(outside & {"torch", "torchvision", "numpy"})
             for m, path in modules().items() if m.startswith("study")
             for outside in [imports(path, set(modules()))[1]] if outside & {"torch", "torchvision", "numpy"}}
    assert not heavy, heavy


def test_the_report_never_trains():
    graph = import_graph()
    for module in [m for m in graph if m.startswith("report")]:
        assert not reachable(graph, module) & TRAINING, (module, sorted(reachable(graph, module) & TRAINING))


def private_uses(path: Path) -> list[str]:
    """Private names (one leading underscore) `path` takes from another module of the package: imported by name
    (`from .analysis import _T95`) or reached as an attribute of an imported module (`records._write`)."""
    private = lambda name: name.startswith("_") and not name.startswith("__")
    tree, out, imported = ast.parse(path.read_text(), filename=str(path)), [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            if node.module:
                out += [f"{node.module}.{a.name}" for a in node.names if private(a.name)]
            else:
                imported.update(a.asname or a.name for a in node.names)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported \
                and private(node.attr):
            out.append(f"{node.value.id}.{node.attr}")
    return out


def test_no_module_reaches_for_another_modules_private_names(tmp_path):
    """A name with a leading underscore is its module's own: one that another module needs is made public."""
    found = {m: uses for m, p in modules().items() if (uses := private_uses(p))}
    assert not found, found
    sample = tmp_path / "sample.py"  # the reader sees both ways in
    sample.write_text("from . import records\nfrom ..study.analysis import _T95, mean_std\nrecords._write(1)\nrecords.__name__\n")
    assert private_uses(sample) == ["study.analysis._T95", "records._write"]
