"""The package's shape: imports between modules of `xclip_hf` go one way (no cycle, function-level imports
included), and the layers depend downwards only (models and video input never import the applications)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xclip_hf"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """Absolute module names an ImportFrom node refers to (for `from . import x`, the submodule x if it exists)."""
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        if not is_package:
            parts = parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """xclip_hf module -> the xclip_hf modules it imports anywhere in its body (importing a package module
    counts as importing its __init__)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom):
                targets = _resolve(name, path.name == "__init__.py", node)
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            deps.update(t for t in targets if t in files and t != name)
        graph[name] = deps
    return graph


def _cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            # a package's __init__ importing its own submodules (re-exports) is the package, not a cycle
            if dep.startswith(node + "."):
                continue
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle():
    graph = import_graph()
    # the top-level package re-exports everything lazily; it is the root, not a layer
    graph = {k: {d for d in v if d != "xclip_hf"} for k, v in graph.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


LOWER_LAYERS = ("xclip_hf.models", "xclip_hf.video", "xclip_hf.jobs", "xclip_hf.utils")
UPPER_LAYERS = ("xclip_hf.pipelines", "xclip_hf.corpus", "xclip_hf.cli", "xclip_hf.conversion", "xclip_hf.training",
                "xclip_hf.evaluation", "xclip_hf.deploy", "xclip_hf.app")


@pytest.mark.parametrize("lower", LOWER_LAYERS)
def test_lower_layers_do_not_import_applications(lower):
    bad = {(m, d) for m, deps in import_graph().items() if m.startswith(lower)
           for d in deps if d.startswith(UPPER_LAYERS)}
    assert not bad, sorted(bad)


def test_the_app_does_not_import_the_command_line():
    """The web app and the CLI are siblings: what both need (e.g. `utils.messages.one_line`) lives below them."""
    bad = {(m, d) for m, deps in import_graph().items() if m.startswith("xclip_hf.app")
           for d in deps if d.startswith("xclip_hf.cli")}
    assert not bad, sorted(bad)


def test_cycle_detector_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_private_names_stay_in_their_package():
    """A name one package shares with another is public (one owner, e.g. CLIP's byte table in
    models/clip_vocabulary.py): no module imports an underscore name from a module of another package."""
    crossing = []
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _resolve(module, path.name == "__init__.py", node)[0]
            source_package = source if (PACKAGE.parent / source.replace(".", "/")).is_dir() else source.rpartition(".")[0]
            private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            if private and source.startswith("xclip_hf") and source_package != package and source != package:
                crossing.append(f"{module} imports {private} from {source}")
    assert crossing == []
