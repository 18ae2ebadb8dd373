"""The import paths of modules moved to :mod:`wfe_core.testing.conformance` in 0.1.0, kept
working for one release: ``import wfe_core.testing.scenarios`` gives the module
``wfe_core.testing.conformance.scenarios`` (the same object, not a copy)."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

#: The modules that moved (``_support`` too: provider packages' tests imported it).
MOVED = frozenset(
    {
        "_support",
        "lifecycle",
        "lock",
        "persistence",
        "queue",
        "scenarios",
        "search",
        "servers",
        "strategies",
    }
)
OLD_PACKAGE = "wfe_core.testing"
NEW_PACKAGE = "wfe_core.testing.conformance"


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        # The moved module itself, so both names share one module (and its classes).
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the target was executed when it was imported."""


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds ``wfe_core.testing.<moved>``: an alias of ``wfe_core.testing.conformance.<moved>``."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != OLD_PACKAGE or name not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(f"{NEW_PACKAGE}.{name}"))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (idempotent)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
