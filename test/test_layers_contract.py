"""The layers contract in pyproject.toml names every module of the three packages.

import-linter only checks the modules a layer names: a new gs_mapping module left out of the list
would sit outside every layer and could import anything. This keeps the list whole.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Entry points that belong to no layer: `python -m gs_mapping` and the package markers.
OUTSIDE_LAYERS = {"gs_mapping.__main__", "gs_mapping", "gs_map_share", "gsmap_hd"}


def _top_modules(package: str) -> set[str]:
    root = REPO / "src" / package
    names = {package}
    for path in root.iterdir():
        if path.name.startswith(("_", ".")) and path.name != "__main__.py":
            continue
        if path.is_dir() and (path / "__init__.py").exists():
            names.add(f"{package}.{path.name}")
        elif path.suffix == ".py":
            names.add(f"{package}.{path.stem}")
    return names


def test_every_module_is_in_a_layer():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 (Humble's 3.10 has none)
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
    (contract,) = [c for c in cfg["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    named = set()
    for layer in contract["layers"]:
        named |= {m.strip() for m in layer.replace("|", ":").split(":")}
    covered = named | OUTSIDE_LAYERS
    missing = set()
    for package in ("gs_mapping", "gs_map_share", "gsmap_hd"):
        for mod in _top_modules(package):
            if mod in covered or any(mod.startswith(p + ".") for p in named):
                continue
            missing.add(mod)
    assert not missing, f"modules outside the layers contract (pyproject.toml): {sorted(missing)}"
