"""What every reader of one load shares: the problems found so far, the file being read
and where nodes of its YAML tree are written (``file:line:column``)."""

from __future__ import annotations

import contextlib
import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wfe_yaml.errors import Mark, Problem

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from ruamel.yaml.comments import CommentedMap

    from wfe_yaml import interpolation as ip


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when one of ``choices`` is close to ``word``, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class ReadContext:
    """The problems of one load and the file being read (one instance per load)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        #: The load-time values (``--set key=value``).
        self.values = {str(k): v for k, v in values.items()}
        self.problems: list[Problem] = []
        self.file = "<string>"
        #: The directory relative paths of the file being read are resolved against.
        self.base_dir = Path.cwd()
        #: The text of the file being read (to point at a reference inside a scalar).
        self.source = ""

    @contextlib.contextmanager
    def reading(self, text: str, file_name: str, base_dir: Path) -> Iterator[None]:
        """Marks and relative paths refer to ``file_name`` (with ``text``) inside the block;
        an include read inside it restores the including file afterwards."""
        previous = self.file, self.base_dir, self.source
        self.file, self.base_dir, self.source = file_name, base_dir, text
        try:
            yield
        finally:
            self.file, self.base_dir, self.source = previous

    # -- problems and positions --------------------------------------------------------------
    def problem(self, mark: Mark, message: str) -> None:
        """Record a problem at ``mark``."""
        self.problems.append(Problem(mark, message))

    def node_mark(self, node: Any, fallback: Mark | None = None) -> Mark:
        """Where a mapping or sequence starts."""
        lc = getattr(node, "lc", None)
        if lc is not None and getattr(lc, "line", None) is not None:
            return Mark(self.file, int(lc.line) + 1, int(lc.col) + 1)
        return fallback or Mark(self.file)

    def key_mark(self, node: Any, key: Any) -> Mark:
        """Where ``key`` of mapping ``node`` is written (merged keys: the mapping)."""
        try:
            line, col = node.lc.key(key)
            return Mark(self.file, int(line) + 1, int(col) + 1)
        except (AttributeError, KeyError, TypeError):
            return self.node_mark(node)

    def value_mark(self, node: Any, key: Any) -> Mark:
        """Where the value of ``key`` of mapping ``node`` is written."""
        try:
            line, col = node.lc.value(key)
            return Mark(self.file, int(line) + 1, int(col) + 1)
        except (AttributeError, KeyError, TypeError):
            return self.key_mark(node, key)

    def item_mark(self, node: Any, index: int) -> Mark:
        """Where item ``index`` of sequence ``node`` is written."""
        try:
            line, col = node.lc.item(index)
            return Mark(self.file, int(line) + 1, int(col) + 1)
        except (AttributeError, KeyError, TypeError, IndexError):
            return self.node_mark(node)

    def check_keys(self, node: CommentedMap, allowed: Mapping[str, Any], where: str) -> None:
        for key in node:
            if not isinstance(key, str):
                self.problem(self.key_mark(node, key), f"keys must be strings, got {key!r}")
                continue
            if key.startswith("_") or key in allowed:
                continue
            self.problem(
                self.key_mark(node, key),
                f"unknown key {key!r} in {where}{did_you_mean(key, list(allowed))}",
            )

    def locate(self, mark: Mark, text: str, ref: ip.Reference) -> Mark:
        """Where ``ref`` (in the scalar ``text`` that starts at ``mark``) is written: the
        same occurrence of its text after ``mark`` in the file (else ``mark`` itself, e.g.
        when YAML escapes changed it)."""
        lines = self.source.splitlines(keepends=True)
        if mark.file != self.file or not 0 < mark.line <= len(lines):
            return mark
        offset = sum(len(line) for line in lines[: mark.line - 1]) + max(mark.column - 1, 0)
        found = offset - 1
        for _ in range(text.count(ref.raw, 0, ref.start) + 1):
            found = self.source.find(ref.raw, found + 1)
            if found < 0:
                return mark
        line = self.source.count("\n", 0, found) + 1
        column = found - (self.source.rfind("\n", 0, found) + 1) + 1
        return Mark(self.file, line, column)
