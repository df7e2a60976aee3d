"""The package's folders mirror the pipeline and imports run one way (docs/architecture.md):
data -> sim -> model -> train -> generate -> evaluate. A module may import its own stage and the
ones before it, never a later one (lazy imports inside functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

STAGES = ("data", "sim", "model", "train", "generate", "evaluate")
PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mubundle"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import statement in ``path``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_no_later_stage(stage):
    later = set(STAGES[STAGES.index(stage) + 1:])
    wrong = [f"{path.name}:{line} imports {module}"
             for path in sorted((PACKAGE / stage).glob("*.py"))
             for line, module in imported_modules(path)
             if module.split(".")[0] == "mubundle" and len(module.split(".")) > 1 and module.split(".")[1] in later]
    assert not wrong, f"{stage}/ imports a later stage: {wrong}"


def test_the_check_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from mubundle.generate.api import load_model\n")
    assert imported_modules(module) == [(2, "mubundle.generate.api")]
