"""The ``jsonl`` lifecycle publisher: every event is one JSON object on one line of a file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import anyio

from wfe_core.errors import ConfigurationError, ProviderError
from wfe_core.memory import LifecycleSubscription, MemoryLifecycle
from wfe_core.providers import LifecyclePublisher, capabilities
from wfe_core.serialization import to_primitive

if TYPE_CHECKING:
    from wfe_core.models import LifecycleEvent
    from wfe_example_plugin.options import JsonlOptions


def path_from_url(url: str) -> str:
    """The file a ``jsonl:`` URL names: ``jsonl:///abs/events.jsonl`` or ``jsonl:rel.jsonl``."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "jsonl":
        raise ConfigurationError(f"expected a jsonl: URL, got {url!r}")
    if parts.netloc:
        # jsonl://events.jsonl would silently drop "events.jsonl" as a host name.
        raise ConfigurationError(
            f"{url!r}: a jsonl URL has no host; use jsonl:///absolute/path.jsonl or "
            "jsonl:relative/path.jsonl"
        )
    path = unquote(parts.path)
    if not path:
        raise ConfigurationError(f"{url!r} names no file")
    return path


class JsonlLifecyclePublisher(LifecyclePublisher):
    """Appends each published event to a JSON Lines file and hands it to subscribers.

    Lines are written whole, one ``publish`` at a time, so concurrent publishers never
    interleave within a line. Subscribers are in-process and best effort, as the contract says:
    one that falls more than its buffer behind loses events. (Fan-out to them is delegated to
    wfe-core's in-memory publisher: a plugin can build on the built-in providers.)
    """

    capabilities = frozenset({capabilities.DURABLE})

    def __init__(
        self, path: str | os.PathLike[str], *, fsync: bool = False, subscriber_buffer: int = 1000
    ) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._file: IO[str] | None = None
        self._write_lock = anyio.Lock()
        self._fanout = MemoryLifecycle(buffer_size=subscriber_buffer)

    @classmethod
    def from_settings(cls, url: str | None, options: JsonlOptions) -> JsonlLifecyclePublisher:
        """Build one from a ``jsonl:`` URL and/or ``options.path`` (exactly one is needed)."""
        url_path = path_from_url(url) if url else None
        if url_path and options.path and Path(url_path) != Path(options.path):
            raise ConfigurationError(
                f"lifecycle provider 'jsonl': the URL names {url_path} but options.path names "
                f"{options.path}; give one of them"
            )
        path = url_path or options.path
        if not path:
            raise ConfigurationError(
                "lifecycle provider 'jsonl' needs a file: set lifecycle.url to "
                "jsonl:///path/to/events.jsonl or lifecycle.options.path"
            )
        return cls(path, fsync=options.fsync, subscriber_buffer=options.subscriber_buffer)

    async def open(self) -> None:
        """Open the file for appending (creating it and its directory if needed)."""
        if self._file is not None:
            return
        try:
            await anyio.to_thread.run_sync(self._open_file)
        except OSError as exc:
            raise ProviderError(f"cannot open {self.path} for appending: {exc}") from exc

    def _open_file(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    async def close(self) -> None:
        """Close the file and end every subscription."""
        await self._fanout.close()
        if self._file is not None:
            file, self._file = self._file, None
            await anyio.to_thread.run_sync(file.close)

    async def publish(self, event: LifecycleEvent) -> None:
        """Append ``event`` as one JSON line, then hand it to each subscriber."""
        line = json.dumps(to_primitive(event), separators=(",", ":")) + "\n"
        async with self._write_lock:
            file = self._file
            if file is None:
                raise ProviderError(
                    f"the jsonl lifecycle publisher for {self.path} is not open; use it as "
                    "`async with publisher:`"
                )
            try:
                await anyio.to_thread.run_sync(self._write, file, line)
            except OSError as exc:
                raise ProviderError(f"cannot append to {self.path}: {exc}") from exc
        await self._fanout.publish(event)

    def _write(self, file: IO[str], line: str) -> None:
        file.write(line)
        file.flush()
        if self.fsync:
            os.fsync(file.fileno())

    def subscribe(self) -> LifecycleSubscription:
        """Events published from this call on, until the subscription or the publisher is
        closed."""
        return self._fanout.subscribe()
