"""The ``deno`` step type: JavaScript or TypeScript run by the real Deno binary, sandboxed
by Deno's own permissions (nothing is granted unless the step asks for it)."""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import anyio.to_thread

from wfe_core import ExecutionResult
from wfe_core.providers import StepExecutor
from wfe_yaml.durations import parse_duration
from wfe_yaml.errors import StepFailedError
from wfe_yaml.executors.common import check_duration, check_source, check_strings, config_schema
from wfe_yaml.executors.deno_grants import PathGrant, check_listable, resolve_path_grants
from wfe_yaml.executors.deno_graph import own_modules, script_modules
from wfe_yaml.executors.process import MAX_PARSED_LINE, LineEmitter, run_process
from wfe_yaml.steps import record_result

if TYPE_CHECKING:
    from wfe_core import StepContext

logger = logging.getLogger("wfe_yaml.deno")

#: Permission keys and what they grant.
PERMISSIONS: dict[str, str] = {
    "net": "Hosts (host or host:port) the script may connect to; true for any.",
    "read": "Paths the script may read and import; true for any.",
    "write": "Paths the script may write; true for any.",
    "env": "Environment variables the script may read; true for any.",
    "run": "true: the script may start subprocesses.",
    "dynamic_import": "true: the script may import remote modules (else none at all).",
}
_LIST_PERMISSIONS = ("net", "read", "write", "env")


def deno_binary() -> str:
    """The Deno binary of the ``deno`` wheel (``$WFE_DENO_BIN`` overrides it)."""
    override = os.environ.get("WFE_DENO_BIN")
    if override:
        return override
    import deno  # type: ignore[import-untyped]

    return str(deno.find_deno_bin())


def permission_flags(
    permissions: Mapping[str, Any],
    paths: Mapping[str, PathGrant] | None = None,
    own: Sequence[str] = (),
) -> list[str]:
    """Deno command-line flags granting exactly ``permissions``: ``read`` and ``write`` as
    resolved by :func:`resolve_path_grants` (``paths``, else as written), and ``read`` also on
    the step's own module files ``own``."""
    flags: list[str] = []
    for key in _LIST_PERMISSIONS:
        value = permissions.get(key)
        grant = paths.get(key) if paths is not None else None
        if grant is not None:
            value = True if grant.all else list(grant.paths)
        if key == "read" and value is not True:
            value = [*(value if isinstance(value, list) else ()), *own]
        if value is True:
            flags.append(f"--allow-{key}")
        elif isinstance(value, list) and value:
            flags.append(f"--allow-{key}=" + ",".join(str(v) for v in value))
    if permissions.get("run") is True:
        flags.append("--allow-run")
    if permissions.get("dynamic_import") is True:
        flags.append("--allow-import")
    else:
        flags.append("--no-remote")
    return flags


