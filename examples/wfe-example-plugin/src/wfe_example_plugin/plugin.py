"""The hookimpls of the example plugin (the module its ``wfe`` entry point names).

Only records live here; the publisher module is imported by the factory, when a host builds
one, so that ``wfe providers`` stays fast however many plugins are installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfe_core import hookimpl
from wfe_core.plugins import ProviderKind, ProviderSpec
from wfe_core.providers import capabilities
from wfe_example_plugin.options import JsonlOptions

if TYPE_CHECKING:
    from wfe_core.providers import Provider

NAME = "jsonl"


def _jsonl(url: str | None, options: JsonlOptions) -> Provider:
    from wfe_example_plugin.jsonl import JsonlLifecyclePublisher

    return JsonlLifecyclePublisher.from_settings(url, options)


@hookimpl
def register_providers() -> list[ProviderSpec]:
    """The ``jsonl`` lifecycle publisher."""
    return [
        ProviderSpec(
            ProviderKind.LIFECYCLE,
            NAME,
            _jsonl,
            summary="Appends lifecycle events as JSON lines to a file",
            url_schemes=("jsonl",),
            options_class=JsonlOptions,
            # The file outlives the process; subscribers are still in-process only.
            capabilities=frozenset({capabilities.DURABLE}),
        )
    ]
