"""The data flow's direction, as imports: training -> inference <- service, never backwards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

# package -> top-level modules it must never import
FORBIDDEN = {
    "inference": {"service", "training", "torch", "fastapi", "starlette"},
    "training": {"service"},
    "service": {"training", "torch"},
}


def imported_roots(path: Path) -> set[str]:
    """Top-level names of every absolute import in the module at ``path``."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def test_imported_roots_sees_plain_from_and_nested_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import a.b\nfrom c.d import e\ndef f():\n    import g\nfrom . import h\n")
    assert imported_roots(module) == {"a", "c", "g"}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_downstream_of_the_data_flow(package: str) -> None:
    offenders = {
        f"{path.relative_to(REPO)} imports {', '.join(sorted(bad))}"
        for path in sorted((REPO / package).rglob("*.py"))
        if (bad := imported_roots(path) & FORBIDDEN[package])
    }
    assert not offenders, sorted(offenders)
