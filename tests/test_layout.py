"""The package's shape: imports between modules of `xclip_hf` go one way (no cycle, function-level imports and
literal `importlib.import_module` names included), and each layer imports only the layers its row of `ALLOWED`
names (models and video input never import the applications; the app never imports the CLI)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xclip_hf"


def _module_name(path: Path, package_dir: Path = PACKAGE) -> str:
    """The dotted name of the module at `path` inside the package folder `package_dir`."""
    parts = path.relative_to(package_dir.parent).with_suffix("").parts
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


def _import_module_target(module: str, is_package: bool, node: ast.Call) -> str | None:
    """The module an `importlib.import_module("...")` / `import_module(".x", __name__)` call names by a literal
    string (None for other calls and computed names, e.g. f-strings)."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name != "import_module" or not node.args or not isinstance(node.args[0], ast.Constant) \
            or not isinstance(node.args[0].value, str):
        return None
    target = node.args[0].value
    if not target.startswith("."):
        return target
    level = len(target) - len(target.lstrip("."))
    return _resolve(module, is_package, ast.ImportFrom(module=target[level:] or None, names=[], level=level))[0]


def _submodule_maps(package: str, tree: ast.Module, files) -> set[str]:
    """Submodules a package __init__ names in module-level dict maps (lazy `_EXPORTS`, the CLI's `COMMANDS`):
    string values that are submodules of the package, e.g. {"embed_videos": "corpus.embed"}."""
    values = []
    for node in tree.body:
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if not isinstance(value, ast.Dict):
            continue
        for item in value.values:
            if isinstance(item, ast.Call) and len(item.args) == 2:  # **dict.fromkeys([...], "module")
                item = item.args[1]
            if isinstance(item, ast.Constant) and isinstance(item.value, str):
                values.append(f"{package}.{item.value}")
    return {v for v in values if v in files}


def import_graph(package_dir: Path = PACKAGE) -> dict[str, set[str]]:
    """xclip_hf module -> the xclip_hf modules it imports anywhere in its body (importing a package module
    counts as importing its __init__), including `import_module` calls with literal names and a package's
    lazy maps of its own submodules (package-internal edges)."""
    files = {_module_name(p, package_dir): p for p in package_dir.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        deps = _submodule_maps(name, tree, files) if is_package else set()
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.ImportFrom):
                targets = _resolve(name, is_package, node)
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.Call) and (target := _import_module_target(name, is_package, node)):
                targets = [target]
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


# layer -> the layers it may import (a layer: a subpackage or top-level module of xclip_hf), today's graph: a new
# edge between layers is a decision, made here. The package root and
# its registration module are not layers: every layer may import the root (its version, lazily its exports),
# and `_registration` registers the upper layers' plug-ins with the lower ones (deploy's runtime with the loader).
ALLOWED = {
    "utils": set(),
    "video": set(),
    "jobs": {"models"},
    "version": set(),
    "models": {"utils", "video"},
    "data": {"models"},
    "pipelines": {"jobs", "models", "utils", "video"},  # jobs: the model fingerprint a calibration file records
    "corpus": {"jobs", "models", "pipelines", "utils", "version", "video"},
    "conversion": {"data", "models", "utils"},
    "training": {"data", "jobs", "models", "version", "video"},
    "deploy": {"corpus", "jobs", "models", "utils", "version"},  # corpus: the calibration videos' list (inputs)
    "evaluation": {"corpus", "data", "jobs", "models", "pipelines", "version", "video"},
    "app": {"corpus", "jobs", "models", "pipelines", "utils", "video"},
    "cli": {"app", "conversion", "corpus", "deploy", "evaluation", "jobs", "models", "pipelines", "utils", "video"},
    "_registration": {"deploy", "models", "pipelines"},
}
# single module edges the layer table forbids, each with its reason
EXCEPTIONS = {
    # the top-k function lives in the self-contained `evaluate` metric file (evaluate.load copies it alone)
    ("xclip_hf.evaluation.metrics", "xclip_hf.training.metrics.video_accuracy"),
}


def _layer(module: str) -> str | None:
    """The layer of an xclip_hf module (None for the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def forbidden_edges(graph: dict[str, set[str]], allowed: dict[str, set[str]], exceptions=frozenset()) -> list:
    """(module, imported module) pairs crossing layers that `allowed` does not permit (the root is free to import)."""
    return sorted((m, d) for m, deps in graph.items() for d in deps
                  if _layer(m) is not None and _layer(d) is not None and _layer(m) != _layer(d)
                  and _layer(d) not in allowed.get(_layer(m), set()) and (m, d) not in exceptions)


def test_every_layer_has_a_row():
    """A new subpackage or top-level module gets a row in ALLOWED (what it may import) before it is used."""
    layers = {_layer(m) for m in import_graph()} - {None}
    assert layers == set(ALLOWED)


def test_layers_import_only_what_the_table_allows():
    assert forbidden_edges(import_graph(), ALLOWED, EXCEPTIONS) == []


def test_the_exceptions_are_still_needed():
    graph = import_graph()
    assert [e for e in EXCEPTIONS if e[1] not in graph.get(e[0], set())] == []


def test_the_checker_finds_a_forbidden_edge():
    """On a fake graph: app -> cli and models -> deploy are flagged, app -> models and root edges are not."""
    graph = {"xclip_hf.app.ui": {"xclip_hf.cli.main", "xclip_hf.models.loading", "xclip_hf"},
             "xclip_hf.models.loading": {"xclip_hf.deploy.runtime", "xclip_hf.models.configuration"},
             "xclip_hf": {"xclip_hf.cli.main"}}
    assert forbidden_edges(graph, ALLOWED) == [("xclip_hf.app.ui", "xclip_hf.cli.main"),
                                               ("xclip_hf.models.loading", "xclip_hf.deploy.runtime")]
    assert forbidden_edges(graph, ALLOWED, {("xclip_hf.app.ui", "xclip_hf.cli.main")}) == [
        ("xclip_hf.models.loading", "xclip_hf.deploy.runtime")]


def test_the_graph_sees_import_module_strings_and_lazy_maps(tmp_path):
    """Literal `import_module` names (absolute and relative) are edges; f-strings are not; an __init__'s lazy map of
    its submodules is a package-internal edge."""
    pkg = tmp_path / "xclip_hf"
    for sub in ("models", "deploy", "cli"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text('_EXPORTS = {"a": "models.loading", **dict.fromkeys(["b"], "cli.main")}\n')
    (pkg / "deploy" / "runtime.py").write_text("")
    (pkg / "cli" / "main.py").write_text('import importlib\nimportlib.import_module(f".{name}", __name__)\n')
    (pkg / "models" / "loading.py").write_text(
        'import importlib\nfrom importlib import import_module\n'
        'importlib.import_module("xclip_hf.deploy.runtime")\nimport_module("..cli.main", __package__)\n')
    graph = import_graph(pkg)
    assert graph["xclip_hf.models.loading"] == {"xclip_hf.deploy.runtime", "xclip_hf.cli.main"}
    assert graph["xclip_hf"] == {"xclip_hf.models.loading", "xclip_hf.cli.main"}
    assert graph["xclip_hf.cli.main"] == set()


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
