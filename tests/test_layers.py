"""The layers import one way: the edge (HTTP, the server) never reaches up into the protocols
or the model, whose modules it only carries requests to."""

import ast
from pathlib import Path

import pytest

from harness import ROOT

EDGE = sorted((ROOT / "iris_predict" / "edge").glob("*.py"))
ABOVE = ("iris_predict.protocols", "iris_predict.model")


def imported(path: Path) -> set:
    """Every module a file imports, relative imports resolved."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.update(f"{base}.{alias.name}" for alias in node.names)
            found.add(base)
    return found


@pytest.mark.parametrize("path", EDGE, ids=lambda p: p.name)
def test_the_edge_imports_nothing_above_it(path):
    assert EDGE, "iris_predict/edge has no modules"
    above = sorted(m for m in imported(path) if m.startswith(ABOVE))
    assert above == [], f"{path.name} imports {above}"
