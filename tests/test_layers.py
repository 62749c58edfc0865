"""The package's layers import one way: every module sits in a declared layer, imports only its own layer or lower
ones, and no two modules import each other, directly or around a loop.

Imports are read with `ast` from the source (top-level ones, those inside functions, and the names a lazy
`__init__` lists in `_EXPORTS`/`_INTERNAL`), so a cycle hidden in a function body fails here as surely as one at the
top of a file. Annotation-only imports under `if TYPE_CHECKING:` never run and are not counted.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hf_distill"

#: Bottom to top. A module belongs to the layer of its longest listed prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("hf_distill._version", "hf_distill._lazy", "hf_distill._aliases", "hf_distill.errors",
              "hf_distill.templates", "hf_distill.quiet")),
    ("modeling helpers", ("hf_distill.heads", "hf_distill.safe_loading", "hf_distill.nonfinite", "hf_distill.gguf",
                          "hf_distill.privacy", "hf_distill.fingerprints", "hf_distill.vocabulary",
                          "hf_distill.alignment")),
    ("losses", ("hf_distill.losses",)),
    ("formats", ("hf_distill.formats",)),
    ("teachers", ("hf_distill.teachers",)),
    ("offline", ("hf_distill.offline",)),
    ("benchmark", ("hf_distill.benchmark",)),
    ("publish", ("hf_distill.publish",)),
    ("students", ("hf_distill.students",)),
    ("training", ("hf_distill.training",)),
    ("quickstart", ("hf_distill.quickstart",)),
    ("cli", ("hf_distill.cli",)),
    # Public names under their historical paths; nothing inside the package imports these.
    ("public facades", ("hf_distill", "hf_distill.hub", "hf_distill.data")),
]
#: Where a package import may wait inside a function, and why: never to dodge a cycle (the cycle check counts them).
DEFERRED_IMPORTS_ALLOWED = (
    "hf_distill.cli",  # `hf-distill --help` must not load torch
    "hf_distill.quickstart.pipeline",  # checks the packages the stages need are installed before importing them
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or (module.startswith(prefix + ".") and prefix != "hf_distill")
            if matches and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS here and to CONTRIBUTING.md")
    return best


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


class _Imports(ast.NodeVisitor):
    """Every hf_distill module a file imports, with whether the import sits inside a function."""

    def __init__(self, module: str, is_package: bool, known: set[str]):
        self.module, self.is_package, self.known = module, is_package, known
        self.found: list[tuple[str, int, bool]] = []
        self._depth = 0

    def _add(self, target: str, line: int) -> None:
        if target == "hf_distill" or target.startswith("hf_distill."):
            self.found.append((target, line, self._depth > 0))

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_FunctionDef(self, node) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _resolve(self.module, self.is_package, node.level, node.module)
        for alias in node.names:  # `from . import x` imports the submodule x when there is one
            submodule = f"{base}.{alias.name}"
            self._add(submodule if submodule in self.known else base, node.lineno)

    def visit_Assign(self, node: ast.Assign) -> None:
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        if self.is_package and {"_EXPORTS", "_INTERNAL"} & set(names) and isinstance(node.value, ast.Dict):
            for value in node.value.values:
                relative = value.value
                level = len(relative) - len(relative.lstrip("."))
                self._add(_resolve(self.module, True, level, relative.lstrip(".") or None), node.lineno)
        self.generic_visit(node)


def _import_graph() -> dict[str, list[tuple[str, int, bool]]]:
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        visitor = _Imports(module, path.name == "__init__.py", set(modules))
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        graph[module] = visitor.found
    return graph


def _runtime_edges(graph) -> dict[str, set[str]]:
    """Module -> modules whose code runs when it is imported: each target and the packages above it."""
    edges: dict[str, set[str]] = {}
    for module, imports in graph.items():
        targets = set()
        for target, _, _ in imports:
            parts = target.split(".")
            targets.update(".".join(parts[:n]) for n in range(1, len(parts) + 1))
        targets.discard(module)
        edges[module] = {t for t in targets if t in graph and not module.startswith(t + ".")}
    return edges


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = 1, path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node], _ = 2, path.pop()
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_module_is_in_a_layer_and_imports_only_its_layer_or_lower_ones():
    upward, graph = [], _import_graph()
    for module, imports in graph.items():
        for target, line, _ in imports:
            if target not in graph and not target.startswith("hf_distill._aliases"):
                upward.append(f"{module}:{line} imports {target}, which does not exist (an old path?)")
                continue
            if _layer_of(target) > _layer_of(module):
                upward.append(f"{module}:{line} imports {target} ({LAYERS[_layer_of(module)][0]} -> "
                              f"{LAYERS[_layer_of(target)][0]})")
    assert not upward, "Imports that go up a layer:\n" + "\n".join(upward)


def test_no_import_cycle_between_modules():
    cycle = _find_cycle(_runtime_edges(_import_graph()))
    assert cycle is None, "Import cycle: " + " -> ".join(cycle)


def test_no_package_module_is_imported_inside_a_function_outside_the_cli():
    deferred = [
        f"{module}:{line} imports {target}"
        for module, imports in _import_graph().items()
        for target, line, in_function in imports
        if in_function and not module.startswith(DEFERRED_IMPORTS_ALLOWED)
    ]
    assert not deferred, "Imports hidden in functions (move them to the top of the module):\n" + "\n".join(deferred)


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function():
    """The checks above would pass vacuously if the graph missed function-level imports or the finder missed loops."""
    source = "def f():\n    from .b import x\n"
    visitor = _Imports("hf_distill.offline.a", False, {"hf_distill.offline.b"})
    visitor.visit(ast.parse(source))
    assert visitor.found == [("hf_distill.offline.b", 2, True)]
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _find_cycle(edges) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("statement", [
    "import hf_distill",
    "import hf_distill.hub, hf_distill.data, hf_distill.publish, hf_distill.offline, hf_distill.training",
])
def test_importing_the_package_loads_no_heavy_library_and_prints_nothing(statement):
    code = f"{statement}; import sys; print(sorted(m for m in ('torch', 'transformers', 'trl', 'bitsandbytes') " \
           "if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]" and done.stderr == ""


def test_public_names_of_the_lazy_namespaces_resolve():
    import hf_distill
    import hf_distill.data
    import hf_distill.formats
    import hf_distill.hub
    import hf_distill.offline
    import hf_distill.publish
    import hf_distill.training

    for namespace in (hf_distill, hf_distill.hub, hf_distill.data, hf_distill.formats, hf_distill.offline,
                      hf_distill.publish, hf_distill.training):
        for name in namespace.__all__:
            assert getattr(namespace, name) is not None, f"{namespace.__name__}.{name}"
    assert hf_distill.hub.push_student is hf_distill.publish.push_student
    assert hf_distill.data.ShardStore.__module__ == "hf_distill.offline.shards"  # old internals still import
    with pytest.raises(AttributeError, match="no_such_name"):
        hf_distill.no_such_name  # noqa: B018


def test_old_import_paths_give_the_moved_modules_themselves():
    import importlib

    from hf_distill._aliases import OLD_PATHS

    for old, new in OLD_PATHS.items():
        module = importlib.import_module(old)
        assert module is importlib.import_module(new) and module.__spec__.name == new, old
    from hf_distill.publish.provenance import collect

    old_submodule = importlib.import_module("hf_distill.provenance.collect")  # below an old package path
    assert old_submodule.collect_provenance is collect.collect_provenance
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("hf_distill.no_such_module")


def test_the_contributing_diagram_names_every_package_and_module():
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    diagram = text.split("## Layout: layers that import one way", 1)[1].split("```")[1]
    entries = {path.name + "/" for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    entries |= {path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    missing = sorted(entry for entry in entries if entry not in diagram)
    assert not missing, f"CONTRIBUTING.md's layer diagram misses {missing}"


def test_the_contributing_module_list_matches_the_tree():
    import re

    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = text.split("The modules of each package", 1)[1].split("\n\n", 2)[1]
    listed = {}
    for item in re.split(r"\n(?=- )", section.strip()):
        package, names = re.fullmatch(r"- `(hf_distill/[\w/]*)`:(.*)", item.replace("\n", " ")).groups()
        listed[package] = set(re.findall(r"`(\w+)`", names))
    tree: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        names = tree.setdefault(path.parent.relative_to(ROOT).as_posix() + "/", set())
        names |= {path.stem} - {"__init__"}
    assert len(tree) > 10 and listed == tree, {
        package: {"not listed": sorted(tree.get(package, set()) - names),
                  "not in the tree": sorted(names - tree.get(package, set()))}
        for package, names in {**tree, **listed}.items() if listed.get(package) != tree.get(package)
    }


def _packages() -> list[str]:
    return sorted(name for name, path in _modules().items() if path.name == "__init__.py")


def test_the_walk_finds_the_packages():
    assert {"hf_distill", "hf_distill.cli", "hf_distill.teachers", "hf_distill.publish.provenance"} <= set(_packages())


@pytest.mark.parametrize("package", _packages())
def test_every_package_declares_its_public_names_and_each_exists(package):
    import importlib

    module = importlib.import_module(package)
    assert isinstance(getattr(module, "__all__", None), (list, tuple)), f"{package} declares no __all__"
    names = list(module.__all__)
    assert len(names) == len(set(names)), f"{package}.__all__ repeats a name"
    private = [name for name in names if name.startswith("_") and name != "__version__"]
    assert not private, f"{package}.__all__ lists internals: {private}"
    missing = [name for name in names if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what {package} does not have: {missing}"


def test_examples_import_only_public_names():
    import importlib

    private = []
    for path in sorted((ROOT / "examples").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hf_distill"):
                module = importlib.import_module(node.module)  # a package's __all__ is public, a module's is not
                public = module.__all__ if hasattr(module, "__path__") else []
                private += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name not in public]
            elif isinstance(node, ast.Import):  # `import hf_distill.x.module` reaches past the packages' __all__
                private += [f"{path.name}: import {a.name}" for a in node.names if a.name.startswith("hf_distill.")
                            and not hasattr(importlib.import_module(a.name), "__path__")]
    assert not private, f"not in the __all__ of a package: {private}"
