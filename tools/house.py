"""Measure the shape of the code base: modules, lines, import arrows, depth and circles.

Reads the source with `ast` (nothing is imported), so it runs without the service's
dependencies. Arrows are imports between the project's own modules, wherever they stand in a
module (a function-level import ties two modules as much as a top-level one). Depth is the
longest chain of arrows once each import circle is taken as one node.

    python tools/house.py                 # the table for api/, worker/, shared/, client/
    python tools/house.py --json out.json # and the figures as JSON
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"api": ROOT / "api", "worker": ROOT / "worker", "shared": ROOT / "shared",
            "saliency_client": ROOT / "client" / "saliency_client"}


def module_name(path: Path) -> str:
    """The dotted name of a source file of one of PACKAGES."""
    for package, folder in PACKAGES.items():
        if path.is_relative_to(folder):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(f"{path} is in none of {list(PACKAGES)}")


def code_lines(source: str) -> int:
    """Lines that are neither blank nor comments (docstrings count: they are read)."""
    return sum(1 for line in source.splitlines() if line.strip() and
               not line.lstrip().startswith("#"))


def imports(tree: ast.AST, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The project modules a module imports, resolved to the longest known module name."""
    found: set[str] = set()
    base = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base.split(".")[: len(base.split(".")) - node.level + 1]
                module = ".".join(parent + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" for alias in node.names] + [module]
        for target in targets:
            parts = target.split(".")
            for cut in range(len(parts), 0, -1):
                candidate = ".".join(parts[:cut])
                if candidate in known:
                    if candidate != name:
                        found.add(candidate)
                    break
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
    return out


def depth(graph: dict[str, set[str]], groups: list[list[str]]) -> int:
    """The longest chain of arrows, each circle counted as one module."""
    node_of = {m: m for m in graph}
    for group in groups:
        for member in group:
            node_of[member] = group[0]
    condensed: dict[str, set[str]] = defaultdict(set)
    for source, targets in graph.items():
        for target in targets:
            if node_of[source] != node_of[target]:
                condensed[node_of[source]].add(node_of[target])
    memo: dict[str, int] = {}

    def longest(node: str) -> int:
        if node not in memo:
            memo[node] = 1 + max((longest(t) for t in condensed[node]), default=0)
        return memo[node]

    sys.setrecursionlimit(10000)
    return max((longest(n) for n in set(node_of.values())), default=0)


def measure() -> dict:
    files = {module_name(p): p for folder in PACKAGES.values()
             for p in sorted(folder.rglob("*.py"))}
    known = set(files)
    graph: dict[str, set[str]] = {}
    lines: dict[str, int] = {}
    for name, path in files.items():
        source = path.read_text()
        lines[name] = code_lines(source)
        graph[name] = imports(ast.parse(source), name, path.name == "__init__.py", known)
    rooms = {}
    for room in PACKAGES:
        members = {m for m in graph if m == room or m.startswith(room + ".")}
        sub = {m: graph[m] & members for m in members}
        groups = circles(sub)
        rooms[room] = {
            "modules": len(members), "lines": sum(lines[m] for m in members),
            "arrows": sum(len(t) for t in sub.values()), "depth": depth(sub, groups),
            "circles": [len(g) for g in groups], "largest_circle": groups and max(
                groups, key=len),
        }
    groups = circles(graph)
    between = sorted({(a.split(".")[0], b.split(".")[0]) for a, t in graph.items() for b in t
                      if a.split(".")[0] != b.split(".")[0]})
    return {
        "modules": len(graph), "lines": sum(lines.values()),
        "arrows": sum(len(t) for t in graph.values()), "depth": depth(graph, groups),
        "circles": [len(g) for g in groups], "rooms": rooms,
        "between_rooms": [f"{a} -> {b}" for a, b in between],
        "largest_modules": sorted(((lines[m], m) for m in lines), reverse=True)[:10],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = measure()
    print(f"{'room':<16}{'modules':>8}{'lines':>8}{'arrows':>8}{'depth':>7}  circles")
    for room, f in figures["rooms"].items():
        print(f"{room:<16}{f['modules']:>8}{f['lines']:>8}{f['arrows']:>8}{f['depth']:>7}  "
              f"{f['circles'] or '-'}")
    print(f"{'all':<16}{figures['modules']:>8}{figures['lines']:>8}{figures['arrows']:>8}"
          f"{figures['depth']:>7}  {figures['circles'] or '-'}")
    print("arrows between rooms:", ", ".join(figures["between_rooms"]) or "none")
    for room, f in figures["rooms"].items():
        if f["largest_circle"]:
            print(f"largest circle in {room} ({len(f['largest_circle'])}):",
                  " ".join(f["largest_circle"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
