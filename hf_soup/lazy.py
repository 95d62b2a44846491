"""Names of a package that load on first use (PEP 562), so importing the package stays cheap.

    __getattr__, __all__ = lazy_exports(__name__, {"cli": ("main",), "table": ("format_table",)})

`hf_soup.merge.main` then imports `hf_soup.merge.cli` only when it is first read: a light module
such as `hf_soup.sweep.grid` is imported without torch and transformers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, tuple[str, ...]]) -> tuple[Callable[[str], Any], list[str]]:
    """(the package's `__getattr__`, its `__all__`) for {submodule (relative to `package`): names it exports}."""
    home = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{home[name]}"), name)

    return __getattr__, sorted(home)
