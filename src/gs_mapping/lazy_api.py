"""Package ``__init__`` helper: a package states its public API (``__all__``) by name → module, and
the names are imported on first use (PEP 562), so importing the package stays cheap (no torch,
constriction, cyclonedds or rclpy until a name that needs them is used)."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_api(package: str, api: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` resolving ``api[name]`` (a submodule of ``package``) on first use."""

    def __getattr__(name: str) -> object:
        if name not in api:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{api[name]}"), name)

    return __getattr__


__all__ = ["lazy_api"]
