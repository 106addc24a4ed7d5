"""The floors of docs/layout.md, read from the imports: a lower floor never imports a higher one."""

from __future__ import annotations

import ast
from pathlib import Path

import mnistlab

PACKAGE = Path(mnistlab.__file__).parent
# each floor and the floors it may import (its own always); the top-level modules are the commands
MAY_IMPORT = {
    "core": set(),
    "config": {"core"},
    "data": {"core", "config"},
    "models": {"core", "config", "data"},
    "training": {"core", "config", "data", "models"},
    "web": {"core", "config", "data", "models"},
    "perf": {"core", "config", "data", "models", "training"},
    "tuning": {"core", "config", "data", "models", "training", "perf"},
    "teaching": {"core", "config", "data", "models", "training", "perf", "tuning"},
}


def imported_floors(path: Path, root: Path = PACKAGE) -> set[str]:
    """The first part below ``mnistlab`` (at ``root``) of every module ``path`` imports, relative or absolute."""
    package = path.relative_to(root).parent.parts
    floors = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(package[: len(package) - (node.level - 1)])
            names = node.module.split(".") if node.module else [a.name for a in node.names][:1]
            floors.add((base + names)[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mnistlab."):
            floors.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            floors |= {a.name.split(".")[1] for a in node.names if a.name.startswith("mnistlab.")}
    return floors


def test_no_floor_imports_a_higher_one():
    upward = []
    for floor, allowed in MAY_IMPORT.items():
        for path in sorted((PACKAGE / floor).rglob("*.py")):
            reached = {f for f in imported_floors(path) if f != floor} - allowed
            upward += [f"{path.relative_to(PACKAGE)} imports {f}" for f in sorted(reached)]
    assert upward == []


def test_every_subpackage_has_a_floor():
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()} == set(MAY_IMPORT)


def test_the_floor_reader_sees_an_upward_import(tmp_path):
    module = tmp_path / "data" / "probe.py"
    module.parent.mkdir()
    module.write_text("from ..training.fit import train\nfrom . import idx\nimport mnistlab.perf.runs\n"
                      "from mnistlab.core.errors import ConfigError\n")
    assert imported_floors(module, root=tmp_path) == {"training", "data", "perf", "core"}
