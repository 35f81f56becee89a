"""The api's imports point one way: entrypoints and the composition root use the service layer,
the service layer uses adapters and the domain, and nothing points back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import kairos_api

PACKAGE = Path(kairos_api.__file__).resolve().parent

#: For each layer, the modules of the api it must never import.
FORBIDDEN = {
    "domain": ("kairos_api.adapters", "kairos_api.service_layer", "kairos_api.entrypoints"),
    "adapters": ("kairos_api.service_layer", "kairos_api.entrypoints", "kairos_api.bootstrap"),
    "service_layer": ("kairos_api.entrypoints", "kairos_api.bootstrap", "kairos_api.service"),
}


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside functions and TYPE_CHECKING blocks."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def breaks(module: str, forbidden: tuple[str, ...]) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in forbidden)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer: str) -> None:
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files, f"no modules in {layer}"
    offences = [
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in files
        for module in sorted(imported_modules(path))
        if breaks(module, FORBIDDEN[layer])
    ]
    assert offences == []


def test_the_check_sees_an_import_pointing_back(tmp_path: Path) -> None:
    doctored = tmp_path / "doctored.py"
    doctored.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from kairos_api.bootstrap import Application\n"
        "def later():\n"
        "    import kairos_api.entrypoints.auth\n"
    )
    modules = imported_modules(doctored)
    assert breaks("kairos_api.bootstrap", FORBIDDEN["service_layer"])
    assert {"kairos_api.bootstrap", "kairos_api.entrypoints.auth"} <= modules
