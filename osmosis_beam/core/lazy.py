"""Lazy package exports: a package names its public API without importing Beam until a name is used.

Example::

    # in a package's __init__.py
    from osmosis_beam.core.lazy import lazy_exports
    __getattr__, __dir__ = lazy_exports(__name__, {"ReadFromPostgres": "osmosis_beam.io.postgres.transforms"})
"""
from __future__ import annotations

import importlib
import sys
from typing import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` that import ``names[name]`` on first use."""

    def __getattr__(name: str) -> object:
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
