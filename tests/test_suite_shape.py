"""The test suite's own shape: test modules share code through tests/_helpers_*.py (never by importing another test
module or a private name), and every marker used in tests/ is registered in pytest.ini, which enables
--strict-markers (an unregistered marker is then an error, not a silent no-op that a -m selection would miss)."""

from __future__ import annotations

import ast
import configparser
import glob
import os

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
BUILTIN_MARKERS = {"parametrize", "skip", "skipif", "xfail", "usefixtures", "filterwarnings"}


def _sources():
    return {os.path.basename(p)[:-3]: ast.parse(open(p, encoding="utf-8").read(), p)
            for p in sorted(glob.glob(os.path.join(TESTS, "*.py")))}


def _imports(tree):
    """(module, names) of every import in the tree, those inside functions included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, [alias.name for alias in node.names]


def _registered_markers():
    ini = configparser.ConfigParser()
    ini.read(os.path.join(REPO, "pytest.ini"))
    lines = [line.strip() for line in ini["pytest"]["markers"].splitlines() if line.strip()]
    return ini["pytest"].get("addopts", "").split(), {line.split(":")[0].split("(")[0].strip() for line in lines}


def test_no_test_module_imports_another_test_module_or_a_private_name():
    sources = _sources()
    found = []
    for name, tree in sources.items():
        for module, names in _imports(tree):
            top = module.split(".")[0]
            if top.startswith("test_"):
                found.append(f"{name}.py imports {module}")
            if top in sources:
                found += [f"{name}.py imports {module}.{n}" for n in names if n.startswith("_")]
    assert found == [], "shared test code belongs in tests/_helpers_*.py, under a public name: " + "; ".join(found)


def test_the_import_check_sees_imports_inside_functions():
    tree = ast.parse("def f():\n    from test_other import thing\n    import test_more\n")
    assert sorted(module for module, _ in _imports(tree)) == ["test_more", "test_other"]


def test_every_marker_used_is_registered_and_strict_markers_is_on():
    addopts, registered = _registered_markers()
    assert "--strict-markers" in addopts
    assert {"slow", "browser", "distributed"} <= registered
    used = set()
    for tree in _sources().values():
        for node in ast.walk(tree):  # pytest.mark.NAME, as a decorator, in pytestmark or in pytest.param(marks=...)
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "mark"
                    and isinstance(node.value.value, ast.Name) and node.value.value.id == "pytest"):
                used.add(node.attr)
    assert used - BUILTIN_MARKERS - registered == set()
    assert {"browser", "distributed"} <= used


def _torchrun_calls(tree):
    """Argument lists (string constants) of the list displays that launch torch.distributed.run."""
    for node in ast.walk(tree):
        if isinstance(node, ast.List):
            words = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if "torch.distributed.run" in words:
                yield words


def test_torchrun_launches_take_a_free_port():
    """Two test runs at once (or a test beside a user's job) never collide on a fixed rendezvous port: every
    torchrun launch in tests/ is `--standalone` (a free port) and names no `--master_port`."""
    fixed = [f"{name}: {' '.join(words)}" for name, tree in _sources().items() for words in _torchrun_calls(tree)
             if "--standalone" not in words or "--master_port" in words]
    assert fixed == []
    assert list(_torchrun_calls(ast.parse('c = ["-m", "torch.distributed.run", "--master_port", "29517"]')))
