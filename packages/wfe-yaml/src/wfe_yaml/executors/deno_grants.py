"""Path grants of a deno step (``read``/``write``), made safe against symbolic links.

Deno checks a path grant against the path *as written*: it never resolves links, neither in
the grant nor in the path the script opens. So ``read: [ws]`` with ``ws/link -> /etc/passwd``
lets the script read ``/etc/passwd``, and ``--deny-read`` of the target does not stop it.
In CI the workspace is the attacker's, so before granting we resolve every path and refuse:

- a granted path that is itself reached through a link (``ws -> /``), and
- a granted directory holding a link (at any depth) whose target lies outside every grant of
  the same kind (a ``read`` link must land in a ``read`` grant, a ``write`` link in a
  ``write`` grant).

Links that stay inside the grants are fine. The script cannot add links of its own: Deno
refuses ``Deno.symlink`` unless both ``read`` and ``write`` are unscoped (``true``), and then
there is nothing left to escape from.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import attrs

from wfe_yaml.errors import StepFailedError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

#: The path permissions, whose grants are resolved and checked for links.
PATH_KINDS = ("read", "write")


@attrs.frozen
class PathGrant:
    """One kind of path permission after resolution: everything (``all``) or these real,
    absolute paths."""

    all: bool = False
    paths: tuple[str, ...] = ()

    def covers(self, path: str) -> bool:
        """Whether ``path`` (absolute) and its real location both lie within the grant."""
        if self.all:
            return True
        return _within_any(path, self.paths) and _within_any(os.path.realpath(path), self.paths)


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _within_any(path: str, roots: Iterable[str]) -> bool:
    return any(_within(path, root) for root in roots)


def resolve_path_grants(permissions: Mapping[str, Any]) -> dict[str, PathGrant]:
    """The ``read`` and ``write`` grants of a step as real absolute paths (relative ones are
    taken from the current directory, as Deno does); raises :class:`StepFailedError` naming
    the link when a grant could reach outside the grants through one. Blocking (it walks the
    granted directories): call it in a worker thread."""
    grants: dict[str, PathGrant] = {}
    for kind in PATH_KINDS:
        value = permissions.get(kind)
        if value is True:
            grants[kind] = PathGrant(all=True)
            continue
        paths: list[str] = []
        for raw in value if isinstance(value, list) else ():
            absolute = os.path.abspath(str(raw))
            check_listable(f"permissions.{kind}", absolute)
            real = os.path.realpath(absolute)
            if real != absolute:
                raise StepFailedError(
                    f"permissions.{kind}: {raw!r} leads through a symbolic link to {real}; "
                    f"grant the real path instead (a link in a granted path could point anywhere)"
                )
            paths.append(real)
        grants[kind] = PathGrant(paths=tuple(paths))
    for kind, grant in grants.items():
        for root in grant.paths:
            _check_links(kind, root, grant)
    return grants


def check_listable(what: str, path: str) -> None:
    """Refuse a path Deno's comma-separated flag lists would split into other paths."""
    if "," in path:
        raise StepFailedError(f"{what}: {path!r} contains a comma, which Deno would split")


def _check_links(kind: str, root: str, grant: PathGrant) -> None:
    """Refuse a link under ``root`` whose target lies outside ``grant``."""
    if not os.path.isdir(root):
        return

    def unreadable(error: OSError) -> None:
        # A folder we cannot list may still be entered by name, links and all.
        raise StepFailedError(
            f"permissions.{kind}: cannot check {error.filename} for symbolic links: "
            f"{error.strerror}"
        )

    for folder, dirs, files in os.walk(root, onerror=unreadable, followlinks=False):
        for name in (*dirs, *files):
            path = os.path.join(folder, name)
            if os.path.islink(path):
                target = os.path.realpath(path)
                if not _within_any(target, grant.paths):
                    raise StepFailedError(
                        f"permissions.{kind}: {path} is a symbolic link to {target}, "
                        f"outside every {kind} grant; remove the link or grant its target"
                    )
