"""WFE core: models, builder, executor, provider contracts, in-memory providers and
conformance suites of the WFE workflow engine."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from wfe_core.plugins import hookimpl

try:
    __version__ = version("wfe-core")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__", "hookimpl"]
