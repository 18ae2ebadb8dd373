"""Text from workflows (step output, step names, error messages) made safe to print on a
terminal.

A step of an untrusted pipeline could otherwise drive the user's terminal with escape
sequences: set the window title, write the clipboard (OSC 52), rewrite lines already shown
(carriage return, backspace, cursor movement), or hide text. Every control character but tab
is shown as an escape instead (``\\x1b``, ``\\x9b``, ``\\r``...), so what follows an ESC is inert
text and the user still sees that something was there; so are the Unicode bidirectional
overrides that reorder what a line seems to say.

Whether to colour output at all follows ``NO_COLOR`` and ``FORCE_COLOR``
(:func:`color_from_environment`), else whether the output is a terminal.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import TextIO

__all__ = ["color_from_environment", "printable", "use_color"]


def _table() -> dict[int, str]:
    names = {0x08: "\\b", 0x0A: "\\n", 0x0D: "\\r"}
    controls = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]
    table = {code: names.get(code, f"\\x{code:02x}") for code in controls if code != 0x09}
    # Bidirectional embeddings, overrides and isolates (the "Trojan Source" characters).
    for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)):
        table[code] = f"\\u{code:04x}"
    return table


_TABLE = _table()


def printable(text: str) -> str:
    """``text`` with every control character (C0 but tab, DEL, C1) and bidirectional
    override shown as a visible escape: ``"\\x1b]0;pwned\\x07"`` → ``"\\\\x1b]0;pwned\\\\x07"``."""
    return text.translate(_TABLE)


def color_from_environment(environ: Mapping[str, str] | None = None) -> bool | None:
    """What ``NO_COLOR`` and ``FORCE_COLOR`` ask for: ``False`` when ``NO_COLOR`` is set (and
    not empty; it wins), ``True`` when ``FORCE_COLOR`` is (and not empty or ``0``), else
    ``None``: colours only on a terminal. See https://no-color.org/ and
    https://force-color.org/."""
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR", "") not in ("", "0"):
        return True
    return None


def use_color(stream: TextIO, *, plain: bool = False) -> bool:
    """Whether to colour what goes to ``stream``: the environment's wish, else whether it is
    a terminal; never with ``plain``."""
    if plain:
        return False
    wish = color_from_environment()
    return stream.isatty() if wish is None else wish
