"""Docstring sizes of a package: count, characters by kind, mean lines, the longest ones.

    python benchmarks/docstring_lengths.py [PACKAGE_DIR] [--top 10] [--exclude PATH ...]
"""

from __future__ import annotations

import argparse
import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = {ast.Module: "module", ast.ClassDef: "class", ast.FunctionDef: "function", ast.AsyncFunctionDef: "function"}


def docstrings(path):
    """(kind, qualified name, docstring) for every docstring in one file."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), filename=path)
    found = []

    def visit(node, prefix):
        kind = KINDS.get(type(node))
        if kind is not None:
            name = prefix if kind == "module" else f"{prefix}.{node.name}"
            doc = ast.get_docstring(node, clean=False)
            if doc is not None:
                found.append((kind, name, doc))
            prefix = name
        for child in ast.iter_child_nodes(node):
            visit(child, prefix)

    visit(tree, os.path.relpath(path, REPO))
    return found


def measure(root, exclude=()):
    """Every docstring under root, skipping the files named in exclude."""
    skip = {os.path.normpath(os.path.join(REPO, path)) for path in exclude}
    found = []
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.normpath(os.path.join(folder, name))
            if name.endswith(".py") and path not in skip:
                found.extend(docstrings(path))
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=os.path.join(REPO, "xclip_hf"))
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--exclude", nargs="*", default=[], help="files (relative to the repository) to leave out")
    args = parser.parse_args(argv)
    found = measure(args.root, args.exclude)
    print(f"docstrings: {len(found)}")
    for kind in ("module", "class", "function"):
        docs = [doc for k, _, doc in found if k == kind]
        print(f"{kind:>8}: {len(docs):4d} docstrings, {sum(map(len, docs)):7d} characters")
    print(f"   total: {sum(len(doc) for _, _, doc in found)} characters")
    lines = [len(doc.strip().splitlines()) for _, _, doc in found]
    print(f"mean lines per docstring: {sum(lines) / max(len(lines), 1):.2f}")
    print(f"{args.top} longest (characters, lines, name):")
    for kind, name, doc in sorted(found, key=lambda item: -len(item[2]))[: args.top]:
        print(f"  {len(doc):6d} {len(doc.strip().splitlines()):4d}  {kind} {name}")


if __name__ == "__main__":
    main()
