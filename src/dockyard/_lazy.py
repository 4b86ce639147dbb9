"""Lazy package attributes (PEP 562): a package's ``__init__`` names what it exports at
once and what loads on first use.

It sits beside the packages, not in :mod:`dockyard.core`: a package whose import loads
nothing else (``dockyard.daemon``, ``dockyard.dockerfile``, ``dockyard.llbsolver``) would
otherwise load all of ``dockyard.core`` for it. Standard library only, no import at all
until an attribute is asked for.
"""

# ruff: noqa: I002 - no ``from __future__ import annotations`` (as in the package
# ``__init__`` modules that use this one): loading ``__future__`` would cost more than
# the rest of the module
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, names: "Mapping[str, str]") -> "Callable[[str], Any]":
    """A module ``__getattr__`` for ``package``: ``names`` maps each lazy attribute to the
    module that defines it (relative to ``package`` when it starts with ``.``).

    The first access imports that module and stores the attribute in the package's
    namespace, so later accesses never reach ``__getattr__``; any other name raises
    :class:`AttributeError` as a module does. Use::

        __getattr__ = lazy_getattr(__name__, {"Thing": "._things"})

    and keep the names in ``__all__`` and under ``if TYPE_CHECKING:`` for type checkers.
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module, package), name)
        sys.modules[package].__dict__[name] = value
        return value

    return __getattr__
