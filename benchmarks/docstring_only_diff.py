"""Check that the package's Python files differ from a git revision's in docstrings and comments only.

    python benchmarks/docstring_only_diff.py main [PACKAGE_DIR]
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def code_only(source):
    """ast.dump of source with every module, class and function docstring removed."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, OWNERS) and node.body and isinstance(node.body[0], ast.Expr) \
                and isinstance(node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str):
            node.body = node.body[1:]
    return ast.dump(tree)


def changed_files(revision, root):
    """Python files under root that differ from revision (added ones included)."""
    names = subprocess.run(["git", "diff", "--name-only", revision, "--", root], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    return [name for name in names if name.endswith(".py")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision")
    parser.add_argument("root", nargs="?", default="xclip_hf")
    args = parser.parse_args(argv)
    differ = []
    names = changed_files(args.revision, args.root)
    for name in names:
        old = subprocess.run(["git", "show", f"{args.revision}:{name}"], cwd=REPO, capture_output=True, text=True)
        with open(os.path.join(REPO, name), encoding="utf-8") as handle:
            new = handle.read()
        if old.returncode != 0 or code_only(old.stdout) != code_only(new):
            differ.append(name)
    print(f"{len(names)} changed files, {len(names) - len(differ)} differ in docstrings/comments only")
    for name in differ:
        print(f"  code differs: {name}")
    raise SystemExit(1 if differ else 0)


if __name__ == "__main__":
    main()
