"""The static module graph of a deno step's script file, and which of its modules are the
step's own.

Deno loads a program's *static* module graph (its imports, and ``import()`` calls with a
literal specifier) without any permission check, so ``import s from "file:///x.json" with
{type: "json"}`` would read any file. The executor therefore loads the step's script with a
computed ``import()``: Deno then checks every module of its graph against ``read``. For that
to work, the step's own modules must be granted, and only they: the executor asks
``deno info --json`` for the script file's graph, grants ``read`` on exactly the code modules
(JavaScript/TypeScript) that lie inside the script's folder tree (resolved, so a link cannot
lead out of it), and refuses before running any other local module that no ``read`` grant
covers. The graph is cached per script file and reused while the bytes of its code modules
are unchanged, so a script run again costs a few file hashes, not a second Deno process.
Should the files change between the check and the run, the run-time check still applies:
a module missing from the grant is refused by Deno, never read.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread
import attrs

from wfe_yaml.errors import StepFailedError

if TYPE_CHECKING:
    from wfe_yaml.executors.deno_grants import PathGrant

logger = logging.getLogger("wfe_yaml.deno")

#: Deno media types of modules that are code (the others, JSON, WASM, text or bytes, are data
#: and need a ``read`` grant like any file read).
CODE_MEDIA_TYPES = frozenset(
    {"JavaScript", "Mjs", "Cjs", "Jsx", "TypeScript", "Mts", "Cts", "Dts", "Dmts", "Dcts", "Tsx"}
)
#: Script files whose graphs are remembered.
CACHE_SIZE = 256
#: How long ``deno info`` may take.
INFO_SECONDS = 60.0


@attrs.frozen
class Module:
    """A local module of a script's static graph."""

    path: str  #: the path Deno names it by (and checks permissions against)
    code: bool
    importer: str  #: the module that imports it first ("" for the script itself)


@attrs.frozen
class _Graph:
    fingerprint: tuple[tuple[str, str], ...]  # (path, sha256) of every code module
    modules: tuple[Module, ...]


_graphs: collections.OrderedDict[str, _Graph] = collections.OrderedDict()


def _fingerprint(modules: tuple[Module, ...]) -> tuple[tuple[str, str], ...]:
    prints = []
    for module in modules:
        if module.code:
            try:
                with open(module.path, "rb") as file:
                    digest = hashlib.file_digest(file, "sha256").hexdigest()
            except OSError:
                digest = ""
            prints.append((module.path, digest))
    return tuple(prints)


def _path_of(specifier: str) -> str | None:
    parts = urlsplit(specifier)
    return unquote(parts.path) if parts.scheme == "file" else None


async def script_modules(deno: str, script: str, env: dict[str, str]) -> tuple[Module, ...]:
    """The local modules of ``script``'s static graph (the script first); raises
    :class:`StepFailedError` when one cannot be loaded."""
    cached = _graphs.get(script)
    if cached is not None and cached.fingerprint == await anyio.to_thread.run_sync(
        _fingerprint, cached.modules
    ):
        _graphs.move_to_end(script)
        return cached.modules
    argv = [deno, "info", "--json", "--no-config", "--no-lock", "--no-npm", "--no-remote", script]
    try:
        with anyio.fail_after(INFO_SECONDS):
            done = await anyio.run_process(argv, env=env, check=False)
    except OSError as exc:
        raise StepFailedError(f"cannot run deno: {exc}") from exc
    except TimeoutError as exc:
        raise StepFailedError(f"deno info {script} took over {INFO_SECONDS:g}s") from exc
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").splitlines()
        errors = [line.removeprefix("error:").strip() for line in lines if "error" in line]
        raise StepFailedError(f"cannot load {script}: " + (errors[0] if errors else "deno info"))
    modules = _parse(json.loads(done.stdout))
    graph = _Graph(await anyio.to_thread.run_sync(_fingerprint, modules), modules)
    _graphs[script] = graph
    while len(_graphs) > CACHE_SIZE:
        _graphs.popitem(last=False)
    return modules


def _parse(info: dict[str, Any]) -> tuple[Module, ...]:
    importers: dict[str, str] = {}
    for entry in info.get("modules", []):
        for dependency in entry.get("dependencies", []):
            for role in ("code", "type"):
                target = (dependency.get(role) or {}).get("specifier")
                if target:
                    importers.setdefault(target, entry.get("specifier", ""))
    roots = set(info.get("roots", []))
    modules: list[Module] = []
    for entry in info.get("modules", []):
        specifier = str(entry.get("specifier", ""))
        path = _path_of(specifier)
        if path is None:
            continue  # remote (refused or allowed by Deno itself), node:, data:
        importer = "" if specifier in roots else _path_of(importers.get(specifier, "")) or ""
        if "error" in entry:
            where = f" (imported by {importer})" if importer else ""
            raise StepFailedError(f"cannot load {path}{where}: {entry['error']}")
        modules.append(Module(path, entry.get("mediaType") in CODE_MEDIA_TYPES, importer))
    modules.sort(key=lambda m: m.importer != "")
    return tuple(modules)


def own_modules(script: str, modules: tuple[Module, ...], read: PathGrant) -> list[str]:
    """The paths of the step's own modules: the code modules inside the script's folder tree
    (the script resolved; each module resolved too, so no link leads out of the tree). Raises
    :class:`StepFailedError` naming a local module that is neither and that ``read`` does not
    cover."""
    tree = os.path.dirname(script)
    own: list[str] = []
    for module in modules:
        inside = all(
            p == tree or p.startswith(tree + os.sep)
            for p in (module.path, os.path.realpath(module.path))
        )
        if module.code and inside:
            own.append(module.path)
        elif not read.covers(module.path):
            what = "a data module" if inside else f"outside the step's own files ({tree}/...)"
            where = f", imported by {module.importer}," if module.importer else ""
            raise StepFailedError(
                f"{module.path}{where} is {what}; importing it needs a read grant that covers it"
            )
    return own
