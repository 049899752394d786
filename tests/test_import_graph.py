"""The import graph of ``iconet.data`` has no cycle (issue 22 item 6).

The graph is read from the source with :mod:`ast`, so it counts every import a module can make:
top-level ones and the lazy ones inside functions (``read_volume`` imports the format modules on
demand; a format module importing ``io`` back would close a cycle even though Python tolerates it
at run time). The builder itself is checked on a small package written to a temporary folder.
"""

from __future__ import annotations

import ast
from pathlib import Path

import iconet.data

DATA_DIR = Path(iconet.data.__file__).parent


def import_graph(package_dir: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (anywhere in its body).

    ``from PKG import name`` is an edge to ``PKG.name`` when that is a module file, else to
    ``PKG`` itself (its ``__init__``); relative imports are resolved against ``package``.
    The implicit import of a parent package's ``__init__`` is not an edge.
    """
    modules = {p.stem for p in package_dir.glob("*.py") if p.stem != "__init__"}

    def resolve(name: str) -> str | None:
        if name == package:
            return package
        if name.startswith(package + "."):
            head = name[len(package) + 1:].split(".")[0]
            return f"{package}.{head}" if head in modules else None
        return None

    graph: dict[str, set[str]] = {}
    for path in sorted(package_dir.glob("*.py")):
        me = package if path.stem == "__init__" else f"{package}.{path.stem}"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [resolve(a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against the package (its modules are flat)
                    base = f"{package}.{base}" if base else package
                if base == package:
                    targets = [f"{package}.{a.name}" if a.name in modules else package for a in node.names]
                else:
                    targets = [resolve(base)]
            else:
                continue
            edges.update(t for t in targets if t is not None and t != me)
        graph[me] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a closed path ``[a, b, ..., a]``, or ``None`` when it is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_builder_sees_lazy_relative_and_package_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from pkg.leaf import X\n")
    (pkg / "leaf.py").write_text("import os\nX = 1\n")
    (pkg / "io.py").write_text("def read():\n    from pkg import fmt\n    return fmt\n")
    (pkg / "fmt.py").write_text("from .io import read\nimport pkg.leaf as leaf\nfrom pkg import X\n")
    graph = import_graph(pkg, "pkg")
    assert graph == {"pkg": {"pkg.leaf"}, "pkg.leaf": set(), "pkg.io": {"pkg.fmt"},
                     "pkg.fmt": {"pkg.io", "pkg.leaf", "pkg"}}
    assert find_cycle(graph) in (["pkg.fmt", "pkg.io", "pkg.fmt"], ["pkg.io", "pkg.fmt", "pkg.io"])
    graph["pkg.io"] = set()
    assert find_cycle(graph) is None


def test_iconet_data_imports_form_no_cycle() -> None:
    graph = import_graph(DATA_DIR, "iconet.data")
    # The graph is the real one: read_volume dispatches to the format readers.
    assert {"iconet.data.nifti", "iconet.data.dicom_read", "iconet.data.dicom_write",
            "iconet.data.images"} <= graph["iconet.data.io"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_dicom_reading_and_writing_are_apart() -> None:
    """The reader and the writer share only leaves; ``iconet.data.dicom`` re-exports both."""
    graph = import_graph(DATA_DIR, "iconet.data")
    assert "iconet.data.dicom_write" not in graph["iconet.data.dicom_read"]
    assert "iconet.data.dicom_read" not in graph["iconet.data.dicom_write"]
    assert graph["iconet.data.dicom"] == {"iconet.data.dicom_read", "iconet.data.dicom_write"}
    assert not {"iconet.data.io", "iconet.data.dicom"} & (graph["iconet.data.writing"] | graph["iconet.data.dtypes"])
