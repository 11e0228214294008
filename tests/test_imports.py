"""Dependencies run one way: the package's modules import each other without a cycle, and the report
reads records and analysis without importing the engine.

An import inside a function counts like one at the top of a module: hiding an import in a function only
defers a cycle, it does not remove it. The graph is read from the source with `ast`, nothing is imported.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

PACKAGE = Path(__file__).resolve().parents[1] / "ablation"
ENGINE = ("train", "distill", "augment", "models")


def package_imports(path: Path) -> set[str]:
    """The package modules `path` imports anywhere in it: `from .x import ...`, `from . import x`,
    `from ablation.x import ...`, `import ablation.x`."""
    names = {p.stem for p in PACKAGE.glob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            relative = node.level == 1
            if not relative and not (node.module or "").startswith("ablation"):
                continue
            module = (node.module or "") if relative else (node.module or "").removeprefix("ablation").lstrip(".")
            if module:
                found.add(module.split(".")[0])
            else:  # from . import x: a module of the package, or a name its __init__ defines
                found.update(a.name if a.name in names else "__init__" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("ablation."))
    return found - {path.stem}


def import_graph() -> dict[str, set[str]]:
    return {p.stem: package_imports(p) for p in sorted(PACKAGE.glob("*.py"))}


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


def test_the_graph_reader_sees_top_level_and_function_level_imports():
    graph = import_graph()
    assert {"augment", "distill", "models", "records", "steps", "data"} <= graph["train"]
    assert "records" in graph["runner"]  # imported inside train_task
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_the_package_imports_have_no_cycle():
    graph = import_graph()
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def reachable(graph: dict[str, set[str]], module: str) -> set[str]:
    """Every module `module` imports, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_records_and_steps_are_below_the_engine():
    """Records are data (RunResult lives there) and the schedule owns its learning rate: neither needs the
    training loop, and the report, which reads them, never reaches it either."""
    graph = import_graph()
    assert not reachable(graph, "records") & {"train", "distill", "runner", "report", "screen", "__main__"}
    assert not reachable(graph, "steps") & {"train", "distill", "records"}
    assert not reachable(graph, "report") & {"train", "distill", "runner"}, sorted(reachable(graph, "report"))


def test_the_report_imports_no_engine_module():
    """The report's own imports name no engine module (steps, analysis and records may reach models and
    augment for the dataclasses and networks they describe)."""
    direct = import_graph()["report"] & set(ENGINE)
    assert not direct, f"ablation/report.py imports {sorted(direct)}"


def private_uses(path: Path) -> list[str]:
    """Private names (one leading underscore) `path` takes from another module of the package: imported by name
    (`from .analysis import _T95`) or reached as an attribute of an imported module (`records._write`)."""
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {path.stem}
    private = lambda name: name.startswith("_") and not name.startswith("__")
    tree, out, imported = ast.parse(path.read_text(), filename=str(path)), [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module in modules:
                out += [f"{node.module}.{a.name}" for a in node.names if private(a.name)]
            elif node.module is None:
                imported.update(a.asname or a.name for a in node.names if a.name in modules)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported \
                and private(node.attr):
            out.append(f"{node.value.id}.{node.attr}")
    return out


def test_no_module_reaches_for_another_modules_private_names(tmp_path):
    """A name with a leading underscore is its module's own: one that another module needs is made public."""
    found = {p.stem: uses for p in sorted(PACKAGE.glob("*.py")) if (uses := private_uses(p))}
    assert not found, found
    sample = tmp_path / "sample.py"  # the reader sees both ways in
    sample.write_text("from . import records\nfrom .analysis import _T95, mean_std\nrecords._write(1)\nrecords.__name__\n")
    assert private_uses(sample) == ["analysis._T95", "records._write"]
