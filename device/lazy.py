"""Lazy public names for a package: `public_api(package, {name: (module, attr)})` gives the package's
`__getattr__` and `__dir__`, so `import tinyear.device` (or `tinyear.host`) loads nothing heavy and a
public name imports its one home on first use. Standard library only.
"""

from __future__ import annotations

import importlib
import sys


def public_api(package: str, public: dict[str, tuple[str, str]]):
    """(__getattr__, __dir__) for `package`, resolving `public` names lazily and caching them."""

    def __getattr__(name: str):
        if name in public:
            module, attr = public[name]
            value = getattr(importlib.import_module(f"{package}.{module}"), attr)
            setattr(sys.modules[package], name, value)  # once loaded, a plain attribute
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *public})

    return __getattr__, __dir__
