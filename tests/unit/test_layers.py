"""The layering rules of idp/README.md hold: every import points down a floor, and there is no cycle."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def layers():
    spec = importlib.util.spec_from_file_location("layers", ROOT / "scripts" / "layers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["layers"] = module
    spec.loader.exec_module(module)
    return module


def test_every_import_of_the_product_points_down(layers) -> None:
    edges = layers.graph(ROOT / "idp")
    assert layers.upward_imports(edges) == []
    assert layers.cycles(edges) == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "idp" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "idp"


def test_an_upward_import_is_caught_wherever_it_hides(layers, tmp_path: Path) -> None:
    """Module level, inside a function, under TYPE_CHECKING, relative: each is a dependency."""
    tree = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "settings.py": "",
            "saml/__init__.py": "",
            "saml/requests.py": "def f():\n    from idp.signin import steps\n",
            "directory/__init__.py": "",
            "directory/client.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from idp.saml import requests\n"
            ),
            "sps/__init__.py": "",
            "sps/policy.py": "from ..directory import client\n",
            "signin/__init__.py": "",
            "signin/steps.py": "import idp.settings\n",
        },
    )
    problems = layers.upward_imports(layers.graph(tree))
    assert any(p.startswith("idp.saml.requests imports idp.signin") for p in problems)
    assert any(p.startswith("idp.directory.client imports idp.saml") for p in problems)
    # Same floor: two rooms beside each other know nothing of each other.
    assert any(p.startswith("idp.sps.policy imports idp.directory") for p in problems)
    assert not any(p.startswith("idp.signin") for p in problems)


def test_a_cycle_inside_one_room_is_caught(layers, tmp_path: Path) -> None:
    tree = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "sps/__init__.py": "",
            "sps/a.py": "from idp.sps import b\n",
            "sps/b.py": "from idp.sps.a import thing\n",
        },
    )
    assert layers.cycles(layers.graph(tree)) == [["idp.sps.a", "idp.sps.b"]]


def test_a_room_on_no_floor_is_named(layers, tmp_path: Path) -> None:
    tree = _tree(tmp_path, {"__init__.py": "", "gadgets.py": "import idp.settings\n", "settings.py": ""})
    assert layers.upward_imports(layers.graph(tree)) == [
        "idp.gadgets: room 'gadgets' is on no floor (add it to FLOORS)"
    ]
