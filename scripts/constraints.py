"""Print the exact versions installed in this venv of everything `pip install -e .[test]` needs, for
constraints.txt: `.venv/bin/python scripts/constraints.py > constraints.txt`.

Packages that come from the system site-packages (Debian's python3-lxml and python3-xmlsec, built against the
same libxml2) are left out: pinning them would have pip replace them with wheels that do not fit together.
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("run", "test")


def closure() -> dict[str, metadata.Distribution]:
    # The project's own requirements from pyproject.toml: its installed metadata may predate the last edit.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    roots = list(project["dependencies"]) + [r for e in EXTRAS for r in project["optional-dependencies"][e]]
    found: dict[str, metadata.Distribution] = {}
    todo = [(Requirement(r).name, frozenset(Requirement(r).extras)) for r in roots]
    while todo:
        name, extras = todo.pop()
        dist = metadata.distribution(name)
        key = canonicalize_name(dist.metadata["Name"])
        if key in found and not extras:
            continue
        found[key] = dist
        for line in dist.requires or []:
            req = Requirement(line)
            wanted = any(req.marker is None or req.marker.evaluate({"extra": e}) for e in ("", *extras))
            if wanted and canonicalize_name(req.name) not in found:
                todo.append((req.name, frozenset(req.extras)))
    return found


def main() -> None:
    venv = Path(sys.prefix).resolve()
    print("# Exact versions CI and scripts/bootstrap.sh install with; regenerate with scripts/constraints.py.")
    for _, dist in sorted(closure().items()):
        if not Path(str(dist.locate_file(""))).resolve().is_relative_to(venv):
            continue
        print(f"{dist.metadata['Name']}=={dist.version}")


if __name__ == "__main__":
    main()
