"""House rules of the code base, checked on the source text (nothing is imported or run).

The import graph of ``part3_pretrain`` and ``part4_sft`` (subpackages included) has no cycle,
and part 3 never imports part 4: part 4 builds on part 3, never the reverse. Every module opens
with a docstring that says what it is for, and no function is longer than 50 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("part3_pretrain", "part4_sft")


def _module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``packages`` (``pkg.sub`` for ``pkg/sub/__init__.py``)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _imported(name: str, modules: dict[str, Path]) -> set[str]:
    """Modules of ours that the imports of module ``name`` name (anywhere in it, lazy imports too)."""
    tree = ast.parse(modules[name].read_text(encoding="utf-8"), filename=str(modules[name]))
    package = name if modules[name].name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # ``from pkg import sub`` imports the submodule ``pkg.sub``; ``from mod import name``, mod
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source for alias in node.names
            ]
        else:
            continue
        for target in targets:
            # ``import pkg.sub.mod`` or a name inside a module: the longest module of ours it names
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path = REPO_ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports."""
    modules = _module_files(root, packages)
    return {name: _imported(name, modules) for name in sorted(modules)}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the DFS path, "done" once fully explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_reports_the_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"b"}}) == ["b", "c", "b"]


def test_import_graph_resolves_relative_absolute_and_submodule_imports() -> None:
    graph = import_graph()
    assert "part3_pretrain.fileio" in graph["part3_pretrain.tokenizer"]  # from .fileio import ...
    assert "part3_pretrain.corpus" in graph["part3_pretrain.pretrain"]  # from . import corpus as ...
    assert "part3_pretrain.trainer" in graph["part4_sft.sft"]  # from part3_pretrain.trainer import ...


def test_import_graph_of_a_package_with_a_subpackage(tmp_path: Path) -> None:
    files = {
        "p3/__init__.py": "",
        "p3/io.py": "import os\nfrom torch import nn\n",
        "p3/ckpt.py": "from .io import save\nimport p3.io as io2\n",
        "p4/__init__.py": "from .exp import runner\n",
        "p4/sft.py": "from p3 import ckpt\n",
        "p4/exp/__init__.py": "from .runner import run\n",
        "p4/exp/runner.py": "from .. import sft\nfrom ..sft import main\nfrom . import grid\n",
        "p4/exp/grid.py": "def later():\n    from p4.exp.runner import run\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    graph = import_graph(tmp_path, ("p3", "p4"))
    assert graph == {
        "p3": set(),
        "p3.io": set(),
        "p3.ckpt": {"p3.io"},
        "p4": {"p4.exp.runner"},
        "p4.sft": {"p3.ckpt"},
        "p4.exp": {"p4.exp.runner"},
        "p4.exp.runner": {"p4.sft", "p4.exp.grid"},
        "p4.exp.grid": {"p4.exp.runner"},  # a lazy import counts
    }
    assert find_cycle(graph) == ["p4.exp.runner", "p4.exp.grid", "p4.exp.runner"]


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_part3_never_imports_part4() -> None:
    bad = [
        f"{name} imports {target}"
        for name, targets in import_graph().items()
        if name.split(".")[0] == "part3_pretrain"
        for target in sorted(targets)
        if target.split(".")[0] == "part4_sft"
    ]
    assert not bad, "part 3 must not depend on part 4: " + "; ".join(bad)


SOURCES = ("part3_pretrain", "part4_sft", "bench", "tests")
MAX_FUNCTION_LINES = 50


def _python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO_ROOT / folder).rglob("*.py"))


def test_every_module_says_what_it_is_for() -> None:
    missing = [
        str(path.relative_to(REPO_ROOT))
        for path in _python_files("part3_pretrain", "part4_sft", "bench")
        if not (ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or "").strip()
    ]
    assert not missing, f"modules without a docstring: {missing}"


def long_functions(paths: list[Path], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``file:line name (n lines)`` for every function or method longer than ``limit`` lines."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    where = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path.name
                    found.append(f"{where}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_long_functions_are_found(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(50))
    (tmp_path / "m.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}", encoding="utf-8")
    assert long_functions([tmp_path / "m.py"], limit=50) == ["m.py:5 long (51 lines)"]


def test_no_function_over_50_lines() -> None:
    found = long_functions(_python_files(*SOURCES))
    assert not found, "split these into named helpers: " + "; ".join(found)
