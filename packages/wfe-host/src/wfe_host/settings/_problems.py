"""Settings errors: each problem with its dotted field path, what is wrong, and its source."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from wfe_core.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


@attrs.frozen
class SettingsProblem:
    """One thing wrong with the settings: where (dotted field path), what, and from where."""

    path: str
    message: str
    #: The source label: ``settings``, ``environment WFE_X`` or a file name; ``None`` if unknown.
    source: str | None = None

    def format(self) -> str:
        """``source: path: message``, leaving out what is unknown."""
        parts = [p for p in (self.source, self.path) if p]
        return ": ".join([*parts, self.message])


class SettingsError(ConfigurationError):
    """Settings are invalid; :attr:`problems` lists each field path, problem and source."""

    def __init__(self, problems: Sequence[SettingsProblem]) -> None:
        self.problems: tuple[SettingsProblem, ...] = tuple(problems)
        super().__init__("; ".join(p.format() for p in self.problems))

    def with_sources(self, origins: Mapping[str, str]) -> SettingsError:
        """A copy whose problems without a source get one from ``origins`` (path → label),
        matched on the longest dotted prefix of each problem's path."""
        return SettingsError(
            [
                p if p.source is not None else attrs.evolve(p, source=source_of(p.path, origins))
                for p in self.problems
            ]
        )


def source_of(path: str, origins: Mapping[str, str]) -> str | None:
    """The label of the source that set ``path`` (or its nearest parent), if known."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        label = origins.get(".".join(parts[:end]))
        if label is not None:
            return label
    return None


def fail(source: str, path: str, message: str) -> SettingsError:
    """A :class:`SettingsError` of one problem."""
    return SettingsError([SettingsProblem(path, message, source)])
