"""Text from workflows (step output, step names, error messages) made safe to print on a
terminal.

A step of an untrusted pipeline could otherwise drive the user's terminal with escape
sequences: set the window title, write the clipboard (OSC 52), rewrite lines already shown
(carriage return, backspace, cursor movement), or hide text. Every control character but tab
is shown as an escape instead (``\\x1b``, ``\\x9b``, ``\\r``...), so what follows an ESC is inert
text and the user still sees that something was there; so are the Unicode bidirectional
overrides that reorder what a line seems to say.
"""

from __future__ import annotations

__all__ = ["printable"]


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
