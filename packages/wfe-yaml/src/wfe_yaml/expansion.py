"""A budget on how far YAML aliases expand ("billion laughs").

ruamel.yaml builds an alias as a second reference to its anchor's value, so nine nested
anchors of ten aliases each cost a few lines and nothing to parse; but everything that later
walks the value (turning it into plain data, filling in ``${{ ... }}``) visits 10⁹ nodes.

:class:`BudgetComposer` counts, while the document is composed, every value the document
stands for once aliases are expanded: each scalar, sequence and mapping (keys too) counts
one, and an alias counts every value of its anchor each time it is used, as does a merge
key (``<<: *defaults``). Scalar text counts the same way. Past :data:`MAX_EXPANDED_VALUES`
or :data:`MAX_EXPANDED_CHARS` it stops with :class:`ExpansionError` at the alias (or value)
that went over, before anything walks the tree. Every later walk of the file is then bounded
by these numbers. It also places the error of an integer too long for Python to convert.
"""

from __future__ import annotations

import sys
from typing import Any

from ruamel.yaml.composer import Composer
from ruamel.yaml.events import AliasEvent, ScalarEvent

#: Most values (scalars, sequences, mappings, keys) one YAML file may expand to.
MAX_EXPANDED_VALUES = 100_000
#: Most characters of scalar text one YAML file may expand to (as large as the file may be).
MAX_EXPANDED_CHARS = 10 * 1024 * 1024


class ExpansionError(Exception):
    """The document expands past the budget; ``line`` and ``column`` are 1-based."""

    def __init__(self, line: int, column: int, message: str) -> None:
        self.line = line
        self.column = column
        self.message = message
        super().__init__(f"{line}:{column}: {message}")


class BudgetComposer(Composer):
    """A ruamel.yaml composer that refuses documents expanding past the budget (set it as
    ``YAML().Composer``)."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self.expanded_values = 0
        self.expanded_chars = 0
        #: Anchor → (values, characters) of its whole value, once it is complete.
        self.anchor_sizes: dict[Any, tuple[int, int]] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            size = self.anchor_sizes.get(event.anchor)
            if size is None and event.anchor in self.anchors:
                raise _error(
                    event.start_mark,
                    f"alias *{event.anchor} is used inside its own anchor: recursive "
                    "YAML data is not supported",
                )
            if size is not None:
                self._add(*size, event.start_mark, alias=event.anchor)
            return super().compose_node(parent, index)
        anchor = event.anchor
        if anchor is not None:
            # An anchor defined again: aliases inside the new value must not see the old size.
            self.anchor_sizes.pop(anchor, None)
        before = (self.expanded_values, self.expanded_chars)
        chars = len(event.value) if isinstance(event, ScalarEvent) else 0
        self._add(1, chars, event.start_mark, alias=None)
        node = super().compose_node(parent, index)
        if anchor is not None:
            self.anchor_sizes[anchor] = (
                self.expanded_values - before[0],
                self.expanded_chars - before[1],
            )
        return node

    def compose_scalar_node(self, anchor: Any) -> Any:
        node = super().compose_scalar_node(anchor)
        # Python refuses to convert a decimal string of more digits than this (a guard of its
        # own against slow conversions); ruamel.yaml's error for it carries no position.
        most = sys.get_int_max_str_digits()
        if most and str(node.tag).endswith(":int") and len(node.value) > most:
            raise _error(node.start_mark, f"an integer of more than {most} digits is not supported")
        return node

    def _add(self, values: int, chars: int, mark: Any, *, alias: str | None) -> None:
        self.expanded_values += values
        self.expanded_chars += chars
        if self.expanded_values <= MAX_EXPANDED_VALUES and (
            self.expanded_chars <= MAX_EXPANDED_CHARS
        ):
            return
        what = (
            f"more than {MAX_EXPANDED_VALUES:,} values"
            if self.expanded_values > MAX_EXPANDED_VALUES
            else f"more than {MAX_EXPANDED_CHARS:,} characters of text"
        )
        if alias is None:
            raise _error(mark, f"the YAML holds {what}")
        raise _error(
            mark,
            f"alias *{alias} expands the YAML to {what} (an alias counts its anchor's "
            "whole value each time it is used)",
        )


def _error(mark: Any, message: str) -> ExpansionError:
    return ExpansionError(int(mark.line) + 1, int(mark.column) + 1, message)