class DenoExecutor(StepExecutor):
    """Runs ``config.script`` (or ``config.file``) with Deno.

    The script sees ``Wfe.getData()``, ``Wfe.setOutput(key, value)`` and ``Wfe.log(...)``.
    The data arrives on stdin, and outputs leave on stdout as lines marked with a random
    key the script never sees, so its own prints cannot forge an output. ``permissions``
    map to Deno's flags; everything else is denied (``--no-prompt``), including reading the
    executor's own temporary files. Imports count as reads (the step's module is loaded by a
    computed ``import()``, see :mod:`wfe_yaml.executors.deno_graph`), and ``read``/``write``
    grants are refused when a symbolic link leads out of them
    (:mod:`wfe_yaml.executors.deno_grants`). ``timeout`` kills the process (group) hard.
    """

    literal_keys = ("script",)
    static_keys = ("file", "timeout", "permissions", "typescript")
    config_keys: ClassVar[dict[str, str]] = {
        "script": "The script (TypeScript or JavaScript).",
        "file": "A script file to run instead (relative to the YAML file).",
        "permissions": "Deno permissions: net, read, write, env, run, dynamic_import.",
        "timeout": "Kill the script after this duration.",
    }

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        """The JSON Schema of this type's ``config:``."""
        listed = {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "boolean"}]}
        permissions = {
            key: ({"type": "boolean"} if key in ("run", "dynamic_import") else listed)
            | {"description": text}
            for key, text in PERMISSIONS.items()
        }
        props: dict[str, Any] = {
            "script": {"type": "string"},
            "file": {"type": "string"},
            "permissions": {
                "type": "object",
                "properties": permissions,
                "additionalProperties": False,
            },
            "timeout": {"$ref": "#/$defs/duration"},
        }
        return config_schema(props, cls.config_keys, "script")

    def validate_config(self, config: Mapping[str, Any]) -> list[str]:
        """Problems of a deno step's ``config``."""
        problems: list[str] = []
        check_source(config, "deno", "script", problems)
        check_duration(config, "timeout", problems)
        permissions = config.get("permissions")
        if permissions is not None:
            if not isinstance(permissions, Mapping):
                problems.append("permissions: must be a mapping")
            else:
                for key, value in permissions.items():
                    if key not in PERMISSIONS:
                        import difflib

                        close = difflib.get_close_matches(str(key), list(PERMISSIONS), n=1)
                        hint = f" (did you mean {close[0]!r}?)" if close else ""
                        problems.append(
                            f"permissions: unknown permission {key!r}{hint}; known: "
                            + ", ".join(PERMISSIONS)
                        )
                    elif key in ("run", "dynamic_import"):
                        if not isinstance(value, bool):
                            problems.append(f"permissions: {key} must be true or false")
                    elif value is not True and value is not False:
                        check_strings(permissions, key, problems)
        return problems

    def prepare_config(self, config: Mapping[str, Any], base_dir: Path) -> dict[str, Any]:
        """Make ``file`` absolute against the YAML file's (real) directory. Links below it are
        left in place: the module check refuses a script that a link leads out of its
        folder, so it must see the path as written."""
        prepared = dict(config)
        file = prepared.get("file")
        if isinstance(file, str) and file:
            prepared["file"] = os.path.normpath(os.path.join(base_dir.resolve(), file))
        return prepared

    async def execute(self, config: Mapping[str, Any], ctx: StepContext) -> ExecutionResult:
        """Run the script in Deno and collect its outputs."""
        name = ctx.step.display_name
        key = "\x1e" + secrets.token_hex(16) + "\x1f"
        payload = json.dumps({"key": key, "data": ctx.data}, default=str).encode()
        timeout = parse_duration(config["timeout"]) if config.get("timeout") else None
        outputs: dict[str, Any] = {}
        emit = LineEmitter(ctx, name)

        problems: list[str] = []

        def on_line(stream: str, line: str, cut: bool) -> bool:
            if stream == "stdout" and key in line:
                before, _, message = line.partition(key)
                if before:
                    emit(stream, before)
                item = None if cut else _channel_message(message)
                if item is None:
                    # Never drop what the script sent: the step fails, saying why.
                    problems.append(
                        f"a Wfe.setOutput/Wfe.log message is over the limit of "
                        f"{MAX_PARSED_LINE // (1024 * 1024)} MiB"
                        if cut
                        else "a Wfe.setOutput/Wfe.log message could not be read"
                    )
                elif item.get("kind") == "output":
                    outputs[str(item.get("key"))] = item.get("value")
                elif item.get("kind") == "log":
                    emit("log", str(item.get("message", "")))
                return bool(before)
            emit(stream, line, cut)
            return True

        permissions: Mapping[str, Any] = config.get("permissions") or {}
        paths = await anyio.to_thread.run_sync(resolve_path_grants, permissions)
        env = dict(os.environ)
        env.update({"NO_COLOR": "1", "DENO_NO_UPDATE_CHECK": "1"})
        with tempfile.TemporaryDirectory(prefix="wfe-deno-") as tmp:
            main, step = _write_modules(Path(tmp), config)
            own = [step]
            if config.get("file") and not paths["read"].all:
                modules = await script_modules(deno_binary(), step, env)
                own = own_modules(step, modules, paths["read"])
            for path in own:
                check_listable("deno", path)
            argv = [
                deno_binary(),
                "run",
                "--quiet",
                "--no-prompt",
                "--no-config",
                "--no-lock",
                "--no-npm",
                *permission_flags(permissions, paths, own),
                str(main),
            ]
            try:
                result = await run_process(
                    argv,
                    env=env,
                    cwd=None,
                    timeout=timeout,
                    on_line=on_line,
                    stdin=payload,
                )
            except OSError as exc:
                raise StepFailedError(f"cannot run deno: {exc}") from exc
        record = result.record()
        record_result(ctx, record)
        if result.timed_out:
            raise StepFailedError(f"timed out after {config['timeout']} (deno was killed)")
        if result.exit_code != 0:
            # Deno prints "error: Uncaught ..." and then the stack; the first line says why.
            errors = [line for line in result.stderr_tail if line.startswith("error:")]
            detail = (
                errors[0].removeprefix("error:").strip() if errors else result.last_error_line()
            )
            raise StepFailedError(
                f"deno exited with code {result.exit_code}" + (f": {detail}" if detail else "")
            )
        if problems:
            raise StepFailedError(problems[0])
        return ExecutionResult.outcome(record, output=outputs or None)


def _channel_message(text: str) -> dict[str, Any] | None:
    """A message the prelude sent (a JSON object), ``None`` when it is not one."""
    try:
        item = json.loads(text)
    except ValueError:
        return None
    return item if isinstance(item, dict) else None


def _write_modules(folder: Path, config: Mapping[str, Any]) -> tuple[Path, str]:
    """Write the prelude, the step's script and the main module into ``folder``; returns the
    main module and the path of the step's script (its file, or the copy of ``script``)."""
    folder = Path(os.path.realpath(folder))  # the path Deno names the modules by
    prelude = resources.files("wfe_yaml.executors").joinpath("deno_prelude.js")
    (folder / "wfe_prelude.js").write_text(prelude.read_text(encoding="utf-8"), encoding="utf-8")
    if config.get("file"):
        step = str(config["file"])
    else:
        # A folder of its own: the step gets read on this one file (to load it), never on
        # the executor's prelude and main module.
        (folder / "step").mkdir()
        step = str(folder / "step" / "step.ts")
        Path(step).write_text(str(config["script"]), encoding="utf-8")
    # The prelude has no imports and runs synchronously, so it is evaluated before the
    # step's module. The step's module is loaded by a *computed* import(): Deno loads a static
    # import graph without checking any permission, but checks every module of a graph it
    # loads at run time against `read`, so nothing but granted files can be imported.
    main = folder / "main.js"
    main.write_text(
        'import "./wfe_prelude.js";\n'
        f"const step = [{json.dumps(Path(step).as_uri())}][0];\n"
        # reportError: a failing script is reported as "Uncaught Error: ...", as when it was
        # the main module, not as a rejected promise of the executor's.
        "import(step).catch((error) => reportError(error));\n",
        encoding="utf-8",
    )
    return main, step
