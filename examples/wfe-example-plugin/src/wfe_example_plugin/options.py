"""The options of the ``jsonl`` lifecycle publisher (light: imported at plugin load)."""

from __future__ import annotations

import attrs


@attrs.define
class JsonlOptions:
    """``[lifecycle.options]`` of the ``jsonl`` provider."""

    #: The file to append to, when the URL does not give it (``jsonl:///path/events.jsonl``).
    path: str | None = None
    #: Flush each event to disk (``os.fsync``) before ``publish`` returns; slower, but no event
    #: is lost if the machine crashes.
    fsync: bool = False
    #: Events buffered per in-process subscriber before the slowest loses events.
    subscriber_buffer: int = attrs.field(default=1000, validator=attrs.validators.ge(1))
