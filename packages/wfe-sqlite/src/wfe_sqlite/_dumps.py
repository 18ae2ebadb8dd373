"""``dumps``: JSON text as the provider stores it (compact, unicode kept as it is)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["dumps"]

# Compact, and unicode kept as it is: the text is read back only by this provider.
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _make_dumps() -> Callable[[Any], str]:
    """``_encoder.encode``, without what it does again for every call: it builds its C
    encoder (and a closure) each time, which costs about as much as encoding a pointer's few
    fields. The C encoder is built once here with the arguments ``encode`` gives it (no
    check for circular references: a cycle stops the converter, or ``_rows.is_plain`` on
    the values passed without it, with ``RecursionError`` first); without the C accelerator,
    ``encode`` is used as it is."""
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:  # pragma: no cover - CPython has it
        return _encoder.encode
    encode = make_encoder(
        None,
        _encoder.default,
        json.encoder.encode_basestring,
        None,
        _encoder.key_separator,
        _encoder.item_separator,
        _encoder.sort_keys,
        _encoder.skipkeys,
        _encoder.allow_nan,
    )
    join = "".join

    def dumps(value: Any) -> str:
        return join(encode(value, 0))

    return dumps


#: ``value`` as JSON text, as ``_encoder.encode`` writes it.
dumps = _make_dumps()
