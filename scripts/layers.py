"""Prints the package graph of idp/ and fails on an import that points up a layer, or on an import cycle.

    python scripts/layers.py            # the graph, then "ok" or the offending imports (exit 1)

The rooms of idp/ sit on floors (see idp/README.md). A module may import from its own room and from any
room on a lower floor; two rooms on the same floor know nothing of each other. Every import counts:
module level, inside functions and under ``if TYPE_CHECKING``, since each one is a dependency a reader
has to follow. Cycles are looked for between modules, so two modules of one room cannot import each
other either.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

# Lowest floor first. A room is a top-level module or package of idp/.
FLOORS: list[tuple[str, ...]] = [
    ("settings", "person", "codes", "metrics", "logs"),
    ("mail_address",),
    ("store",),
    ("audit",),
    ("directory", "keys", "sps", "audit_report"),
    ("saml", "provisioning", "mfa", "oidc"),
    ("access", "connectors"),
    ("signin",),
    ("web", "demo"),
    ("app",),
    ("cli",),
    ("commands",),
]
# `idp/__init__.py` holds only the version; every room may read it.
_ANYONE = "__init__"


def floor_of(room: str) -> int:
    for level, rooms in enumerate(FLOORS):
        if room in rooms:
            return level
    raise KeyError(room)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else _ANYONE


def imports_of(path: Path, module: str) -> set[str]:
    """The idp modules ``path`` imports (absolute and relative imports alike)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # `from idp.web import admin` imports the module idp.web.admin
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "idp" or name.startswith("idp.")}


def graph(root: Path) -> dict[str, set[str]]:
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    return {m: {i for i in imports_of(p, m) if i in paths and i != m} for m, p in paths.items()}


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, targets in sorted(edges.items()):
        here = room_of(module)
        for target in sorted(targets):
            there = room_of(target)
            if there in (here, _ANYONE):
                continue
            try:
                ok = floor_of(there) < floor_of(here)
            except KeyError as exc:
                problems.append(f"{module}: room {exc.args[0]!r} is on no floor (add it to FLOORS)")
                continue
            if not ok:
                problems.append(f"{module} imports {target}: {there} is not below {here}")
    return problems


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def room_graph(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = defaultdict(set)
    for module, targets in edges.items():
        rooms[room_of(module)].update(room_of(t) for t in targets if room_of(t) not in (room_of(module), _ANYONE))
    return rooms


def main(root: Path) -> int:
    edges = graph(root)
    rooms = room_graph(edges)
    for level in reversed(range(len(FLOORS))):
        for room in FLOORS[level]:
            print(f"{level:>2} {room:<13} -> {', '.join(sorted(rooms.get(room, ()), key=floor_of)) or '-'}")
    problems = upward_imports(edges) + [" -> ".join(c) + " (import cycle)" for c in cycles(edges)]
    for problem in problems:
        print("FAIL", problem)
    if not problems:
        print("ok: every import points down, and there is no cycle")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(__file__).resolve().parent.parent / "idp"))
